//! What the three providers share on the wire: one reqwest client with the connect timeout,
//! sending a JSON request with a first-byte timeout, typing error answers, and turning an SSE
//! body into [`StreamEvent`]s through a per-API [`Decoder`] with an idle timeout.

use std::collections::VecDeque;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{self, Error, Result};
use crate::types::StreamEvent;

/// A stream of one answer's events; it ends after [`StreamEvent::Finished`] or with an `Err`.
pub type EventStream = BoxStream<'static, Result<StreamEvent>>;

/// How long a call may take, by phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open the TCP (and TLS) connection.
    pub connect: Duration,
    /// From sending the request to the response's headers.
    pub first_byte: Duration,
    /// Between two pieces of a streamed body.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(120),
        }
    }
}

/// The HTTP side of a provider.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    pub client: reqwest::Client,
    pub timeouts: Timeouts,
}

impl Transport {
    pub fn new(timeouts: Timeouts) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .user_agent(concat!("kodiai/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, timeouts })
    }

    /// Sends `request` and waits for the headers; a non-2xx answer becomes a typed error from
    /// its JSON body.
    pub async fn send(
        &self,
        provider: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let response = tokio::time::timeout(self.timeouts.first_byte, request.send())
            .await
            .map_err(|_| Error::Timeout {
                provider: provider.to_owned(),
                what: "waiting for the response",
                after: self.timeouts.first_byte,
            })?
            .map_err(|e| network(provider, &e, self.timeouts))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut retry_after = error::retry_after_header(response.headers());
        let body = tokio::time::timeout(self.timeouts.idle, response.text())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let (code, message, body_retry) = error_body(&body);
        retry_after = retry_after.or(body_retry);
        let message = if message.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            message
        };
        Err(error::from_status(
            provider,
            status.as_u16(),
            retry_after,
            &code,
            message,
        ))
    }
}

/// A reqwest error, typed. Its text names the URL, which holds no secret (keys go in headers;
/// see each provider).
pub(crate) fn network(provider: &str, e: &reqwest::Error, timeouts: Timeouts) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            provider: provider.to_owned(),
            what: if e.is_connect() {
                "connecting"
            } else {
                "reading"
            },
            after: if e.is_connect() {
                timeouts.connect
            } else {
                timeouts.idle
            },
        };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    Error::Network {
        provider: provider.to_owned(),
        message,
    }
}

/// The error code, message and retry delay of an error body in any of the three APIs' shapes:
/// `{"type":"error","error":{"type","message"}}` (Anthropic), `{"error":{"message","type","code"}}`
/// (OpenAI), `{"error":{"code","message","status","details":[{"retryDelay"}]}}` (Gemini).
pub(crate) fn error_body(body: &str) -> (String, String, Option<Duration>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return (String::new(), body.chars().take(500).collect(), None);
    };
    let error = value.get("error").unwrap_or(&value);
    let str_of = |key: &str| error.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let code = str_of("type")
        .or_else(|| str_of("status"))
        .or_else(|| str_of("code"))
        .unwrap_or_default();
    let code = match error.get("code").and_then(|v| v.as_str()) {
        Some(extra) if extra != code => format!("{code} {extra}"),
        _ => code,
    };
    let message = str_of("message").unwrap_or_else(|| error.to_string());
    let retry = error
        .get("details")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .find_map(|d| d.get("retryDelay").and_then(|v| v.as_str()))
        .and_then(|t| t.trim_end_matches('s').parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
    (code, message, retry)
}

/// Turns one API's SSE events into normalized events.
pub(crate) trait Decoder: Send + 'static {
    /// One SSE event (its `event:` name and `data:`), giving any number of events.
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<StreamEvent>) -> Result<()>;
    /// The body ended. Returns the last events, or the error of a stream that ended before its
    /// final event.
    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<()>;
    /// The final event was seen: nothing after it matters.
    fn done(&self) -> bool;
}

struct State<D> {
    provider: String,
    events: BoxStream<
        'static,
        std::result::Result<
            eventsource_stream::Event,
            eventsource_stream::EventStreamError<reqwest::Error>,
        >,
    >,
    decoder: D,
    /// Decoded items not yet handed out; an error is always the last.
    pending: VecDeque<Result<StreamEvent>>,
    timeouts: Timeouts,
    finished: bool,
}

/// The normalized events of an SSE response, decoded by `decoder`. A body that is cut, that
/// stays silent for `timeouts.idle`, or that ends before the final event ends the stream with
/// an `Err`.
pub(crate) fn decode_sse<D: Decoder>(
    provider: &str,
    response: reqwest::Response,
    timeouts: Timeouts,
    decoder: D,
) -> EventStream {
    let state = State {
        provider: provider.to_owned(),
        events: response.bytes_stream().eventsource().boxed(),
        decoder,
        pending: VecDeque::new(),
        timeouts,
        finished: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(item) = s.pending.pop_front() {
                return Some((item, s));
            }
            if s.finished || s.decoder.done() {
                return None;
            }
            let mut out = Vec::new();
            let idle = s.timeouts.idle;
            let step = match tokio::time::timeout(idle, s.events.next()).await {
                Err(_) => Err(Error::Timeout {
                    provider: s.provider.clone(),
                    what: "waiting for the next part of the stream",
                    after: idle,
                }),
                Ok(Some(Ok(event))) => s.decoder.event(&event.event, &event.data, &mut out),
                Ok(Some(Err(eventsource_stream::EventStreamError::Transport(e)))) => {
                    Err(network(&s.provider, &e, s.timeouts))
                }
                Ok(Some(Err(e))) => Err(Error::bad_response(&s.provider, e.to_string())),
                Ok(None) => {
                    s.finished = true;
                    s.decoder.end(&mut out)
                }
            };
            // The events decoded before an error still go out, then the error, then nothing.
            s.pending.extend(out.into_iter().map(Ok));
            if let Err(e) = step {
                s.finished = true;
                s.pending.push_back(Err(e));
            }
        }
    })
    .boxed()
}
