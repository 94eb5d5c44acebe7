//! Running a CLI: its scratch folder (HOME, TMPDIR, configuration files, the tool socket), its
//! environment (nothing of the host's but `PATH`), the child in its own process group, its
//! output read as events, and how the run ended (exit codes, limits, cancellation), with the
//! credential redacted from what it printed.

use super::*;

/// The bytes of stderr kept for error messages.
pub(super) const STDERR_TAIL: usize = 4096;
/// How long the child may take to exit after closing its stdout before its group is killed.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long stderr may stay open after the group was killed (a process that left the group).
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(2);

pub(super) struct Emitter {
    sender: mpsc::Sender<AgentEvent>,
    detached: bool,
}

impl Emitter {
    async fn emit(&mut self, event: AgentEvent) {
        if !self.detached && self.sender.send(event).await.is_err() {
            self.detached = true;
        }
    }

    async fn flush(&mut self, tracker: &mut Tracker) {
        for event in std::mem::take(&mut tracker.events) {
            self.emit(event).await;
        }
    }
}

/// Ends the run: the `error` event (when failed) and the one `finished`.
pub(super) async fn finish(
    out: &mut Emitter,
    tracker: &mut Tracker,
    instructions: String,
    reason: FinishReason,
    error: Option<String>,
) -> RunOutcome {
    out.flush(tracker).await;
    let result = tracker.result.take();
    let text = result
        .as_ref()
        .and_then(|r| r.text.clone())
        .unwrap_or_else(|| tracker.text.clone());
    let usage = result
        .as_ref()
        .and_then(|r| r.usage)
        .unwrap_or(tracker.usage);
    let cost_usd = result
        .as_ref()
        .and_then(|r| r.cost_usd)
        .unwrap_or(tracker.cost_usd);
    if let Some(message) = &error {
        out.emit(AgentEvent::Error {
            message: message.clone(),
        })
        .await;
    }
    out.emit(AgentEvent::Finished {
        reason,
        turns: tracker.turns,
        usage,
        cost_usd,
        text: text.clone(),
    })
    .await;
    let mut messages = vec![Message::user(instructions)];
    if !text.is_empty() {
        messages.push(Message {
            role: kodiai_llm::Role::Assistant,
            content: vec![kodiai_llm::ContentBlock::text(text.clone())],
        });
    }
    RunOutcome {
        reason,
        error,
        messages,
        text,
        turns: tracker.turns,
        usage,
        cost_usd,
    }
}

/// The environment of the child, built from nothing.
pub(super) fn environment(
    task: &CliTask,
    home: &Path,
    tmp: &Path,
    extra: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let home = home.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), task.path.clone()),
        ("HOME".into(), home.clone()),
        ("TMPDIR".into(), tmp.display().to_string()),
        ("XDG_CONFIG_HOME".into(), format!("{home}/.config")),
        ("XDG_CACHE_HOME".into(), format!("{home}/.cache")),
        ("XDG_DATA_HOME".into(), format!("{home}/.local/share")),
        ("XDG_STATE_HOME".into(), format!("{home}/.local/state")),
        ("LANG".into(), "C.UTF-8".into()),
        ("LC_ALL".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
        ("NO_COLOR".into(), "1".into()),
        ("CI".into(), "true".into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
    ];
    env.extend(extra);
    if let Some(credential) = &task.credential {
        let (name, secret) = credential.variable();
        env.push((name.to_owned(), secret.expose_secret().to_owned()));
    }
    env.extend(task.env.iter().cloned());
    env
}

/// `text` with the credential's value replaced (a CLI could echo it in an error).
pub(super) fn redact(text: &str, credential: Option<&CliCredential>) -> String {
    match credential.map(|c| c.variable().1.expose_secret()) {
        Some(secret) if !secret.is_empty() => text.replace(secret, "[REDACTED]"),
        _ => text.to_owned(),
    }
}

pub(super) async fn read_tail(mut reader: impl AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buffer = [0u8; 8 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Ok(mut tail) = into.lock() else { break };
                tail.extend_from_slice(&buffer[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL);
                tail.drain(..excess);
            }
        }
    }
}

