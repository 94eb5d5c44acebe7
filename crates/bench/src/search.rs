//! `kodiai bench search`: the agent's `search` tool against ripgrep (`rg`) on a generated tree
//! (50,000 files by default, a gitignored part included), each pattern searched alternately by
//! both, medians compared with the target of at most 1.2× rg's time. `search` is called through
//! the tool router with JSON arguments, as the agent calls it; rg runs as a child process with the
//! same file selection (`--hidden --no-require-git`: hidden files searched, .gitignore honoured
//! outside a git repository) and its output is read to the end.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kodiai_agent::tools::{
    ToolContext, ToolRegistry, ToolRouter, WorkspaceRoot, WorkspaceToolOptions, workspace_tools,
};
use kodiai_protocol::ToolCall;
use tokio::io::AsyncReadExt as _;

/// The issue's target: `search` takes at most this multiple of rg's time.
const TARGET_RATIO: f64 = 1.2;
/// Files of the tree that are under a gitignored directory (neither tool may search them).
const IGNORED_SHARE: u32 = 50;
/// Enough for every pattern's matches: a capped search would stop early and look faster.
const MAX_RESULTS: usize = 5000;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Files in the generated tree.
    pub files: u32,
    /// Timed searches per pattern and tool (after one warm-up each).
    pub runs: u32,
}

struct Pattern {
    label: &'static str,
    regex: &'static str,
    case_insensitive: bool,
}

const PATTERNS: [Pattern; 3] = [
    Pattern {
        label: "rare literal",
        regex: r"kodiai_needle_\d+",
        case_insensitive: false,
    },
    Pattern {
        label: "regex, -i",
        regex: r"frobnicate_[a-z]+\(",
        case_insensitive: true,
    },
    Pattern {
        label: "no match",
        regex: r"zz_nothing_[0-9]{4}zz",
        case_insensitive: false,
    },
];

/// Generates the tree, runs both tools, and returns the table.
pub async fn run(options: &SearchOptions) -> anyhow::Result<String> {
    let dir = tempfile::tempdir().context("creating the tree's folder")?;
    let tree = dir.path().to_owned();
    let files = options.files;
    let started = Instant::now();
    let bytes = tokio::task::spawn_blocking(move || generate_tree(&tree, files))
        .await
        .context("generating the tree")??;
    let generated_in = started.elapsed();

    let root = WorkspaceRoot::new(dir.path()).context("opening the tree as a workspace")?;
    let mut registry = ToolRegistry::new();
    registry.register_all(workspace_tools(&root, &WorkspaceToolOptions::default()).await)?;
    let router = ToolRouter::new(registry);
    let rg = rg_version().await;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench search: {files} files ({:.0} MiB, {} under a gitignored directory), \
         generated in {:.1}s; {} timed runs per pattern and tool, alternating, after a warm-up",
        bytes as f64 / (1024.0 * 1024.0),
        files / IGNORED_SHARE,
        generated_in.as_secs_f64(),
        options.runs
    );
    match &rg {
        Some(version) => {
            let _ = writeln!(out, "against {version}");
        }
        None => {
            let _ = writeln!(
                out,
                "rg (ripgrep) is not on PATH: only `search` is measured. Install it to compare \
                 (`apt-get install -y ripgrep` or `cargo install ripgrep`)."
            );
        }
    }
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>12} {:>12} {:>8} {:>8}  verdict",
        "pattern", "matches", "search p50", "rg p50", "ratio", "target"
    );
    for pattern in &PATTERNS {
        let (ours_count, _) = search_once(&router, pattern).await?;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let mut rg_count = None;
        if rg.is_some() {
            rg_count = Some(rg_once(dir.path(), pattern).await?.0);
        }
        for _ in 0..options.runs {
            ours.push(search_once(&router, pattern).await?.1);
            if rg.is_some() {
                theirs.push(rg_once(dir.path(), pattern).await?.1);
            }
        }
        let ours = median(&mut ours);
        let line = match (rg_count, theirs.is_empty()) {
            (Some(rg_count), false) => {
                let theirs = median(&mut theirs);
                let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
                let verdict = if rg_count != ours_count {
                    format!("MISMATCH (rg found {rg_count} lines)")
                } else if ratio <= TARGET_RATIO {
                    "ok".to_owned()
                } else {
                    "MISSED".to_owned()
                };
                format!(
                    "{:<14} {:>8} {:>12} {:>12} {:>8} {:>8}  {verdict}",
                    pattern.label,
                    ours_count,
                    millis(ours),
                    millis(theirs),
                    format!("{ratio:.2}x"),
                    format!("<={TARGET_RATIO}x"),
                )
            }
            _ => format!(
                "{:<14} {:>8} {:>12} {:>12} {:>8} {:>8}  not compared",
                pattern.label,
                ours_count,
                millis(ours),
                "-",
                "-",
                format!("<={TARGET_RATIO}x"),
            ),
        };
        let _ = writeln!(out, "{line}");
    }
    Ok(out)
}

