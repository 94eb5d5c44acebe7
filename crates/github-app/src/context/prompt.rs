//! The review prompt: a fixed system prompt (`review_system.md`, the same for every review so
//! providers can cache it) and a user message built from a [`ReviewInput`] within a token
//! budget.
//!
//! The pull request's description, commits, CI, linked issues and instructions come first,
//! each capped in size. Then the files: those `.kodiai.yml` or [`files::skip_reason`] keep out
//! are skipped; the others are ranked (source, tests, docs and config; larger changes first
//! within a kind) and packed greedily, a file that does not fit making room for smaller ones
//! after it. Every changed file ends up either in the prompt or in [`ReviewPrompt::skipped`],
//! and the skipped ones are listed at the end by name (grouped by folder when a long list
//! would not fit), so the agent can read them with its tools.
//!
//! All GitHub text goes through [`sanitize_untrusted`], and prose from GitHub is fenced in
//! `<untrusted-data>` tags. Patches are not sanitized: changing code would move the line
//! numbers comments anchor on, and the agent reads the same files from its checkout anyway.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use kodiai_github::rest::PullFile;
use kodiai_github::sanitize::sanitize_untrusted;

use super::files::{self, FileKind, PatchShape, SkipReason};
use super::hunks::number_new_lines;
use super::{LinkedIssue, ReviewInput};

/// The system prompt of every review.
pub const SYSTEM_PROMPT: &str = include_str!("review_system.md");
/// What a review looks for, unless `.kodiai.yml`'s `review.prompt` replaces it.
pub const DEFAULT_FOCUS: &str = include_str!("review_focus.md");

pub const MAX_TITLE_CHARS: usize = 300;
pub const MAX_BODY_CHARS: usize = 8_000;
pub const MAX_COMMITS_SHOWN: usize = 50;
pub const MAX_COMMIT_CHARS: usize = 600;
pub const MAX_CHECKS_SHOWN: usize = 50;
pub const MAX_ISSUE_CHARS: usize = 3_000;
pub const MAX_GUIDELINE_CHARS: usize = 8_000;

/// The first prompt gets half of the model's context window: the rest is for the agent's
/// turns (file reads, tool results, its comments). Never less than this…
const MIN_PROMPT_TOKENS: usize = 4_000;
/// …nor more: a million-token window does not make a 500,000-token first prompt worth its
/// cost, paid again on every turn.
const MAX_PROMPT_TOKENS: usize = 150_000;
/// The share of the budget the list of files not shown may take before it is grouped by
/// folder.
const LISTING_SHARE: usize = 4;
/// Headings and notes around the sections, counted before packing.
const OVERHEAD_TOKENS: usize = 200;
/// One file's patch may take at most this share of the budget.
const PER_FILE_SHARE: usize = 16;

/// How many tokens the prompt (system and user message) may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    pub max_tokens: usize,
}

impl PromptBudget {
    /// The budget for `model` (`provider/model` or a bare model name).
    pub fn for_model(model: &str) -> Self {
        Self {
            max_tokens: (context_window(model) / 2).clamp(MIN_PROMPT_TOKENS, MAX_PROMPT_TOKENS),
        }
    }

    pub fn tokens(max_tokens: usize) -> Self {
        Self { max_tokens }
    }
}

/// The context window of `model` in tokens, from its family's published size. kodiai-llm has
/// no model table; a model this does not know gets a small window, which only makes its
/// first prompt shorter.
pub fn context_window(model: &str) -> usize {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    if name.contains("claude") {
        if name.contains("[1m]") {
            1_000_000
        } else {
            200_000
        }
    } else if name.contains("gemini") || starts(&["gpt-4.1"]) {
        1_000_000
    } else if starts(&["gpt-5"]) {
        400_000
    } else if starts(&["o1", "o3", "o4"]) {
        200_000
    } else if starts(&[
        "gpt-4o",
        "gpt-4-turbo",
        "llama-3",
        "llama3",
        "mistral-large",
        "deepseek",
    ]) {
        128_000
    } else {
        32_768
    }
}

/// Tokens of `text`, estimated at four bytes each (close for English and code; no tokenizer
/// is worth its start-up time here).
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

/// A changed file that is not in the prompt, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: String,
    pub reason: SkipReason,
    pub additions: u64,
    pub deletions: u64,
}

