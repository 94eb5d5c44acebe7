//! Tools that live in a running task, served to a CLI backend's MCP client through a relay.
//!
//! A job's GitHub tools hold the job's state (the findings a review collects, the tracking
//! comment, the worktree and the token it pushes with), so they cannot run in another process.
//! The CLI starts MCP servers as its own children, over stdio. So the task listens on a Unix
//! socket in its scratch folder ([`ToolSocket`]), and the server the CLI starts is a relay
//! ([`relay_stdio`], `kodiai mcp github-*`): it connects to that socket, names its tool group
//! and the socket's key in one line, and from then on copies bytes both ways. The MCP session
//! itself runs in the task ([`super::serve`] over the connection), so the tools, their state
//! and the job's secrets stay in the process that owns them: the relay and the CLI see the
//! socket's path and key only, and the key serves nothing but this task's tools, only while it
//! runs.
//!
//! The hello line is `kodiai-tools 1 GROUP KEY`; the answer is `ok` or `error: WHY`, then MCP.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::McpError;
use crate::tools::ToolRegistry;

/// The variable that tells a relay where the task's socket is.
pub const SOCKET_VAR: &str = "KODIAI_TOOL_SOCKET";
/// The variable that carries the socket's key to a relay.
pub const KEY_VAR: &str = "KODIAI_TOOL_KEY";

const HELLO: &str = "kodiai-tools 1";
/// A connection that has not said hello by then is dropped.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest hello line read.
const HELLO_MAX: u64 = 512;

/// A task's tool groups served on a Unix socket until [`ToolSocket::shutdown`] (or drop).
pub struct ToolSocket {
    path: PathBuf,
    key: SecretString,
    cancel: CancellationToken,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ToolSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSocket")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ToolSocket {
    /// Listens at `path` (which must not exist; its folder should be the task's own, readable
    /// by this user only) and serves each group of `groups` to relays that name it with the
    /// key. Every session ends with `cancel`, or at [`ToolSocket::shutdown`].
    pub fn start(
        path: &Path,
        groups: Vec<(String, ToolRegistry)>,
        cancel: &CancellationToken,
    ) -> std::io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        let key = SecretString::from(random_key()?);
        let cancel = cancel.child_token();
        let groups: Arc<HashMap<String, ToolRegistry>> = Arc::new(groups.into_iter().collect());
        let accept = tokio::spawn(accept_loop(listener, groups, key.clone(), cancel.clone()));
        Ok(Self {
            path: path.to_owned(),
            key,
            cancel,
            accept: Some(accept),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The variables a relay needs: [`SOCKET_VAR`] and [`KEY_VAR`].
    pub fn relay_env(&self) -> [(String, String); 2] {
        [
            (SOCKET_VAR.to_owned(), self.path.display().to_string()),
            (KEY_VAR.to_owned(), self.key.expose_secret().to_owned()),
        ]
    }

    /// Stops listening, ends every session and waits for the listener to close; the socket
    /// file is removed.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

impl Drop for ToolSocket {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// 32 random bytes from the kernel, as hex.
fn random_key() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

async fn accept_loop(
    listener: UnixListener,
    groups: Arc<HashMap<String, ToolRegistry>>,
    key: SecretString,
    cancel: CancellationToken,
) {
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "the tool socket stopped accepting");
                    break;
                }
            },
            () = cancel.cancelled() => break,
        };
        sessions.spawn(session(
            stream,
            Arc::clone(&groups),
            key.clone(),
            cancel.clone(),
        ));
        // Reap the sessions that ended, so a long task does not keep them all.
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    cancel.cancel();
    while sessions.join_next().await.is_some() {}
}

