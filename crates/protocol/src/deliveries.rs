//! Webhook deliveries on the wire: what `POST /webhooks/github` answers ([`WebhookAck`]) and
//! what operators read at `/api/v1/deliveries` ([`Delivery`], [`DeliveryDetail`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Routed to a job (a review or a mention).
    Job {
        /// The job's id (the first job, when the delivery was replayed).
        job_id: String,
    },
    /// Kept for later use (CI status, the installation registry), no job.
    Recorded {
        /// What was recorded.
        reason: String,
    },
    /// Stored and not acted on; `reason` says why (an unrouted event or action, no trigger, a
    /// bot, the App's own event, an edit, …).
    Ignored { reason: String },
    /// Only in answers: this delivery id was received before; nothing was done again.
    Duplicate,
}

/// The answer of `POST /webhooks/github` (202, or 200 to a `ping`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAck {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    pub outcome: DeliveryOutcome,
}

/// A stored delivery, as `GET /api/v1/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// `X-GitHub-Delivery` (GitHub's GUID).
    pub delivery_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    /// `owner/name`.
    pub repository: Option<String>,
    /// The login of whoever caused the event.
    pub sender: Option<String>,
    pub received_at: DateTime<Utc>,
    pub outcome: DeliveryOutcome,
    /// How many times the same delivery id came again (GitHub redeliveries), each acknowledged
    /// and not processed.
    pub duplicates: u32,
    /// How many times an operator replayed it.
    pub replays: u32,
}

/// `GET /api/v1/deliveries/{id}`: the delivery, its payload and the jobs made from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The verified JSON body as received.
    pub payload: serde_json::Value,
    /// Ids of the jobs made from this delivery, oldest first (more than one after replays).
    pub jobs: Vec<String>,
}