/// The prompt of one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewPrompt {
    pub system: String,
    pub user: String,
    /// The paths whose patches are in `user`, in the order shown.
    pub included: Vec<String>,
    /// Every other changed file: skipped by rule, or for lack of room ([`SkipReason::Budget`]).
    pub skipped: Vec<SkippedFile>,
    /// [`estimate_tokens`] of `system` and `user`.
    pub estimated_tokens: usize,
}

/// A reviewable file, before packing.
struct Candidate<'a> {
    file: &'a PullFile,
    kind: FileKind,
    /// An upper bound of its section's tokens (see [`Candidate::fits`]).
    tokens: usize,
    /// Whether `tokens` counts the patch's fence yet.
    fenced: bool,
}

impl Candidate<'_> {
    /// Whether the section fits in `room`. The bound in `tokens` leaves out a fence longer
    /// than usual, added here only for files that come close (it takes a pass over the
    /// patch).
    fn fits(&mut self, room: usize) -> bool {
        if self.tokens > room {
            return false;
        }
        if !self.fenced {
            self.fenced = true;
            let patch = self.file.patch.as_deref().unwrap_or_default();
            self.tokens += longest_backticks(patch).div_ceil(2);
        }
        self.tokens <= room
    }
}

/// Builds the review prompt of `input` within `budget`.
pub fn build_review_prompt(input: &ReviewInput, budget: &PromptBudget) -> ReviewPrompt {
    let mut user = String::new();
    render_pull_request(&mut user, input);

    let mut skipped = Vec::new();
    let mut candidates = Vec::new();
    for file in &input.files {
        let shape = PatchShape::of(file.patch.as_deref().unwrap_or_default());
        let reason = input
            .scope
            .excludes(&file.filename)
            .or_else(|| files::skip_reason(file, &shape));
        match reason {
            Some(reason) => skipped.push(skipped_file(file, reason)),
            None => candidates.push(Candidate {
                file,
                kind: files::kind(&file.filename),
                tokens: section_tokens_bound(file, &shape),
                fenced: false,
            }),
        }
    }

    // Room for the list of files not shown, reserved before packing: as if none were shown,
    // up to its share (past that it is grouped by folder to fit).
    let listing_all: usize = input.files.iter().map(listing_line_tokens).sum();
    let listing_reserve = listing_all.min(budget.max_tokens / LISTING_SHARE);
    let used = estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(&user) + OVERHEAD_TOKENS;
    let mut room = budget
        .max_tokens
        .saturating_sub(used)
        .saturating_sub(listing_reserve);

    candidates.sort_by(|a, b| {
        (a.kind, Reverse(changes(a.file)), &a.file.filename).cmp(&(
            b.kind,
            Reverse(changes(b.file)),
            &b.file.filename,
        ))
    });
    // One file may take at most a share of the budget: a 20,000-line patch is read with
    // tools, and its room goes to many files instead.
    let per_file = budget.max_tokens / PER_FILE_SHARE;
    let mut chosen = Vec::new();
    let mut left_out = Vec::new();
    for mut candidate in candidates {
        if candidate.fits(room.min(per_file)) {
            room -= candidate.tokens;
            chosen.push(candidate);
        } else {
            left_out.push(candidate);
        }
    }
    // The listing usually takes less than its reservation (grouped, or short): what it does
    // not use goes to the files left out, in rank order. Showing one more file only shortens
    // the listing, so the listing still fits in what is left.
    let mut capacity = listing_reserve + room;
    let mut all_skipped = skipped.clone();
    all_skipped.extend(
        left_out
            .iter()
            .map(|c| skipped_file(c.file, SkipReason::Budget)),
    );
    sort_skipped(&mut all_skipped);
    let mut extra = capacity.saturating_sub(estimate_tokens(&listing_text(&all_skipped, capacity)));
    for mut candidate in left_out {
        if candidate.fits(extra.min(per_file)) {
            extra -= candidate.tokens;
            capacity -= candidate.tokens;
            chosen.push(candidate);
        } else {
            skipped.push(skipped_file(candidate.file, SkipReason::Budget));
        }
    }
    // Shown by kind, then path: a folder's files read together.
    chosen.sort_by(|a, b| (a.kind, &a.file.filename).cmp(&(b.kind, &b.file.filename)));

    let total = input.files.len();
    let _ = writeln!(
        user,
        "## Changed files ({} of {total} shown here)\n",
        chosen.len()
    );
    if chosen.is_empty() {
        user.push_str(
            "No patch fits in this prompt; read the files listed below with your tools.\n\n",
        );
    }
    for candidate in &chosen {
        render_file(&mut user, candidate);
    }

    sort_skipped(&mut skipped);
    if !skipped.is_empty() {
        let _ = writeln!(
            user,
            "## Changed files not shown here ({})\n",
            skipped.len()
        );
        user.push_str(&listing_text(&skipped, capacity));
    }

    let estimated_tokens = estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(&user);
    ReviewPrompt {
        system: SYSTEM_PROMPT.to_owned(),
        user,
        included: chosen.iter().map(|c| c.file.filename.clone()).collect(),
        skipped,
        estimated_tokens,
    }
}

