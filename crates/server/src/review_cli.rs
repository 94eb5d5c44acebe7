//! `kodiai review`: reviews the current branch of a local git checkout against its base with
//! the configured model, no GitHub needed. The same prompt as a pull request's review (a
//! [`ReviewInput`] built from local git: the branch's name as title, its commits, the patches
//! of `base...HEAD`), the agent with the workspace tools and a local `create_inline_comment`
//! (the same tool, checking anchors against the local diff), then the findings printed with
//! file and line, or as JSON.
//!
//! `.kodiai.yml` and the guideline files are read from the base commit, as the bot reads them
//! from the default branch: a branch cannot change how it is reviewed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use kodiai_agent::Limits;
use kodiai_agent::backends::BackendKind;
use kodiai_agent::tools::WorkspaceRoot;
use kodiai_github::diff::Diff;
use kodiai_github::diff::anchor::{Placement, place};
use kodiai_github_app::context::git::{self, GitConfig};
use kodiai_github_app::context::{
    BranchRef, CiState, CommitInfo, GUIDELINE_FILES, PromptBudget, ReviewInput, ReviewInstructions,
    ReviewScope, build_review_prompt,
};
use kodiai_github_app::github_tools::review::fingerprint;
use kodiai_github_app::github_tools::{
    CreateInlineComment, Finding, INLINE_COMMENT_SERVER, SharedFindings, findings_of,
};
use kodiai_github_app::repo_config::{self, RepoConfig};
use kodiai_llm::{CallScope, NoRecorder};
use kodiai_protocol::FinishReason;
use kodiai_runtime::config::Config;
use kodiai_runtime::engine::{self, AgentSpec, Engines, ModelChoice, ToolGroups};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The arguments of `kodiai review`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the review found nothing, 1 when it has findings, \
    2 when it could not review (bad usage, no git checkout, the model failed or stopped early)."
)]
pub struct ReviewArgs {
    /// What the branch is reviewed against (its commits since the merge base with REF).
    /// Default: the remote's default branch (`origin/HEAD`), else `main`, else `master`.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Print the findings as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// The model, provider/model (default: the configured model and its fallbacks).
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,
    /// The checkout to review (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Model calls at most.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_turns: u32,
    /// Seconds the review may take.
    #[arg(long, value_name = "SECS", default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
}

/// One finding as printed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrintedFinding {
    pub path: String,
    /// Where it lands on the diff (for one outside it, the line the model named).
    pub line: u64,
    pub start_line: Option<u64>,
    /// `RIGHT` or `LEFT`.
    pub side: String,
    /// `exact`, `moved` (to the nearest line of the diff) or `outside_diff`.
    pub placement: &'static str,
    pub body: String,
    pub rule: Option<String>,
    pub fingerprint: String,
}

/// The whole command; see [`ReviewArgs`]'s exit status.
pub async fn command(config: &Config, args: ReviewArgs) -> ExitCode {
    match review(config, &args).await {
        Ok(report) => {
            let mut out = std::io::stdout();
            let text = if args.json {
                let mut line = report.json.to_string();
                line.push('\n');
                line
            } else {
                report.text
            };
            if out.write_all(text.as_bytes()).is_err() {
                return ExitCode::from(2);
            }
            if report.complete {
                ExitCode::from(u8::from(report.findings > 0))
            } else {
                let _ = writeln!(
                    std::io::stderr(),
                    "kodiai: the review did not finish: {}",
                    report.stopped
                );
                ExitCode::from(2)
            }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kodiai: {e}");
            ExitCode::from(2)
        }
    }
}

struct Report {
    text: String,
    json: serde_json::Value,
    findings: usize,
    complete: bool,
    stopped: String,
}

