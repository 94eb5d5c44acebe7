//! A local git smart-HTTP server: `git http-backend` (git's own server side) behind a small
//! hyper CGI bridge, with Basic authentication by a token as GitHub does it (any user name, the
//! token as password). `kodiai bench checkout` serves its generated repository with it, and the
//! tests (through `kodiai-test-support`) fetch and push through it exactly as against GitHub.
//! A crate of its own because both need it and neither may depend on the other; hyper alone,
//! since only the server crate serves HTTP with axum.
//!
//! It records every request (method, path, whether it was authorised, the body), and can hold
//! requests until released, so that tests can cancel a job in the middle of a fetch.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
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
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let base = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let stop = CancellationToken::new();
        tokio::spawn(accept(listener, Arc::clone(&shared), stop.clone()));
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

type Response = hyper::Response<Full<Bytes>>;

/// Serves each connection on its own task until `stop`.
async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, std::convert::Infallible>(handle(shared, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

fn respond(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return respond(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
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
        let mut response = respond(
            StatusCode::UNAUTHORIZED,
            "authentication required\n".to_owned(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"kodiai-git\""),
        );
        return response;
    };
    match cgi(&shared.root, &method, &uri, &headers, &user, body).await {
        Ok(response) => response,
        Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
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
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(rest)));
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
