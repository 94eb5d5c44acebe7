//! `[github]`: the App or token kodiai acts as, the webhook secrets, and the client's
//! timeouts, retries and limits.

use secrecy::SecretString;
use serde::Serialize;

use super::ConfigError;
use super::sources::{
    Kind, Sources, fixed_url, masked, masked_list, parse_http_url, parse_login, positive,
};

#[derive(Debug, Clone, Serialize)]
pub struct GithubConfig {
    pub app_id: Option<u64>,
    /// The App's private key, PEM text (read from a file when the setting is a path).
    #[serde(serialize_with = "masked")]
    pub private_key: Option<SecretString>,
    #[serde(serialize_with = "masked")]
    pub webhook_secret: Option<SecretString>,
    /// Personal-token mode, for a single user without an App.
    #[serde(serialize_with = "masked")]
    pub token: Option<SecretString>,
    pub api_url: url::Url,
    pub graphql_url: url::Url,
    /// The client's timeouts, retries, governor and caches (`github.*` keys of their own).
    #[serde(flatten)]
    pub client: GithubClientConfig,
    /// Earlier webhook secrets still accepted while the secret is rotated (beside
    /// `webhook_secret`).
    #[serde(serialize_with = "masked_list")]
    pub webhook_secrets: Vec<SecretString>,
    /// The App's slug: its events come from `<slug>[bot]`, which never triggers kodiai.
    pub app_slug: Option<String>,
    /// Another login whose events never trigger kodiai (the token's user in personal-token mode).
    pub bot_login: Option<String>,
}

impl GithubConfig {
    /// Every accepted webhook secret, the current one first.
    pub fn all_webhook_secrets(&self) -> Vec<SecretString> {
        self.webhook_secret
            .iter()
            .chain(&self.webhook_secrets)
            .cloned()
            .collect()
    }

    /// The logins of kodiai itself: events they cause never trigger it (no loops).
    pub fn own_logins(&self) -> Vec<String> {
        self.app_slug
            .iter()
            .map(|slug| format!("{slug}[bot]"))
            .chain(self.bot_login.iter().cloned())
            .collect()
    }
}

