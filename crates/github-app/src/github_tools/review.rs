//! The review tools: `create_inline_comment`, which checks each proposed comment against the
//! pull request's diff when it is made and tells the model where it will land (on its lines,
//! moved to the nearest line of the diff, or into the review's summary), and a review's
//! `update_progress` (the job's progress events: a review has no tracking comment).
//!
//! Comments are only buffered here ([`SharedFindings`]); the review flow posts them as one
//! review when the agent is done (`handlers/review`), and `kodiai review` prints them. Checking
//! at call time is what lets the model fix an anchor: a suggestion block that would not replace
//! exactly the lines it names is refused with what to change, never moved.
//!
//! [`fingerprint`] names a finding independently of where it was posted (rule or first line,
//! path, the anchored code with whitespace collapsed), so an incremental review can drop one
//! an earlier review already posted.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use kodiai_agent::tools::{Tool, ToolContext, ToolOutput, ToolResult};
use kodiai_github::diff::anchor::{
    Placement, ProposedComment, SummaryReason, has_suggestion, place,
};
use kodiai_github::diff::{Diff, DiffFile, Side};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use kodiai_runtime::jobs::JobContext;

/// Inline comments one review may buffer; more are refused (a review is not a lint run).
pub const MAX_FINDINGS: usize = 100;

/// A comment the model proposed, with the rule it names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub proposed: ProposedComment,
    /// A short name of the problem (`unchecked-error`), used in the fingerprint.
    pub rule: Option<String>,
}

/// The findings of one review, in the order proposed; `None` marks one the model replaced.
pub type SharedFindings = Arc<Mutex<Vec<Option<Finding>>>>;

/// The findings left, in order.
pub fn findings_of(shared: &SharedFindings) -> Vec<Finding> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .flatten()
        .cloned()
        .collect()
}

/// Buffers review comments after checking their anchors against `diff`.
pub struct CreateInlineComment {
    diff: Arc<Diff>,
    findings: SharedFindings,
}