fn changes(file: &PullFile) -> u64 {
    file.additions + file.deletions
}

fn skipped_file(file: &PullFile, reason: SkipReason) -> SkippedFile {
    SkippedFile {
        path: file.filename.clone(),
        reason,
        additions: file.additions,
        deletions: file.deletions,
    }
}

/// At least the tokens of the file's section (its heading, a usual fence, and the patch with
/// a six-column number before each line).
fn section_tokens_bound(file: &PullFile, shape: &PatchShape) -> usize {
    let patch_len = file.patch.as_deref().map_or(0, str::len);
    let bytes = 2 * file.filename.len() + 96 + patch_len + 7 * shape.lines;
    bytes.div_ceil(4)
}

fn listing_line_tokens(file: &PullFile) -> usize {
    (file.filename.len() + 48).div_ceil(4)
}

fn render_pull_request(out: &mut String, input: &ReviewInput) {
    let title = clip(&sanitize_untrusted(&input.title), MAX_TITLE_CHARS);
    let _ = writeln!(
        out,
        "# Pull request {}#{}: {}\n",
        input.repository,
        input.number,
        one_line(&title)
    );
    let (additions, deletions) = input
        .files
        .iter()
        .fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions));
    let _ = writeln!(out, "- Author: @{}", sanitize_untrusted(&input.author));
    let _ = writeln!(
        out,
        "- Base `{}` at {}, head `{}` at {}",
        sanitize_untrusted(&input.base.name),
        short_sha(&input.base.sha),
        sanitize_untrusted(&input.head.name),
        short_sha(&input.head.sha),
    );
    let _ = writeln!(
        out,
        "- {} files changed (+{additions} −{deletions}), {} commits{}",
        input.changed_files.max(input.files.len() as u64),
        input.commits.len(),
        if input.draft { ", draft" } else { "" }
    );
    if input.changed_files > input.files.len() as u64 {
        let _ = writeln!(
            out,
            "- GitHub lists only the first {} changed files; see the others with `git_diff` \
             against the base.",
            input.files.len()
        );
    }
    out.push('\n');

    out.push_str("## Description\n\n");
    if input.body.trim().is_empty() {
        out.push_str("(no description)\n\n");
    } else {
        untrusted(out, "pull request description", &input.body, MAX_BODY_CHARS);
    }

    let _ = writeln!(out, "## Commits ({})\n", input.commits.len());
    if !input.commits.is_empty() {
        let mut list = String::new();
        for commit in input.commits.iter().take(MAX_COMMITS_SHOWN) {
            let message = clip(&sanitize_untrusted(&commit.message), MAX_COMMIT_CHARS);
            let mut lines = message.trim().lines();
            let _ = writeln!(
                list,
                "- {} {}",
                short_sha(&commit.sha),
                lines.next().unwrap_or_default()
            );
            for line in lines {
                if line.trim().is_empty() {
                    list.push('\n');
                } else {
                    let _ = writeln!(list, "  {line}");
                }
            }
        }
        if input.commits.len() > MAX_COMMITS_SHOWN {
            let _ = writeln!(
                list,
                "- … and {} more (`git_log` shows them)",
                input.commits.len() - MAX_COMMITS_SHOWN
            );
        }
        untrusted(out, "commit messages", &list, usize::MAX);
    }

    render_ci(out, input);

    if !input.linked_issues.is_empty() {
        out.push_str("## Issues this pull request closes\n\n");
        for issue in &input.linked_issues {
            render_issue(out, issue);
        }
    }

    out.push_str("## Review instructions\n\n");
    match input
        .instructions
        .config_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        Some(prompt) => {
            out.push_str("From the repository's `.kodiai.yml` (`review.prompt`):\n\n");
            out.push_str(sanitize_untrusted(prompt).trim());
            out.push_str("\n\n");
        }
        None => {
            out.push_str(DEFAULT_FOCUS.trim());
            out.push_str("\n\n");
        }
    }
    if !input.instructions.guidelines.is_empty() {
        out.push_str("## Repository guidelines (from the base branch)\n\n");
        for (path, text) in &input.instructions.guidelines {
            let path = sanitize_untrusted(path);
            let _ = writeln!(out, "### {path}\n");
            untrusted(out, &path, text, MAX_GUIDELINE_CHARS);
        }
    }
}

