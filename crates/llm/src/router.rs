//! [`Llm`]: the provider the agent is given. It tries the configured model and then each
//! fallback; each model gets retries with backoff and jitter (or exactly the provider's
//! `retry-after`) on rate limits, overload, 5xx, timeouts and network errors that happen before
//! the first event; and every attempt is reported to a [`CallRecorder`] with its tokens, cost,
//! duration and time to first token.
//!
//! Once a stream has yielded an event, an error ends it: the caller has shown the deltas, so a
//! silent retry would duplicate them. The caller (the agent's turn) decides what to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use crate::Provider;
use crate::error::{Error, Result};
use crate::http::{EventStream, Timeouts};
use crate::models::{Credentials, ModelRef, build_provider};
use crate::prices::PriceTable;
use crate::types::{ChatRequest, StopReason, StreamEvent, Usage};

/// How often and how long to retry one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt, per model.
    pub max_retries: u32,
    /// The first backoff; each next one doubles (with jitter).
    pub base_delay: Duration,
    /// No wait is longer. A `retry-after` longer than this moves on to the next model instead.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) after `error`: the provider's
    /// `retry-after` as given, else `base * 2^retry` capped at `max`, with jitter in its upper
    /// half so that many clients do not retry in step. `None`: do not wait that long.
    pub fn delay(&self, retry: u32, error: &Error) -> Option<Duration> {
        if let Some(after) = error.retry_after() {
            return (after <= self.max_delay).then_some(after);
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        Some(exp.mul_f64(0.5 + fastrand::f64() * 0.5))
    }
}

/// What a call belongs to, for the accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallScope {
    pub job_id: Option<String>,
    pub session_id: Option<String>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    Error,
    /// The caller dropped the stream before its end.
    Cancelled,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One attempt at one model, as reported to the [`CallRecorder`].
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub provider: String,
    pub model: String,
    pub scope: CallScope,
    /// Tokens as far as the provider reported them (zero for a call that failed early).
    pub usage: Usage,
    pub cost_usd: f64,
    pub duration: Duration,
    /// From sending the request to the first event; `None` when none came.
    pub time_to_first_token: Option<Duration>,
    pub outcome: CallOutcome,
    pub stop_reason: Option<StopReason>,
    /// The error's kind ([`Error::kind`]) and message, for `outcome = error`.
    pub error: Option<(String, String)>,
}

/// Where call records go: the server stores them in `llm_calls` and counts them in metrics.
pub trait CallRecorder: Send + Sync {
    /// Records one call. Awaited before the stream's last item is handed out, so a caller that
    /// has read a stream to its end finds the record stored.
    fn record(&self, call: CallRecord) -> BoxFuture<'static, ()>;
}

/// Records nothing (`kodiai llm ping`, unit tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRecorder;

impl CallRecorder for NoRecorder {
    fn record(&self, _call: CallRecord) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Everything [`Llm::from_settings`] needs.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// The model first, then its fallbacks in order.
    pub models: Vec<ModelRef>,
    pub credentials: Credentials,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub prices: PriceTable,
}

struct Candidate {
    model: ModelRef,
    provider: Arc<dyn Provider>,
}

