//! `POST /webhooks/github` (SPEC §2): verify the signature over the raw body, read the
//! delivery, store it with its job in one transaction, answer 202. Nothing slow happens before
//! the answer: no call to GitHub, no model, only the database write.
//!
//! The route has its own body limit, GitHub's 25 MiB (the API's default is far smaller), and
//! checks the signature before it reads any header or byte of the body, so an unsigned request
//! learns nothing and stores nothing.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kodiai_github::webhook::SIGNATURE_HEADER;
use kodiai_protocol::{DeliveryOutcome, ErrorBody, WebhookAck};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, AppState};
use crate::ingress::{Accepted, DeliveryWriter, Ingress, OwnedIncoming, WriteError};

/// GitHub's own cap on a webhook payload.
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;

/// The `WWW-Authenticate` challenge of a refused signature (RFC 9110 wants one on every 401).
const CHALLENGE: &str = "HMAC-SHA256 header=\"X-Hub-Signature-256\"";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// `POST /webhooks/github`: one delivery from GitHub.
#[utoipa::path(post, path = "/webhooks/github", tag = "webhooks",
    params(
        ("X-GitHub-Event" = String, Header, description = "The event name"),
        ("X-GitHub-Delivery" = String, Header, description = "The delivery's GUID"),
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=<hex HMAC-SHA256 of the body under the webhook secret>`")),
    request_body(content = String, content_type = "application/json",
        description = "The event payload as GitHub sends it (JSON, or form-encoded `payload=`), up to 25 MiB"),
    responses(
        (status = 202, description = "Stored (or a duplicate, acknowledged and not processed again)", body = WebhookAck),
        (status = 200, description = "A `ping`, stored and answered", body = WebhookAck),
        (status = 400, description = "Signed, but a header is missing or the body is not JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature, or no webhook secret configured; nothing stored", body = ErrorBody),
        (status = 413, description = "Body over 25 MiB", body = ErrorBody)))]
async fn receive(
    State(state): State<AppState>,
    Extension(ingress): Extension<Arc<Ingress>>,
    Extension(writer): Extension<Arc<DeliveryWriter>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signature = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes());
    ingress
        .verifier()
        .verify(&body, signature)
        .map_err(|e| ApiError::unauthorized(e.to_string(), CHALLENGE))?;

    let event = header_text(&headers, "x-github-event")?;
    if !event
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::bad_request(
            "X-GitHub-Event must be an event name such as pull_request",
        ));
    }
    let delivery_id = header_text(&headers, "x-github-delivery")?;
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let payload = payload_text(&body, form)?;

    let incoming = OwnedIncoming {
        delivery_id: delivery_id.to_owned(),
        event: event.to_owned(),
        payload: payload.into_owned(),
    };
    let Accepted { outcome, ping } =
        writer
            .accept(incoming, state.clock.now())
            .await
            .map_err(|e| match e {
                WriteError::NotJson(_) => ApiError::bad_request(e.to_string()),
                other => ApiError::internal(other),
            })?;
    tracing::debug!(delivery_id, event, outcome = ?outcome, "webhook delivery");
    let status = if ping && outcome != DeliveryOutcome::Duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let ack = WebhookAck {
        delivery_id: delivery_id.to_owned(),
        outcome,
    };
    Ok((status, ApiJson(ack)).into_response())
}

/// A required header as plain text of at most 100 characters.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    let text = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if text.is_empty() || text.len() > 100 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(format!(
            "missing or malformed {name} header"
        )));
    }
    Ok(text)
}

/// The JSON text of the body: the body itself, or the `payload` field of a form-encoded one
/// (GitHub's other content type).
fn payload_text(body: &Bytes, form: bool) -> Result<std::borrow::Cow<'_, str>, ApiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the payload is not UTF-8"))?;
    if !form {
        return Ok(std::borrow::Cow::Borrowed(text));
    }
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| std::borrow::Cow::Owned(value.into_owned()))
        .ok_or_else(|| ApiError::bad_request("a form-encoded delivery needs a payload field"))
}
