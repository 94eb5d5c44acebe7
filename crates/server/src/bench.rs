//! `kodiai bench …`: measurements of the real binary on this machine, printed as a table beside
//! the targets they are held to.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// Targets of the foundation issue.
const STARTUP_TARGET: Duration = Duration::from_millis(100);
const RSS_TARGET_KIB: u64 = 30 * 1024;

/// One start of the server.
struct StartupSample {
    to_ready: Duration,
    rss_kib: u64,
}

/// Starts `exe serve` `runs` times, each on a new SQLite file in a new data folder, and measures
/// the time from spawn to the first 200 from `/ready`, and the resident memory right then.
pub async fn startup(exe: &Path, runs: u32) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let mut samples = Vec::new();
    for _ in 0..runs {
        samples.push(start_once(exe, &client).await?);
    }

    let mut times: Vec<f64> = samples
        .iter()
        .map(|s| s.to_ready.as_secs_f64() * 1000.0)
        .collect();
    let mut rss: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "kodiai bench startup: {runs} cold starts of `kodiai serve`, each on a new SQLite file"
    );
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>9} {:>9} {:>9} {:>10}  verdict",
        "metric", "min", "p50", "p90", "max", "target"
    );
    for (name, unit, values, target) in [
        (
            "start to /ready 200",
            "ms",
            &times,
            STARTUP_TARGET.as_secs_f64() * 1000.0,
        ),
        (
            "RSS when ready",
            "MiB",
            &rss,
            RSS_TARGET_KIB as f64 / 1024.0,
        ),
    ] {
        let p90 = percentile(values, 0.9);
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>9} {:>9} {:>10}  {}",
            name,
            format!("{:.1}{unit}", percentile(values, 0.0)),
            format!("{:.1}{unit}", percentile(values, 0.5)),
            format!("{p90:.1}{unit}"),
            format!("{:.1}{unit}", percentile(values, 1.0)),
            format!("<{target:.0}{unit}"),
            if p90 < target {
                "ok (p90 under target)"
            } else {
                "MISSED (p90 over target)"
            },
        );
    }
    Ok(out)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn start_once(exe: &Path, client: &reqwest::Client) -> anyhow::Result<StartupSample> {
    let dir = tempfile::tempdir().context("creating a data folder")?;
    let started = Instant::now();
    let server = ServeProcess::start(exe, dir.path(), &[]).await?;
    let url = format!("http://{}/ready", server.addr);
    let to_ready = loop {
        if client
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("/ready did not answer 200 within 30 s");
        }
        tokio::task::yield_now().await;
    };
    let rss_kib = server.pid().map_or(0, resident_kib);
    server.kill().await;
    Ok(StartupSample { to_ready, rss_kib })
}

/// `kodiai serve` as a child process on a new data folder, port 0 and JSON logs; used by the
/// benchmarks and by the tests that need a real process (signals, exit codes).
pub struct ServeProcess {
    pub child: Child,
    /// The address from the server's `listening` log line.
    pub addr: SocketAddr,
    /// Every later log line, parsed.
    pub logs: mpsc::UnboundedReceiver<serde_json::Value>,
}

impl ServeProcess {
    /// Starts `exe serve` with `env` on top of a clean environment for kodiai's own settings,
    /// and returns once it logged the address it listens on.
    pub async fn start(exe: &Path, data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env_remove("KODIAI_CONFIG")
            .env("KODIAI_DATA_DIR", data_dir)
            .env("KODIAI_HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout from the server")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next_line().await? else {
                bail!("the server exited before it listened");
            };
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if entry["message"] == "listening" {
                let addr = entry["addr"].as_str().unwrap_or_default();
                break addr
                    .parse()
                    .with_context(|| format!("the server logged a bad address {addr:?}"))?;
            }
        };
        // Keep reading, so that the server never blocks on a full pipe.
        let (sender, logs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(entry) = serde_json::from_str(&line) {
                    let _ = sender.send(entry);
                }
            }
        });
        Ok(Self { child, addr, logs })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits for the next log line whose message is `message`; `None` if the process exited first.
    pub async fn wait_for_log(&mut self, message: &str) -> Option<serde_json::Value> {
        while let Some(entry) = self.logs.recv().await {
            if entry["message"] == message {
                return Some(entry);
            }
        }
        None
    }

    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// VmRSS of a process, from /proc (0 where there is no /proc).
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
