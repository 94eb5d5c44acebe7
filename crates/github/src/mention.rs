//! The one mention matcher (SPEC §2): finds the trigger (default `@kodiai`) or one of its
//! aliases in a comment, issue or review body, and returns what was asked.
//!
//! A mention is the trigger as a whole handle, case-insensitive, with a boundary on both sides:
//! `@kodiai-bot`, `@kodiai123`, `@kodiai/team` and `me@kodiai.dev` are not `@kodiai`. Text in
//! fenced code blocks, inline code spans and quoted lines (`> …`) is not looked at: code shows
//! how to call the bot without calling it, and a quote repeats an earlier mention (often the
//! bot's own reply) that was answered already. Where code and quotes are is
//! [`crate::markdown`]'s to say, the same scanner the outgoing gate uses. What is left once the
//! mentions are taken out is the request; a mention with nothing left is no request
//! ([`Mention::Empty`]).
//!
//! Every caller (webhook ingress, the job handlers, later the comment formatter) uses this
//! matcher, so a comment never counts as a mention in one place and not in another.

use std::ops::Range;

/// What [`MentionMatcher::find`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mention {
    /// No trigger outside code and quotes.
    None,
    /// The trigger, but nothing asked beside it.
    Empty {
        /// The trigger or alias as configured (lowercase, with its `@`).
        trigger: String,
    },
    /// A mention with a request.
    Found {
        /// The first trigger or alias found (lowercase, with its `@`).
        trigger: String,
        /// The text with every mention taken out, trimmed.
        request: String,
    },
}

impl Mention {
    /// The request, when there is one.
    pub fn request(&self) -> Option<&str> {
        match self {
            Self::Found { request, .. } => Some(request),
            _ => None,
        }
    }
}

/// Finds mentions of a trigger and its aliases. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MentionMatcher {
    /// Lowercase, each starting with `@`, longest first (so a longer alias wins over a prefix).
    triggers: Vec<String>,
}

impl MentionMatcher {
    /// A matcher for `trigger` and `aliases` (`@` added where missing; blanks dropped).
    pub fn new<S: AsRef<str>>(trigger: &str, aliases: &[S]) -> Self {
        let mut triggers: Vec<String> = std::iter::once(trigger)
            .chain(aliases.iter().map(AsRef::as_ref))
            .map(normalize)
            .filter(|t| t.len() > 1)
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        triggers.retain(|t| seen.insert(t.clone()));
        triggers.sort_by_key(|t| std::cmp::Reverse(t.len()));
        Self { triggers }
    }

    /// The triggers this matcher looks for, normalized.
    pub fn triggers(&self) -> &[String] {
        &self.triggers
    }

    /// Whether `text` mentions the trigger (with or without a request).
    pub fn mentions(&self, text: &str) -> bool {
        !matches!(self.find(text), Mention::None)
    }

    /// Looks for mentions in `text`.
    pub fn find(&self, text: &str) -> Mention {
        let hidden = hidden_ranges(text);
        let mut found: Vec<(Range<usize>, &str)> = Vec::new();
        let bytes = text.as_bytes();
        let mut hidden_iter = hidden.iter().peekable();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'@' {
                i += 1;
                continue;
            }
            while hidden_iter.peek().is_some_and(|r| r.end <= i) {
                hidden_iter.next();
            }
            if hidden_iter.peek().is_some_and(|r| r.start <= i) {
                i += 1;
                continue;
            }
            match self.trigger_at(text, i) {
                Some(trigger) => {
                    found.push((i..i + trigger.len(), trigger));
                    i += trigger.len();
                }
                None => i += 1,
            }
        }
        let Some((_, first)) = found.first() else {
            return Mention::None;
        };
        let trigger = (*first).to_owned();
        let mut request = String::with_capacity(text.len());
        let mut at = 0;
        for (range, _) in &found {
            request.push_str(&text[at..range.start]);
            at = range.end;
        }
        request.push_str(&text[at..]);
        let request = request
            .trim()
            .trim_start_matches([',', ':', ';'])
            .trim()
            .to_owned();
        if request.chars().any(char::is_alphanumeric) {
            Mention::Found { trigger, request }
        } else {
            Mention::Empty { trigger }
        }
    }

    /// The trigger that starts at byte `at` (an `@`) as a whole handle, if any.
    fn trigger_at(&self, text: &str, at: usize) -> Option<&str> {
        let before = text[..at].chars().next_back();
        if before.is_some_and(continues_before) {
            return None;
        }
        let rest = &text.as_bytes()[at..];
        self.triggers
            .iter()
            .find(|t| {
                let t = t.as_bytes();
                rest.len() >= t.len()
                    && rest[..t.len()].eq_ignore_ascii_case(t)
                    && text.is_char_boundary(at + t.len())
                    && ends_handle(&text[at + t.len()..])
            })
            .map(String::as_str)
    }
}