/// How kodiai's GitHub client behaves; the defaults follow GitHub's documented limits.
#[derive(Debug, Clone, Serialize)]
pub struct GithubClientConfig {
    /// Per attempt of a GitHub call.
    pub request_timeout_secs: u64,
    /// Retries of a call after 5xx, transport errors and rate limits.
    pub max_retries: u32,
    /// A rate limit asking for a longer wait fails the call (the job is retried later).
    pub max_rate_limit_wait_secs: u64,
    /// Content-creating calls (comments, reviews, reactions, pulls) per installation and minute.
    pub content_per_minute: u32,
    /// The same per hour.
    pub content_per_hour: u32,
    /// How long a collaborator permission answer is trusted.
    pub permission_cache_secs: u64,
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<GithubConfig, ConfigError> {
    let api_url = s
        .parse(
            "github.api_url",
            &["GITHUB_API_URL"],
            "an http(s) URL",
            parse_http_url,
        )?
        .unwrap_or_else(|| fixed_url("https://api.github.com"));
    let config = GithubConfig {
        app_id: s.parse(
            "github.app_id",
            &["GITHUB_APP_ID"],
            "the GitHub App's numeric id",
            |t| t.parse::<u64>().ok().filter(|n| *n > 0),
        )?,
        private_key: match s.get("github.private_key", &["GITHUB_PRIVATE_KEY"], Kind::Secret)? {
            Some(v) => Some(v.parse_with(
                "PEM text or the path of a readable PEM file",
                read_private_key,
            )?),
            None => None,
        },
        webhook_secret: s.secret("github.webhook_secret", &["GITHUB_WEBHOOK_SECRET"])?,
        token: s.secret("github.token", &["GITHUB_TOKEN"])?,
        api_url: api_url.clone(),
        graphql_url: s
            .parse(
                "github.graphql_url",
                &["GITHUB_GRAPHQL_URL"],
                "an http(s) URL",
                parse_http_url,
            )?
            .unwrap_or_else(|| graphql_url_of(&api_url)),
        client: client_config(s)?,
        webhook_secrets: s
            .get(
                "github.webhook_secrets",
                &["GITHUB_WEBHOOK_SECRETS"],
                Kind::Secret,
            )?
            .map(|raw| {
                raw.text
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| SecretString::from(t.to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        app_slug: s.parse(
            "github.app_slug",
            &["GITHUB_APP_SLUG"],
            "the App's slug (letters, digits and dashes), as in github.com/apps/<slug>",
            parse_login,
        )?,
        bot_login: s.parse(
            "github.bot_login",
            &["KODIAI_BOT_LOGIN"],
            "a GitHub login",
            parse_login,
        )?,
    };
    if config.app_id.is_some() && config.private_key.is_none() {
        return Err(ConfigError::Invalid {
            origin: "GITHUB_PRIVATE_KEY".into(),
            value: String::new(),
            expected: "the App's private key, since GITHUB_APP_ID is set".into(),
        });
    }
    Ok(config)
}

fn client_config(s: &mut Sources<'_>) -> Result<GithubClientConfig, ConfigError> {
    const POSITIVE: &str = "a whole number, at least 1";
    let at_least_one = |t: &str| t.parse::<u32>().ok().filter(|n| *n >= 1);
    Ok(GithubClientConfig {
        request_timeout_secs: s
            .parse(
                "github.request_timeout_secs",
                &["KODIAI_GITHUB_TIMEOUT_SECS"],
                POSITIVE,
                positive,
            )?
            .unwrap_or(30),
        max_retries: s
            .parse(
                "github.max_retries",
                &["KODIAI_GITHUB_MAX_RETRIES"],
                "a whole number from 0 to 20",
                |t| t.parse::<u32>().ok().filter(|n| *n <= 20),
            )?
            .unwrap_or(5),
        max_rate_limit_wait_secs: s
            .parse(
                "github.max_rate_limit_wait_secs",
                &["KODIAI_GITHUB_MAX_RATE_LIMIT_WAIT_SECS"],
                POSITIVE,
                positive,
            )?
            .unwrap_or(900),
        content_per_minute: s
            .parse(
                "github.content_per_minute",
                &["KODIAI_GITHUB_CONTENT_PER_MINUTE"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(80),
        content_per_hour: s
            .parse(
                "github.content_per_hour",
                &["KODIAI_GITHUB_CONTENT_PER_HOUR"],
                POSITIVE,
                at_least_one,
            )?
            .unwrap_or(500),
        permission_cache_secs: s
            .parse(
                "github.permission_cache_secs",
                &["KODIAI_GITHUB_PERMISSION_CACHE_SECS"],
                "a whole number of seconds (0: ask GitHub every time)",
                |t| t.parse::<u64>().ok(),
            )?
            .unwrap_or(120),
    })
}

/// GitHub's GraphQL endpoint beside the REST API at `api`: `https://api.github.com/graphql`;
/// GitHub Enterprise Server's `https://HOST/api/graphql` beside `https://HOST/api/v3`; else
/// `graphql` under the API's path. Never github.com's for another host, where the token of that
/// host would go.
fn graphql_url_of(api: &url::Url) -> url::Url {
    let path = api.path().trim_end_matches('/');
    let graphql = match path.strip_suffix("/api/v3") {
        Some(prefix) => format!("{prefix}/api/graphql"),
        None => format!("{path}/graphql"),
    };
    let mut url = api.clone();
    url.set_path(&graphql);
    url.set_query(None);
    url
}

/// PEM text as is (with `\n` escapes, as environment files often carry it, turned into newlines),
/// or the contents of the file it names.
fn read_private_key(text: &str) -> Option<SecretString> {
    let pem = if text.contains("-----BEGIN") {
        text.replace("\\n", "\n")
    } else {
        std::fs::read_to_string(text).ok()?
    };
    (pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----"))
        .then(|| SecretString::from(pem))
}