impl CreateInlineComment {
    pub fn new(diff: Arc<Diff>, findings: SharedFindings) -> Self {
        Self { diff, findings }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CreateInlineCommentArgs {
    /// The file's path, exactly as listed in the pull request.
    pub path: String,
    /// The line the comment is on (the last line of a range): a numbered line of the patch.
    pub line: u64,
    /// For a comment on several lines: the first one, in the same hunk as `line`.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// `RIGHT` (the new code, the default) or `LEFT` (removed code).
    #[serde(default)]
    pub side: Option<String>,
    /// The comment in GitHub markdown; may hold one ```suggestion block that replaces exactly
    /// the lines from `start_line` (or `line`) to `line`.
    pub body: String,
    /// A short name for the kind of problem, e.g. `unchecked-error`, `sql-injection`.
    #[serde(default)]
    pub rule: Option<String>,
    /// The number of an earlier comment of yours that this one replaces (to move it to a
    /// better line or fix it).
    #[serde(default)]
    pub replaces: Option<usize>,
}

impl Tool for CreateInlineComment {
    type Args = CreateInlineCommentArgs;

    fn name(&self) -> &str {
        "create_inline_comment"
    }

    fn description(&self) -> String {
        "Add one finding to your review, on a line (or lines) of the pull request's diff. The \
         anchor is checked at once and the answer says where the comment will be: on the lines \
         you gave, moved to the nearest line of the diff, or in the review's summary; each \
         comment gets a number you can pass as `replaces` to fix it. All comments are posted \
         together as one review when you finish."
            .into()
    }

    fn writes(&self) -> bool {
        // It changes the review being written; in order keeps the comments' numbers stable.
        true
    }

    async fn call(&self, args: CreateInlineCommentArgs, _ctx: &ToolContext) -> ToolResult {
        let side = match args.side.as_deref().map(str::trim) {
            None | Some("") => Side::Right,
            Some(text) => match Side::parse(text) {
                Some(side) => side,
                None => {
                    return Ok(ToolOutput::failure(format!(
                        "side must be RIGHT or LEFT, not {text:?}"
                    )));
                }
            },
        };
        if args.body.trim().is_empty() {
            return Ok(ToolOutput::failure("the comment's body is empty"));
        }
        if args.line == 0 || args.start_line == Some(0) {
            return Ok(ToolOutput::failure("line numbers start at 1"));
        }
        let proposed = ProposedComment {
            path: args.path.trim().trim_start_matches("./").to_owned(),
            line: args.line,
            start_line: args.start_line.filter(|s| *s != args.line),
            side,
            body: args.body.trim_end().to_owned(),
        };
        let placement = place(&self.diff, &proposed);
        if has_suggestion(&proposed.body)
            && let Err(problem) = check_suggestion(&self.diff, &proposed, &placement)
        {
            return Ok(ToolOutput::failure(problem));
        }
        let finding = Finding {
            proposed: proposed.clone(),
            rule: args
                .rule
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty()),
        };
        let number = {
            let mut findings = self
                .findings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(n) = args.replaces {
                match findings.get_mut(n.wrapping_sub(1)) {
                    Some(slot @ Some(_)) => *slot = None,
                    _ => {
                        return Ok(ToolOutput::failure(format!(
                            "there is no comment #{n} to replace"
                        )));
                    }
                }
            }
            if findings.iter().flatten().count() >= MAX_FINDINGS {
                return Ok(ToolOutput::failure(format!(
                    "a review holds at most {MAX_FINDINGS} comments; keep the most important"
                )));
            }
            findings.push(Some(finding));
            findings.len()
        };
        Ok(ToolOutput::text(placement_message(
            number, &self.diff, &proposed, &placement,
        )))
    }
}

/// What the model is told about where comment `number` goes.
fn placement_message(
    number: usize,
    diff: &Diff,
    proposed: &ProposedComment,
    placement: &Placement,
) -> String {
    match placement {
        Placement::Exact(c) => format!(
            "Comment #{number} noted on {}:{}{}. It is posted with the review when you finish.",
            c.path,
            lines(c.start_line, c.line),
            side_note(proposed.side),
        ),
        Placement::Moved { from, to, .. } => format!(
            "Comment #{number}: {}:{} is not a line of the diff GitHub lets a review comment \
             sit on, so it will be on {}:{} (the nearest lines of the diff), saying which lines \
             it is about. If another changed line fits it better, call again with that line and \
             `replaces: {number}`.",
            proposed.path,
            lines(from.start_line, from.line),
            proposed.path,
            lines(to.start_line, to.line),
        ),
        Placement::Summary(unplaced) => {
            let mut out = format!(
                "Comment #{number}: {} is {}, so it will go into the review's summary with its \
                 file and line, not inline.",
                unplaced.location(),
                reason_text(unplaced.reason),
            );
            if let Some(shown) = diff
                .file(&proposed.path)
                .and_then(|f| shown_lines(f, proposed.side))
            {
                let _ = write!(
                    out,
                    " To have it inline, call again with one of these lines of the diff and \
                     `replaces: {number}`: {shown}."
                );
            }
            out
        }
    }
}

fn lines(start: Option<u64>, line: u64) -> String {
    match start {
        Some(start) if start != line => format!("{start}-{line}"),
        _ => line.to_string(),
    }
}

fn side_note(side: Side) -> &'static str {
    match side {
        Side::Right => "",
        Side::Left => " (the old side)",
    }
}

fn reason_text(reason: SummaryReason) -> &'static str {
    match reason {
        SummaryReason::FileNotInDiff => "not a file this pull request changes",
        SummaryReason::BinaryFile => "a binary file",
        SummaryReason::NoHunks => "in a file whose patch GitHub does not show",
        SummaryReason::OutsideDiff => "too far from every changed line",
        SummaryReason::SuggestionNotOnItsLines | SummaryReason::SuggestionOnLeft => {
            "a suggestion that cannot be placed on its lines"
        }
        SummaryReason::RejectedByGithub => "refused by GitHub",
    }
}

/// The line ranges of `side` the file's hunks show, as `3-9, 20-31`.
fn shown_lines(file: &DiffFile, side: Side) -> Option<String> {
    let ranges: Vec<String> = (0..file.hunks.len())
        .filter_map(|h| file.hunk_range(side, h))
        .map(|r| lines(Some(*r.start()), *r.end()))
        .collect();
    (!ranges.is_empty()).then(|| ranges.join(", "))
}