fn render_ci(out: &mut String, input: &ReviewInput) {
    out.push_str("## CI at the head commit\n\n");
    match &input.ci.status {
        Some((state, statuses)) if !statuses.is_empty() => {
            let _ = writeln!(out, "- Commit statuses: {}", sanitize_untrusted(state));
            for s in statuses.iter().take(MAX_CHECKS_SHOWN) {
                let description = s
                    .description
                    .as_deref()
                    .map(|d| format!(" ({})", one_line(&clip(&sanitize_untrusted(d), 200))))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  - `{}`: {}{description}",
                    one_line(&sanitize_untrusted(&s.context)),
                    sanitize_untrusted(&s.state)
                );
            }
        }
        Some(_) => out.push_str("- Commit statuses: none\n"),
        None => out.push_str("- Commit statuses: not visible to kodiai\n"),
    }
    match &input.ci.checks {
        Some(checks) if !checks.is_empty() => {
            out.push_str("- Check runs:\n");
            for c in checks.iter().take(MAX_CHECKS_SHOWN) {
                let result = match &c.conclusion {
                    Some(conclusion) => format!("{}, {}", c.status, conclusion),
                    None => c.status.clone(),
                };
                let _ = writeln!(
                    out,
                    "  - `{}`: {}",
                    one_line(&sanitize_untrusted(&c.name)),
                    sanitize_untrusted(&result)
                );
            }
            if checks.len() > MAX_CHECKS_SHOWN {
                let _ = writeln!(
                    out,
                    "  - … and {} more (`get_ci_status` lists them)",
                    checks.len() - MAX_CHECKS_SHOWN
                );
            }
        }
        Some(_) => out.push_str("- Check runs: none\n"),
        None => out.push_str("- Check runs: not visible to kodiai\n"),
    }
    out.push('\n');
}

fn render_issue(out: &mut String, issue: &LinkedIssue) {
    let title = clip(&sanitize_untrusted(&issue.title), MAX_TITLE_CHARS);
    let _ = writeln!(
        out,
        "### {} ({}): {}\n",
        issue.reference,
        sanitize_untrusted(&issue.state),
        one_line(&title)
    );
    if issue.body.trim().is_empty() {
        out.push_str("(no description)\n\n");
    } else {
        untrusted(
            out,
            &format!("issue {}", issue.reference),
            &issue.body,
            MAX_ISSUE_CHARS,
        );
    }
}

fn render_file(out: &mut String, candidate: &Candidate<'_>) {
    let file = candidate.file;
    let _ = writeln!(
        out,
        "### {} ({}, {}, +{} −{})",
        sanitize_untrusted(&file.filename),
        file.status,
        candidate.kind.as_str(),
        file.additions,
        file.deletions
    );
    if let Some(previous) = &file.previous_filename {
        let _ = writeln!(out, "Renamed from {}", sanitize_untrusted(previous));
    }
    let patch = file.patch.as_deref().unwrap_or_default();
    let fence = "`".repeat(longest_backticks(patch).max(2) + 1);
    let _ = write!(out, "\n{fence}diff\n{}{fence}\n\n", number_new_lines(patch));
}

/// Not shown for lack of room first (those want reading, by rank), then by rule; by path
/// within.
fn sort_skipped(skipped: &mut [SkippedFile]) {
    skipped.sort_by_cached_key(|s| {
        let unread = s.reason == SkipReason::Budget;
        let rank = if unread {
            files::kind(&s.path)
        } else {
            FileKind::Source
        };
        (!unread, rank, s.path.clone())
    });
}

