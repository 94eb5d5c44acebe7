//! What can go wrong in a model call, typed by what the caller does about it: wait and retry
//! (`RateLimited`, `Overloaded`, `Server`, `Timeout`, `Network`), shorten the conversation
//! (`ContextWindowExceeded`), or stop (`Authentication`, `InvalidRequest`, `BadResponse`).

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed model call. Messages never contain keys or tokens.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// 429: too many requests or tokens. Retried after `retry_after` when the provider said.
    #[error("rate limited by {provider}{}: {message}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs_f64())).unwrap_or_default())]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },
    /// 529, Anthropic's `overloaded_error`, Gemini's 503 `UNAVAILABLE`: retried, then the next
    /// model of the fallback chain.
    #[error("{provider} is overloaded: {message}")]
    Overloaded {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },
    /// Any other 5xx: retried like `Overloaded`.
    #[error("{provider} answered {status}: {message}")]
    Server {
        provider: String,
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// The conversation does not fit the model's context window. The agent compacts it or stops;
    /// retrying the same request cannot help.
    #[error("the conversation is longer than {provider}'s context window: {message}")]
    ContextWindowExceeded { provider: String, message: String },
    /// 401/403: the key or token is missing, wrong or not allowed this model.
    #[error("{provider} refused the credentials: {message}")]
    Authentication { provider: String, message: String },
    /// Another 4xx: the request itself is wrong (unknown model, bad tool schema).
    #[error("{provider} rejected the request ({status}): {message}")]
    InvalidRequest {
        provider: String,
        status: u16,
        message: String,
    },
    /// No connection, no first byte, or a silent stream within the configured time.
    #[error("{provider}: {what} timed out after {}s", after.as_secs_f64())]
    Timeout {
        provider: String,
        what: &'static str,
        after: Duration,
    },
    /// The connection failed or broke (including a stream cut in the middle).
    #[error("{provider}: network error: {message}")]
    Network { provider: String, message: String },
    /// The provider answered something this client cannot read, or a stream ended before its
    /// final event.
    #[error("{provider}: bad response: {message}")]
    BadResponse { provider: String, message: String },
    /// The configuration names a provider or model that cannot be used.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Worth trying the same request again (after [`Error::retry_after`] or a backoff).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Overloaded { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Network { .. }
        )
    }

    /// Worth trying the next model of the fallback chain once retries are used up (the same
    /// errors: another provider may be up while this one is not).
    pub fn falls_back(&self) -> bool {
        self.is_retryable()
    }

    /// The wait the provider asked for (`retry-after`, Gemini's `RetryInfo`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. }
            | Self::Overloaded { retry_after, .. }
            | Self::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short, stable name of the kind of error, for metrics and the `llm_calls` table.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::Server { .. } => "server",
            Self::ContextWindowExceeded { .. } => "context_window_exceeded",
            Self::Authentication { .. } => "authentication",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Timeout { .. } => "timeout",
            Self::Network { .. } => "network",
            Self::BadResponse { .. } => "bad_response",
            Self::Config(_) => "config",
        }
    }

    pub(crate) fn bad_response(provider: &str, message: impl Into<String>) -> Self {
        Self::BadResponse {
            provider: provider.to_owned(),
            message: message.into(),
        }
    }
}

/// Phrases by which the APIs (and the servers that imitate them) say a prompt is too long.
const CONTEXT_PHRASES: [&str; 9] = [
    "context_length_exceeded",
    "context window",
    "context length",
    "prompt is too long",
    "maximum context length",
    "too many tokens",
    "exceeds the maximum number of tokens",
    "input token count",
    "model_context_window_exceeded",
];

/// Types an HTTP error answer. `message` is the provider's error message (from its JSON body),
/// `code` its error type or code when it has one.
pub(crate) fn from_status(
    provider: &str,
    status: u16,
    retry_after: Option<Duration>,
    code: &str,
    message: String,
) -> Error {
    let provider = provider.to_owned();
    let lower = format!("{code} {message}").to_lowercase();
    if (status == 400 || status == 413 || status == 422)
        && CONTEXT_PHRASES.iter().any(|p| lower.contains(p))
    {
        return Error::ContextWindowExceeded { provider, message };
    }
    match status {
        401 | 403 => Error::Authentication { provider, message },
        429 => Error::RateLimited {
            provider,
            retry_after,
            message,
        },
        529 => Error::Overloaded {
            provider,
            retry_after,
            message,
        },
        503 if lower.contains("overloaded") || lower.contains("unavailable") => Error::Overloaded {
            provider,
            retry_after,
            message,
        },
        500..=599 => Error::Server {
            provider,
            status,
            retry_after,
            message,
        },
        _ => Error::InvalidRequest {
            provider,
            status,
            message,
        },
    }
}

/// Types an error event inside a stream (`{"type": "overloaded_error", "message": …}`).
pub(crate) fn from_stream_error(provider: &str, code: &str, message: String) -> Error {
    let status = match code {
        "overloaded_error" => 529,
        "rate_limit_error" | "RESOURCE_EXHAUSTED" => 429,
        "invalid_request_error" | "INVALID_ARGUMENT" => 400,
        "authentication_error" | "permission_error" => 401,
        _ => 500,
    };
    from_status(provider, status, None, code, message)
}

/// `retry-after` in seconds (the HTTP-date form is not used by these APIs), or Anthropic's
/// `retry-after-ms`.
pub(crate) fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|t| t.trim().parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    text("retry-after")
        .and_then(|t| t.trim().parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_window_errors_are_recognised_by_each_api_wording() {
        for (code, message) in [
            (
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
            (
                "context_length_exceeded",
                "This model's maximum context length is 128000 tokens.",
            ),
            (
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ),
        ] {
            let error = from_status("p", 400, None, code, message.to_owned());
            assert_eq!(error.kind(), "context_window_exceeded", "{message}");
        }
        let other = from_status("p", 400, None, "invalid_request_error", "bad tool".into());
        assert_eq!(other.kind(), "invalid_request");
    }

    #[test]
    fn statuses_map_to_what_the_caller_does() {
        let e = |status| from_status("p", status, None, "", "m".into());
        assert_eq!(e(429).kind(), "rate_limited");
        assert_eq!(e(529).kind(), "overloaded");
        assert_eq!(e(500).kind(), "server");
        assert_eq!(e(401).kind(), "authentication");
        assert_eq!(e(404).kind(), "invalid_request");
        assert!(e(503).is_retryable() && e(503).falls_back());
        assert!(!e(401).is_retryable() && !e(400).falls_back());
    }
}
