//! Starting and stopping the service: open and migrate the store, bind, serve until told to
//! stop, then drain in-flight requests within the grace period.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use kodiai_store::{ConnectOptions, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::telemetry;

/// Opens the configured database and applies the embedded migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&ConnectOptions {
        location: config.database.url.clone(),
        max_connections: config.database.max_connections,
    })
    .await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", config.database.url.redacted()))?;
    Ok(store)
}

/// A server that is accepting connections.
pub struct RunningServer {
    /// The address actually bound (the configured port may be 0).
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    /// Resolves to whether every request finished (`false`: the grace period ran out).
    task: JoinHandle<std::io::Result<bool>>,
}

impl RunningServer {
    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server has stopped (after the token is cancelled and requests drained,
    /// or the grace period ran out), then closes the store.
    pub async fn wait(self) -> anyhow::Result<()> {
        let drained = self
            .task
            .await
            .context("the server task failed")?
            .context("serving HTTP")?;
        // Closing waits for every pooled connection to come back; after a cut-short drain some
        // never will (their requests were abandoned), and the process is ending anyway.
        if drained {
            self.state.store.close().await;
        }
        Ok(())
    }

    /// Starts a graceful shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Opens the store, binds the configured address and serves `extra` routes beside the built-in
/// ones until the returned server's shutdown token is cancelled.
pub async fn start(config: Config, extra: Router<AppState>) -> anyhow::Result<RunningServer> {
    // Before the first request, so that no measurement goes to the no-op recorder.
    let _ = telemetry::metrics();
    let store = open_store(&config).await?;
    let bind = SocketAddr::new(config.server.host, config.server.port);
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    let grace = config.server.shutdown_grace();
    let state = AppState {
        config: Arc::new(config),
        store,
    };
    let app = http::router(state.clone(), extra);

    let shutdown = CancellationToken::new();
    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        tokio::select! {
            result = serve => result.map(|()| true),
            () = async {
                token.cancelled().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_secs = grace.as_secs(), "shutdown grace period over; dropping the requests still open");
                Ok(false)
            }
        }
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        task,
    })
}

/// Resolves at the first SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
