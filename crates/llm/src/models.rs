//! Which provider serves a `provider/model` name, with which credentials and base URL, and the
//! default model when none is configured (SPEC §6: Anthropic when its key is set, else OpenAI
//! when its key is set, else a local Ollama).

use std::sync::Arc;

use secrecy::SecretString;

use crate::error::{Error, Result};
use crate::http::Timeouts;
use crate::{Anthropic, AnthropicAuth, Gemini, OpenAi, OpenAiConfig, Provider};

/// A model by provider: `anthropic/claude-sonnet-4-5`, `ollama/qwen2.5-coder`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl ModelRef {
    /// Parses `provider/model`; the model may itself contain `/` (OpenRouter's
    /// `openrouter/anthropic/claude-sonnet-4.5`).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::Config(format!("{text:?} is not provider/model"));
        let (provider, model) = text.trim().split_once('/').ok_or_else(bad)?;
        if provider.is_empty() || model.trim().is_empty() {
            return Err(bad());
        }
        Ok(Self {
            provider: provider.to_owned(),
            model: model.trim().to_owned(),
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// Keys and base URLs of every provider, from the server's configuration.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub anthropic_api_key: Option<SecretString>,
    pub claude_code_oauth_token: Option<SecretString>,
    /// Without `/v1` (`https://api.anthropic.com`).
    pub anthropic_base_url: url::Url,
    pub openai_api_key: Option<SecretString>,
    /// With `/v1` (`https://api.openai.com/v1`); `None`: the provider's own default.
    pub openai_base_url: Option<url::Url>,
    /// Azure OpenAI's `api-version`, for the `azure` provider.
    pub azure_api_version: Option<String>,
    pub gemini_api_key: Option<SecretString>,
    pub gemini_base_url: url::Url,
}

/// The local Ollama of SPEC §6, where nothing else is configured.
pub const OLLAMA_BASE_URL: &str = "http://127.0.0.1:11434/v1";

/// The model when `KODIAI_MODEL` is not set.
pub fn default_model(credentials: &Credentials) -> ModelRef {
    let (provider, model) = if credentials.anthropic_api_key.is_some()
        || credentials.claude_code_oauth_token.is_some()
    {
        ("anthropic", "claude-sonnet-4-5")
    } else if credentials.openai_api_key.is_some() {
        ("openai", "gpt-4.1")
    } else {
        ("ollama", "qwen2.5-coder")
    };
    ModelRef {
        provider: provider.to_owned(),
        model: model.to_owned(),
    }
}

fn fixed(text: &str) -> Result<url::Url> {
    url::Url::parse(text).map_err(|e| Error::Config(format!("{text}: {e}")))
}

/// The provider that serves `model`. Names other than `anthropic`, `gemini`/`google`, `openai`,
/// `azure`, `openrouter` and `ollama` (`vllm`, `llamacpp`, …) are OpenAI-compatible servers at
/// `OPENAI_BASE_URL`.
pub fn build_provider(
    model: &ModelRef,
    credentials: &Credentials,
    timeouts: Timeouts,
) -> Result<Arc<dyn Provider>> {
    let missing = |what: &str| Error::Config(format!("{model} needs {what}"));
    let openai = |base: Option<url::Url>, key: Option<SecretString>, azure: Option<String>| {
        let base_url = match (credentials.openai_base_url.clone(), base) {
            (Some(url), _) | (None, Some(url)) => url,
            (None, None) => return Err(missing("OPENAI_BASE_URL")),
        };
        let provider: Arc<dyn Provider> = Arc::new(OpenAi::new(
            OpenAiConfig {
                name: model.provider.clone(),
                base_url,
                api_key: key,
                azure_api_version: azure,
            },
            timeouts,
        )?);
        Ok(provider)
    };
    match model.provider.as_str() {
        "anthropic" => {
            let auth = match (
                &credentials.anthropic_api_key,
                &credentials.claude_code_oauth_token,
            ) {
                (Some(key), _) => AnthropicAuth::ApiKey(key.clone()),
                (None, Some(token)) => AnthropicAuth::OAuth(token.clone()),
                (None, None) => {
                    return Err(missing("ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN"));
                }
            };
            Ok(Arc::new(Anthropic::new(
                credentials.anthropic_base_url.clone(),
                auth,
                timeouts,
            )?))
        }
        "gemini" | "google" => {
            let key = credentials
                .gemini_api_key
                .clone()
                .ok_or_else(|| missing("GEMINI_API_KEY"))?;
            Ok(Arc::new(Gemini::new(
                credentials.gemini_base_url.clone(),
                key,
                timeouts,
            )?))
        }
        "openai" => {
            let key = credentials.openai_api_key.clone();
            if key.is_none() && credentials.openai_base_url.is_none() {
                return Err(missing("OPENAI_API_KEY"));
            }
            openai(
                Some(fixed("https://api.openai.com/v1")?),
                key,
                credentials.azure_api_version.clone(),
            )
        }
        "azure" => {
            let key = credentials
                .openai_api_key
                .clone()
                .ok_or_else(|| missing("OPENAI_API_KEY (the Azure key)"))?;
            let version = credentials
                .azure_api_version
                .clone()
                .unwrap_or_else(|| "2024-10-21".to_owned());
            openai(None, Some(key), Some(version))
        }
        "openrouter" => openai(
            Some(fixed("https://openrouter.ai/api/v1")?),
            credentials.openai_api_key.clone(),
            None,
        ),
        "ollama" => openai(
            Some(fixed(OLLAMA_BASE_URL)?),
            credentials.openai_api_key.clone(),
            None,
        ),
        _ => openai(None, credentials.openai_api_key.clone(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials {
            anthropic_api_key: None,
            claude_code_oauth_token: None,
            anthropic_base_url: fixed("https://api.anthropic.com").unwrap(),
            openai_api_key: None,
            openai_base_url: None,
            azure_api_version: None,
            gemini_api_key: None,
            gemini_base_url: fixed("https://generativelanguage.googleapis.com").unwrap(),
        }
    }

    #[test]
    fn the_default_model_follows_the_keys_that_are_set() {
        let mut c = credentials();
        assert_eq!(default_model(&c).provider, "ollama");
        c.openai_api_key = Some("k".into());
        assert_eq!(default_model(&c).provider, "openai");
        c.claude_code_oauth_token = Some("t".into());
        assert_eq!(default_model(&c).to_string(), "anthropic/claude-sonnet-4-5");
    }

    #[test]
    fn model_names_keep_their_own_slashes() {
        let m = ModelRef::parse("openrouter/anthropic/claude-sonnet-4.5").unwrap();
        assert_eq!(m.provider, "openrouter");
        assert_eq!(m.model, "anthropic/claude-sonnet-4.5");
        assert!(ModelRef::parse("no-slash").is_err());
    }

    #[test]
    fn a_provider_without_its_key_is_a_config_error_naming_the_key() {
        let c = credentials();
        let m = ModelRef::parse("anthropic/claude-sonnet-4-5").unwrap();
        let error = build_provider(&m, &c, Timeouts::default())
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("ANTHROPIC_API_KEY"), "{error}");
        let local = ModelRef::parse("ollama/qwen2.5-coder").unwrap();
        assert_eq!(
            build_provider(&local, &c, Timeouts::default())
                .unwrap()
                .name(),
            "ollama"
        );
    }
}
