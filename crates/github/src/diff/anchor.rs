//! Where a model's proposed review comment goes: on the lines it names, on the nearest lines
//! GitHub accepts, or into the review's summary with its file and line. [`place`] decides for one
//! comment, [`plan`] for all of a review.
//!
//! The rules, in order:
//! - a file not in the diff, a binary file, or a file without hunks (GitHub sends no patch for
//!   very large diffs) has nothing to anchor on: summary;
//! - a single line inside a hunk on its side is [`Placement::Exact`]; outside, it moves to the
//!   nearest line of that side shown by a hunk, at most [`MAX_MOVE`] lines away
//!   ([`Placement::Moved`]); farther, summary;
//! - a range (`start_line` to `line`) must lie in one hunk on one side: a range that leaves its
//!   hunk or crosses hunks shrinks to its part inside one hunk (the one holding `line`, else the
//!   one holding `start_line`, else the one it overlaps most), becoming a single line if one line
//!   is left; a range that touches no hunk moves like a single line from `line`;
//! - **suggestions**: a comment with a ```` ```suggestion ```` block asks GitHub to replace the
//!   anchored lines with the block, so it is only posted where it was proposed. Moved or shrunk,
//!   its "Commit suggestion" button would replace other lines with it (committable garbage), so it
//!   goes to the summary instead; so does one on the `LEFT` side, where there is nothing of the
//!   new file to replace. In the summary the block is shown as plain code.

use std::fmt;

use crate::diff::{Diff, DiffFile, Side};
use crate::rest::NewReviewComment;

/// How far (in lines) a comment outside the diff may move to land on it. Git shows three lines
/// of context around a change; five more keeps a moved comment next to the code it is about.
pub const MAX_MOVE: u64 = 5;

/// A review comment as the model proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedComment {
    pub path: String,
    pub line: u64,
    /// The first line of a multi-line comment.
    pub start_line: Option<u64>,
    pub side: Side,
    pub body: String,
}

/// The lines a comment is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub start_line: Option<u64>,
    pub line: u64,
    pub side: Side,
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start_line {
            Some(start) => write!(f, "lines {start}-{} ({})", self.line, self.side.as_str()),
            None => write!(f, "line {} ({})", self.line, self.side.as_str()),
        }
    }
}

/// Why a comment went to the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryReason {
    /// The pull request does not change the file.
    FileNotInDiff,
    BinaryFile,
    /// The file has no hunks (GitHub sent no patch, or only its mode or name changed).
    NoHunks,
    /// No line of the comment's side within [`MAX_MOVE`] lines is in a hunk.
    OutsideDiff,
    /// A suggestion whose anchor had to move (or shrink).
    SuggestionNotOnItsLines,
    /// A suggestion on the old side.
    SuggestionOnLeft,
    /// GitHub rejected the comment (422) although the diff allowed it.
    RejectedByGithub,
}

/// A comment that is not posted inline, for the review summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub path: String,
    pub start_line: Option<u64>,
    pub line: u64,
    pub body: String,
    pub reason: SummaryReason,
}

impl Unplaced {
    /// `path:line` or `path:start-line`.
    pub fn location(&self) -> String {
        match self.start_line {
            Some(start) if start != self.line => format!("{}:{start}-{}", self.path, self.line),
            _ => format!("{}:{}", self.path, self.line),
        }
    }

    /// The comment as a summary entry: its location in bold, then its body, with any suggestion
    /// block shown as plain code (it cannot be applied from a review body).
    pub fn to_markdown(&self) -> String {
        format!(
            "**`{}`**\n\n{}",
            self.location().replace('`', "'"),
            plain_suggestions(self.body.trim())
        )
    }

    pub fn from_comment(comment: &NewReviewComment, reason: SummaryReason) -> Self {
        Self {
            path: comment.path.clone(),
            start_line: comment.start_line,
            line: comment.line,
            body: comment.body.clone(),
            reason,
        }
    }
}