/// The files not shown (sorted by [`sort_skipped`]), one line each when that fits in
/// `max_tokens`, else grouped by folder, as deep as fits.
fn listing_text(skipped: &[SkippedFile], max_tokens: usize) -> String {
    let names: Vec<String> = skipped
        .iter()
        .map(|s| sanitize_untrusted(&s.path))
        .collect();
    let mut text = listing(skipped, &names, None);
    if estimate_tokens(&text) > max_tokens {
        let deepest = names
            .iter()
            .map(|n| n.matches('/').count())
            .max()
            .unwrap_or(0);
        for depth in (0..=deepest).rev() {
            text = listing(skipped, &names, Some(depth));
            if estimate_tokens(&text) <= max_tokens {
                break;
            }
        }
    }
    text
}

/// One listing: each file on a line (`depth` `None`), or files grouped by the first `depth`
/// components of their folder.
fn listing(skipped: &[SkippedFile], names: &[String], depth: Option<usize>) -> String {
    #[derive(Default)]
    struct Group<'a> {
        files: usize,
        additions: u64,
        deletions: u64,
        reasons: BTreeMap<&'a SkipReason, usize>,
        first: usize,
    }
    let mut out = String::new();
    let budget_part = skipped.partition_point(|s| s.reason == SkipReason::Budget);
    for (part, heading) in [
        (
            0..budget_part,
            "Not shown for lack of room (read them with `read_file` or `git_diff` when they \
             matter):",
        ),
        (budget_part..skipped.len(), "Skipped, not reviewed:"),
    ] {
        if part.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{heading}");
        // In the order of the files (rank, then path), each group where its first file is.
        let mut groups: Vec<(String, Group<'_>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for i in part {
            let key = match depth {
                None => names[i].clone(),
                Some(depth) => folder_prefix(&names[i], depth),
            };
            let at = *index.entry(key.clone()).or_insert_with(|| {
                groups.push((
                    key,
                    Group {
                        first: i,
                        ..Group::default()
                    },
                ));
                groups.len() - 1
            });
            let group = &mut groups[at].1;
            group.files += 1;
            group.additions += skipped[i].additions;
            group.deletions += skipped[i].deletions;
            *group.reasons.entry(&skipped[i].reason).or_default() += 1;
        }
        for (key, group) in &groups {
            let file = &skipped[group.first];
            if group.files == 1 {
                let _ = write!(
                    out,
                    "- {} (+{} −{})",
                    names[group.first], file.additions, file.deletions
                );
                if file.reason != SkipReason::Budget {
                    let _ = write!(out, ": {}", file.reason);
                }
            } else {
                let _ = write!(
                    out,
                    "- {key} ({} files, +{} −{})",
                    group.files, group.additions, group.deletions
                );
                let reasons: Vec<String> = group
                    .reasons
                    .iter()
                    .filter(|(r, _)| ***r != SkipReason::Budget)
                    .map(|(r, n)| format!("{r} ×{n}"))
                    .collect();
                if !reasons.is_empty() {
                    let _ = write!(out, ": {}", reasons.join(", "));
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// `a/b/` for `a/b/c/d.rs` at depth 2; `./` at depth 0 or for a file at the top.
fn folder_prefix(path: &str, depth: usize) -> String {
    let dirs: Vec<&str> = path.split('/').collect();
    let folder = &dirs[..dirs.len().saturating_sub(1)];
    let kept = &folder[..folder.len().min(depth)];
    if kept.is_empty() {
        "./".to_owned()
    } else {
        format!("{}/", kept.join("/"))
    }
}

/// Sanitized `text` fenced as data, capped at `max_chars`.
fn untrusted(out: &mut String, source: &str, text: &str, max_chars: usize) {
    let clean = clip(&sanitize_untrusted(text), max_chars);
    // A closing tag in the text would end the fence early.
    let clean = clean.replace("untrusted-data", "untrusted_data");
    let source = source.replace(['"', '<', '>'], "");
    let _ = write!(
        out,
        "<untrusted-data source=\"{source}\">\n{}\n</untrusted-data>\n\n",
        clean.trim_end()
    );
}

/// `text` up to `max_chars` characters, saying how much was cut.
fn clip(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((at, _)) => {
            let rest = text[at..].chars().count();
            format!("{}\n[… {rest} more characters not shown]", &text[..at])
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn longest_backticks(text: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    for b in text.bytes() {
        if b == b'`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest
}