/// One relay's connection: the hello, then MCP over the rest of the stream.
async fn session(
    stream: UnixStream,
    groups: Arc<HashMap<String, ToolRegistry>>,
    key: SecretString,
    cancel: CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        (&mut read).take(HELLO_MAX).read_line(&mut line),
    )
    .await;
    if !matches!(hello, Ok(Ok(n)) if n > 0) {
        return;
    }
    let (group, registry) = match check_hello(line.trim_end(), &groups, &key) {
        Ok((group, registry)) => (group, registry.clone()),
        Err(why) => {
            tracing::warn!(%why, "a relay was refused by the tool socket");
            let _ = write.write_all(format!("error: {why}\n").as_bytes()).await;
            return;
        }
    };
    if write.write_all(b"ok\n").await.is_err() {
        return;
    }
    if let Err(e) = super::serve(registry, &group, (read, write), cancel).await {
        tracing::debug!(error = %e, group, "a tool session ended with an error");
    }
}

/// The group a hello line names, when its key is the socket's.
fn check_hello<'a>(
    line: &str,
    groups: &'a HashMap<String, ToolRegistry>,
    key: &SecretString,
) -> Result<(String, &'a ToolRegistry), String> {
    let rest = line
        .strip_prefix(HELLO)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| "not a kodiai tool relay".to_owned())?;
    let (group, given) = rest
        .split_once(' ')
        .ok_or_else(|| "the hello line has no key".to_owned())?;
    let expected = key.expose_secret().as_bytes();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected)) {
        return Err("wrong key".to_owned());
    }
    let registry = groups.get(group).ok_or_else(|| {
        let mut names: Vec<&str> = groups.keys().map(String::as_str).collect();
        names.sort_unstable();
        format!(
            "this task serves no tool group `{group}` (it serves: {})",
            names.join(", ")
        )
    })?;
    Ok((group.to_owned(), registry))
}

/// The relay a CLI starts as its MCP server: connects to the task's socket, asks for `group`
/// with `key`, then copies stdin to the socket and the socket to stdout until either side
/// closes. A refusal (or no task at `socket`) is an error naming why.
pub async fn relay_stdio(group: &str, socket: &Path, key: &str) -> Result<(), McpError> {
    relay(group, socket, key, tokio::io::stdin(), tokio::io::stdout()).await
}

/// [`relay_stdio`] over any pair of streams.
pub async fn relay(
    group: &str,
    socket: &Path,
    key: &str,
    mut input: impl AsyncRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<(), McpError> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        McpError::Serve(format!(
            "no task is serving tools at {}: {e}",
            socket.display()
        ))
    })?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(format!("{HELLO} {group} {key}\n").as_bytes())
        .await
        .map_err(|e| McpError::Serve(format!("the tool socket closed: {e}")))?;
    let mut answer = String::new();
    (&mut read)
        .take(HELLO_MAX)
        .read_line(&mut answer)
        .await
        .map_err(|e| McpError::Serve(format!("the tool socket closed: {e}")))?;
    match answer.trim_end() {
        "ok" => {}
        "" => return Err(McpError::Serve("the tool socket closed".into())),
        other => {
            return Err(McpError::Serve(
                other.strip_prefix("error: ").unwrap_or(other).to_owned(),
            ));
        }
    }
    // Whichever side ends first ends the relay: the client closing its input, or the task.
    let upstream = async {
        let _ = tokio::io::copy(&mut input, &mut write).await;
        let _ = write.shutdown().await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut read, &mut output).await;
        let _ = output.flush().await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> HashMap<String, ToolRegistry> {
        HashMap::from([("github-ci".to_owned(), ToolRegistry::new())])
    }

    #[test]
    fn a_hello_needs_the_key_and_a_served_group() {
        let key = SecretString::from("k3y");
        let groups = groups();
        let ok = check_hello("kodiai-tools 1 github-ci k3y", &groups, &key);
        assert_eq!(ok.map(|(g, _)| g), Ok("github-ci".to_owned()));
        for (line, why) in [
            ("kodiai-tools 1 github-ci k3z", "wrong key"),
            ("kodiai-tools 1 github-ci", "the hello line has no key"),
            ("GET / HTTP/1.1", "not a kodiai tool relay"),
            (
                "kodiai-tools 1 github-files k3y",
                "this task serves no tool group `github-files` (it serves: github-ci)",
            ),
        ] {
            let got = check_hello(line, &groups, &key).map(|(g, _)| g);
            assert_eq!(got, Err(why.to_owned()), "{line}");
        }
    }
}
