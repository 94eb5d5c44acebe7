//! The request context around every route: a request id (taken from a sane `X-Request-ID` or
//! made), a tracing span that carries it, the request timeout (504), the HTTP metrics, and the
//! JSON body `{error, message, request_id}` on every 4xx/5xx, whoever produced it.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use kodiai_protocol::{ErrorBody, ErrorCode};
use tracing::Instrument;

use super::error::ErrorInfo;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the request being served, for handlers that want it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Plain-text bodies of other layers' errors longer than this are not quoted in the message.
const MAX_QUOTED_BODY: usize = 512;

#[derive(Clone)]
pub(crate) struct ContextConfig {
    pub request_timeout: Duration,
}

pub(crate) async fn request_context(
    State(config): State<ContextConfig>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id =
        incoming_request_id(&request).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());

    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));

    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let response = match tokio::time::timeout(
        config.request_timeout,
        next.run(request).instrument(span.clone()),
    )
    .await
    {
        Ok(response) => response,
        Err(_) => {
            let mut response = StatusCode::GATEWAY_TIMEOUT.into_response();
            response.extensions_mut().insert(ErrorInfo {
                code: ErrorCode::Timeout,
                message: format!(
                    "no response within the request timeout of {} s",
                    config.request_timeout.as_secs_f64()
                ),
            });
            response
        }
    };

    let mut response = if response.status().is_client_error() || response.status().is_server_error()
    {
        render_error(response, &request_id, &method, &path).await
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::counter!(
        "http_requests_total",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method.to_string(),
        "route" => route.clone()
    )
    .record(elapsed.as_secs_f64());

    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(status, latency_ms, path = %path, "request failed");
        } else if matches!(route.as_str(), "/health" | "/ready" | "/metrics") {
            // Probes and scrapes arrive every few seconds; keep them out of the default log.
            tracing::debug!(status, latency_ms, "request");
        } else {
            tracing::info!(status, latency_ms, path = %path, "request");
        }
    });
    response
}

/// A client's own request id, when it is short and plain enough to log and echo safely.
fn incoming_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get(&X_REQUEST_ID)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| value.to_owned())
}

/// Replaces the body of an error response with the JSON error body. The message comes from the
/// handler's [`ErrorInfo`], else from a short plain-text body of the layer that answered (axum's
/// rejections say useful things), else from the status.
async fn render_error(
    response: Response,
    request_id: &str,
    method: &Method,
    path: &str,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let status = parts.status;
    let info = match parts.extensions.remove::<ErrorInfo>() {
        Some(info) => info,
        None => {
            let is_text = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain"));
            let quoted = if is_text {
                read_short_body(body).await
            } else {
                None
            };
            ErrorInfo {
                code: ErrorCode::from_status(status.as_u16()),
                message: quoted.unwrap_or_else(|| default_message(status, method, path)),
            }
        }
    };
    let body = ErrorBody {
        error: info.code,
        message: info.message,
        request_id: request_id.to_owned(),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

async fn read_short_body(body: Body) -> Option<String> {
    let limited = http_body_util::Limited::new(body, MAX_QUOTED_BODY);
    let bytes = limited.collect().await.ok()?.to_bytes();
    let text = String::from_utf8(bytes.to_vec()).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn default_message(status: StatusCode, method: &Method, path: &str) -> String {
    let path: String = path.chars().take(200).collect();
    match status {
        StatusCode::NOT_FOUND => format!("no route for {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this route accepts".to_owned()
        }
        StatusCode::INTERNAL_SERVER_ERROR => {
            "internal error; the server log has the details under this request id".to_owned()
        }
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned(),
    }
}
