//! `[mentions]`: who and what triggers kodiai from GitHub.

use serde::Serialize;

use super::ConfigError;
use super::sources::{Sources, parse_login};

/// Who and what triggers kodiai from GitHub (SPEC §2: mention detection, who may trigger).
#[derive(Debug, Clone, Serialize)]
pub struct MentionsConfig {
    /// The handle that calls kodiai, with its `@`.
    pub trigger: String,
    /// Other handles that call it too (e.g. `@claude`).
    pub aliases: Vec<String>,
    /// Bot logins whose mentions and pull requests are acted on (`*`: any bot); other bots are
    /// ignored. kodiai's own logins never trigger it.
    pub allowed_bots: Vec<String>,
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<MentionsConfig, ConfigError> {
    let config = MentionsConfig {
        trigger: s
            .parse(
                "mentions.trigger",
                &["KODIAI_TRIGGER"],
                "a handle such as @kodiai",
                parse_handle,
            )?
            .unwrap_or_else(|| "@kodiai".to_owned()),
        aliases: s
            .parse(
                "mentions.aliases",
                &["KODIAI_TRIGGER_ALIASES"],
                "a comma-separated list of handles such as @claude",
                |t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(parse_handle)
                        .collect()
                },
            )?
            .unwrap_or_default(),
        allowed_bots: s
            .parse(
                "mentions.allowed_bots",
                &["KODIAI_ALLOWED_BOTS"],
                "a comma-separated list of bot logins such as renovate[bot], or *",
                |t| {
                    t.split(',')
                        .map(str::trim)
                        .filter(|b| !b.is_empty())
                        .map(|b| (b == "*").then(|| b.to_owned()).or_else(|| parse_login(b)))
                        .collect()
                },
            )?
            .unwrap_or_default(),
    };
    Ok(config)
}

/// A mention handle: a login with or without its `@`; stored with it.
fn parse_handle(text: &str) -> Option<String> {
    let name = text.strip_prefix('@').unwrap_or(text);
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| format!("@{name}"))
}