/// Refuses a suggestion that would not replace exactly the lines it names: one not placed on
/// its own lines, more than one block, an unclosed block, or a block that repeats the line just
/// before or after its range (applying it would duplicate that line).
fn check_suggestion(
    diff: &Diff,
    proposed: &ProposedComment,
    placement: &Placement,
) -> Result<(), String> {
    let range = lines(proposed.start_line, proposed.line);
    let file = diff.file(&proposed.path);
    let shown = file
        .and_then(|f| shown_lines(f, Side::Right))
        .map(|s| format!(" The diff shows these lines of {}: {s}.", proposed.path))
        .unwrap_or_default();
    if proposed.side == Side::Left {
        return Err(
            "A suggestion replaces lines of the new code: use side RIGHT, or drop the \
             suggestion block and describe the change."
                .into(),
        );
    }
    let Placement::Exact(_) = placement else {
        return Err(format!(
            "Not noted: a suggestion replaces exactly the lines it is anchored on, and \
             {}:{range} is not a range inside one hunk of the diff.{shown} Anchor the \
             suggestion on the changed lines it replaces (start_line..line in one hunk), or \
             drop the suggestion block.",
            proposed.path
        ));
    };
    let blocks = suggestion_blocks(&proposed.body)?;
    let [block] = blocks.as_slice() else {
        return Err(
            "Not noted: one suggestion block per comment (GitHub applies a comment's suggestion \
             to its lines as a whole). Split it into comments on their own lines."
                .into(),
        );
    };
    let Some(file) = file else { return Ok(()) };
    let (low, high) = match proposed.start_line {
        Some(start) => (start.min(proposed.line), start.max(proposed.line)),
        None => (proposed.line, proposed.line),
    };
    let text = |n: u64| new_side_text(file, n).map(str::trim);
    let (first, last) = (
        block.iter().map(|l| l.trim()).find(|l| !l.is_empty()),
        block.iter().map(|l| l.trim()).rfind(|l| !l.is_empty()),
    );
    if let (Some(first), Some(before)) = (first, low.checked_sub(1).and_then(text))
        && !before.is_empty()
        && first == before
        && text(low) != Some(before)
    {
        return Err(format!(
            "Not noted: the suggestion starts with line {} (`{before}`), which is before the \
             anchored lines {range}; applying it would duplicate that line. Drop it from the \
             block, or start the range at line {}.",
            low - 1,
            low - 1
        ));
    }
    if let (Some(last), Some(after)) = (last, text(high + 1))
        && !after.is_empty()
        && last == after
        && text(high) != Some(after)
    {
        return Err(format!(
            "Not noted: the suggestion ends with line {} (`{after}`), which is after the \
             anchored lines {range}; applying it would duplicate that line. Drop it from the \
             block, or end the range at line {}.",
            high + 1,
            high + 1
        ));
    }
    Ok(())
}

/// The lines of each ```` ```suggestion ```` block of `body`; an error for one left open.
fn suggestion_blocks(body: &str) -> Result<Vec<Vec<&str>>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in body.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                let marks: String = trimmed
                    .chars()
                    .take_while(|c| *c == '`' || *c == '~')
                    .collect();
                if marks.len() >= 3
                    && trimmed[marks.len()..]
                        .trim_start()
                        .starts_with("suggestion")
                {
                    open = Some((marks, Vec::new()));
                }
            }
            Some((marks, lines)) => {
                if trimmed.trim_end() == marks.as_str()
                    || (trimmed.starts_with(marks.as_str())
                        && trimmed.trim_end().chars().all(|c| c == '`' || c == '~'))
                {
                    if let Some((_, lines)) = open.take() {
                        blocks.push(lines);
                    }
                } else {
                    lines.push(line);
                }
            }
        }
    }
    if open.is_some() {
        return Err(
            "Not noted: the suggestion block is not closed (end it with the same \
                    fence it opened with)."
                .into(),
        );
    }
    Ok(blocks)
}

