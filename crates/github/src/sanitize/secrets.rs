//! Token-shaped strings: the known credential formats (gitleaks-style prefixes and shapes) and,
//! for what kodiai writes, a high-entropy check that also catches secrets without a known
//! prefix.
//!
//! The high-entropy check is tuned against what review comments are full of: git SHAs and other
//! hex (never flagged: hex is at most 4 bits a character and is skipped outright), UUIDs, code
//! identifiers (long camelCase names are made of words: runs of lowercase letters), paths and
//! URLs (split at `/`, so a permalink's parts are judged one by one) and subresource-integrity
//! hashes (`sha384-…`, public by design). A candidate is a run of at least
//! [`MIN_ENTROPY_LEN`] base64/base64url characters with upper case, lower case and digits mixed
//! the way random text mixes them. About 1 in 50 random 32-character tokens (1 in 100 at 40)
//! looks word-like enough to pass; the named formats above do not depend on it. Base64 with
//! `/` in it is judged in the pieces between the slashes.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use regex::Regex;

use super::SecretKind;
use super::hidden::compile;

/// Shortest run the high-entropy check looks at.
pub const MIN_ENTROPY_LEN: usize = 32;

/// A named format. When its regex has a group named `secret`, only that part is the secret
/// (the rest, an assignment or a URL around it, stays readable).
struct Pattern {
    kind: SecretKind,
    regex: Regex,
    /// A last look at a match the regex alone cannot decide (it has no look-around).
    check: fn(&str) -> bool,
}

fn any(_: &str) -> bool {
    true
}

/// An OpenAI key is mixed-case alphanumeric; a kebab-case word that starts with `sk-` is not.
fn mixed_key(secret: &str) -> bool {
    let body = secret.trim_start_matches("sk-");
    body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().any(|b| b.is_ascii_uppercase())
        && body.bytes().any(|b| b.is_ascii_lowercase())
}

/// The named formats, most specific first: where two overlap the earlier kind wins.
static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let p = |kind, pattern: &str, check: fn(&str) -> bool| Pattern {
        kind,
        regex: compile(pattern),
        check,
    };
    vec![
        p(
            SecretKind::PrivateKey,
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)",
            any,
        ),
        p(
            SecretKind::GithubToken,
            r"gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}",
            any,
        ),
        p(SecretKind::AnthropicKey, r"sk-ant-[A-Za-z0-9_-]{20,}", any),
        p(
            SecretKind::OpenAiKey,
            r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
            mixed_key,
        ),
        p(
            SecretKind::AwsAccessKey,
            r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
            any,
        ),
        p(
            SecretKind::AwsSecretKey,
            r#"(?i)aws_?secret_?(?:access_?)?key["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+=]{40})"#,
            any,
        ),
        p(
            SecretKind::SlackToken,
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}|https://hooks\.slack\.com/services/[A-Za-z0-9/_-]{20,}",
            any,
        ),
        p(
            SecretKind::Jwt,
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",
            any,
        ),
        p(SecretKind::GoogleApiKey, r"\bAIza[0-9A-Za-z_-]{35}", any),
        p(
            SecretKind::StripeKey,
            r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{20,}",
            any,
        ),
        p(SecretKind::GitlabToken, r"\bglpat-[0-9A-Za-z_-]{20,}", any),
        p(SecretKind::NpmToken, r"\bnpm_[A-Za-z0-9]{36}", any),
        p(
            SecretKind::UrlCredentials,
            r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:(?P<secret>[^\s/@]{6,})@",
            any,
        ),
    ]
});

/// The named credential formats in `text`, sorted and without overlaps.
pub(crate) fn find_known(text: &str) -> Vec<super::SecretFinding> {
    let mut found = Vec::new();
    for pattern in PATTERNS.iter() {
        for captures in pattern.regex.captures_iter(text) {
            let Some(m) = captures.name("secret").or_else(|| captures.get(0)) else {
                continue;
            };
            if (pattern.check)(m.as_str()) {
                found.push(super::SecretFinding {
                    kind: pattern.kind,
                    start: m.start(),
                    end: m.end(),
                });
            }
        }
    }
    without_overlaps(found)
}

/// Sorted by start; of overlapping findings the one found first (the earlier pattern) stays.
pub(crate) fn without_overlaps(found: Vec<super::SecretFinding>) -> Vec<super::SecretFinding> {
    // Kept ranges are disjoint, so the one starting last before `f.end` is the only candidate
    // for an overlap with `f`.
    let mut kept: BTreeMap<usize, super::SecretFinding> = BTreeMap::new();
    for f in found {
        let overlaps = kept
            .range(..f.end)
            .next_back()
            .is_some_and(|(_, k)| k.end > f.start);
        if !overlaps {
            kept.insert(f.start, f);
        }
    }
    kept.into_values().collect()
}

/// Candidate runs for the high-entropy check (`/` separates, so paths and URLs split).
static CANDIDATE: LazyLock<Regex> = LazyLock::new(|| compile(r"[A-Za-z0-9+_-]{32,}={0,2}"));

/// Runs of a word inside an identifier: `word`, `Word`.
static WORDLIKE: LazyLock<Regex> = LazyLock::new(|| compile(r"[a-z]{4,}|[A-Z][a-z]{3,}"));

/// High-entropy runs in `text`.
pub(crate) fn find_high_entropy(text: &str) -> Vec<super::SecretFinding> {
    CANDIDATE
        .find_iter(text)
        .filter(|m| looks_random(m.as_str()))
        .map(|m| super::SecretFinding {
            kind: SecretKind::HighEntropy,
            start: m.start(),
            end: m.end(),
        })
        .collect()
}

/// Whether a candidate run looks like random key material rather than a word, a hash or an id.
pub fn looks_random(token: &str) -> bool {
    let token = token.trim_end_matches('=');
    if token.len() < MIN_ENTROPY_LEN {
        return false;
    }
    let lower = token.to_ascii_lowercase();
    if ["sha256-", "sha384-", "sha512-"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return false;
    }
    if token.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return false;
    }
    let bytes = token.as_bytes();
    if !(bytes.iter().any(u8::is_ascii_uppercase)
        && bytes.iter().any(u8::is_ascii_lowercase)
        && bytes.iter().any(u8::is_ascii_digit))
    {
        return false;
    }
    let class = |b: u8| {
        if b.is_ascii_uppercase() {
            0
        } else if b.is_ascii_lowercase() {
            1
        } else if b.is_ascii_digit() {
            2
        } else {
            3
        }
    };
    let switches = bytes
        .windows(2)
        .filter(|w| class(w[0]) != class(w[1]))
        .count();
    let switch_rate = switches as f64 / (bytes.len() - 1) as f64;
    let wordlike: usize = WORDLIKE.find_iter(token).map(|m| m.len()).sum();
    let word_share = wordlike as f64 / bytes.len() as f64;
    shannon_entropy(token) >= 3.5 && switch_rate >= 0.25 && word_share < 0.5
}

/// Bits per character of `text`'s byte distribution.
pub fn shannon_entropy(text: &str) -> f64 {
    if text.is_empty() {
        return 0.0;
    }
    let mut counts: HashMap<u8, usize> = HashMap::new();
    for b in text.bytes() {
        *counts.entry(b).or_default() += 1;
    }
    let n = text.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}
