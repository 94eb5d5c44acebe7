//! The issues a pull request says it closes, by GitHub's closing keywords: `close`, `closes`,
//! `closed`, `fix`, `fixes`, `fixed`, `resolve`, `resolves`, `resolved` (any case, an optional
//! colon), then `#12`, `owner/repo#12` or an issue URL on github.com.

use std::fmt;

/// Closing references read from one body; the rest are ignored.
const MAX_REFERENCES: usize = 20;
const KEYWORDS: [&str; 9] = [
    "closes", "closed", "close", "fixes", "fixed", "fix", "resolves", "resolved", "resolve",
];

/// An issue in a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssueRef {
    pub owner: String,
    pub repo: String,
    pub number: u64,
    /// Written as `#12` in the pull request's own repository.
    pub local: bool,
}

impl fmt::Display for IssueRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.local {
            write!(f, "#{}", self.number)
        } else {
            write!(f, "{}/{}#{}", self.owner, self.repo, self.number)
        }
    }
}

/// The issues `body` closes, in the order written, without repeats. `repository` is the pull
/// request's `owner/name`, for `#12`.
pub fn closing_references(body: &str, repository: &str) -> Vec<IssueRef> {
    let (own_owner, own_repo) = repository.split_once('/').unwrap_or((repository, ""));
    // ASCII lower-casing keeps byte offsets, so positions found in it index `body` too.
    let lower = body.to_ascii_lowercase();
    let mut found: Vec<(usize, IssueRef)> = Vec::new();
    for keyword in KEYWORDS {
        for (at, _) in lower.match_indices(keyword) {
            let before = lower[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &body[at + keyword.len()..];
            let rest = rest.strip_prefix(':').unwrap_or(rest);
            let trimmed = rest.trim_start_matches([' ', '\t']);
            if trimmed.len() == rest.len() {
                continue; // `fixes#1`, `fixed-width`: not a keyword use.
            }
            if let Some(reference) = parse_reference(trimmed, own_owner, own_repo) {
                found.push((at, reference));
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    let mut out: Vec<IssueRef> = Vec::new();
    for (_, reference) in found {
        let same = |r: &IssueRef| {
            r.number == reference.number
                && r.owner.eq_ignore_ascii_case(&reference.owner)
                && r.repo.eq_ignore_ascii_case(&reference.repo)
        };
        if !out.iter().any(same) {
            out.push(reference);
        }
        if out.len() == MAX_REFERENCES {
            break;
        }
    }
    out
}

/// `#12`, `owner/repo#12` or `https://github.com/owner/repo/issues/12` at the start of `text`.
fn parse_reference(text: &str, own_owner: &str, own_repo: &str) -> Option<IssueRef> {
    let token_end = text
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')' | '(' | '!' | '?'))
        .unwrap_or(text.len());
    let token = text[..token_end].trim_end_matches('.');
    let number = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if let Some(digits) = token.strip_prefix('#') {
        return Some(IssueRef {
            owner: own_owner.to_owned(),
            repo: own_repo.to_owned(),
            number: number(digits)?,
            local: true,
        });
    }
    let (owner, repo, digits) = if let Some(url) = token
        .strip_prefix("https://github.com/")
        .or_else(|| token.strip_prefix("http://github.com/"))
    {
        let parts: Vec<&str> = url.split('/').collect();
        match parts.as_slice() {
            [owner, repo, "issues", digits] => (*owner, *repo, *digits),
            _ => return None,
        }
    } else {
        let (path, digits) = token.split_once('#')?;
        let (owner, repo) = path.split_once('/')?;
        (owner, repo, digits)
    };
    if !name_ok(owner) || !name_ok(repo) {
        return None;
    }
    let local = owner.eq_ignore_ascii_case(own_owner) && repo.eq_ignore_ascii_case(own_repo);
    Some(IssueRef {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        number: number(digits)?,
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(body: &str) -> Vec<String> {
        closing_references(body, "acme/app")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn closing_keywords_in_any_case_with_local_and_cross_repository_references() {
        assert_eq!(
            names(
                "Fixes #12, closes other/lib#3 and\nRESOLVED: https://github.com/acme/app/issues/7.\n\
                 Also fixes #12 again."
            ),
            ["#12", "other/lib#3", "#7"]
        );
    }

    #[test]
    fn words_that_only_contain_a_keyword_or_lack_a_reference_are_not_links() {
        assert!(names("prefixes #1, fixed-width #2, fixes#3, closes issue 4, see #5").is_empty());
        assert!(names("fixes https://github.com/acme/app/pull/9").is_empty());
        assert!(names("fixes #").is_empty());
    }
}
