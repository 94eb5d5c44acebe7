//! The one GitHub client of the process, built from the configuration: App mode when
//! `GITHUB_APP_ID` and `GITHUB_PRIVATE_KEY` are set, personal-token mode with `GITHUB_TOKEN`,
//! none otherwise (GitHub features are then off, the rest of kodiai works).

use std::time::Duration;

use kodiai_github::client::{ClientOptions, GithubClient};
use kodiai_github::governor::GovernorLimits;

use kodiai_runtime::config::{GithubConfig, MentionsConfig};

/// The client's options from `[github]`.
pub fn client_options(config: &GithubConfig) -> ClientOptions {
    let mut options = ClientOptions::new(config.api_url.clone(), config.graphql_url.clone());
    let c = &config.client;
    options.timeout = Duration::from_secs(c.request_timeout_secs);
    options.max_retries = c.max_retries;
    options.max_rate_limit_wait = Duration::from_secs(c.max_rate_limit_wait_secs);
    options.governor = GovernorLimits {
        per_minute: c.content_per_minute,
        per_hour: c.content_per_hour,
    };
    options.permission_cache_ttl = Duration::from_secs(c.permission_cache_secs);
    options
}

/// Why the client could not be built; one line that names the setting, never its value.
#[derive(Debug, thiserror::Error)]
#[error("GITHUB_PRIVATE_KEY: {0}")]
pub struct GithubSetupError(String);

/// The client for this configuration, or `None` when neither an App nor a token is configured.
/// An App takes precedence over a token when both are set.
pub fn build_client(config: &GithubConfig) -> Result<Option<GithubClient>, GithubSetupError> {
    let options = client_options(config);
    let client = match (config.app_id, &config.private_key, &config.token) {
        (Some(app_id), Some(key), _) => GithubClient::app(app_id, key, options),
        (_, _, Some(token)) => GithubClient::personal_token(token.clone(), options),
        _ => return Ok(None),
    };
    client
        .map(|c| {
            Some(
                c.with_own_handles(
                    config
                        .own_logins()
                        .into_iter()
                        .chain(config.app_slug.clone()),
                ),
            )
        })
        .map_err(|e| GithubSetupError(e.to_string()))
}

/// Every handle kodiai answers to: its logins (`<slug>[bot]`, the slug, `bot_login`) and the
/// trigger with its aliases. What it writes has them all neutralized, so it never calls itself
/// (in personal-token mode its comments come from a user's login that ingress cannot tell
/// apart, so the trigger matters as much as the bot's login).
pub fn own_handles(github: &GithubConfig, mentions: &MentionsConfig) -> Vec<String> {
    github
        .own_logins()
        .into_iter()
        .chain(github.app_slug.clone())
        .chain(std::iter::once(mentions.trigger.clone()))
        .chain(mentions.aliases.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kodiai_runtime::config::{Config, Env};

    fn config(pairs: &[(&str, &str)]) -> Config {
        let env: Env = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_sources(None, &env).unwrap()
    }

    #[test]
    fn options_follow_the_configuration() {
        let c = config(&[
            ("GITHUB_API_URL", "http://127.0.0.1:9/api/v3"),
            ("KODIAI_GITHUB_CONTENT_PER_MINUTE", "20"),
            ("KODIAI_GITHUB_CONTENT_PER_HOUR", "100"),
            ("KODIAI_GITHUB_TIMEOUT_SECS", "5"),
            ("KODIAI_GITHUB_PERMISSION_CACHE_SECS", "0"),
        ]);
        let o = client_options(&c.github);
        assert_eq!(o.api_url.as_str(), "http://127.0.0.1:9/api/v3");
        assert_eq!(
            o.governor,
            GovernorLimits {
                per_minute: 20,
                per_hour: 100
            }
        );
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(o.permission_cache_ttl, Duration::ZERO);
        let defaults = client_options(&config(&[]).github);
        assert_eq!(defaults.governor, GovernorLimits::default());
        assert_eq!(defaults.max_retries, 5);
    }

    #[test]
    fn the_mode_follows_the_credentials() {
        assert!(build_client(&config(&[]).github).unwrap().is_none());
        let token = build_client(&config(&[("GITHUB_TOKEN", "ghp_x")]).github)
            .unwrap()
            .unwrap();
        assert!(!token.is_app());
    }

    #[test]
    fn the_client_knows_its_own_handles() {
        let c = config(&[
            ("GITHUB_TOKEN", "a-token"),
            ("GITHUB_APP_SLUG", "kodiai-dev"),
            ("KODIAI_BOT_LOGIN", "kodiai-user"),
            ("KODIAI_TRIGGER", "@kodi"),
            ("KODIAI_TRIGGER_ALIASES", "@claude"),
        ]);
        let client = build_client(&c.github).unwrap().unwrap();
        assert_eq!(
            client.own_handles(),
            ["kodiai-dev[bot]", "kodiai-user", "kodiai-dev"]
        );
        let all = client.with_own_handles(own_handles(&c.github, &c.mentions));
        assert_eq!(
            all.own_handles(),
            [
                "kodiai-dev[bot]",
                "kodiai-user",
                "kodiai-dev",
                "kodi",
                "claude"
            ]
        );
    }

    #[test]
    fn a_key_that_is_not_rsa_stops_start_up_without_showing_it() {
        let pem = "-----BEGIN PRIVATE KEY-----\\nbm90IGEga2V5\\n-----END PRIVATE KEY-----\\n";
        let c = config(&[("GITHUB_APP_ID", "12"), ("GITHUB_PRIVATE_KEY", pem)]);
        let err = build_client(&c.github).unwrap_err().to_string();
        assert!(err.starts_with("GITHUB_PRIVATE_KEY: "), "{err}");
        assert!(!err.contains("bm90IGEga2V5"), "{err}");
    }

    #[test]
    fn bad_client_settings_name_the_key() {
        let env: Env = [(
            "KODIAI_GITHUB_CONTENT_PER_MINUTE".to_owned(),
            "0".to_owned(),
        )]
        .into();
        let err = Config::from_sources(None, &env).unwrap_err().to_string();
        assert!(err.contains("KODIAI_GITHUB_CONTENT_PER_MINUTE"), "{err}");
    }
}
