//! Child processes for the tools (git, `run_command`): each in its own process group, with a
//! timeout, cancellation and capped output. When the command ends, times out or is cancelled,
//! or its future is dropped, the whole group is killed, so that nothing it started outlives the
//! call.
//!
//! Architecture Invariant: a process that leaves the group on purpose (`setsid`) escapes the
//! kill; the pipe readers give up on it after [`DRAIN_GRACE`].

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio_util::sync::CancellationToken;

/// How long the output pipes may stay open after the group was killed (a process that left the
/// group can hold them).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct ChildSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// Start from an empty environment instead of the host's.
    pub clear_env: bool,
    /// Variables set on top.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Bytes kept of stdout and of stderr each; the rest is counted and dropped.
    pub output_cap: usize,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// It exited (or died of a signal) by itself.
    Exited(ExitStatus),
    /// It ran past its timeout and its group was killed.
    TimedOut,
    /// The run was cancelled and its group was killed.
    Cancelled,
}

/// One stream's output.
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured {
    pub bytes: Vec<u8>,
    /// Bytes beyond the cap.
    pub dropped: u64,
    /// The pipe was still open after the grace period (a process outside the group held it).
    pub cut_short: bool,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

#[derive(Debug)]
pub(crate) struct ChildRun {
    pub end: ChildEnd,
    pub stdout: Captured,
    pub stderr: Captured,
    pub elapsed: Duration,
}

/// Kills the group when dropped before the child was reaped (the caller's future was dropped).
/// The CLI backends guard their child with it too.
pub(crate) struct GroupGuard {
    pub(crate) child: Box<dyn ChildWrapper>,
    /// Set once the child was waited for: nothing left to kill.
    pub(crate) reaped: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.start_kill();
        }
    }
}

/// Runs `spec` to its end, its timeout or `cancel`.
pub(crate) async fn run(spec: &ChildSpec, cancel: &CancellationToken) -> std::io::Result<ChildRun> {
    let started = Instant::now();
    let mut command = CommandWrap::with_new(&spec.program, |command| {
        command
            .args(&spec.args)
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if spec.clear_env {
            command.env_clear();
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    });
    command.wrap(ProcessGroup::leader());
    let mut guard = GroupGuard {
        child: command.spawn()?,
        reaped: false,
    };
    let stdout = Arc::new(Mutex::new(Captured::default()));
    let stderr = Arc::new(Mutex::new(Captured::default()));
    let stdout_reader = guard
        .child
        .stdout()
        .take()
        .map(|r| tokio::spawn(read_capped(r, spec.output_cap, stdout.clone())));
    let stderr_reader = guard
        .child
        .stderr()
        .take()
        .map(|r| tokio::spawn(read_capped(r, spec.output_cap, stderr.clone())));

    let end = tokio::select! {
        status = guard.child.wait() => ChildEnd::Exited(status?),
        () = tokio::time::sleep(spec.timeout) => ChildEnd::TimedOut,
        () = cancel.cancelled() => ChildEnd::Cancelled,
    };
    // The leader is done or must be: kill what is left of its group (background jobs, a
    // server it started) and reap the leader.
    let _ = guard.child.start_kill();
    if !matches!(end, ChildEnd::Exited(_)) {
        let _ = guard.child.wait().await;
    }
    guard.reaped = true;

    Ok(ChildRun {
        end,
        stdout: drain(stdout_reader, &stdout).await,
        stderr: drain(stderr_reader, &stderr).await,
        elapsed: started.elapsed(),
    })
}

async fn drain(
    reader: Option<tokio::task::JoinHandle<()>>,
    captured: &Mutex<Captured>,
) -> Captured {
    let mut cut_short = false;
    if let Some(mut reader) = reader
        && tokio::time::timeout(DRAIN_GRACE, &mut reader)
            .await
            .is_err()
    {
        reader.abort();
        cut_short = true;
    }
    let mut captured = captured
        .lock()
        .map(|c| c.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    captured.cut_short = cut_short;
    captured
}

async fn read_capped(mut reader: impl AsyncRead + Unpin, cap: usize, into: Arc<Mutex<Captured>>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Ok(mut captured) = into.lock() else { break };
                let room = cap.saturating_sub(captured.bytes.len()).min(n);
                captured.bytes.extend_from_slice(&buffer[..room]);
                captured.dropped += (n - room) as u64;
            }
        }
    }
}
