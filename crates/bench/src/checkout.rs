//! `kodiai bench checkout`: what a job pays for its workspace. Generates a repository (by
//! default 20,000 files and 5,000 commits, with `git fast-import`), serves it over local smart
//! HTTP with a token ([`kodiai_git_server::GitHttpServer`]), and times, in one run, `git clone
//! --depth=50` (what a job would pay without the mirror cache) against a job checkout from a
//! warm mirror after a new commit on the pull request (an incremental fetch, and a parked
//! worktree reset to the commit; a new worktree is shown beside it).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kodiai_agent::workspace::{CheckoutRequest, Remote, Settings, Target, Workspaces};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncWriteExt;

use kodiai_git_server::GitHttpServer;

/// The target: the warm checkout takes at most this share of the clone.
const WARM_SHARE_TARGET: f64 = 0.10;

/// What `kodiai bench checkout` runs.
#[derive(Debug, Clone)]
pub struct CheckoutOptions {
    pub files: u32,
    pub commits: u32,
    /// Measurements of each step.
    pub runs: u32,
    /// Workspace settings (identity, git timeout); the root and limits are the bench's own.
    pub settings: Settings,
}

/// Runs the benchmark and returns the table.
pub async fn checkout(options: &CheckoutOptions) -> anyhow::Result<String> {
    if options.files == 0 || options.commits == 0 || options.runs == 0 {
        bail!("--files, --commits and --runs must be at least 1");
    }
    let dir = tempfile::tempdir().context("creating the bench folder")?;
    let repos = dir.path().join("repos");
    let bare = repos.join("bench").join("big.git");
    tokio::fs::create_dir_all(&bare).await?;
    let token = SecretString::from(format!("ghs_bench{:016x}", fastrand::u64(..)));

    let generated = Instant::now();
    git(
        &bare,
        &["init", "--bare", "--quiet", "--initial-branch=main"],
        &[],
    )
    .await?;
    generate(&bare, options.files, options.commits).await?;
    git(&bare, &["repack", "-a", "-d", "-b", "--quiet"], &[]).await?;
    let generate_time = generated.elapsed();
    let packed = pack_bytes(&bare).await?;

    let server = GitHttpServer::start(&repos, token.clone()).await?;
    let url = server.url("bench/big");
    let remote = Remote::new(url.clone(), token.clone())?;
    let auth_env = auth_env(&url, &token);
    let auth: Vec<(&str, &str)> = auth_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let mut clones = Vec::new();
    for run in 0..options.runs {
        let target = dir.path().join(format!("clone-{run}"));
        let target_text = target.to_string_lossy().into_owned();
        let started = Instant::now();
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "--depth=50",
                "--no-tags",
                url.as_str(),
                &target_text,
            ],
            &auth,
        )
        .await?;
        clones.push(started.elapsed());
        tokio::fs::remove_dir_all(&target).await?;
    }

    let mut settings = options.settings.clone();
    settings.root = dir.path().join("workspaces");
    settings.cache_quota_bytes = u64::MAX;
    settings.max_repository_bytes = u64::MAX;
    let workspaces = Workspaces::open(settings).await?;
    let request = |job: String| CheckoutRequest {
        job,
        remote: remote.clone(),
        target: Target::PullRequest {
            number: 1,
            head_sha: None,
        },
        also_fetch: vec!["main".to_owned()],
        size_hint_bytes: None,
    };
    new_pull_request_commit(&bare, 0).await?;
    let started = Instant::now();
    let first = workspaces.checkout(request("cold".into())).await?;
    let cold = started.elapsed();
    first.remove().await?;

    // A warm mirror but no parked worktree to take (another job holds it): a new worktree.
    let holder = workspaces.checkout(request("holder".into())).await?;
    new_pull_request_commit(&bare, 1).await?;
    let started = Instant::now();
    let fresh = workspaces.checkout(request("fresh".into())).await?;
    let fresh_time = started.elapsed();
    if fresh.recycled() {
        bail!("the new-worktree checkout took a parked worktree");
    }
    fresh.remove().await?;
    holder.remove().await?;

    let mut warm = Vec::new();
    let mut removals = Vec::new();
    for run in 0..options.runs {
        new_pull_request_commit(&bare, run + 2).await?;
        let started = Instant::now();
        let checkout = workspaces.checkout(request(format!("warm-{run}"))).await?;
        warm.push(started.elapsed());
        if checkout.fetch_report().created_mirror || !checkout.recycled() {
            bail!("the warm checkout did not reuse the mirror and a parked worktree");
        }
        let started = Instant::now();
        checkout.remove().await?;
        removals.push(started.elapsed());
    }

    let clone_p50 = median(&clones);
    let warm_p50 = median(&warm);
    let share = warm_p50.as_secs_f64() / clone_p50.as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench checkout: generated repository of {} files and {} commits ({:.1} MiB packed, generated in {:.1}s), served over local smart HTTP (git http-backend) with a token; {} runs each",
        options.files,
        options.commits,
        packed as f64 / (1024.0 * 1024.0),
        generate_time.as_secs_f64(),
        options.runs,
    );
    let _ = writeln!(out, "{:<46} {:>9} {:>9} {:>9}", "step", "min", "p50", "max");
    for (name, samples) in [
        ("git clone --depth=50", clones.as_slice()),
        ("job checkout, no mirror yet (creates it)", &[cold][..]),
        ("job checkout, warm mirror, new worktree", &[fresh_time][..]),
        (
            "job checkout, warm mirror, parked worktree",
            warm.as_slice(),
        ),
        (
            "job end (worktree parked, folder removed)",
            removals.as_slice(),
        ),
    ] {
        let _ = writeln!(
            out,
            "{:<46} {:>9} {:>9} {:>9}",
            name,
            ms(min(samples)),
            ms(median(samples)),
            ms(max(samples)),
        );
    }
    let _ = writeln!(
        out,
        "(each job checkout fetches one new commit on the pull request; the new-worktree and first rows are one sample each)"
    );
    let _ = writeln!(
        out,
        "warm mirror, new worktree / clone: {:.1}%",
        fresh_time.as_secs_f64() / clone_p50.as_secs_f64() * 100.0
    );
    let _ = writeln!(
        out,
        "warm checkout (parked worktree) / clone (p50): {:.1}%   target: at most {:.0}%   {}",
        share * 100.0,
        WARM_SHARE_TARGET * 100.0,
        if share <= WARM_SHARE_TARGET {
            "ok"
        } else {
            "MISSED"
        }
    );
    drop(server);
    Ok(out)
}

