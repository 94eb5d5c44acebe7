//! `kodiai bench review-context`: the review prompt of a synthetic pull request (5,000 files by
//! default: source, tests, docs, config, lock files, vendored, minified, generated, binary and
//! deleted files, with patch sizes from a line to 1,500 lines) built with a real model's
//! budget. It prints what went into the prompt and what was skipped, checks that the two
//! together are exactly the changed files (an error otherwise, so the exit code says it), and
//! times the build (median of `runs`) against the issue's target of under a second.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kodiai_github::rest::PullFile;

use kodiai_github_app::context::{
    BranchRef, CiState, CommitInfo, PromptBudget, ReviewInput, ReviewInstructions, ReviewScope,
    build_review_prompt,
};

/// The issue's target for one build.
const TARGET: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ReviewContextOptions {
    /// Changed files of the synthetic pull request.
    pub files: u32,
    /// Timed builds (after one warm-up).
    pub runs: u32,
    /// `provider/model` whose budget is used.
    pub model: String,
}

/// Runs the benchmark on a blocking thread and returns its table.
pub async fn review_context(options: ReviewContextOptions) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || run(&options))
        .await
        .context("the benchmark thread panicked")?
}

fn run(options: &ReviewContextOptions) -> anyhow::Result<String> {
    let input = synthetic_pull_request(options.files as usize);
    let patch_bytes: usize = input
        .files
        .iter()
        .filter_map(|f| f.patch.as_deref())
        .map(str::len)
        .sum();
    let budget = PromptBudget::for_model(&options.model);

    let mut prompt = build_review_prompt(&input, &budget);
    let mut times = Vec::new();
    for _ in 0..options.runs.max(1) {
        let started = Instant::now();
        prompt = build_review_prompt(&input, &budget);
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let slowest = times[times.len() - 1];

    let files = input.files.len();
    let shown = prompt.included.len();
    let skipped = prompt.skipped.len();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for s in &prompt.skipped {
        let reason = match &s.reason {
            kodiai_github_app::context::SkipReason::IgnoredPath(_) => {
                "review.ignore_paths".to_owned()
            }
            other => other.to_string(),
        };
        *reasons.entry(reason).or_default() += 1;
    }
    // The invariant, by name and not only by count: each changed file exactly once.
    let mut seen = HashSet::with_capacity(files);
    let all_once = prompt
        .included
        .iter()
        .chain(prompt.skipped.iter().map(|s| &s.path))
        .all(|path| seen.insert(path.as_str()))
        && input
            .files
            .iter()
            .all(|f| seen.contains(f.filename.as_str()));

    let ms = |d: Duration| format!("{:.1}ms", d.as_secs_f64() * 1000.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench review-context: a synthetic pull request of {files} changed files \
         ({:.1} MiB of patches), budget of {} ({} tokens), {} timed builds",
        patch_bytes as f64 / (1024.0 * 1024.0),
        options.model,
        budget.max_tokens,
        times.len()
    );
    let _ = writeln!(
        out,
        "{:<34} {:>12} {:>12}  verdict",
        "metric", "value", "target"
    );
    let row = |out: &mut String, metric: &str, value: String, target: &str, verdict: &str| {
        let _ = writeln!(out, "{metric:<34} {value:>12} {target:>12}  {verdict}");
    };
    row(&mut out, "files", files.to_string(), "", "");
    row(&mut out, "in prompt", shown.to_string(), "", "");
    row(&mut out, "skipped", skipped.to_string(), "", "");
    for (reason, n) in &reasons {
        row(&mut out, &format!("  {reason}"), n.to_string(), "", "");
    }
    let partition_ok = shown + skipped == files && all_once;
    row(
        &mut out,
        "in + skipped",
        (shown + skipped).to_string(),
        &format!("={files}"),
        if partition_ok {
            "ok"
        } else {
            "WRONG (a file is missing or counted twice)"
        },
    );
    row(
        &mut out,
        "build time (median)",
        ms(median),
        &format!("<{}", ms(TARGET)),
        if median < TARGET { "ok" } else { "MISSED" },
    );
    row(&mut out, "build time (max)", ms(slowest), "", "");
    row(
        &mut out,
        "prompt tokens (est.)",
        prompt.estimated_tokens.to_string(),
        &format!("<={}", budget.max_tokens),
        if prompt.estimated_tokens <= budget.max_tokens {
            "ok"
        } else {
            "OVER BUDGET"
        },
    );
    row(
        &mut out,
        "user message",
        format!("{:.0} KiB", prompt.user.len() as f64 / 1024.0),
        "",
        "",
    );
    if !partition_ok {
        bail!("{out}every changed file must be in the prompt or in the skipped list");
    }
    Ok(out)
}

/// A deterministic pull request of `n` files with a realistic mix of kinds and patch sizes.
fn synthetic_pull_request(n: usize) -> ReviewInput {
    let mut rng = fastrand::Rng::with_seed(8);
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let area = i % 40;
        let roll = rng.u32(0..100);
        let (path, status, lines) = match roll {
            0..50 => {
                let ext = ["rs", "ts", "go", "py"][i % 4];
                (
                    format!("services/svc_{area}/src/module_{i}.{ext}"),
                    "modified",
                    size(&mut rng),
                )
            }
            50..65 => (
                format!("services/svc_{area}/tests/case_{i}.rs"),
                "added",
                size(&mut rng),
            ),
            65..73 => (
                format!("docs/area_{area}/page_{i}.md"),
                "modified",
                size(&mut rng),
            ),
            73..78 => (
                format!("deploy/env_{area}/config_{i}.yaml"),
                "modified",
                size(&mut rng),
            ),
            78..82 => (format!("web/app_{i}/package-lock.json"), "modified", 400),
            82..87 => (
                format!("vendor/github.com/dep_{area}/file_{i}.go"),
                "added",
                size(&mut rng),
            ),
            87..89 => (format!("web/static/bundle_{i}.min.js"), "modified", 3),
            89..92 => (
                format!("api/gen/service_{i}.pb.go"),
                "modified",
                size(&mut rng),
            ),
            92..96 => (format!("assets/area_{area}/image_{i}.png"), "added", 0),
            _ => (
                format!("services/svc_{area}/src/legacy_{i}.rs"),
                "removed",
                size(&mut rng),
            ),
        };
        let patch = (lines > 0).then(|| patch(&mut rng, lines, status == "removed"));
        let (additions, deletions) = patch.as_deref().map_or((0, 0), count_changes);
        files.push(PullFile {
            filename: path,
            status: status.to_owned(),
            additions,
            deletions,
            patch,
            previous_filename: None,
        });
    }
    ReviewInput {
        repository: "bench/monorepo".into(),
        number: 5000,
        title: "Rename the service framework across the monorepo".into(),
        body: "Moves every service to the new framework.\n\nFixes #1".into(),
        author: "bench".into(),
        draft: false,
        base: BranchRef {
            name: "main".into(),
            sha: "2".repeat(40),
        },
        head: BranchRef {
            name: "framework".into(),
            sha: "1".repeat(40),
        },
        changed_files: n as u64,
        files,
        commits: (0..120)
            .map(|i| CommitInfo {
                sha: format!("{i:040x}"),
                message: format!("Move service {i} to the new framework\n\nAnd its tests."),
            })
            .collect(),
        ci: CiState::default(),
        linked_issues: Vec::new(),
        instructions: ReviewInstructions::default(),
        scope: ReviewScope::all(),
    }
}

