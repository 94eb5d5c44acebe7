//! The gate every body kodiai writes passes (comments, reviews, replies, commit messages,
//! pull-request titles and descriptions): its own handles neutralized, then the secret scan.
//!
//! A handle is neutralized by a zero-width joiner after the `@`: the text reads the same, GitHub
//! no longer sees a mention, and kodiai's own matcher neither. Handles inside code (fenced
//! blocks, inline code spans, as [`crate::markdown`] finds them, the same scanner the mention
//! matcher uses) are left alone: GitHub does not notify there, and code (above all a
//! `suggestion` block a reviewer applies) must stay byte for byte.
//!
//! A body with a secret is replaced as a whole (a redacted body could still carry the parts
//! around the secret, or a second one the patterns miss) by a notice that names the kinds and
//! never the value. kodiai's hidden markers (`<!-- kodiai:KIND:KEY -->`) are carried over, so a
//! re-run still finds and updates the withheld comment instead of posting another.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::hidden::compile;
use super::{Outgoing, SecretKind, find_secrets};

/// kodiai's hidden markers, as the comment writers put them.
static MARKER: LazyLock<Regex> = LazyLock::new(|| compile(r"<!--\s*kodiai:[^<>\n]{1,300}?-->"));

/// The markers in `body`, in order.
pub(crate) fn markers(body: &str) -> Vec<Range<usize>> {
    MARKER.find_iter(body).map(|m| m.range()).collect()
}