/// A model chain with retries and accounting; itself a [`Provider`]. Cheap to clone.
#[derive(Clone)]
pub struct Llm {
    chain: Arc<Vec<Candidate>>,
    retry: RetryPolicy,
    prices: Arc<PriceTable>,
    recorder: Arc<dyn CallRecorder>,
    scope: CallScope,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let models: Vec<String> = self.chain.iter().map(|c| c.model.to_string()).collect();
        f.debug_struct("Llm")
            .field("models", &models)
            .field("retry", &self.retry)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Llm {
    /// Builds every provider of the chain; a model whose provider lacks its key fails here, at
    /// start, with the key's name.
    pub fn from_settings(settings: &LlmSettings, recorder: Arc<dyn CallRecorder>) -> Result<Self> {
        let mut chain = Vec::new();
        for model in &settings.models {
            let provider = build_provider(model, &settings.credentials, settings.timeouts)?;
            chain.push((model.clone(), provider));
        }
        Self::new(chain, settings.retry, settings.prices.clone(), recorder)
    }

    /// A chain of given providers (tests use fakes' base URLs through real providers).
    pub fn new(
        chain: Vec<(ModelRef, Arc<dyn Provider>)>,
        retry: RetryPolicy,
        prices: PriceTable,
        recorder: Arc<dyn CallRecorder>,
    ) -> Result<Self> {
        if chain.is_empty() {
            return Err(Error::Config("no model is configured".into()));
        }
        Ok(Self {
            chain: Arc::new(
                chain
                    .into_iter()
                    .map(|(model, provider)| Candidate { model, provider })
                    .collect(),
            ),
            retry,
            prices: Arc::new(prices),
            recorder,
            scope: CallScope::default(),
        })
    }

    /// The same chain, its calls accounted to `scope` (a job or a session).
    pub fn scoped(&self, scope: CallScope) -> Self {
        Self {
            scope,
            ..self.clone()
        }
    }

    /// The first model of the chain.
    pub fn model(&self) -> &ModelRef {
        &self.chain[0].model
    }

    async fn open(&self, request: &ChatRequest) -> Result<EventStream> {
        let mut last_error = None;
        for candidate in self.chain.iter() {
            let mut request = request.clone();
            request.settings.model = candidate.model.model.clone();
            let mut retry = 0;
            loop {
                let attempt = Attempt {
                    record: CallRecord {
                        provider: candidate.model.provider.clone(),
                        model: candidate.model.model.clone(),
                        scope: self.scope.clone(),
                        usage: Usage::default(),
                        cost_usd: 0.0,
                        duration: Duration::ZERO,
                        time_to_first_token: None,
                        outcome: CallOutcome::Cancelled,
                        stop_reason: None,
                        error: None,
                    },
                    started: Instant::now(),
                    recorder: self.recorder.clone(),
                    prices: self.prices.clone(),
                    armed: true,
                };
                let error = match candidate.provider.stream(&request).await {
                    Ok(mut stream) => match stream.next().await {
                        Some(Ok(first)) => return Ok(attempt.follow(first, stream)),
                        Some(Err(e)) => e,
                        None => Error::BadResponse {
                            provider: candidate.model.provider.clone(),
                            message: "an empty stream".into(),
                        },
                    },
                    Err(e) => e,
                };
                attempt.fail(&error).await;
                let wait = (error.is_retryable() && retry < self.retry.max_retries)
                    .then(|| self.retry.delay(retry, &error))
                    .flatten();
                match wait {
                    Some(wait) => {
                        tracing::warn!(model = %candidate.model, retry = retry + 1,
                            wait_ms = wait.as_millis() as u64, error = %error, "retrying the model call");
                        tokio::time::sleep(wait).await;
                        retry += 1;
                    }
                    None if error.falls_back() => {
                        tracing::warn!(model = %candidate.model, error = %error,
                            "giving up on this model; trying the next of the fallback chain");
                        last_error = Some(error);
                        break;
                    }
                    None => return Err(error),
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Config("no model is configured".into())))
    }
}

impl Provider for Llm {
    fn name(&self) -> &str {
        &self.chain[0].model.provider
    }

    /// Streams from the first model of the chain that answers; `request.settings.model` is
    /// replaced by each model of the chain in turn.
    fn stream<'a>(&'a self, request: &'a ChatRequest) -> BoxFuture<'a, Result<EventStream>> {
        self.open(request).boxed()
    }
}

/// One attempt's accounting. Dropped while armed (the caller dropped the stream), it records
/// the call as cancelled.
struct Attempt {
    record: CallRecord,
    started: Instant,
    recorder: Arc<dyn CallRecorder>,
    prices: Arc<PriceTable>,
    armed: bool,
}

impl Attempt {
    fn finish(&mut self, outcome: CallOutcome) -> CallRecord {
        self.armed = false;
        let mut record = self.record.clone();
        record.outcome = outcome;
        record.duration = self.started.elapsed();
        record.cost_usd = self
            .prices
            .cost(&record.provider, &record.model, &record.usage);
        record
    }

    async fn fail(mut self, error: &Error) {
        self.record.error = Some((error.kind().to_owned(), error.to_string()));
        let record = self.finish(CallOutcome::Error);
        self.recorder.record(record).await;
    }

    /// The stream from its first event on, recording the call at its end.
    fn follow(mut self, first: StreamEvent, rest: EventStream) -> EventStream {
        self.record.time_to_first_token = Some(self.started.elapsed());
        let head = futures::stream::iter([Ok(first)]);
        let events = head.chain(rest);
        futures::stream::unfold((events, Some(self)), |(mut events, attempt)| async move {
            let mut attempt = attempt?;
            match events.next().await {
                Some(Ok(event)) => {
                    if let StreamEvent::Finished {
                        stop_reason, usage, ..
                    } = &event
                    {
                        attempt.record.usage = *usage;
                        attempt.record.stop_reason = Some(stop_reason.clone());
                        let record = attempt.finish(CallOutcome::Ok);
                        attempt.recorder.record(record).await;
                        return Some((Ok(event), (events, None)));
                    }
                    Some((Ok(event), (events, Some(attempt))))
                }
                Some(Err(error)) => {
                    attempt.record.error = Some((error.kind().to_owned(), error.to_string()));
                    let record = attempt.finish(CallOutcome::Error);
                    attempt.recorder.record(record).await;
                    Some((Err(error), (events, None)))
                }
                None => {
                    let error = Error::BadResponse {
                        provider: attempt.record.provider.clone(),
                        message: "the stream ended without its final event".into(),
                    };
                    attempt.record.error = Some((error.kind().to_owned(), error.to_string()));
                    let record = attempt.finish(CallOutcome::Error);
                    attempt.recorder.record(record).await;
                    Some((Err(error), (events, None)))
                }
            }
        })
        .boxed()
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let record = self.finish(CallOutcome::Cancelled);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(self.recorder.record(record));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(30),
        };
        let overloaded = Error::Overloaded {
            provider: "p".into(),
            retry_after: None,
            message: String::new(),
        };
        for retry in 0..6 {
            let full = Duration::from_secs(2u64 << retry).min(Duration::from_secs(30));
            let wait = policy.delay(retry, &overloaded).unwrap();
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        let limited = |secs| Error::RateLimited {
            provider: "p".into(),
            retry_after: Some(Duration::from_secs(secs)),
            message: String::new(),
        };
        assert_eq!(policy.delay(0, &limited(7)), Some(Duration::from_secs(7)));
        assert_eq!(policy.delay(0, &limited(300)), None);
    }
}