async fn review(config: &Config, args: &ReviewArgs) -> Result<Report, String> {
    let dir = &args.dir;
    let top = git::git(dir, GitConfig::User, &["rev-parse", "--show-toplevel"])
        .await
        .map_err(|e| format!("--dir {}: not a git checkout ({e})", dir.display()))?;
    let top = PathBuf::from(top.trim());
    let base = match &args.base {
        Some(base) if base.starts_with('-') || base.trim().is_empty() => {
            return Err(format!("--base {base:?}: not a git revision"));
        }
        Some(base) => base.clone(),
        None => default_base(&top).await?,
    };
    let rev = |r: String| {
        let top = top.clone();
        async move {
            git::git(
                &top,
                GitConfig::User,
                &["rev-parse", "--verify", "--quiet", &r],
            )
            .await
            .map(|s| s.trim().to_owned())
        }
    };
    let base_sha = rev(format!("{base}^{{commit}}"))
        .await
        .map_err(|_| format!("--base {base}: no such commit"))?;
    let head_sha = rev("HEAD^{commit}".into())
        .await
        .map_err(|_| "HEAD: the checkout has no commit".to_owned())?;
    let merge_base = git::git(&top, GitConfig::User, &["merge-base", &base_sha, &head_sha])
        .await
        .map(|s| s.trim().to_owned())
        .map_err(|_| format!("--base {base}: it has no common history with HEAD"))?;
    let branch = git::git(
        &top,
        GitConfig::User,
        &["rev-parse", "--abbrev-ref", "HEAD"],
    )
    .await
    .map(|s| s.trim().to_owned())
    .unwrap_or_else(|_| "HEAD".into());
    let files = git::diff_files(&top, GitConfig::User, &merge_base, &head_sha).await?;

    let repo_config = match show(&top, &merge_base, ".kodiai.yml").await {
        Some(text) => repo_config::parse(&text).config,
        None => RepoConfig::default(),
    };
    let mut guidelines = Vec::new();
    for path in GUIDELINE_FILES {
        if path.ends_with("CONTRIBUTING.md")
            && guidelines
                .iter()
                .any(|(p, _): &(String, String)| p.ends_with("CONTRIBUTING.md"))
        {
            continue;
        }
        if let Some(text) = show(&top, &merge_base, path).await {
            guidelines.push((path.to_owned(), text));
        }
    }
    let input = ReviewInput {
        repository: top
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        number: 0,
        title: branch.clone(),
        body: String::new(),
        author: git::git(
            &top,
            GitConfig::User,
            &["log", "-1", "--format=%an", &head_sha],
        )
        .await
        .map(|s| s.trim().to_owned())
        .unwrap_or_default(),
        draft: false,
        base: BranchRef {
            name: base.clone(),
            sha: merge_base.clone(),
        },
        head: BranchRef {
            name: branch,
            sha: head_sha.clone(),
        },
        changed_files: files.len() as u64,
        files,
        commits: commits(&top, &merge_base, &head_sha).await?,
        ci: CiState::default(),
        linked_issues: Vec::new(),
        instructions: ReviewInstructions {
            config_prompt: repo_config.review.prompt.clone(),
            guidelines,
        },
        scope: ReviewScope::from_settings(&repo_config.review),
    };
    if input.files.is_empty() {
        let json = json!({"base": base, "merge_base": merge_base, "head": head_sha,
            "findings": [], "summary": "", "outcome": "nothing_to_review"});
        return Ok(Report {
            text: format!("Nothing to review: HEAD has no changes since {base}.\n"),
            json,
            findings: 0,
            complete: true,
            stopped: String::new(),
        });
    }

    let engines = Engines::new(config, BackendKind::Native, Arc::new(NoRecorder), None);
    let choice = args
        .model
        .as_deref()
        .map_or(ModelChoice::Configured, ModelChoice::Only);
    let engine = engines.engine(choice, CallScope::default())?;
    let model_name = engine.model_name();
    let prompt = build_review_prompt(&input, &PromptBudget::for_model(&model_name));
    let diff = Arc::new(Diff::from_pull_files(&input.files));
    let root = WorkspaceRoot::new(&top).map_err(|e| format!("{}: {e}", top.display()))?;
    let findings = SharedFindings::default();
    let mut tools = ToolGroups::default();
    tools.add(
        INLINE_COMMENT_SERVER,
        Arc::new(CreateInlineComment::new(
            Arc::clone(&diff),
            Arc::clone(&findings),
        )),
    );
    let spec = AgentSpec {
        system: prompt.system,
        instructions: prompt.user,
        root,
        run_command: config.agent.allows("run_command"),
        tools,
        limits: Limits {
            max_turns: args.max_turns,
            timeout: Some(Duration::from_secs(args.timeout)),
            budget_usd: None,
        },
        cancel: CancellationToken::new(),
    };
    let run = engine::start(&engines, engine, spec)
        .await
        .map_err(|e| e.to_string())?;
    let cancel = run.run.cancel_token();
    let watcher = tokio::spawn(async move {
        crate::server::shutdown_signal().await;
        cancel.cancel();
    });
    let outcome = run.outcome().await;
    watcher.abort();

    let printed: Vec<PrintedFinding> = findings_of(&findings)
        .into_iter()
        .map(|f| printed(&diff, &top, f))
        .collect();
    let complete = outcome.reason == FinishReason::Completed;
    let stopped = match outcome.reason {
        FinishReason::Completed => String::new(),
        FinishReason::Error => outcome.error.clone().unwrap_or_else(|| "an error".into()),
        other => other.as_str().to_owned(),
    };
    let mut text = String::new();
    for f in &printed {
        let at = match f.start_line {
            Some(start) => format!("{}:{start}-{}", f.path, f.line),
            None => format!("{}:{}", f.path, f.line),
        };
        let note = match f.placement {
            "moved" => " (moved onto the diff)",
            "outside_diff" => " (outside the diff)",
            _ => "",
        };
        let mut lines = f.body.lines();
        text.push_str(&format!("{at}{note}: {}\n", lines.next().unwrap_or("")));
        for line in lines {
            text.push_str(&format!("    {line}\n"));
        }
    }
    if !outcome.text.trim().is_empty() {
        text.push_str(&format!("\n{}\n", outcome.text.trim()));
    }
    text.push_str(&format!(
        "\n{} finding(s) on {} file(s) changed since {base} ({model_name}, {} turn(s), ${:.4}).\n",
        printed.len(),
        input.files.len(),
        outcome.turns,
        outcome.cost_usd
    ));
    let json = json!({
        "base": base,
        "merge_base": merge_base,
        "head": head_sha,
        "model": model_name,
        "outcome": outcome.reason.as_str(),
        "error": outcome.error,
        "findings": printed,
        "summary": outcome.text,
        "files_in_prompt": prompt.included,
        "files_skipped": prompt.skipped.iter().map(|s| &s.path).collect::<Vec<_>>(),
        "turns": outcome.turns,
        "cost_usd": outcome.cost_usd,
    });
    Ok(Report {
        text,
        json,
        findings: printed.len(),
        complete,
        stopped,
    })
}

