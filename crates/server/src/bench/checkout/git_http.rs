//! A local git smart-HTTP server: `git http-backend` (git's own server side) behind a small axum
//! CGI bridge, with Basic authentication by a token as GitHub does it (any user name, the token
//! as password). `kodiai bench checkout` serves its generated repository with it, and the tests
//! (through `kodiai-test-support`) fetch and push through it exactly as against GitHub.
//!
//! It records every request (method, path, whether it was authorised, the body), and can hold
//! requests until released, so that tests can cancel a job in the middle of a fetch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path, e.g. `/owner/repo.git/git-upload-pack`.
    pub path: String,
    pub query: String,
    /// It carried the right token.
    pub authorized: bool,
    pub body: Vec<u8>,
}

struct Shared {
    root: PathBuf,
    token: SecretString,
    requests: Mutex<Vec<RecordedRequest>>,
    /// The number of requests received so far, for [`GitHttpServer::wait_for_requests`].
    received: watch::Sender<usize>,
    /// `false` while requests are held.
    open: watch::Sender<bool>,
}

/// The running server; stopped when dropped.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    base: url::Url,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl GitHttpServer {
    /// Serves the bare repositories under `root` (`<root>/<owner>/<name>.git` is
    /// `http://<addr>/<owner>/<name>.git`) on 127.0.0.1, port 0, to requests bearing `token`.
    pub async fn start(root: &Path, token: SecretString) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            root: root.to_owned(),
            token,
            requests: Mutex::new(Vec::new()),
            received: watch::Sender::new(0),
            open: watch::Sender::new(true),
        });
        let app = Router::new()
            .fallback(handle)
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let base = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await;
        });
        Ok(Self {
            addr,
            base,
            shared,
            stop,
        })
    }

    /// The URL of the repository `name` (`owner/repo`, served from `<root>/owner/repo.git`).
    pub fn url(&self, name: &str) -> url::Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/{name}.git"));
        url
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Holds new and waiting requests (they are recorded, then wait) until [`Self::release`].
    pub fn hold(&self) {
        self.shared.open.send_replace(false);
    }

    pub fn release(&self) {
        self.shared.open.send_replace(true);
    }

    /// Waits until at least `count` requests have been received.
    pub async fn wait_for_requests(&self, count: usize) {
        let mut received = self.shared.received.subscribe();
        let _ = received.wait_for(|n| *n >= count).await;
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = authorized_user(&headers, &shared.token);
    {
        let mut requests = shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            authorized: user.is_some(),
            body: body.to_vec(),
        });
        shared.received.send_replace(requests.len());
    }
    let mut open = shared.open.subscribe();
    let _ = open.wait_for(|open| *open).await;

    let Some(user) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"kodiai-git\"")],
            "authentication required\n",
        )
            .into_response();
    };
    match cgi(&shared.root, &method, &uri, &headers, &user, body).await {
        Ok(response) => response,
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The Basic user name when the password is the token.
fn authorized_user(headers: &HeaderMap, token: &SecretString) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let expected = token.expose_secret().as_bytes();
    let matches: bool = subtle::ConstantTimeEq::ct_eq(password.as_bytes(), expected).into();
    matches.then(|| user.to_owned())
}

/// Runs `git http-backend` for one request (RFC 3875 variables in, a CGI response out).
async fn cgi(
    root: &Path,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    user: &str,
    body: Bytes,
) -> anyhow::Result<Response> {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("CONTENT_TYPE", header_text(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(protocol) = headers.get("git-protocol").and_then(|v| v.to_str().ok()) {
        command.env("GIT_PROTOCOL", protocol);
    }
    let encoding = header_text(header::CONTENT_ENCODING);
    if !encoding.is_empty() {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let mut child = command.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    // Written beside the read: a large push would otherwise fill both pipes and stall.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut out = Vec::new();
    stdout.read_to_end(&mut out).await?;
    let _ = writer.await;
    child.wait().await?;

    let (head, rest) = split_cgi(&out)?;
    let mut status = StatusCode::OK;
    let mut response_headers = HeaderMap::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            status = StatusCode::from_bytes(code.as_bytes())?;
        } else {
            response_headers.append(
                header::HeaderName::from_bytes(name.trim().as_bytes())?,
                HeaderValue::from_str(value)?,
            );
        }
    }
    let mut response = Response::new(Body::from(rest.to_vec()));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    Ok(response)
}

/// The CGI header block (as text) and the body after the blank line.
fn split_cgi(out: &[u8]) -> anyhow::Result<(String, &[u8])> {
    for (separator, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = out.windows(len).position(|w| w == separator) {
            let head = String::from_utf8_lossy(&out[..at]).into_owned();
            return Ok((head, &out[at + len..]));
        }
    }
    anyhow::bail!("git http-backend wrote no CGI header")
}
