//! `[llm]`: the model, its fallbacks, the providers' keys and endpoints, retries, timeouts and
//! prices.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::Serialize;

use super::ConfigError;
use super::sources::{Sources, fixed_url, masked, parse_http_url, positive};

#[derive(Debug, Clone, Serialize)]
pub struct LlmConfig {
    /// The default model, `provider/model`.
    pub model: Option<String>,
    #[serde(serialize_with = "masked")]
    pub anthropic_api_key: Option<SecretString>,
    pub anthropic_base_url: url::Url,
    #[serde(serialize_with = "masked")]
    pub claude_code_oauth_token: Option<SecretString>,
    #[serde(serialize_with = "masked")]
    pub openai_api_key: Option<SecretString>,
    pub openai_base_url: Option<url::Url>,
    #[serde(serialize_with = "masked")]
    pub gemini_api_key: Option<SecretString>,
    pub gemini_base_url: url::Url,
    pub claude_cli_path: Option<PathBuf>,
    /// Azure OpenAI's `api-version` (`OPENAI_API_VERSION`), for the `azure` provider.
    pub azure_api_version: Option<String>,
    /// Models tried in order when the model is overloaded, rate limited or down after its
    /// retries, each `provider/model`.
    pub fallback_models: Vec<String>,
    /// Retries of one model call after the first attempt, before the next fallback.
    pub max_retries: u32,
    /// The first retry waits about this long (doubling, with jitter) unless the provider says
    /// `retry-after`.
    pub retry_base_ms: u64,
    /// No retry waits longer; a longer `retry-after` moves on to the next fallback.
    pub retry_max_secs: u64,
    pub connect_timeout_secs: u64,
    /// From sending a request to the response's headers.
    pub first_byte_timeout_secs: u64,
    /// Between two pieces of a streamed answer.
    pub idle_timeout_secs: u64,
    /// USD per million tokens by `provider/model` or model name, over the built-in list prices.
    pub prices: BTreeMap<String, kodiai_llm::Price>,
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<LlmConfig, ConfigError> {
    let config = LlmConfig {
        model: s.parse(
            "llm.model",
            &["KODIAI_MODEL"],
            "provider/model, e.g. anthropic/claude-sonnet-4-5 or ollama/qwen2.5-coder",
            parse_model,
        )?,
        anthropic_api_key: s.secret("llm.anthropic_api_key", &["ANTHROPIC_API_KEY"])?,
        anthropic_base_url: s
            .parse(
                "llm.anthropic_base_url",
                &["ANTHROPIC_BASE_URL"],
                "an http(s) URL",
                parse_http_url,
            )?
            .unwrap_or_else(|| fixed_url("https://api.anthropic.com")),
        claude_code_oauth_token: s
            .secret("llm.claude_code_oauth_token", &["CLAUDE_CODE_OAUTH_TOKEN"])?,
        openai_api_key: s.secret("llm.openai_api_key", &["OPENAI_API_KEY"])?,
        openai_base_url: s.parse(
            "llm.openai_base_url",
            &["OPENAI_BASE_URL"],
            "an http(s) URL",
            parse_http_url,
        )?,
        gemini_api_key: s.secret("llm.gemini_api_key", &["GEMINI_API_KEY"])?,
        gemini_base_url: s
            .parse(
                "llm.gemini_base_url",
                &["GEMINI_BASE_URL"],
                "an http(s) URL",
                parse_http_url,
            )?
            .unwrap_or_else(|| fixed_url("https://generativelanguage.googleapis.com")),
        claude_cli_path: s.parse(
            "llm.claude_cli_path",
            &["CLAUDE_CLI_PATH"],
            "a file path",
            |t| (!t.is_empty()).then(|| PathBuf::from(t)),
        )?,
        azure_api_version: s.parse(
            "llm.azure_api_version",
            &["OPENAI_API_VERSION"],
            "an Azure OpenAI API version such as 2024-10-21",
            |t| (!t.is_empty()).then(|| t.to_owned()),
        )?,
        fallback_models: s
            .parse(
                "llm.fallback_models",
                &["KODIAI_FALLBACK_MODELS"],
                "a comma-separated list of provider/model",
                |t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(parse_model)
                        .collect::<Option<Vec<_>>>()
                },
            )?
            .unwrap_or_default(),
        max_retries: s
            .parse(
                "llm.max_retries",
                &["KODIAI_LLM_MAX_RETRIES"],
                "a whole number from 0 to 20",
                |t| t.parse::<u32>().ok().filter(|n| *n <= 20),
            )?
            .unwrap_or(3),
        retry_base_ms: s
            .parse(
                "llm.retry_base_ms",
                &["KODIAI_LLM_RETRY_BASE_MS"],
                "a whole number of milliseconds, at least 1",
                positive,
            )?
            .unwrap_or(1000),
        retry_max_secs: s
            .parse(
                "llm.retry_max_secs",
                &["KODIAI_LLM_RETRY_MAX_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(60),
        connect_timeout_secs: s
            .parse(
                "llm.connect_timeout_secs",
                &["KODIAI_LLM_CONNECT_TIMEOUT_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(10),
        first_byte_timeout_secs: s
            .parse(
                "llm.first_byte_timeout_secs",
                &["KODIAI_LLM_FIRST_BYTE_TIMEOUT_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(120),
        idle_timeout_secs: s
            .parse(
                "llm.idle_timeout_secs",
                &["KODIAI_LLM_IDLE_TIMEOUT_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(120),
        prices: prices(s)?,
    };
    Ok(config)
}

/// `[llm.prices."provider/model"]` tables of `input`, `output`, `cache_read`, `cache_write` (USD
/// per million tokens; the cache prices default to the input price). File only: model names
/// hold dots and slashes that environment names cannot.
fn prices(s: &mut Sources<'_>) -> Result<BTreeMap<String, kodiai_llm::Price>, ConfigError> {
    const EXPECTED: &str = "a table of input, output, cache_read and cache_write prices (USD per million tokens, at least 0)";
    s.known.insert("llm.prices".to_owned());
    let mut prices = BTreeMap::new();
    let Some((path, table)) = &s.file else {
        return Ok(prices);
    };
    let Some(entries) = table
        .get("llm")
        .and_then(|l| l.as_table())
        .and_then(|l| l.get("prices"))
    else {
        return Ok(prices);
    };
    let invalid = |origin: String, value: &toml::Value| ConfigError::Invalid {
        origin,
        value: value.to_string(),
        expected: EXPECTED.to_owned(),
    };
    let Some(entries) = entries.as_table() else {
        return Err(invalid(
            format!("llm.prices in {}", path.display()),
            entries,
        ));
    };
    for (model, entry) in entries {
        let origin = format!("llm.prices.{model:?} in {}", path.display());
        let number = |key: &str| -> Option<Option<f64>> {
            match entry.get(key) {
                None => Some(None),
                Some(toml::Value::Float(f)) if *f >= 0.0 => Some(Some(*f)),
                Some(toml::Value::Integer(i)) if *i >= 0 => Some(Some(*i as f64)),
                Some(_) => None,
            }
        };
        let known = entry.as_table().is_some_and(|t| {
            t.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "input" | "output" | "cache_read" | "cache_write"
                )
            })
        });
        let parsed = (|| {
            let input = number("input")??;
            let output = number("output")??;
            Some(kodiai_llm::Price {
                input,
                output,
                cache_read: number("cache_read")?.unwrap_or(input),
                cache_write: number("cache_write")?.unwrap_or(input),
            })
        })();
        match parsed {
            Some(price) if known && !model.trim().is_empty() => {
                prices.insert(model.clone(), price);
            }
            _ => return Err(invalid(origin, entry)),
        }
    }
    Ok(prices)
}

/// `provider/model` as it is when the provider is a plausible name and the model is not empty.
pub fn parse_model(text: &str) -> Option<String> {
    let (provider, model) = text.split_once('/')?;
    let provider_ok = !provider.is_empty()
        && provider
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (provider_ok && !model.trim().is_empty()).then(|| text.to_owned())
}