fn millis(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// One `search` through the router: matching lines and time.
async fn search_once(router: &ToolRouter, pattern: &Pattern) -> anyhow::Result<(usize, Duration)> {
    let call = ToolCall {
        id: "bench".to_owned(),
        name: "search".to_owned(),
        arguments: serde_json::json!({
            "pattern": pattern.regex,
            "case_insensitive": pattern.case_insensitive,
            "max_results": MAX_RESULTS,
        }),
    };
    let started = Instant::now();
    let result = router.dispatch(&call, &ToolContext::default()).await?;
    let elapsed = started.elapsed();
    if result.output.is_error {
        bail!("search failed: {}", result.output.content);
    }
    let content = result.output.content;
    if content.contains("(stopped at ") {
        bail!("search hit its cap of {MAX_RESULTS} lines; the comparison would be unfair");
    }
    let count = if content == "no matches" {
        0
    } else {
        content.lines().count()
    };
    Ok((count, elapsed))
}

async fn rg_version() -> Option<String> {
    let output = tokio::process::Command::new("rg")
        .arg("--version")
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    output
        .status
        .success()
        .then(|| text.lines().next().unwrap_or("rg").to_owned())
}

/// One rg run over the tree, its output read to the end: matching lines and time.
async fn rg_once(tree: &Path, pattern: &Pattern) -> anyhow::Result<(usize, Duration)> {
    let mut command = tokio::process::Command::new("rg");
    command.args([
        "--hidden",
        "--no-require-git",
        "--line-number",
        "--no-heading",
        "--color",
        "never",
    ]);
    if pattern.case_insensitive {
        command.arg("--ignore-case");
    }
    command
        .arg("--regexp")
        .arg(pattern.regex)
        .arg(".")
        .current_dir(tree)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().context("starting rg")?;
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout).await.context("reading rg")?;
    }
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .context("rg took more than 5 minutes")??;
    let elapsed = started.elapsed();
    // rg exits 1 when nothing matched.
    if !status.success() && status.code() != Some(1) {
        bail!("rg failed: {status}");
    }
    Ok((stdout.iter().filter(|&&b| b == b'\n').count(), elapsed))
}

/// Writes `files` source-like files (about 40 lines each) under `tree`: `src/dNN/sNN/fNNN.rs`,
/// plus a `.gitignore`d `generated/` directory holding every `IGNORED_SHARE`th file. Returns the
/// bytes written.
fn generate_tree(tree: &Path, files: u32) -> anyhow::Result<u64> {
    const WORDS: [&str; 16] = [
        "alpha", "buffer", "config", "delta", "event", "frame", "graph", "handle", "index", "job",
        "kernel", "ledger", "mirror", "node", "order", "parser",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    std::fs::write(tree.join(".gitignore"), "generated/\n*.tmp\n")?;
    let mut bytes = 0u64;
    let mut text = String::new();
    for i in 0..files {
        let ignored = i % IGNORED_SHARE == IGNORED_SHARE - 1;
        let dir = if ignored {
            tree.join("generated").join(format!("g{:03}", i / 1000))
        } else {
            tree.join("src")
                .join(format!("d{:02}", i / 1000))
                .join(format!("s{:02}", (i / 100) % 10))
        };
        if i % 100 == 0 || ignored {
            std::fs::create_dir_all(&dir)?;
        }
        text.clear();
        let _ = writeln!(text, "//! Module {i}: generated for kodiai bench search.");
        for line in 0..40u32 {
            let a = WORDS[rng.usize(..WORDS.len())];
            let b = WORDS[rng.usize(..WORDS.len())];
            match line % 4 {
                0 => {
                    let _ = writeln!(text, "pub fn {a}_{b}_{line}(x: u64) -> u64 {{");
                }
                1 => {
                    let _ = writeln!(
                        text,
                        "    let {a} = x.wrapping_mul({}); // {b} {a}",
                        rng.u32(..)
                    );
                }
                2 => {
                    let _ = writeln!(text, "    {a}.checked_add({line}).unwrap_or({b}_DEFAULT)");
                }
                _ => text.push_str("}\n"),
            }
            if rng.u32(..1000) == 0 {
                let _ = writeln!(text, "    Frobnicate_{a}(x);");
            }
        }
        // Needles in searched and in ignored files (249 is ignored).
        if i % 500 == 250 || i % 500 == 249 {
            let _ = writeln!(text, "// kodiai_needle_{i}");
        }
        let name = if ignored {
            format!("f{i:05}.rs")
        } else {
            format!("f{:03}.rs", i % 100)
        };
        std::fs::write(dir.join(name), text.as_bytes())?;
        bytes += text.len() as u64;
    }
    Ok(bytes)
}
