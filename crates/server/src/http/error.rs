//! The one error type of HTTP handlers, and the JSON and query-string extractors whose
//! rejections become it.
//!
//! Handlers return [`ApiError`]; it carries the status, a stable code and a message, and the
//! request-context middleware renders every 4xx/5xx (ours, axum's, tower's) as the same JSON
//! body `{error, message, request_id}`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kodiai_protocol::ErrorCode;

/// What the middleware needs to render an error body; attached to error responses as an extension.
#[derive(Debug, Clone)]
pub(crate) struct ErrorInfo {
    pub code: ErrorCode,
    pub message: String,
}

/// An error answer of the API. Each constructor documents its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    info: ErrorInfo,
    /// The `WWW-Authenticate` challenge of a 401; the middleware keeps the header.
    challenge: Option<&'static str>,
}

impl ApiError {
    /// Any status, with the code that belongs to it.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            info: ErrorInfo {
                code: ErrorCode::from_status(status.as_u16()),
                message: message.into(),
            },
            challenge: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: missing or wrong credentials. `challenge` is the `WWW-Authenticate` value that tells
    /// the client which scheme to use (RFC 9110 §11.6.1 requires one on every 401).
    pub fn unauthorized(message: impl Into<String>, challenge: &'static str) -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, message);
        error.challenge = Some(challenge);
        error
    }

    /// 404: no such resource. Also the answer for resources of other users, so that ids leak nothing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: not possible in the resource's current state; the message names that state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 422: well-formed, wrong values.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 503: a dependency is not ready; the message says which and why.
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500: logs the cause with the request's span (which carries the request id) and answers
    /// with an opaque message, since causes can name internals.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server log has the details under this request id",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is written by the request-context middleware, which knows the request id.
        let mut response = self.status.into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response.extensions_mut().insert(self.info);
        response
    }
}

/// `axum::Json` whose rejections are API errors: bad syntax 400, wrong types or missing fields
/// 422, wrong content type 415, body over the limit 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string's rejection as an API error: 422 naming the parameter and what was wrong (an
/// unknown parameter, a duplicate, a value of the wrong type). Query strings have no syntax
/// errors to speak of: every failure is one of values.
pub(super) fn query_rejection(rejection: &QueryRejection) -> ApiError {
    let message = match rejection {
        QueryRejection::FailedToDeserializeQueryString(e) => {
            format!("invalid query string: {}", source_text(e))
        }
        other => other.body_text(),
    };
    ApiError::unprocessable(message)
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let message = match rejection {
        JsonRejection::JsonSyntaxError(e) => format!("malformed JSON: {}", source_text(e)),
        JsonRejection::JsonDataError(e) => format!("invalid request body: {}", source_text(e)),
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with `Content-Type: application/json`".to_owned()
        }
        other => other.body_text(),
    };
    ApiError::new(rejection.status(), message)
}

/// serde_json's own message (line and column, the field and what was expected) without axum's
/// prefix.
fn source_text(error: &dyn std::error::Error) -> String {
    let mut deepest = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        deepest = next.to_string();
        source = next.source();
    }
    deepest
}