pub(crate) fn gate(body: &str, own_handles: &[&str]) -> Outgoing {
    let body = neutralize_handles(body, own_handles);
    let findings = find_secrets(&body);
    if findings.is_empty() {
        return Outgoing::Clean(body);
    }
    let mut kinds: Vec<SecretKind> = Vec::new();
    for f in &findings {
        if !kinds.contains(&f.kind) {
            kinds.push(f.kind);
        }
    }
    for kind in &kinds {
        metrics::counter!("kodiai_outgoing_secrets_blocked_total", "kind" => kind.as_str())
            .increment(1);
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    tracing::warn!(
        kinds = %names.join(","),
        findings = findings.len(),
        "withheld an outgoing GitHub body that looks like it carries a credential"
    );
    let mut notice = format!(
        "kodiai withheld this message because it contained what looks like a credential ({}). \
         If it is a real one, rotate it now: it may also be in the conversation or the \
         repository it came from.",
        names.join(", ")
    );
    for marker in markers(&body) {
        notice.push_str("\n\n");
        notice.push_str(&body[marker]);
    }
    Outgoing::Blocked { notice, kinds }
}

/// `body` with each `@handle` of `own_handles` (case-insensitive, as a whole handle, not in an
/// e-mail address or code) turned into `@\u{200d}handle`.
pub fn neutralize_handles(body: &str, own_handles: &[&str]) -> String {
    let mut handles: Vec<String> = own_handles
        .iter()
        .map(|h| h.trim().trim_start_matches('@').to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    // Longest first, so `kodiai[bot]` is taken whole before `kodiai`.
    handles.sort_by_key(|h| std::cmp::Reverse(h.len()));
    handles.dedup();
    if handles.is_empty() || !body.contains('@') {
        return body.to_owned();
    }
    let code = crate::markdown::scan(body).code;
    let mut code = code.iter().peekable();
    let bytes = body.as_bytes();
    let mut out = String::with_capacity(body.len() + 8);
    let mut copied = 0;
    for (at, _) in body.match_indices('@') {
        while code.peek().is_some_and(|r| r.end <= at) {
            code.next();
        }
        if code.peek().is_some_and(|r| r.start <= at) {
            continue;
        }
        if body[..at].chars().next_back().is_some_and(continues_before) {
            continue;
        }
        let rest = &bytes[at + 1..];
        let hit = handles.iter().any(|h| {
            rest.len() >= h.len()
                && rest[..h.len()].eq_ignore_ascii_case(h.as_bytes())
                && body.is_char_boundary(at + 1 + h.len())
                && ends_handle(&body[at + 1 + h.len()..])
        });
        if hit {
            out.push_str(&body[copied..=at]);
            out.push('\u{200d}');
            copied = at + 1;
        }
    }
    out.push_str(&body[copied..]);
    out
}

/// A character before `@` that makes it part of a word or an e-mail address, not a mention.
fn continues_before(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | '@' | '/' | '\\' | '=' | '`')
}

/// Whether a handle ends where `after` begins (GitHub logins are letters, digits and `-`).
fn ends_handle(after: &str) -> bool {
    let mut chars = after.chars();
    match chars.next() {
        None => true,
        Some(c) if c.is_alphanumeric() || matches!(c, '_' | '-' | '/') => false,
        Some('.') => !chars.next().is_some_and(char::is_alphanumeric),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const ZWJ: &str = "\u{200d}";

    fn n(body: &str) -> String {
        neutralize_handles(body, &["kodiai", "kodiai[bot]"]).replace(ZWJ, "<ZWJ>")
    }

    #[test]
    fn own_handles_are_neutralized_case_insensitively() {
        assert_eq!(n("thanks @kodiai!"), "thanks @<ZWJ>kodiai!");
        assert_eq!(n("@KodiAI please"), "@<ZWJ>KodiAI please");
        assert_eq!(n("by @kodiai[bot]."), "by @<ZWJ>kodiai[bot].");
        assert_eq!(n("> @kodiai said"), "> @<ZWJ>kodiai said");
        assert_eq!(n("(@kodiai)"), "(@<ZWJ>kodiai)");
    }

    #[test]
    fn other_handles_addresses_and_code_are_left_alone() {
        for body in [
            "ask @kodiai-dev or @kodiai2 or @kodiai_x",
            "mail me@kodiai.dev or team@kodiai",
            "see @kodiai/team",
            "`@kodiai review` calls me",
            "```\n@kodiai fix\n```\n",
            "~~~suggestion\nlet who = \"@kodiai\";\n~~~",
            "@someone-else",
        ] {
            assert_eq!(n(body), body, "{body}");
        }
        assert_eq!(
            n("`code` then @kodiai then ``a ` b``"),
            "`code` then @<ZWJ>kodiai then ``a ` b``"
        );
        assert_eq!(
            n("```\n@kodiai\n```\nand @kodiai"),
            "```\n@kodiai\n```\nand @<ZWJ>kodiai"
        );
    }

    #[test]
    fn code_is_where_the_markdown_scanner_says() {
        // A backtick in a backtick fence's info string: no fence, so the handle is in prose.
        assert_eq!(n("```x`y\n@kodiai fix\n"), "```x`y\n@<ZWJ>kodiai fix\n");
        // A tilde fence's info string may hold backticks.
        assert_eq!(
            n("~~~ `sh`\n@kodiai fix\n~~~\n@kodiai"),
            "~~~ `sh`\n@kodiai fix\n~~~\n@<ZWJ>kodiai"
        );
        // An unclosed fence runs to the end.
        assert_eq!(
            n("@kodiai\n```\n@kodiai fix\n\n@kodiai"),
            "@<ZWJ>kodiai\n```\n@kodiai fix\n\n@kodiai"
        );
        // Code spans match runs of equal length; an unmatched run is literal text.
        assert_eq!(n("``a` @kodiai"), "``a` @<ZWJ>kodiai");
        assert_eq!(n("``a` @kodiai ``"), "``a` @kodiai ``");
        assert_eq!(n("`a`` @kodiai ``b` c"), "`a`` @kodiai ``b` c");
        // A code span spans the lines of one paragraph, not beyond.
        assert_eq!(n("use `the\n@kodiai` call"), "use `the\n@kodiai` call");
        assert_eq!(
            n("use `the\n\n@kodiai` call"),
            "use `the\n\n@<ZWJ>kodiai` call"
        );
    }

    #[test]
    fn what_the_gate_leaves_alone_the_matcher_does_not_take_for_a_mention() {
        let matcher = crate::mention::MentionMatcher::default();
        for body in [
            "```x`y\n@kodiai fix\n",
            "```x`y`\n@kodiai fix\n```",
            "~~~ `sh`\n@kodiai fix\n~~~\n@kodiai",
            "@kodiai\n```\n@kodiai fix",
            "``a` @kodiai",
            "`a`` @kodiai ``b` c",
            "use `the\n@kodiai` call",
            "use `the\n\n@kodiai` call",
            "> @kodiai said\n\n@kodiai",
        ] {
            let out = neutralize_handles(body, &["kodiai"]);
            assert!(!matcher.mentions(&out), "{body:?} -> {out:?}");
        }
    }

    #[test]
    fn a_neutralized_handle_stays_neutralized() {
        let once = neutralize_handles("hi @kodiai", &["@kodiai"]);
        assert_eq!(neutralize_handles(&once, &["kodiai"]), once);
        assert!(!crate::mention::MentionMatcher::new("@kodiai", &[] as &[&str]).mentions(&once));
    }

    #[test]
    fn no_handles_changes_nothing() {
        assert_eq!(neutralize_handles("hi @kodiai", &[]), "hi @kodiai");
        assert_eq!(neutralize_handles("hi @kodiai", &["", "@"]), "hi @kodiai");
    }
}
