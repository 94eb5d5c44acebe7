//! Text crossing kodiai's trust boundary with GitHub, in both directions (SPEC §7).
//!
//! Inbound: [`sanitize_untrusted`] cleans anything written on GitHub (titles, bodies, comments,
//! review text, file names) before it reaches a prompt: hidden content that a human reader does
//! not see is removed, and token-shaped strings are replaced by `[REDACTED]`.
//!
//! Outbound: [`gate_outgoing`] runs over every body kodiai writes (comments, reviews, commit
//! messages, pull-request descriptions): its own handles are neutralized so it cannot trigger
//! itself, and a body that carries a secret is replaced as a whole by a notice.
//!
//! This file is the seam the review and mention flows build on; the sanitizer itself is filled
//! in by the mentions issue (point 5 and 6).

/// What replaces a token-shaped string in a prompt.
pub const REDACTED: &str = "[REDACTED]";

/// The text of an untrusted GitHub field, safe to put in a prompt.
pub fn sanitize_untrusted(text: &str) -> String {
    strip_html_comments(text)
}

/// The kind of a secret found in a text (never the secret itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretKind {
    GithubToken,
    OpenAiKey,
    AnthropicKey,
    AwsAccessKey,
    SlackToken,
    PrivateKey,
    Jwt,
    HighEntropy,
}

impl SecretKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GithubToken => "github_token",
            Self::OpenAiKey => "openai_key",
            Self::AnthropicKey => "anthropic_key",
            Self::AwsAccessKey => "aws_access_key",
            Self::SlackToken => "slack_token",
            Self::PrivateKey => "private_key",
            Self::Jwt => "jwt",
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

/// The secrets in `text` (the inbound patterns plus the high-entropy check).
pub fn find_secrets(text: &str) -> Vec<SecretFinding> {
    let mut found = Vec::new();
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"] {
        for (start, _) in text.match_indices(prefix) {
            let end = start
                + text[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(text.len() - start);
            if end - start >= prefix.len() + 20 {
                found.push(SecretFinding {
                    kind: SecretKind::GithubToken,
                    start,
                    end,
                });
            }
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

/// What the outgoing gate made of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The body to send (its own handles neutralized).
    Clean(String),
    /// The body carried a secret: send `notice` instead, and log and count the event.
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
}

/// Runs a body kodiai is about to write through the gate. `own_handles` are the logins it
/// answers to (without `@`), e.g. `["kodiai", "kodiai[bot]"]`.
pub fn gate_outgoing(body: &str, own_handles: &[&str]) -> Outgoing {
    let findings = find_secrets(body);
    if !findings.is_empty() {
        let mut kinds: Vec<SecretKind> = findings.iter().map(|f| f.kind).collect();
        kinds.dedup();
        return Outgoing::Blocked {
            notice: "kodiai withheld this message because it contained what looks like a \
                     credential. If a credential was exposed, rotate it."
                .into(),
            kinds,
        };
    }
    let mut out = body.to_owned();
    for handle in own_handles {
        // A zero-width joiner after `@` keeps the text readable and is no longer a mention.
        out = out.replace(&format!("@{handle}"), &format!("@\u{200d}{handle}"));
    }
    Outgoing::Clean(out)
}

fn strip_html_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        out.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_comments_are_removed() {
        assert_eq!(sanitize_untrusted("a<!-- do evil -->b"), "ab");
    }

    #[test]
    fn a_token_blocks_the_body() {
        let body = format!("here: ghp_{}", "a".repeat(36));
        assert!(matches!(
            gate_outgoing(&body, &["kodiai"]),
            Outgoing::Blocked { .. }
        ));
        assert_eq!(
            gate_outgoing("thanks @kodiai", &["kodiai"]).text(),
            "thanks @\u{200d}kodiai"
        );
    }
}