/// The text of new-side line `n` if a hunk of `file` shows it.
fn new_side_text(file: &DiffFile, n: u64) -> Option<&str> {
    file.hunk_of(Side::Right, n)
        .and_then(|h| file.hunks[h].lines.iter().find(|l| l.new_line == Some(n)))
        .map(|l| l.text.as_str())
}

/// The text of `side` line `n` if a hunk of `file` shows it.
pub fn side_text(file: &DiffFile, side: Side, n: u64) -> Option<&str> {
    let hunk = file.hunk_of(side, n)?;
    file.hunks[hunk]
        .lines
        .iter()
        .find(|l| match side {
            Side::Right => l.new_line == Some(n),
            Side::Left => l.old_line == Some(n),
        })
        .map(|l| l.text.as_str())
}

/// A finding's fingerprint: SHA-256 of its rule (or, without one, its body's first line,
/// lower-cased), its path, and `code` (the anchored lines), each with whitespace collapsed.
/// The line number is left out on purpose: code that moves keeps its findings.
pub fn fingerprint(rule: Option<&str>, body: &str, path: &str, code: &str) -> String {
    let collapse = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let what = match rule.map(str::trim).filter(|r| !r.is_empty()) {
        Some(rule) => format!("rule:{}", rule.to_lowercase()),
        None => {
            let first = body
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("");
            format!("text:{}", collapse(first).to_lowercase())
        }
    };
    let mut hash = Sha256::new();
    for part in [what.as_str(), path, &collapse(code)] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// A review's `update_progress`: a progress event of the job (shown to whoever watches its
/// event stream), not a comment: the review itself is the one thing posted.
pub struct JobProgress {
    ctx: JobContext,
}

impl JobProgress {
    pub fn new(ctx: JobContext) -> Self {
        Self { ctx }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct JobProgressArgs {
    /// What you are doing now, in a line or a short checklist.
    pub checklist: String,
}

impl Tool for JobProgress {
    type Args = JobProgressArgs;

    fn name(&self) -> &str {
        "update_progress"
    }

    fn description(&self) -> String {
        "Say what you are doing on a long review (shown in the job's progress; nothing is \
         posted on GitHub)."
            .into()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: JobProgressArgs, _ctx: &ToolContext) -> ToolResult {
        let text: String = args.checklist.trim().chars().take(2000).collect();
        if text.is_empty() {
            return Ok(ToolOutput::failure("the checklist is empty"));
        }
        self.ctx
            .progress(serde_json::json!({"message": text}))
            .await
            .map_err(|e| kodiai_agent::tools::ToolError::respond(e.to_string()))?;
        Ok(ToolOutput::text("progress noted"))
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    const PATCH: &str = "@@ -1,4 +1,5 @@\n fn main() {\n-    let x = 1;\n+    let x = 2;\n+    let y = x;\n     println!(\"{x}\");\n }";

    fn diff() -> Arc<Diff> {
        Arc::new(Diff::from_files(vec![DiffFile::from_patch(
            "src/main.rs",
            kodiai_github::diff::FileStatus::Modified,
            None,
            Some(PATCH),
        )]))
    }

    async fn call(tool: &CreateInlineComment, args: serde_json::Value) -> ToolOutput {
        let args: CreateInlineCommentArgs = serde_json::from_value(args).unwrap();
        let ctx = ToolContext {
            cancel: tokio_util::sync::CancellationToken::new(),
        };
        tool.call(args, &ctx).await.unwrap()
    }

    #[tokio::test]
    async fn anchors_are_checked_when_the_comment_is_made() {
        let findings = SharedFindings::default();
        let tool = CreateInlineComment::new(diff(), Arc::clone(&findings));
        let exact = call(
            &tool,
            serde_json::json!({"path": "src/main.rs", "line": 2, "body": "x changed"}),
        )
        .await;
        assert!(!exact.is_error);
        assert!(
            exact.content.contains("#1 noted on src/main.rs:2"),
            "{}",
            exact.content
        );

        let moved = call(
            &tool,
            serde_json::json!({"path": "src/main.rs", "line": 8, "body": "later"}),
        )
        .await;
        assert!(
            moved.content.contains("will be on src/main.rs:5"),
            "{}",
            moved.content
        );

        let summary = call(
            &tool,
            serde_json::json!({"path": "src/other.rs", "line": 3, "body": "elsewhere"}),
        )
        .await;
        assert!(
            summary.content.contains("review's summary"),
            "{}",
            summary.content
        );

        // #3 replaced by a comment on a changed line.
        let fixed = call(
            &tool,
            serde_json::json!({"path": "src/main.rs", "line": 3, "body": "y", "replaces": 3}),
        )
        .await;
        assert!(fixed.content.contains("#4 noted"), "{}", fixed.content);
        let lines: Vec<(String, u64)> = findings_of(&findings)
            .into_iter()
            .map(|f| (f.proposed.path, f.proposed.line))
            .collect();
        assert_eq!(
            lines,
            [
                ("src/main.rs".to_owned(), 2),
                ("src/main.rs".to_owned(), 8),
                ("src/main.rs".to_owned(), 3)
            ]
        );
        let bad = call(
            &tool,
            serde_json::json!({"path": "src/main.rs", "line": 3, "body": "y", "replaces": 3}),
        )
        .await;
        assert!(bad.is_error, "#3 is gone already");
    }

    #[tokio::test]
    async fn suggestions_must_replace_exactly_their_lines() {
        let findings = SharedFindings::default();
        let tool = CreateInlineComment::new(diff(), Arc::clone(&findings));
        let good = call(
            &tool,
            serde_json::json!({"path": "src/main.rs", "start_line": 2, "line": 3,
                "body": "simpler:\n```suggestion\n    let x = 2;\n    let y = 2;\n```"}),
        )
        .await;
        assert!(!good.is_error, "{}", good.content);

        for (args, needle) in [
            // Outside the hunk: never moved.
            (
                serde_json::json!({"path": "src/main.rs", "line": 9,
                    "body": "```suggestion\nx\n```"}),
                "not a range inside one hunk",
            ),
            // Repeats the line before the range.
            (
                serde_json::json!({"path": "src/main.rs", "line": 2,
                    "body": "```suggestion\nfn main() {\n    let x = 3;\n```"}),
                "before the anchored lines",
            ),
            // Repeats the line after it.
            (
                serde_json::json!({"path": "src/main.rs", "line": 3,
                    "body": "```suggestion\n    let y = x + 0;\n    println!(\"{x}\");\n```"}),
                "after the anchored lines",
            ),
            (
                serde_json::json!({"path": "src/main.rs", "line": 2,
                    "body": "```suggestion\na\n```\n```suggestion\nb\n```"}),
                "one suggestion block",
            ),
            (
                serde_json::json!({"path": "src/main.rs", "line": 2,
                    "body": "```suggestion\na\n"}),
                "not closed",
            ),
            (
                serde_json::json!({"path": "src/main.rs", "line": 2, "side": "LEFT",
                    "body": "```suggestion\na\n```"}),
                "side RIGHT",
            ),
        ] {
            let out = call(&tool, args).await;
            assert!(
                out.is_error && out.content.contains(needle),
                "{needle}: {}",
                out.content
            );
        }
        assert_eq!(findings_of(&findings).len(), 1, "refused ones are not kept");
    }

    #[test]
    fn fingerprints_ignore_whitespace_and_line_numbers_but_not_the_problem() {
        let a = fingerprint(
            None,
            "Unchecked error\nmore",
            "src/a.rs",
            "let x =  f()?;\n",
        );
        let b = fingerprint(None, "  unchecked   error", "src/a.rs", "let x = f()?;");
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(None, "Another problem", "src/a.rs", "let x = f()?;")
        );
        assert_ne!(
            a,
            fingerprint(None, "Unchecked error", "src/b.rs", "let x = f()?;")
        );
        assert_ne!(
            a,
            fingerprint(None, "Unchecked error", "src/a.rs", "let y = f()?;")
        );
        assert_eq!(
            fingerprint(Some("E1"), "one text", "p", "c"),
            fingerprint(Some("e1"), "another text", "p", "c")
        );
    }
}