/// The heading of the summary section that lists comments not posted inline.
pub const SUMMARY_HEADING: &str = "#### Comments on lines outside the diff";

/// The summary section for `items` (empty text for none), to append to a review's body.
pub fn summary_section(items: &[Unplaced]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from(SUMMARY_HEADING);
    out.push_str("\n\nGitHub accepts inline comments only on lines of the diff; these are about other lines.\n");
    for item in items {
        out.push('\n');
        out.push_str(&item.to_markdown());
        out.push('\n');
    }
    out
}

/// `body` with `section` appended after a blank line (or `section` alone).
pub fn append_section(body: Option<&str>, section: &str) -> Option<String> {
    match (body.map(str::trim_end).filter(|b| !b.is_empty()), section) {
        (body, "") => body.map(str::to_owned),
        (None, section) => Some(section.to_owned()),
        (Some(body), section) => Some(format!("{body}\n\n{section}")),
    }
}

/// Where one comment goes.
#[derive(Debug, Clone)]
pub enum Placement {
    /// On the lines proposed (a reversed range is put the right way round; the same lines).
    Exact(NewReviewComment),
    /// On other lines of the same file and side; the body says which lines it was about.
    Moved {
        from: Anchor,
        to: Anchor,
        comment: NewReviewComment,
    },
    /// Not inline: into the review summary.
    Summary(Unplaced),
}

/// Decides where `proposed` goes in `diff` (the module comment has the rules).
pub fn place(diff: &Diff, proposed: &ProposedComment) -> Placement {
    let path = proposed.path.trim_start_matches("./");
    let summary = |reason| {
        Placement::Summary(Unplaced {
            path: path.to_owned(),
            start_line: proposed.start_line,
            line: proposed.line,
            body: proposed.body.clone(),
            reason,
        })
    };
    let Some(file) = diff.file(path) else {
        return summary(SummaryReason::FileNotInDiff);
    };
    if file.binary {
        return summary(SummaryReason::BinaryFile);
    }
    if file.hunks.is_empty() {
        return summary(SummaryReason::NoHunks);
    }
    let side = proposed.side;
    let suggestion = has_suggestion(&proposed.body);
    if suggestion && side == Side::Left {
        return summary(SummaryReason::SuggestionOnLeft);
    }
    let from = Anchor {
        start_line: proposed.start_line,
        line: proposed.line,
        side,
    };
    // The same lines, the right way round: `start_line < line`, or no `start_line`.
    let (low, high) = match proposed.start_line {
        Some(start) if start < proposed.line => (Some(start), proposed.line),
        Some(start) if start > proposed.line => (Some(proposed.line), start),
        _ => (None, proposed.line),
    };
    let Some(to) = fit(file, side, low, high) else {
        return summary(SummaryReason::OutsideDiff);
    };
    let exact = to.start_line == low && to.line == high;
    if !exact && suggestion {
        return summary(SummaryReason::SuggestionNotOnItsLines);
    }
    let mut body = proposed.body.clone();
    if !exact {
        let about = match low {
            Some(start) => format!("lines {start}-{high}"),
            None => format!("line {high}"),
        };
        body = format!(
            "{}\n\n<sub>About {about}, which GitHub does not let a review comment sit on; placed on the nearest lines of the diff.</sub>",
            body.trim_end()
        );
    }
    let comment = NewReviewComment {
        path: file.path.clone(),
        body,
        line: to.line,
        side: side.as_str().to_owned(),
        start_line: to.start_line,
        start_side: to.start_line.map(|_| side.as_str().to_owned()),
    };
    if exact {
        Placement::Exact(comment)
    } else {
        Placement::Moved { from, to, comment }
    }
}

