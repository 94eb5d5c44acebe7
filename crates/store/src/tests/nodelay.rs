//! Every TCP connection the store opens to PostgreSQL has `TCP_NODELAY` on. Without it, Nagle's
//! algorithm holds a statement's last small packet until the server's delayed ACK (about 40 ms
//! on Linux) whenever a write follows a write: sqlx 0.9.0 stopped setting it, and every webhook
//! paid 40 ms (issue 17).
//!
//! The connections are found as PostgreSQL sees them (`pg_stat_activity.client_port` of the
//! test's own database), then among this process's sockets (`/proc/self/fd`, each duplicated
//! through a pidfd so that its options can be read without `unsafe`) by local port.

use std::net::SocketAddr;

use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

use crate::Inner;
use crate::testing::TestDb;

/// A TCP socket of this process: its local address and whether `TCP_NODELAY` is on.
#[derive(Debug)]
struct TcpSocket {
    local: SocketAddr,
    nodelay: bool,
}

/// This process's IPv4/IPv6 TCP sockets that are connected (they have a peer).
fn tcp_sockets() -> Vec<TcpSocket> {
    let me = pidfd_open(getpid(), PidfdFlags::empty())
        .unwrap_or_else(|e| panic!("pidfd_open of this process: {e}"));
    let entries =
        std::fs::read_dir("/proc/self/fd").unwrap_or_else(|e| panic!("reading /proc/self/fd: {e}"));
    let mut sockets = Vec::new();
    for entry in entries.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue; // closed meanwhile (the read_dir's own fd, for one)
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A duplicate of the descriptor: the same socket, so the same options.
        let Ok(dup) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let local = rustix::net::getsockname(&dup)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok());
        let connected = matches!(rustix::net::getpeername(&dup), Ok(Some(_)));
        let (Some(local), true) = (local, connected) else {
            continue;
        };
        // Fails on a UDP socket: not a TCP connection.
        let Ok(nodelay) = rustix::net::sockopt::tcp_nodelay(&dup) else {
            continue;
        };
        sockets.push(TcpSocket { local, nodelay });
    }
    sockets
}

#[tokio::test]
async fn every_postgres_connection_has_tcp_nodelay() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Migrations run on the pool's connections; subscribing opens the listener's own.
    let store = db.store().await;
    let _subscription = store
        .subscribe()
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));
    let Inner::Postgres(pool) = &store.inner else {
        panic!("a PostgreSQL test database opened as SQLite");
    };
    // Hold every other connection of the pool at once, so that each is open (the listener
    // keeps one of the pool's for itself).
    let mut held = Vec::new();
    for _ in 1..pool.options().get_max_connections() {
        held.push(
            pool.acquire()
                .await
                .unwrap_or_else(|e| panic!("acquire: {e}")),
        );
    }
    let Some(first) = held.first_mut() else {
        panic!("the pool holds no connection");
    };
    let ports: Vec<Option<i32>> = sqlx::query_scalar(
        "SELECT client_port FROM pg_stat_activity \
         WHERE datname = current_database() AND backend_type = 'client backend'",
    )
    .fetch_all(&mut **first)
    .await
    .unwrap_or_else(|e| panic!("reading pg_stat_activity: {e}"));
    let ports: Vec<u16> = ports
        .into_iter()
        .map(|port| match port.and_then(|p| u16::try_from(p).ok()) {
            Some(port) => port,
            None => panic!(
                "a connection without a TCP client port: TEST_DATABASE_URL must reach PostgreSQL \
                 over TCP for this test (found {port:?})"
            ),
        })
        .collect();
    // At least the pool's connections held here and the listener's.
    assert!(
        ports.len() > held.len(),
        "{} connections to the test database ({ports:?}) for {} held and the listener",
        ports.len(),
        held.len()
    );

    let sockets = tcp_sockets();
    for port in &ports {
        let Some(socket) = sockets.iter().find(|s| s.local.port() == *port) else {
            panic!("no socket of this process has local port {port}: {sockets:?}");
        };
        assert!(
            socket.nodelay,
            "the connection from {} has TCP_NODELAY off: each write after a write waits for \
             the server's delayed ACK",
            socket.local
        );
    }
    drop(held);
    store.close().await;
}
