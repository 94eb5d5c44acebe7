//! Deliveries stored in groups: one transaction for every delivery that arrived while the
//! previous group was being written (group commit).
//!
//! Each delivery is still stored with what it leads to atomically, and a request is answered
//! only once its group has committed, so a 202 still means "stored". What changes is the cost:
//! SQLite has one writer, and a transaction per delivery paid its BEGIN and COMMIT and
//! rewrote the same index and table pages for every delivery; under load a group of dozens
//! pays them once. At low load a group is one delivery, written at once.
//!
//! A group that fails is rolled back and its deliveries are written again one by one, so one
//! bad delivery fails only its own request.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use kodiai_protocol::DeliveryOutcome;
use kodiai_store::Store;
use tokio::sync::{mpsc, oneshot};

use super::{Ingress, Routed};

/// Deliveries in one transaction at most.
const GROUP_AT_MOST: usize = 64;
/// Deliveries waiting for the writer before new requests wait to hand theirs over.
const QUEUE: usize = 1024;

/// A verified delivery as received, owned so that it can wait for its group.
#[derive(Debug, Clone)]
pub struct OwnedIncoming {
    pub delivery_id: String,
    pub event: String,
    pub payload: String,
}

impl OwnedIncoming {
    fn borrowed(&self) -> super::Incoming<'_> {
        super::Incoming {
            delivery_id: &self.delivery_id,
            event: &self.event,
            payload: &self.payload,
        }
    }
}

/// What became of an accepted delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub outcome: DeliveryOutcome,
    /// It was a `ping` (answered 200 rather than 202).
    pub ping: bool,
}

struct Pending {
    incoming: OwnedIncoming,
    routed: Routed,
    now: DateTime<Utc>,
    reply: oneshot::Sender<kodiai_store::Result<DeliveryOutcome>>,
}

/// Hands deliveries to the one task that stores them in groups. Cheap to share.
#[derive(Debug)]
pub struct DeliveryWriter {
    ingress: Arc<Ingress>,
    store: Store,
    /// Started on first use, so that building the router needs no runtime.
    sender: OnceLock<mpsc::Sender<Pending>>,
}

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The payload is not JSON (the sender's fault: 400).
    #[error("the payload is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] kodiai_store::Error),
    #[error("the delivery writer stopped")]
    Stopped,
}

impl DeliveryWriter {
    pub fn new(ingress: Arc<Ingress>, store: Store) -> Self {
        Self {
            ingress,
            store,
            sender: OnceLock::new(),
        }
    }

    /// Routes a delivery ([`Ingress::route`], in the caller's task) and stores it with what it
    /// leads to; answers once its group is committed.
    pub async fn accept(
        &self,
        incoming: OwnedIncoming,
        now: DateTime<Utc>,
    ) -> Result<Accepted, WriteError> {
        let routed = self.ingress.route(&incoming.borrowed())?;
        let ping = routed.ping;
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(write_groups(
                Arc::clone(&self.ingress),
                self.store.clone(),
                receiver,
            ));
            sender
        });
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            incoming,
            routed,
            now,
            reply,
        };
        sender
            .send(pending)
            .await
            .map_err(|_| WriteError::Stopped)?;
        let outcome = answer.await.map_err(|_| WriteError::Stopped)??;
        Ok(Accepted { outcome, ping })
    }
}

/// The writer task: takes what is waiting (up to [`GROUP_AT_MOST`]) and stores it in one
/// transaction, until every sender is gone.
async fn write_groups(ingress: Arc<Ingress>, store: Store, mut receiver: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(GROUP_AT_MOST);
    while receiver.recv_many(&mut group, GROUP_AT_MOST).await > 0 {
        metrics::histogram!("kodiai_webhook_write_group_size").record(group.len() as f64);
        match write_group(&ingress, &store, &group).await {
            Ok(outcomes) => {
                for (pending, outcome) in group.drain(..).zip(outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some(pending) = group.pop() {
                    let _ = pending.reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = group.len(), "a group of deliveries failed; storing them one by one");
                for pending in group.drain(..) {
                    let outcome = write_group(&ingress, &store, std::slice::from_ref(&pending))
                        .await
                        .map(|mut outcomes| outcomes.remove(0));
                    let _ = pending.reply.send(outcome);
                }
            }
        }
    }
}

async fn write_group(
    ingress: &Ingress,
    store: &Store,
    group: &[Pending],
) -> kodiai_store::Result<Vec<DeliveryOutcome>> {
    let mut tx = store.begin().await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for pending in group {
        outcomes.push(
            ingress
                .store_in(
                    &mut tx,
                    &pending.incoming.borrowed(),
                    &pending.routed,
                    pending.now,
                )
                .await?,
        );
    }
    tx.commit().await?;
    Ok(outcomes)
}
