//! Text crossing kodiai's trust boundary with GitHub, in both directions (SPEC §7).
//!
//! Inbound: [`sanitize_untrusted`] cleans anything written on GitHub (titles, bodies, comments,
//! review text, file names) before it reaches a prompt: hidden content that a human reader does
//! not see is removed (`hidden.rs`), and token-shaped strings are replaced by `[REDACTED]`
//! (`secrets.rs`). [`written_before`] and [`keep_written_before`] leave out what was created or
//! edited after the trigger (TOCTOU: an edit after the trigger was not what the caller asked
//! about, and may be an attacker's).
//!
//! Outbound: [`gate_outgoing`] runs over every body kodiai writes (comments, reviews, commit
//! messages, pull-request descriptions): its own handles are neutralized so it cannot trigger
//! itself, and a body that carries a secret (the inbound patterns plus a high-entropy check)
//! is replaced as a whole by a notice (`outgoing.rs`). The GitHub client applies it to every
//! write it makes ([`crate::client::InstallationClient::gate`]).

mod hidden;
mod outgoing;
mod secrets;

pub use outgoing::neutralize_handles;
pub use secrets::{MIN_ENTROPY_LEN, looks_random, shannon_entropy};

/// What replaces a token-shaped string in a prompt.
pub const REDACTED: &str = "[REDACTED]";

/// Passes of the whole pipeline before the last-resort one (see [`sanitize_untrusted`]).
const MAX_PASSES: usize = 8;

/// The text of an untrusted GitHub field, safe to put in a prompt.
///
/// Idempotent: one pass of removals can join what was around a removed piece into a new piece
/// (`<!-<!-- -->- x -->`), so the pass repeats until nothing changes. Every pass only shortens
/// the text; after [`MAX_PASSES`] (only crafted nesting gets there) every `<` and `>` goes, and
/// with them every comment, element and attribute, so what is left settles at once. Each pass
/// is linear in the input (the `regex` crate has no backtracking).
pub fn sanitize_untrusted(text: &str) -> String {
    let mut current = one_pass(text);
    for _ in 1..MAX_PASSES {
        let next = one_pass(&current);
        if next == current {
            return current;
        }
        current = next;
    }
    let mut current: String = current
        .chars()
        .filter(|c| !matches!(c, '<' | '>'))
        .collect();
    loop {
        let next = one_pass(&current);
        if next == current {
            return current;
        }
        current = next;
    }
}

/// Invisible characters first (they can hide inside `<!--` or a token), then comments, hidden
/// HTML, hidden markdown, and tokens last, over what a reader sees.
fn one_pass(text: &str) -> String {
    let text = hidden::strip_invisible(text);
    let text = hidden::strip_html_comments(&text);
    let text = hidden::strip_hidden_html(&text);
    let text = hidden::strip_markdown_hidden(&text);
    redact_known(&text)
}

/// `text` with each named credential format replaced by [`REDACTED`].
pub fn redact_known(text: &str) -> String {
    let found = secrets::find_known(text);
    if found.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in found {
        out.push_str(&text[at..f.start]);
        out.push_str(REDACTED);
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The kind of a secret found in a text (never the secret itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    /// `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`.
    GithubToken,
    /// `sk-…`, `sk-proj-…`.
    OpenAiKey,
    /// `sk-ant-…`.
    AnthropicKey,
    /// `AKIA…` and the other AWS key id prefixes.
    AwsAccessKey,
    /// A 40-character value assigned to `aws_secret_access_key`.
    AwsSecretKey,
    /// `xox[abposr]-…` and Slack webhook URLs.
    SlackToken,
    /// A PEM (or PGP) private key block, terminated or not.
    PrivateKey,
    /// `eyJ….eyJ….signature`.
    Jwt,
    /// `AIza…`.
    GoogleApiKey,
    /// `sk_live_`, `rk_test_`, ….
    StripeKey,
    /// `glpat-…`.
    GitlabToken,
    /// `npm_…`.
    NpmToken,
    /// The password of `scheme://user:password@host`.
    UrlCredentials,
    /// No known format, but random-looking key material (outgoing only).
    HighEntropy,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GithubToken => "github_token",
            Self::OpenAiKey => "openai_key",
            Self::AnthropicKey => "anthropic_key",
            Self::AwsAccessKey => "aws_access_key",
            Self::AwsSecretKey => "aws_secret_key",
            Self::SlackToken => "slack_token",
            Self::PrivateKey => "private_key",
            Self::Jwt => "jwt",
            Self::GoogleApiKey => "google_api_key",
            Self::StripeKey => "stripe_key",
            Self::GitlabToken => "gitlab_token",
            Self::NpmToken => "npm_token",
            Self::UrlCredentials => "url_credentials",
            Self::HighEntropy => "high_entropy",
        }
    }
}

/// One secret found: its kind and byte range in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFinding {
    pub kind: SecretKind,
    pub start: usize,
    pub end: usize,
}

/// The secrets in `text` (the inbound patterns plus the high-entropy check), sorted by start
/// and not overlapping. kodiai's own hidden markers are not entropy-checked (their keys are
/// its own ids); the named formats are looked for everywhere.
pub fn find_secrets(text: &str) -> Vec<SecretFinding> {
    let mut found = secrets::find_known(text);
    let markers = outgoing::markers(text);
    found.extend(
        secrets::find_high_entropy(text)
            .into_iter()
            .filter(|f| !markers.iter().any(|m| m.start <= f.start && f.end <= m.end)),
    );
    secrets::without_overlaps(found)
}

/// What the outgoing gate made of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The body to send (its own handles neutralized).
    Clean(String),
    /// The body carried a secret: send `notice` instead (it names the kinds, never the value,
    /// and keeps the body's kodiai markers). The gate has logged and counted the event.
    Blocked {
        notice: String,
        kinds: Vec<SecretKind>,
    },
}

impl Outgoing {
    /// The text to send either way.
    pub fn text(&self) -> &str {
        match self {
            Self::Clean(body) => body,
            Self::Blocked { notice, .. } => notice,
        }
    }

    /// The text to send either way, owned.
    pub fn into_text(self) -> String {
        match self {
            Self::Clean(body) => body,
            Self::Blocked { notice, .. } => notice,
        }
    }
}

/// Runs a body kodiai is about to write through the gate. `own_handles` are the logins it
/// answers to (with or without `@`), e.g. `["kodiai", "kodiai[bot]"]`. A blocked body counts
/// in `kodiai_outgoing_secrets_blocked_total{kind}` and logs a warning with the kinds only.
pub fn gate_outgoing(body: &str, own_handles: &[&str]) -> Outgoing {
    outgoing::gate(body, own_handles)
}

/// Whether a comment (or issue, or review) existed as it is now at `trigger_at`: created and,
/// when GitHub says, last updated at or before it. An unknown creation time is not trusted.
pub fn written_before(
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    trigger_at: chrono::DateTime<chrono::Utc>,
) -> bool {
    created_at.is_some_and(|c| c <= trigger_at) && updated_at.is_none_or(|u| u <= trigger_at)
}

/// The comments [`written_before`] `trigger_at`, in their order.
pub fn keep_written_before(
    comments: Vec<crate::rest::Comment>,
    trigger_at: chrono::DateTime<chrono::Utc>,
) -> Vec<crate::rest::Comment> {
    comments
        .into_iter()
        .filter(|c| written_before(c.created_at, c.updated_at, trigger_at))
        .collect()
}

#[cfg(test)]
mod tests;
