//! Wake-up calls between the writers and the waiters of the queue: "a job became claimable" for
//! idle workers, "job J has event N" for live event streams and for the worker running J.
//!
//! Signals are hints: the database stays the truth, and every waiter also polls, so a lost
//! signal costs latency, never correctness. On SQLite (one process) they travel through an
//! in-process broadcast channel; on PostgreSQL, triggers `NOTIFY` channel `kodiai` at commit and
//! one listener per [`Store`](crate::Store) turns the notifications into the same signals, so
//! every process on the database hears every other's writes.

use std::str::FromStr;
use std::time::Duration;

use kodiai_protocol::JobEventKind;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::broadcast;

/// The PostgreSQL channel the triggers of migration 0002 notify.
pub(crate) const CHANNEL: &str = "kodiai";

/// How many signals a slow subscriber may fall behind before it sees [`Signal::Resync`]
/// (as a lagged receive) instead.
pub(crate) const CAPACITY: usize = 4096;

/// Something changed in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// At least one job became claimable (enqueued, retried, released or re-queued).
    JobsQueued,
    /// A job event was stored.
    JobEvent {
        job_id: String,
        seq: i64,
        kind: JobEventKind,
    },
    /// Signals may have been missed (the listener reconnected, or a receiver lagged): waiters
    /// should look at the database again.
    Resync,
}

impl Signal {
    /// Parses a notification payload of channel `kodiai`.
    pub(crate) fn parse(payload: &str) -> Option<Self> {
        if payload == "queued" {
            return Some(Self::JobsQueued);
        }
        let rest = payload.strip_prefix("event:")?;
        let mut parts = rest.rsplitn(3, ':');
        let kind = JobEventKind::from_str(parts.next()?).ok()?;
        let seq = parts.next()?.parse().ok()?;
        let job_id = parts.next()?.to_owned();
        Some(Self::JobEvent { job_id, seq, kind })
    }
}

/// Receives signals; see [`crate::Store::subscribe`].
pub struct Subscription {
    pub(crate) receiver: broadcast::Receiver<Signal>,
}

impl Subscription {
    /// The next signal. A receiver that fell behind gets [`Signal::Resync`]; a closed channel
    /// (the store is closing) waits forever, so callers always combine this with a timeout or a
    /// shutdown token.
    pub async fn recv(&mut self) -> Signal {
        match self.receiver.recv().await {
            Ok(signal) => signal,
            Err(broadcast::error::RecvError::Lagged(_)) => Signal::Resync,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// Drops every signal received so far, returning whether there was any.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.receiver.try_recv() {
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => any = true,
                Err(_) => return any,
            }
        }
    }
}

/// Forwards the notifications of channel `kodiai` to `sender` until the task is aborted.
/// Reconnects after a lost connection (sending [`Signal::Resync`], since notifications sent
/// meanwhile are gone).
pub(crate) async fn listen(pool: PgPool, first: PgListener, sender: broadcast::Sender<Signal>) {
    let mut listener: Option<PgListener> = Some(first);
    loop {
        let active = match listener.as_mut() {
            Some(active) => active,
            None => match connect(&pool).await {
                Ok(new) => {
                    let _ = sender.send(Signal::Resync);
                    listener.insert(new)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for job notifications; retrying in 1 s (workers poll meanwhile)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        match active.try_recv().await {
            Ok(Some(notification)) => match Signal::parse(notification.payload()) {
                Some(signal) => {
                    let _ = sender.send(signal);
                }
                None => {
                    tracing::debug!(
                        payload = notification.payload(),
                        "ignoring an unknown notification"
                    );
                }
            },
            // The connection was lost; the next try_recv reconnects and re-listens.
            Ok(None) => {
                let _ = sender.send(Signal::Resync);
            }
            Err(e) => {
                tracing::warn!(error = %e, "job notification listener failed; reconnecting");
                listener = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

pub(crate) async fn connect(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_payloads_parse() {
        assert_eq!(Signal::parse("queued"), Some(Signal::JobsQueued));
        assert_eq!(
            Signal::parse("event:0191a6e4-7c1e-7000-8000-000000000001:12:finished"),
            Some(Signal::JobEvent {
                job_id: "0191a6e4-7c1e-7000-8000-000000000001".into(),
                seq: 12,
                kind: JobEventKind::Finished,
            })
        );
        assert_eq!(Signal::parse("event:x:notanumber:log"), None);
        assert_eq!(Signal::parse("event:x:1:shouted"), None);
        assert_eq!(Signal::parse("something else"), None);
    }
}