/// The run's scratch folder: the CLI's HOME and TMPDIR, its configuration files, the tool
/// socket. Removed at the end of the run, once the group is gone.
pub(super) fn scratch_folder(task: &CliTask, name: &str) -> Result<tempfile::TempDir, String> {
    let failed = |e: std::io::Error| format!("cannot create the scratch folder for `{name}`: {e}");
    let mut builder = tempfile::Builder::new();
    builder.prefix("kodiai-cli-");
    let scratch = match &task.scratch_in {
        Some(parent) => {
            use std::os::unix::fs::DirBuilderExt as _;
            if !parent.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(failed)?;
            }
            builder.tempdir_in(parent)
        }
        None => builder.tempdir(),
    }
    .map_err(failed)?;
    std::fs::create_dir_all(scratch.path().join("home"))
        .and_then(|()| std::fs::create_dir_all(scratch.path().join("tmp")))
        .map_err(|e| format!("cannot create the scratch folder for `{name}`: {e}"))?;
    Ok(scratch)
}

/// The MCP servers the CLI is given: the task's own, and for each served tool group a relay to
/// the [`ToolSocket`] started here in `scratch` (`None` when nothing is served).
pub(super) fn serve_tools(
    task: &CliTask,
    scratch: &Path,
) -> Result<(Option<ToolSocket>, McpServers), String> {
    let mut servers = task.mcp_servers.clone();
    if task.served.is_empty() {
        return Ok((None, servers));
    }
    let relay = task
        .relay
        .as_ref()
        .ok_or("the task serves tools but names no relay command")?;
    let socket = ToolSocket::start(
        &scratch.join("tools.sock"),
        task.served.clone(),
        &task.cancel,
    )
    .map_err(|e| format!("cannot serve the task's tools: {e}"))?;
    let env: serde_json::Map<String, serde_json::Value> = socket
        .relay_env()
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    for (group, _) in &task.served {
        let mut args = relay.args.clone();
        args.push(group.clone());
        let mut entry = serde_json::json!({
            "command": relay.program.display().to_string(),
            "args": args,
            "env": env,
        });
        if task.cli == Cli::GeminiCli {
            // kodiai's own tools run without the confirmation a headless run cannot give.
            entry["trust"] = serde_json::Value::Bool(true);
        }
        servers.insert(group.clone(), entry);
    }
    Ok((Some(socket), servers))
}

/// Starts the CLI of `task` in its own process group, with HOME and TMPDIR in `scratch` and
/// `mcp_servers` as its MCP configuration. The error says, for the run's end, what failed.
pub(super) fn spawn_cli(
    task: &CliTask,
    name: &str,
    scratch: &Path,
    mcp_servers: &McpServers,
) -> Result<GroupGuard, String> {
    let home = scratch.join("home");
    let tmp = scratch.join("tmp");
    let invocation = match task.cli {
        Cli::ClaudeCode => claude_code::invocation(task, mcp_servers, scratch),
        Cli::GeminiCli => gemini_cli::invocation(task, mcp_servers, scratch, &home),
    }
    .map_err(|e| format!("cannot write the configuration of `{name}`: {e}"))?;
    let env = environment(task, &home, &tmp, invocation.env);
    let mut command = CommandWrap::with_new(&task.program, |command| {
        command
            .args(&invocation.args)
            .current_dir(&task.workdir)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    });
    command.wrap(ProcessGroup::leader());
    let child = command
        .spawn()
        .map_err(|e| format!("cannot start `{name}`: {e}"))?;
    Ok(GroupGuard {
        child,
        reaped: false,
    })
}