/// The lines of `side` in one hunk nearest to `low..=high` (`low` `None` for a single line).
fn fit(file: &DiffFile, side: Side, low: Option<u64>, high: u64) -> Option<Anchor> {
    let single = |line| Anchor {
        start_line: None,
        line,
        side,
    };
    let Some(low) = low else {
        return file
            .nearest(side, high, MAX_MOVE)
            .map(|(line, _)| single(line));
    };
    let hunk = file
        .hunk_of(side, high)
        .or_else(|| file.hunk_of(side, low))
        .or_else(|| {
            // The hunk the range overlaps most (one it contains whole, say).
            (0..file.hunks.len())
                .filter_map(|i| {
                    let r = file.hunk_range(side, i)?;
                    let overlap = high.min(*r.end()).checked_sub(low.max(*r.start()))?;
                    Some((overlap, std::cmp::Reverse(i)))
                })
                .max()
                .map(|(_, std::cmp::Reverse(i))| i)
        });
    let Some(range) = hunk.and_then(|h| file.hunk_range(side, h)) else {
        return file
            .nearest(side, high, MAX_MOVE)
            .map(|(line, _)| single(line));
    };
    let (start, end) = (low.max(*range.start()), high.min(*range.end()));
    Some(if start < end {
        Anchor {
            start_line: Some(start),
            line: end,
            side,
        }
    } else {
        single(end)
    })
}

/// Whether a body has a ```` ```suggestion ```` (or `~~~suggestion`) block.
pub fn has_suggestion(body: &str) -> bool {
    body.lines().any(is_suggestion_fence)
}

fn is_suggestion_fence(line: &str) -> bool {
    let line = line.trim_start();
    let fence = line.trim_start_matches('`');
    let fence = if fence.len() + 3 <= line.len() {
        fence
    } else {
        let tilde = line.trim_start_matches('~');
        if tilde.len() + 3 > line.len() {
            return false;
        }
        tilde
    };
    fence.trim_start().starts_with("suggestion")
}

/// `body` with suggestion fences turned into plain code fences.
fn plain_suggestions(body: &str) -> String {
    body.lines()
        .map(|line| {
            if is_suggestion_fence(line) {
                let indent = &line[..line.len() - line.trim_start().len()];
                let marks: String = line
                    .trim_start()
                    .chars()
                    .take_while(|c| *c == '`' || *c == '~')
                    .collect();
                format!("{indent}{marks}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// All of a review's proposed comments, placed.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Inline comments, exact or moved, in the order proposed.
    pub comments: Vec<NewReviewComment>,
    /// How many of `comments` were moved.
    pub moved: usize,
    /// Comments for the summary, in the order proposed.
    pub unplaced: Vec<Unplaced>,
}

/// Places every proposed comment.
pub fn plan(diff: &Diff, proposed: &[ProposedComment]) -> Plan {
    let mut plan = Plan::default();
    for p in proposed {
        match place(diff, p) {
            Placement::Exact(c) => plan.comments.push(c),
            Placement::Moved { comment, .. } => {
                plan.moved += 1;
                plan.comments.push(comment);
            }
            Placement::Summary(u) => plan.unplaced.push(u),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn suggestion_fences_are_recognised_and_made_plain() {
        assert!(has_suggestion("fix:\n```suggestion\nlet a = 1;\n```"));
        assert!(has_suggestion("  ~~~~ suggestion\nx\n~~~~"));
        assert!(!has_suggestion("```rust\nsuggestion\n```"));
        assert!(!has_suggestion("a suggestion: use x"));
        assert_eq!(
            plain_suggestions("fix:\n  ```suggestion\nlet a = 1;\n  ```"),
            "fix:\n  ```\nlet a = 1;\n  ```"
        );
    }

    #[test]
    fn sections_are_appended_after_a_blank_line() {
        assert_eq!(
            append_section(Some("Body\n"), "S").as_deref(),
            Some("Body\n\nS")
        );
        assert_eq!(append_section(None, "S").as_deref(), Some("S"));
        assert_eq!(append_section(Some("B"), "").as_deref(), Some("B"));
        assert_eq!(append_section(Some("  "), ""), None);
    }
}