impl Default for MentionMatcher {
    /// `@kodiai`, no aliases.
    fn default() -> Self {
        Self::new::<&str>("@kodiai", &[])
    }
}

fn normalize(trigger: &str) -> String {
    let trimmed = trigger.trim();
    let lower = trimmed.to_lowercase();
    if lower.starts_with('@') {
        lower
    } else {
        format!("@{lower}")
    }
}

/// A character before `@` that makes it part of a word, an e-mail address, a path or another
/// handle rather than the start of a mention.
fn continues_before(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | '@' | '/' | '\\' | '=')
}

/// Whether the handle ends where `after` begins: at the end, or before a character that cannot
/// continue a GitHub handle, a team (`/`) or a domain (`.` followed by a letter or digit).
fn ends_handle(after: &str) -> bool {
    let mut chars = after.chars();
    match chars.next() {
        None => true,
        Some(c) if c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '@') => false,
        Some('.') => !chars.next().is_some_and(char::is_alphanumeric),
        Some(_) => true,
    }
}

/// The byte ranges of `text` that are code or quotes, as [`crate::markdown::scan`] finds them
/// (fenced blocks, code spans, quoted lines outside fenced blocks). Sorted and disjoint.
fn hidden_ranges(text: &str) -> Vec<Range<usize>> {
    let scan = crate::markdown::scan(text);
    let mut all = scan.code;
    all.extend(scan.quotes);
    all.sort_by_key(|r| r.start);
    let mut hidden: Vec<Range<usize>> = Vec::with_capacity(all.len());
    for range in all {
        match hidden.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => hidden.push(range),
        }
    }
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    /// What a case expects: no mention, a mention with nothing asked, or the request.
    #[derive(Debug, Clone, Copy)]
    enum Want {
        No,
        Empty,
        Asks(&'static str),
    }
    use Want::{Asks, Empty, No};

    const CASES: &[(&str, Want)] = &[
        // the plain forms
        ("@kodiai explain this", Asks("explain this")),
        ("@kodiai", Empty),
        ("@kodiai   \n\n", Empty),
        ("  @kodiai, please review", Asks("please review")),
        ("@kodiai: fix the typo", Asks("fix the typo")),
        ("please fix the typo @kodiai", Asks("please fix the typo")),
        (
            "Hey @kodiai what does `parse` do?",
            Asks("Hey  what does `parse` do?"),
        ),
        ("line one\n@kodiai line two", Asks("line one\n line two")),
        // case-insensitive
        ("@KODIAI explain", Asks("explain")),
        ("@KodiAI explain", Asks("explain")),
        // boundaries after the handle
        ("@kodiai-bot explain", No),
        ("@kodiai123 explain", No),
        ("@kodiai_x explain", No),
        ("@kodiai/reviewers explain", No),
        ("@kodiai.dev explain", No),
        ("thanks @kodiai.", Asks("thanks .")),
        ("@kodiai.", Empty),
        ("(@kodiai) explain", Asks("() explain")),
        ("@kodiai! explain", Asks("! explain")),
        ("@kodiai?", Empty),
        // boundaries before the handle: e-mail addresses, words, other handles
        ("mail me@kodiai.dev about it", No),
        ("mail me@kodiai about it", No),
        ("x.@kodiai explain", No),
        ("@@kodiai explain", No),
        ("see https://example.com/@kodiai now", No),
        ("kodiai explain", No),
        ("@kod explain", No),
        // code and quotes
        ("`@kodiai explain`", No),
        ("``@kodiai `explain` ``", No),
        ("```\n@kodiai explain\n```", No),
        ("~~~ text\n@kodiai explain\n~~~", No),
        (
            "```\n@kodiai in code\n```\n@kodiai outside",
            Asks("```\n@kodiai in code\n```\n outside"),
        ),
        ("```rust\nlet x = 1;\n", No),
        (
            "```\n@kodiai\n````\n@kodiai go",
            Asks("```\n@kodiai\n````\n go"),
        ),
        ("    ```\n@kodiai explain", Asks("```\n explain")),
        ("> @kodiai explain\n\nthanks", No),
        (
            "> @kodiai explain\n\n@kodiai and this?",
            Asks("> @kodiai explain\n\n and this?"),
        ),
        ("`unclosed @kodiai explain", Asks("`unclosed  explain")),
        ("```@kodiai``` explain", No),
        // several mentions
        ("@kodiai @kodiai explain", Asks("explain")),
        // non-ASCII around the handle
        ("héllo @kodiai explique", Asks("héllo  explique")),
        ("é@kodiai explique", No),
        ("@kodiaié", No),
    ];

    fn check(matcher: &MentionMatcher, text: &str, want: Want) {
        let got = matcher.find(text);
        let ok = match (want, &got) {
            (No, Mention::None) | (Empty, Mention::Empty { .. }) => true,
            (Asks(expected), Mention::Found { request, .. }) => request == expected,
            _ => false,
        };
        assert!(ok, "{text:?}: expected {want:?}, got {got:?}");
    }

    #[test]
    fn the_mention_table() {
        assert!(CASES.len() >= 30);
        let matcher = MentionMatcher::default();
        for (text, want) in CASES {
            check(&matcher, text, *want);
        }
    }

    #[test]
    fn code_is_where_the_markdown_scanner_says() {
        let matcher = MentionMatcher::default();
        let cases: &[(&str, Want)] = &[
            // a backtick in a backtick fence's info string: no fence, so the next line is prose
            ("```x`y\n@kodiai explain", Asks("```x`y\n explain")),
            ("```x`y`\n`@kodiai` explain", No),
            // a tilde fence's info string may hold backticks
            ("~~~ `sh`\n@kodiai explain\n~~~", No),
            (
                "~~~ `sh`\n@kodiai in code\n~~~\n@kodiai outside",
                Asks("~~~ `sh`\n@kodiai in code\n~~~\n outside"),
            ),
            // an unclosed fence runs to the end, across blank lines
            ("```\nx\n\n@kodiai explain", No),
            (
                "@kodiai explain\n```\n@kodiai",
                Asks("explain\n```\n@kodiai"),
            ),
            // code spans match runs of equal length; an unmatched run is literal text
            ("``@kodiai` explain", Asks("``` explain")),
            ("``a` @kodiai explain` b", No),
            ("`a`` @kodiai ``b` c", No),
            ("``a` @kodiai explain``", No),
            // a code span spans the lines of one paragraph, not beyond
            ("see `the\n@kodiai` call", No),
            ("see `the\n\n@kodiai` call", Asks("see `the\n\n` call")),
        ];
        for (text, want) in cases {
            check(&matcher, text, *want);
        }
    }

    #[test]
    fn aliases_count_as_the_trigger_and_keep_their_own_boundaries() {
        let matcher = MentionMatcher::new("@kodiai", &["claude", "@Kodiai-Bot", " "]);
        assert_eq!(matcher.triggers(), ["@kodiai-bot", "@kodiai", "@claude"]);
        let cases: &[(&str, Want)] = &[
            ("@claude explain", Asks("explain")),
            ("@CLAUDE explain", Asks("explain")),
            ("@claude-code explain", No),
            ("@kodiai-bot explain", Asks("explain")),
            ("@kodiai-bots explain", No),
            ("@kodiai explain", Asks("explain")),
        ];
        for (text, want) in cases {
            check(&matcher, text, *want);
        }
        assert_eq!(
            matcher.find("@kodiai-bot hi"),
            Mention::Found {
                trigger: "@kodiai-bot".into(),
                request: "hi".into()
            }
        );
    }

    #[test]
    fn a_configured_trigger_replaces_the_default() {
        let matcher = MentionMatcher::new::<&str>("helper", &[]);
        check(&matcher, "@helper go", Asks("go"));
        check(&matcher, "@kodiai go", No);
        assert!(matcher.mentions("@helper"));
        assert!(!matcher.mentions("helper go"));
    }
}