fn ms(d: Duration) -> String {
    format!("{:.0}ms", d.as_secs_f64() * 1000.0)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn min(samples: &[Duration]) -> Duration {
    samples.iter().copied().min().unwrap_or_default()
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

/// The environment that authenticates a plain `git clone` to `url`'s origin, as the workspace
/// module does it (the header through `GIT_CONFIG_*`, never in the URL).
fn auth_env(url: &url::Url, token: &SecretString) -> Vec<(String, String)> {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("x-access-token:{}", token.expose_secret()));
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        (
            "GIT_CONFIG_KEY_0".into(),
            format!("http.{}/.extraHeader", url.origin().ascii_serialization()),
        ),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("Authorization: Basic {basic}"),
        ),
    ]
}

/// Runs git in `cwd` with a clean environment (plus `env`); fails with its error output.
async fn git(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
    let output = git_command(cwd, args, env)
        .output()
        .await
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn git_command(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", cwd)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

async fn pack_bytes(bare: &Path) -> anyhow::Result<u64> {
    let out = git(bare, &["count-objects", "-v"], &[]).await?;
    let kib = out
        .lines()
        .find_map(|l| l.strip_prefix("size-pack:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(kib * 1024)
}

/// Words that make the generated files look like source text (and compress like it).
const WORDS: &[&str] = &[
    "let", "fn", "match", "self", "return", "value", "error", "config", "request", "response",
    "async", "await", "impl", "struct", "pub", "use", "mod", "String", "Vec", "Option", "Some",
    "None", "Ok", "Err", "result", "index", "count", "items", "for", "in", "if", "else", "while",
    "loop", "break", "true", "false", "path", "file", "buffer", "stream", "handler", "state",
    "client", "server", "token", "queue", "worker", "job", "event",
];

/// A file of 20 to 60 lines of words.
fn file_text(rng: &mut fastrand::Rng, out: &mut Vec<u8>) {
    let lines = rng.usize(20..60);
    for _ in 0..lines {
        let indent = rng.usize(0..4) * 4;
        out.extend(std::iter::repeat_n(b' ', indent));
        for w in 0..rng.usize(3..10) {
            if w > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(WORDS[rng.usize(..WORDS.len())].as_bytes());
        }
        out.extend_from_slice(b";\n");
    }
}

/// Twenty files a folder, fifty folders a module: a layout like a real source tree.
fn file_path(i: u32) -> String {
    format!("src/m{:03}/d{:02}/f{i:05}.rs", i / 1000, (i / 20) % 50)
}

/// Writes `commits` commits to `refs/heads/main` of `bare` through `git fast-import`: the first
/// adds `files` files, each next one changes three of them.
async fn generate(bare: &Path, files: u32, commits: u32) -> anyhow::Result<()> {
    let mut child = git_command(bare, &["fast-import", "--quiet"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting git fast-import")?;
    let mut stdin = child.stdin.take().context("fast-import stdin")?;
    let mut rng = fastrand::Rng::with_seed(5);
    let mut chunk = Vec::with_capacity(1 << 20);
    let mut content = Vec::new();
    for c in 1..=commits {
        let message = format!("change {c}\n");
        let _ = write!(
            Bytes(&mut chunk),
            "commit refs/heads/main\nmark :{c}\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}",
            1_700_000_000 + u64::from(c) * 60,
            message.len()
        );
        if c > 1 {
            let _ = writeln!(Bytes(&mut chunk), "from :{}", c - 1);
        }
        let changed: Vec<u32> = if c == 1 {
            (0..files).collect()
        } else {
            (0..3).map(|_| rng.u32(..files)).collect()
        };
        for i in changed {
            content.clear();
            file_text(&mut rng, &mut content);
            let _ = write!(
                Bytes(&mut chunk),
                "M 100644 inline {}\ndata {}\n",
                file_path(i),
                content.len()
            );
            chunk.extend_from_slice(&content);
            chunk.push(b'\n');
            if chunk.len() > (1 << 20) {
                stdin.write_all(&chunk).await?;
                chunk.clear();
            }
        }
        chunk.push(b'\n');
    }
    stdin.write_all(&chunk).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Adds one commit on top of `main` (or of the pull request) as `refs/pull/1/head`, the way a
/// contributor's new push shows up.
async fn new_pull_request_commit(bare: &Path, n: u32) -> anyhow::Result<()> {
    let parent = if n == 0 {
        "refs/heads/main"
    } else {
        "refs/pull/1/head"
    };
    let message = format!("pr change {n}\n");
    let content = format!("{n}\n");
    let input = format!(
        "commit refs/pull/1/head\ncommitter Contributor <c@example.com> 1800000000 +0000\ndata {}\n{message}from {parent}^0\nM 100644 inline pr/change.txt\ndata {}\n{content}\n",
        message.len(),
        content.len()
    );
    let mut child = git_command(bare, &["fast-import", "--quiet"], &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("fast-import stdin")?;
    stdin.write_all(input.as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        bail!(
            "git fast-import failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `write!` into a byte buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}
