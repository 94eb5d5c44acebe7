//! The texts of a mention's tracking comment: while working, the answer at the end (with what
//! changed, cost and duration, long answers folded when `collapse_responses` is on), and what
//! happened when the work failed. The marker is added by `TrackingComment::update`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::github_tools::Changes;
use crate::github_tools::comments::WORKING_HEADING;

/// Longer answers than this (characters or lines) are folded when `collapse_responses` is on.
const FOLD_CHARS: usize = 1500;
const FOLD_LINES: usize = 25;

/// The first text of the tracking comment.
pub fn working() -> String {
    format!(
        "{WORKING_HEADING}\n\n- [ ] Read the request and its context\n- [ ] Do the work\n- [ ] Answer"
    )
}

/// How the work ended, for the footer.
pub struct Footer<'a> {
    pub model: &'a str,
    pub turns: u32,
    pub cost_usd: f64,
    pub duration: Duration,
}

/// The answer, what changed and the footer.
pub fn answered(answer: &str, changes: &Changes, footer: &Footer<'_>, collapse: bool) -> String {
    let answer = answer.trim();
    let answer = if answer.is_empty() {
        "kodiai finished without writing an answer."
    } else {
        answer
    };
    let long = answer.chars().count() > FOLD_CHARS || answer.lines().count() > FOLD_LINES;
    let mut out = if collapse && long {
        format!("<details>\n<summary>kodiai's answer</summary>\n\n{answer}\n\n</details>\n")
    } else {
        format!("{answer}\n")
    };
    out.push_str(&changes_section(changes));
    out.push_str(&footer_line(footer));
    out
}

/// What failed, what was done before, and the footer.
pub fn failed(what: &str, partial: &str, changes: &Changes, footer: &Footer<'_>) -> String {
    let mut out = format!("**kodiai could not finish:** {what}\n");
    let partial = partial.trim();
    if !partial.is_empty() {
        let _ = write!(
            out,
            "\n<details>\n<summary>What kodiai had written so far</summary>\n\n{partial}\n\n</details>\n"
        );
    }
    let done = changes_section(changes);
    if done.is_empty() {
        out.push_str("\nNothing was changed in the repository.\n");
    } else {
        out.push_str(&done);
    }
    out.push_str(&footer_line(footer));
    out
}

/// A failure before any work started (no model, the checkout failed).
pub fn failed_early(what: &str) -> String {
    format!("**kodiai could not start:** {what}\n\nNothing was changed in the repository.\n")
}

/// The first text of the tracking comment of a mention that asks for a review.
pub fn queuing_review() -> String {
    "Queuing a review of this pull request…".to_owned()
}

/// A review was queued as job `job_id`, of the head `head_sha`.
pub fn review_queued(job_id: &str, head_sha: &str) -> String {
    format!(
        "Review queued (job `{job_id}`) for the head `{}`; the review will be posted on this \
         pull request.\n",
        head_sha.chars().take(12).collect::<String>()
    )
}

/// "Review this" on an issue.
pub fn review_needs_a_pull_request() -> String {
    "Reviews are for pull requests: this is an issue, so there is nothing to review. Ask again \
     on a pull request, or ask a question here.\n"
        .to_owned()
}

/// "Review this" on a pull request that is not open.
pub fn review_of_a_closed_pull_request(state: &str) -> String {
    format!("This pull request is {state}: kodiai reviews open pull requests only.\n")
}

fn changes_section(changes: &Changes) -> String {
    if changes.commits.is_empty() && changes.pull_request.is_none() && changes.comments.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n**What changed**\n");
    if !changes.commits.is_empty() {
        let commits: Vec<String> = changes
            .commits
            .iter()
            .map(|c| format!("`{}`", c.chars().take(12).collect::<String>()))
            .collect();
        let _ = writeln!(
            out,
            "- commits {} pushed to `{}`",
            commits.join(", "),
            changes.branch.as_deref().unwrap_or("?")
        );
    }
    if let Some((number, url)) = &changes.pull_request {
        let _ = writeln!(out, "- pull request #{number}: {url}");
    }
    for url in &changes.comments {
        let _ = writeln!(out, "- comment {url}");
    }
    out
}

fn footer_line(footer: &Footer<'_>) -> String {
    format!(
        "\n<sub>{} · {} turn{} · ${:.4} · {}s</sub>\n",
        footer.model,
        footer.turns,
        if footer.turns == 1 { "" } else { "s" },
        footer.cost_usd,
        footer.duration.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footer() -> Footer<'static> {
        Footer {
            model: "anthropic/claude",
            turns: 2,
            cost_usd: 0.0123,
            duration: Duration::from_secs(7),
        }
    }

    #[test]
    fn long_answers_fold_only_when_asked() {
        let long = "line\n".repeat(40);
        let folded = answered(&long, &Changes::default(), &footer(), true);
        assert!(folded.starts_with("<details>"), "{folded}");
        let open = answered(&long, &Changes::default(), &footer(), false);
        assert!(!open.contains("<details>"));
        let short = answered("Yes.", &Changes::default(), &footer(), true);
        assert_eq!(
            short,
            "Yes.\n\n<sub>anthropic/claude · 2 turns · $0.0123 · 7s</sub>\n"
        );
    }

    #[test]
    fn changes_and_failures_say_what_was_done() {
        let changes = Changes {
            commits: vec!["0123456789abcdef".into()],
            branch: Some("kodiai/issue-3-fix".into()),
            pull_request: Some((9, "https://github.com/o/r/pull/9".into())),
            comments: Vec::new(),
        };
        let text = answered("Done.", &changes, &footer(), true);
        assert!(
            text.contains("`0123456789ab` pushed to `kodiai/issue-3-fix`"),
            "{text}"
        );
        assert!(text.contains("pull request #9: https://github.com/o/r/pull/9"));
        let failed_text = failed(
            "the time limit (300 s) ran out",
            "",
            &Changes::default(),
            &footer(),
        );
        assert!(failed_text.contains("time limit"));
        assert!(failed_text.contains("Nothing was changed"));
    }
}
