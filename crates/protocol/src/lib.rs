//! kodiai's wire types: the bodies the HTTP API sends and receives, and the error codes it uses.
//!
//! No logic and no IO lives here: every front end (the HTTP API, the CLI, the tests, later the
//! dashboard) speaks these types, so they stay plain serde data with OpenAPI schemas.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub mod agent;
pub mod deliveries;
pub mod jobs;
pub mod tools;

pub use agent::{AgentEvent, FinishReason, TokenUsage};
pub use deliveries::{Delivery, DeliveryDetail, DeliveryOutcome, WebhookAck};
pub use jobs::{
    FailureReason, Job, JobDetail, JobEvent, JobEventKind, JobFailure, JobKind, JobSpec, JobState,
    MentionJob, MentionSource, NoopJob, ReviewJob, UnknownName,
};
pub use tools::{ToolCall, ToolSpec};

/// One page of any list of the API: `{"data": [...], "next_cursor": "…" | null}`. Pass
/// `next_cursor` back as `?cursor=` for the next page; `null` means this was the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The body of every 4xx and 5xx response of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code (see [`ErrorCode`]).
    pub error: ErrorCode,
    /// A human-readable explanation. Never contains secrets or stack traces.
    pub message: String,
    /// The request id, also sent as the `X-Request-ID` header; quote it when reporting a problem.
    pub request_id: String,
}

/// Machine-readable error codes. Each maps to one HTTP status; the status is named on each variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (bad JSON syntax, bad query string, bad header).
    BadRequest,
    /// 401: missing or invalid credentials or signature.
    Unauthorized,
    /// 403: authenticated, but not allowed.
    Forbidden,
    /// 404: no such route or resource.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the client took too long to send its request.
    RequestTimeout,
    /// 409: the request conflicts with the current state (for example a duplicate).
    Conflict,
    /// 413: the body is larger than the limit for this route.
    PayloadTooLarge,
    /// 415: the body has the wrong content type.
    UnsupportedMediaType,
    /// 422: well-formed, but the values are wrong (wrong types, unknown enum values, missing fields).
    Unprocessable,
    /// 429: too many requests; see `Retry-After`.
    RateLimited,
    /// 500: something broke on our side; the details are in the server log under the request id.
    Internal,
    /// 503: a dependency (the database, the workers) is not ready.
    NotReady,
    /// 504: the request took longer than the server's request timeout.
    Timeout,
    /// Any other status; the status itself tells what happened.
    Other,
}

impl ErrorCode {
    /// The code for an HTTP status, for errors produced by layers that only know the status.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => Self::BadRequest,
            401 => Self::Unauthorized,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            408 => Self::RequestTimeout,
            409 => Self::Conflict,
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedMediaType,
            422 => Self::Unprocessable,
            429 => Self::RateLimited,
            500 => Self::Internal,
            503 => Self::NotReady,
            504 => Self::Timeout,
            _ => Self::Other,
        }
    }
}

/// `GET /health`: the process is up and serving HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthResponse {
    /// Always `ok`.
    pub status: String,
    /// The kodiai version serving the request.
    pub version: String,
}

/// `GET /ready`: every dependency the server needs is usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    /// Always `ready` (a server that is not ready answers 503 with an [`ErrorBody`]).
    pub status: String,
    /// The database backend in use: `sqlite` or `postgres`.
    pub database: String,
    /// How many schema migrations are applied.
    pub migrations: u32,
    /// Job workers running in this process (0 when it only serves HTTP).
    pub workers: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_documented_shape() {
        let body = ErrorBody {
            error: ErrorCode::PayloadTooLarge,
            message: "too big".into(),
            request_id: "r1".into(),
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "payload_too_large", "message": "too big", "request_id": "r1"})
        );
    }

    #[test]
    fn every_status_code_maps_back_to_itself() {
        for status in [
            400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503, 504,
        ] {
            assert_ne!(ErrorCode::from_status(status), ErrorCode::Other, "{status}");
        }
        assert_eq!(ErrorCode::from_status(418), ErrorCode::Other);
    }
}
