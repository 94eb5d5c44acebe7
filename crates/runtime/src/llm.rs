//! The server's side of the model providers: [`settings`] turns the `[llm]` configuration into
//! `kodiai-llm`'s settings (the model and its fallbacks, keys, timeouts, retries, prices);
//! [`StoreRecorder`] writes every call to `llm_calls` and counts it in the metrics; [`build`]
//! is the [`Llm`] the worker hands the agent; [`ping`] is `kodiai llm ping`.
//!
//! Metrics: `llm_calls_total` (provider, model, outcome), `llm_tokens_total` (provider, model,
//! kind: input, output, cache_read, cache_write), `llm_cost_usd_total` (provider, model; a
//! gauge that only grows, since Prometheus counters take integers in this exporter),
//! `llm_call_duration_seconds` and `llm_first_token_duration_seconds` (provider, model).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt;
use futures::future::BoxFuture;
use kodiai_llm::{
    CallRecord, CallRecorder, ChatRequest, Credentials, Llm, LlmSettings, Message, ModelRef,
    ModelSettings, NoRecorder, PriceTable, Provider, ResponseBuilder, RetryPolicy, Timeouts,
};
use kodiai_store::{NewLlmCall, Store};

use crate::config::LlmConfig;
use crate::jobs::Clock;

/// The `kodiai-llm` settings of the configuration. Fails with a one-line error naming the
/// model whose provider lacks its key.
pub fn settings(config: &LlmConfig) -> anyhow::Result<LlmSettings> {
    let credentials = Credentials {
        anthropic_api_key: config.anthropic_api_key.clone(),
        claude_code_oauth_token: config.claude_code_oauth_token.clone(),
        anthropic_base_url: config.anthropic_base_url.clone(),
        openai_api_key: config.openai_api_key.clone(),
        openai_base_url: config.openai_base_url.clone(),
        azure_api_version: config.azure_api_version.clone(),
        gemini_api_key: config.gemini_api_key.clone(),
        gemini_base_url: config.gemini_base_url.clone(),
    };
    let first = match &config.model {
        Some(text) => ModelRef::parse(text)?,
        None => kodiai_llm::default_model(&credentials),
    };
    let mut models = vec![first];
    for text in &config.fallback_models {
        let model = ModelRef::parse(text)?;
        if !models.contains(&model) {
            models.push(model);
        }
    }
    let mut prices = PriceTable::builtin();
    for (model, price) in &config.prices {
        prices.set(model.clone(), *price);
    }
    Ok(LlmSettings {
        models,
        credentials,
        timeouts: Timeouts {
            connect: Duration::from_secs(config.connect_timeout_secs),
            first_byte: Duration::from_secs(config.first_byte_timeout_secs),
            idle: Duration::from_secs(config.idle_timeout_secs),
        },
        retry: RetryPolicy {
            max_retries: config.max_retries,
            base_delay: Duration::from_millis(config.retry_base_ms),
            max_delay: Duration::from_secs(config.retry_max_secs),
        },
        prices,
    })
}

/// The model chain of the configuration, every call recorded in `store`.
pub fn build(config: &LlmConfig, store: Store, clock: Clock) -> anyhow::Result<Llm> {
    let settings = settings(config)?;
    Ok(Llm::from_settings(
        &settings,
        Arc::new(StoreRecorder { store, clock }),
    )?)
}