pub(super) async fn drive(task: CliTask, sender: mpsc::Sender<AgentEvent>) -> RunOutcome {
    let deadline = task.limits.timeout.map(|t| Instant::now() + t);
    let reader = sender.clone();
    let mut out = Emitter {
        sender,
        detached: false,
    };
    let mut tracker = Tracker::new(task.cli, task.prices.clone(), task.limits.max_turns);
    let instructions = task.instructions.clone();
    let name = task.program.display().to_string();

    // The scratch folder and the tool socket are removed at the end, once the group is gone.
    let started = scratch_folder(&task, &name).and_then(|scratch| {
        let (socket, servers) = serve_tools(&task, scratch.path())?;
        let guard = spawn_cli(&task, &name, scratch.path(), &servers)?;
        Ok((scratch, socket, guard))
    });
    let (scratch, socket, mut guard) = match started {
        Ok(started) => started,
        Err(message) => {
            return finish(
                &mut out,
                &mut tracker,
                instructions,
                FinishReason::Error,
                Some(message),
            )
            .await;
        }
    };
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let stderr_reader = guard
        .child
        .stderr()
        .take()
        .map(|r| tokio::spawn(read_tail(r, stderr.clone())));
    let mut parser = match task.cli {
        Cli::ClaudeCode => Parser::Claude(claude_code::Parser::default()),
        Cli::GeminiCli => Parser::Gemini(gemini_cli::Parser::default()),
    };

    // Read the events as they come, until the output ends or a limit stops the run.
    let mut stop = None;
    if let Some(stdout) = guard.child.stdout().take() {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let line = tokio::select! {
                line = lines.next_line() => line,
                reason = stopped(&task.cancel, deadline, &reader) => {
                    stop = Some(reason);
                    break;
                }
            };
            let Ok(Some(line)) = line else { break };
            parser.line(&line, &mut tracker);
            out.flush(&mut tracker).await;
            if tracker.over_max_turns {
                stop = Some(FinishReason::MaxTurns);
                break;
            }
            if tracker.result.is_none()
                && task
                    .limits
                    .budget_usd
                    .is_some_and(|b| tracker.cost_usd >= b)
            {
                stop = Some(FinishReason::Budget);
                break;
            }
        }
    }
    // The output ended: give the CLI a moment to exit by itself, within the limits.
    let status = if stop.is_none() {
        tokio::select! {
            status = tokio::time::timeout(EXIT_GRACE, guard.child.wait()) => match status {
                Ok(Ok(status)) => Some(status),
                Ok(Err(_)) | Err(_) => None,
            },
            reason = stopped(&task.cancel, deadline, &reader) => {
                stop = Some(reason);
                None
            }
        }
    } else {
        None
    };
    // Whatever happened, nothing of the group outlives the run.
    let _ = guard.child.start_kill();
    if status.is_none() {
        let _ = guard.child.wait().await;
    }
    guard.reaped = true;
    if let Some(mut reader) = stderr_reader
        && tokio::time::timeout(DRAIN_GRACE, &mut reader)
            .await
            .is_err()
    {
        reader.abort();
    }
    parser.end(&mut tracker);
    let stderr_tail = {
        let bytes = stderr
            .lock()
            .map(|b| b.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
        redact(
            String::from_utf8_lossy(&bytes).trim(),
            task.credential.as_ref(),
        )
    };
    if let Some(socket) = socket {
        socket.shutdown().await;
    }
    drop(scratch);

    if let Some(reason) = stop {
        tracker.result = None;
        return finish(&mut out, &mut tracker, instructions, reason, None).await;
    }
    let (reason, error) = outcome(task.cli, &name, &tracker, status, &stderr_tail);
    let error = error.map(|e| redact(&e, task.credential.as_ref()));
    finish(&mut out, &mut tracker, instructions, reason, error).await
}

/// How a run whose output ended by itself finished: by its result, else by its exit status.
pub(super) fn outcome(
    cli: Cli,
    name: &str,
    tracker: &Tracker,
    status: Option<std::process::ExitStatus>,
    stderr_tail: &str,
) -> (FinishReason, Option<String>) {
    let with_stderr = |message: String| {
        if stderr_tail.is_empty() {
            message
        } else {
            format!("{message}: {stderr_tail}")
        }
    };
    let code = status.and_then(|s| s.code());
    if cli == Cli::GeminiCli && code == Some(gemini_cli::EXIT_MAX_TURNS) {
        return (FinishReason::MaxTurns, None);
    }
    match (&tracker.result, status) {
        (Some(result), _) if result.reason != FinishReason::Completed => {
            (result.reason, result.error.clone())
        }
        (Some(_), Some(status)) if status.success() => (FinishReason::Completed, None),
        (Some(_), Some(status)) => (
            FinishReason::Error,
            Some(with_stderr(format!(
                "`{name}` reported success but exited with {status}"
            ))),
        ),
        (Some(_), None) | (None, None) => (
            FinishReason::Error,
            Some(with_stderr(format!(
                "`{name}` closed its output but did not exit"
            ))),
        ),
        (None, Some(status)) if status.success() => (
            FinishReason::Error,
            Some(with_stderr(tracker.last_error.clone().unwrap_or_else(
                || format!("`{name}` exited without a result"),
            ))),
        ),
        (None, Some(status)) => (
            FinishReason::Error,
            Some(with_stderr(match &tracker.last_error {
                Some(error) => format!("`{name}` exited with {status}: {error}"),
                None => format!("`{name}` exited with {status}"),
            })),
        ),
    }
}