/// Changed lines of a file: most changes are small, some large, a few very large.
fn size(rng: &mut fastrand::Rng) -> usize {
    match rng.u32(0..100) {
        0..70 => rng.usize(1..40),
        70..95 => rng.usize(40..300),
        _ => rng.usize(300..1500),
    }
}

/// A patch of about `lines` changed lines in hunks of up to 40, with context around them.
fn patch(rng: &mut fastrand::Rng, lines: usize, deleted: bool) -> String {
    let mut out = String::with_capacity(lines * 48);
    let mut left = lines;
    let mut old = 1 + rng.usize(0..50);
    let mut new = old;
    while left > 0 {
        let changed = left.min(40);
        left -= changed;
        if deleted {
            let _ = writeln!(out, "@@ -{old},{changed} +0,0 @@");
            for k in 0..changed {
                let _ = writeln!(out, "-    let removed_{k} = compute({k});");
            }
            old += changed;
            continue;
        }
        let removed = changed / 3;
        let added = changed - removed;
        let _ = writeln!(
            out,
            "@@ -{old},{} +{new},{} @@ fn section_{old}() {{",
            removed + 6,
            added + 6
        );
        for k in 0..3 {
            let _ = writeln!(out, "     let context_{k} = value({k});");
        }
        for k in 0..removed {
            let _ = writeln!(out, "-    let old_{k} = compute_old(input, {k});");
        }
        for k in 0..added {
            let _ = writeln!(out, "+    let new_{k} = compute_new(input, {k})?;");
        }
        for k in 0..3 {
            let _ = writeln!(out, "     let tail_{k} = finish({k});");
        }
        old += removed + 6 + rng.usize(10..200);
        new += added + 6 + rng.usize(10..200);
    }
    out
}

fn count_changes(patch: &str) -> (u64, u64) {
    patch
        .lines()
        .fold((0, 0), |(a, d), line| match line.as_bytes().first() {
            Some(b'+') => (a + 1, d),
            Some(b'-') => (a, d + 1),
            _ => (a, d),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_pull_request_fits_its_budget_and_every_file_is_accounted_for() {
        let input = synthetic_pull_request(600);
        let budget = PromptBudget::for_model("anthropic/claude-sonnet-4-5");
        let prompt = build_review_prompt(&input, &budget);
        assert_eq!(prompt.included.len() + prompt.skipped.len(), 600);
        assert!(prompt.estimated_tokens <= budget.max_tokens);
        assert!(!prompt.included.is_empty());
        let tail = &prompt.user[prompt.user.find("## Changed files not shown").unwrap()..];
        println!("{}", &tail[..tail.len().min(3000)]);
    }

    #[test]
    fn the_table_says_whether_the_files_add_up() {
        let table = run(&ReviewContextOptions {
            files: 200,
            runs: 1,
            model: "openai/gpt-4.1".into(),
        })
        .unwrap();
        assert!(table.contains("in + skipped"), "{table}");
        assert!(table.contains("=200  ok"), "{table}");
    }
}