/// Writes calls to `llm_calls` and counts them in the metrics.
#[derive(Debug, Clone)]
pub struct StoreRecorder {
    pub store: Store,
    pub clock: Clock,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Counts one call in the metrics.
fn count(call: &CallRecord) {
    let (provider, model) = (call.provider.clone(), call.model.clone());
    metrics::counter!("llm_calls_total", "provider" => provider.clone(), "model" => model.clone(),
        "outcome" => call.outcome.as_str())
    .increment(1);
    for (kind, n) in [
        ("input", call.usage.input_tokens),
        ("output", call.usage.output_tokens),
        ("cache_read", call.usage.cache_read_tokens),
        ("cache_write", call.usage.cache_write_tokens),
    ] {
        if n > 0 {
            metrics::counter!("llm_tokens_total", "provider" => provider.clone(),
                "model" => model.clone(), "kind" => kind)
            .increment(n);
        }
    }
    if call.cost_usd > 0.0 {
        metrics::gauge!("llm_cost_usd_total", "provider" => provider.clone(), "model" => model.clone())
            .increment(call.cost_usd);
    }
    metrics::histogram!("llm_call_duration_seconds", "provider" => provider.clone(),
        "model" => model.clone())
    .record(call.duration.as_secs_f64());
    if let Some(ttft) = call.time_to_first_token {
        metrics::histogram!("llm_first_token_duration_seconds", "provider" => provider,
            "model" => model)
        .record(ttft.as_secs_f64());
    }
}

impl CallRecorder for StoreRecorder {
    fn record(&self, call: CallRecord) -> BoxFuture<'static, ()> {
        count(&call);
        let store = self.store.clone();
        let now = self.clock.now();
        Box::pin(async move {
            let (error_kind, error) = match call.error {
                Some((kind, message)) => (Some(kind), Some(message)),
                None => (None, None),
            };
            let row = NewLlmCall {
                job_id: call.scope.job_id,
                session_id: call.scope.session_id,
                provider: call.provider,
                model: call.model,
                input_tokens: tokens(call.usage.input_tokens),
                output_tokens: tokens(call.usage.output_tokens),
                cache_read_tokens: tokens(call.usage.cache_read_tokens),
                cache_write_tokens: tokens(call.usage.cache_write_tokens),
                cost_usd: call.cost_usd,
                duration_ms: millis(call.duration),
                time_to_first_token_ms: call.time_to_first_token.map(millis),
                outcome: call.outcome.as_str().to_owned(),
                stop_reason: call.stop_reason.map(|r| r.as_str().to_owned()),
                error_kind,
                error,
            };
            // Accounting must not fail the call it accounts for; a lost row is logged.
            if let Err(e) = store.record_llm_call(&row, now).await {
                tracing::warn!(error = %e, provider = %row.provider, model = %row.model,
                    "cannot record an LLM call");
            }
        })
    }
}

/// What `kodiai llm ping` prints on success.
#[derive(Debug, Clone, PartialEq)]
pub struct PingReport {
    pub model: String,
    pub latency: Duration,
    pub first_token: Option<Duration>,
    pub usage: kodiai_llm::Usage,
    pub cost_usd: f64,
    pub answer: String,
}

impl std::fmt::Display for PingReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = &self.usage;
        write!(f, "{}: ok in {} ms", self.model, self.latency.as_millis())?;
        if let Some(first) = self.first_token {
            write!(f, " (first token after {} ms)", first.as_millis())?;
        }
        write!(
            f,
            ", {} input + {} output tokens ({} cached), ${:.6}: {:?}",
            u.total_input(),
            u.output_tokens,
            u.cache_read_tokens,
            self.cost_usd,
            self.answer.trim()
        )
    }
}

/// One short request to `model` (default: the configured model), no retries, no fallback.
pub async fn ping(config: &LlmConfig, model: Option<&str>) -> anyhow::Result<PingReport> {
    let mut settings = settings(config)?;
    if let Some(model) = model {
        settings.models = vec![ModelRef::parse(model)?];
    }
    settings.models.truncate(1);
    settings.retry.max_retries = 0;
    let model = settings.models[0].clone();
    let llm = Llm::from_settings(&settings, Arc::new(NoRecorder))?;
    let request = ChatRequest {
        system: String::new(),
        messages: vec![Message::user("Reply with the single word: pong")],
        tools: Vec::new(),
        settings: ModelSettings {
            max_tokens: 16,
            ..ModelSettings::new(model.model.clone())
        },
    };
    let started = Instant::now();
    let mut stream = llm
        .stream(&request)
        .await
        .with_context(|| format!("{model}"))?;
    let mut first_token = None;
    let mut builder = ResponseBuilder::default();
    while let Some(event) = stream.next().await {
        let event = event.with_context(|| format!("{model}"))?;
        first_token.get_or_insert_with(|| started.elapsed());
        builder.push(&event);
    }
    let latency = started.elapsed();
    let response = builder
        .finish()
        .with_context(|| format!("{model}: the answer ended early"))?;
    Ok(PingReport {
        model: model.to_string(),
        latency,
        first_token,
        usage: response.usage,
        cost_usd: settings
            .prices
            .cost(&model.provider, &model.model, &response.usage),
        answer: response.message.text(),
    })
}