/// A finding placed on the local diff.
fn printed(diff: &Diff, top: &Path, finding: Finding) -> PrintedFinding {
    let p = &finding.proposed;
    let (placement, path, start_line, line) = match place(diff, p) {
        Placement::Exact(c) => ("exact", c.path, c.start_line, c.line),
        Placement::Moved { comment: c, .. } => ("moved", c.path, c.start_line, c.line),
        Placement::Summary(u) => ("outside_diff", u.path, u.start_line, u.line),
    };
    let code = std::fs::read_to_string(top.join(&path))
        .ok()
        .map(|text| {
            let start = start_line.unwrap_or(line).max(1);
            text.lines()
                .skip(usize::try_from(start - 1).unwrap_or(usize::MAX))
                .take(
                    usize::try_from(line.saturating_sub(start) + 1)
                        .unwrap_or(0)
                        .min(200),
                )
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    PrintedFinding {
        fingerprint: fingerprint(finding.rule.as_deref(), &p.body, &path, &code),
        path,
        line,
        start_line,
        side: p.side.as_str().to_owned(),
        placement,
        body: p.body.clone(),
        rule: finding.rule,
    }
}

/// The remote's default branch, else `main`, else `master`.
async fn default_base(top: &Path) -> Result<String, String> {
    if let Ok(name) = git::git(
        top,
        GitConfig::User,
        &[
            "symbolic-ref",
            "--quiet",
            "--short",
            "refs/remotes/origin/HEAD",
        ],
    )
    .await
    {
        return Ok(name.trim().to_owned());
    }
    for name in ["main", "master"] {
        if git::git(
            top,
            GitConfig::User,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{name}^{{commit}}"),
            ],
        )
        .await
        .is_ok()
        {
            return Ok(name.to_owned());
        }
    }
    Err("no base branch found (no origin/HEAD, main or master): pass --base REF".into())
}

/// A file's text at `commit`, if it is there and is text.
async fn show(top: &Path, commit: &str, path: &str) -> Option<String> {
    git::git(top, GitConfig::User, &["show", &format!("{commit}:{path}")])
        .await
        .ok()
        .filter(|text| !text.contains('\0'))
}

/// The commits of `from..to`, oldest first.
async fn commits(top: &Path, from: &str, to: &str) -> Result<Vec<CommitInfo>, String> {
    let log = git::git(
        top,
        GitConfig::User,
        &[
            "log",
            "--reverse",
            "--format=%H%x00%B%x1e",
            &format!("{from}..{to}"),
        ],
    )
    .await?;
    Ok(log
        .split('\u{1e}')
        .filter_map(|entry| {
            let (sha, message) = entry.trim_start_matches('\n').split_once('\0')?;
            Some(CommitInfo {
                sha: sha.to_owned(),
                message: message.trim().to_owned(),
            })
        })
        .collect())
}
