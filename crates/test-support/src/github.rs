//! A fake GitHub: a small axum server on port 0 that speaks the REST and GraphQL wire protocol
//! for every endpoint kodiai calls, keeps what is posted (comments, reviews, reactions) so tests
//! can read it back, records every request with its time on tokio's clock, and can be scripted to
//! answer a request with anything (a 403 secondary limit with `Retry-After`, a 5xx, a slow
//! answer).
//!
//! It checks what GitHub checks: API calls need a token it issued (or one registered with
//! [`FakeGithub::accept_token`]); the token exchange needs a JWT whose `exp` is at most ten
//! minutes ahead and whose `iat` is not in the future; a review's inline comments need a path,
//! a line and a body (and a path of the pull request when its files are seeded).
//!
//! It runs on the runtime of the test that starts it, so a test with `tokio::time::pause()`
//! sees the same clock in [`RecordedRequest::at`] as the client under test.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::time::Instant;

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// Percent-decoded path, e.g. `/repos/o/r/issues/1/comments`.
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or `Null` when there was none.
    pub body: Value,
    /// When it arrived, on tokio's clock.
    pub at: Instant,
    /// The status the fake answered with; 0 while it has not (or when the client hung up first).
    pub status: u16,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// A query parameter's value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A scripted answer for requests matching a method and an exact path (query ignored), used
/// `times` times before the fake's normal behaviour resumes.
#[derive(Debug, Clone)]
pub struct Scripted {
    method: Method,
    path: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    times: usize,
    delay: Duration,
    /// Answer normally after the delay instead of with `status`/`body`.
    passthrough: bool,
}

impl Scripted {
    /// Answers `method path` with `status` and an empty JSON object, once.
    pub fn new(method: &str, path: &str, status: u16) -> Self {
        Self {
            method: Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
            path: path.to_owned(),
            status,
            headers: Vec::new(),
            body: json!({}),
            times: 1,
            delay: Duration::ZERO,
            passthrough: false,
        }
    }

    /// GitHub's secondary rate limit: 403 with `Retry-After: secs`.
    pub fn secondary_limit(method: &str, path: &str, retry_after_secs: u64) -> Self {
        Self::new(method, path, 403)
            .header("retry-after", &retry_after_secs.to_string())
            .json(json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
            }))
    }

    /// GitHub's primary rate limit: 403, `X-RateLimit-Remaining: 0`, reset at `reset_epoch`.
    pub fn primary_limit(method: &str, path: &str, reset_epoch: u64) -> Self {
        Self::new(method, path, 403)
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-used", "5000")
            .header("x-ratelimit-reset", &reset_epoch.to_string())
            .header("x-ratelimit-resource", "core")
            .json(json!({
                "message": "API rate limit exceeded for installation ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
            }))
    }

    /// The normal answer, after `delay` (a slow GitHub).
    pub fn slow(method: &str, path: &str, delay: Duration) -> Self {
        let mut s = Self::new(method, path, 200).delay(delay);
        s.passthrough = true;
        s
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = body;
        self
    }

    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Data {
    requests: Vec<RecordedRequest>,
    scripts: Vec<Scripted>,
    next_id: u64,
    /// Tokens the fake issued or was told to accept.
    tokens: Vec<String>,
    tokens_issued: u64,
    token_ttl_secs: i64,
    app_id: Option<u64>,
    bot_login: String,
    repos: HashMap<String, Value>,
    permissions: HashMap<(String, String), String>,
    files: HashMap<(String, String), String>,
    issue_comments: BTreeMap<u64, (String, u64, Value)>,
    review_comments: BTreeMap<u64, (String, u64, Value)>,
    reactions: Vec<(String, String, Value)>,
    pulls: HashMap<(String, u64), Value>,
    pull_files: HashMap<(String, u64), Vec<Value>>,
    pull_commits: HashMap<(String, u64), Vec<Value>>,
    reviews: Vec<(String, u64, Value)>,
    created_pulls: Vec<(String, Value)>,
    check_runs: HashMap<(String, String), Vec<Value>>,
    statuses: HashMap<(String, String), Vec<Value>>,
    graphql: VecDeque<Value>,
    /// (repo, path, line) a review comment may not sit on ([`FakeGithub::reject_review_line`]).
    rejected_review_lines: Vec<(String, String, u64)>,
    /// The mention flow's part of the fake (see [`MentionData`]).
    mention: MentionData,
    /// The review context's part of the fake (see [`FakeGithub::put_file_at`]).
    context: ContextData,
}

type Shared = Arc<Mutex<Data>>;

/// The running fake. Stopped when dropped.
pub struct FakeGithub {
    pub addr: SocketAddr,
    data: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGithub {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    pub async fn start() -> Self {
        let data = Arc::new(Mutex::new(Data {
            next_id: 1000,
            token_ttl_secs: 3600,
            bot_login: "kodiai[bot]".into(),
            ..Data::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake GitHub");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(data.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, data, task }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap()
    }

    /// `GITHUB_API_URL` for this fake.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GITHUB_GRAPHQL_URL` for this fake.
    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// The environment that points kodiai at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GITHUB_API_URL", self.api_url()),
            ("GITHUB_GRAPHQL_URL", self.graphql_url()),
        ]
    }

    /// Accepts `token` on API calls (personal-token mode).
    pub fn accept_token(&self, token: &str) -> &Self {
        self.data().tokens.push(token.to_owned());
        self
    }

    /// Only JWTs with this `iss` get installation tokens (default: any).
    pub fn app_id(&self, app_id: u64) -> &Self {
        self.data().app_id = Some(app_id);
        self
    }

    /// How long issued installation tokens live (default an hour, as on GitHub).
    pub fn token_ttl(&self, ttl: Duration) -> &Self {
        self.data().token_ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(3600);
        self
    }

    /// How many installation tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        self.data().tokens_issued
    }

    /// The login comments are posted as.
    pub fn bot_login(&self, login: &str) -> &Self {
        self.data().bot_login = login.to_owned();
        self
    }

    pub fn script(&self, scripted: Scripted) -> &Self {
        self.data().scripts.push(scripted);
        self
    }

    /// `repo` is `owner/name`; the repository answers with `default_branch`.
    pub fn add_repo(&self, repo: &str, default_branch: &str) -> &Self {
        let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
        self.data().repos.insert(
            repo.to_owned(),
            json!({
                "id": 1, "name": name, "full_name": repo, "private": false,
                "owner": {"login": owner, "type": "User"},
                "default_branch": default_branch,
            }),
        );
        self
    }

    /// The user's role on the repository (`admin`, `maintain`, `write`, `triage`, `read`).
    /// Users without one have `none`.
    pub fn set_permission(&self, repo: &str, login: &str, role: &str) -> &Self {
        self.data()
            .permissions
            .insert((repo.to_owned(), login.to_lowercase()), role.to_owned());
        self
    }

    /// A file on the default branch.
    pub fn put_file(&self, repo: &str, path: &str, text: &str) -> &Self {
        self.data()
            .files
            .insert((repo.to_owned(), path.to_owned()), text.to_owned());
        self
    }

    pub fn remove_file(&self, repo: &str, path: &str) -> &Self {
        self.data()
            .files
            .remove(&(repo.to_owned(), path.to_owned()));
        self
    }

    /// A pull request: `pull` is GitHub's JSON (at least `number`, `head`, `base`); fields
    /// missing are filled in.
    pub fn add_pull(&self, repo: &str, number: u64, mut pull: Value) -> &Self {
        if let Some(obj) = pull.as_object_mut() {
            obj.entry("number").or_insert(json!(number));
            obj.entry("state").or_insert(json!("open"));
            obj.entry("draft").or_insert(json!(false));
            obj.entry("title")
                .or_insert(json!(format!("Pull request {number}")));
            obj.entry("user")
                .or_insert(json!({"login": "octocat", "type": "User"}));
            obj.entry("head").or_insert(
                json!({"ref": "feature", "sha": "1111111111111111111111111111111111111111"}),
            );
            obj.entry("base").or_insert(
                json!({"ref": "main", "sha": "2222222222222222222222222222222222222222"}),
            );
        }
        self.data().pulls.insert((repo.to_owned(), number), pull);
        self
    }

    /// The pull request's changed files (`filename`, `status`, `patch`, …), listed in pages.
    pub fn set_pull_files(&self, repo: &str, number: u64, files: Vec<Value>) -> &Self {
        self.data()
            .pull_files
            .insert((repo.to_owned(), number), files);
        self
    }

    pub fn set_pull_commits(&self, repo: &str, number: u64, commits: Vec<Value>) -> &Self {
        self.data()
            .pull_commits
            .insert((repo.to_owned(), number), commits);
        self
    }

    /// Check runs of a commit (`name`, `status`, `conclusion`).
    pub fn set_check_runs(&self, repo: &str, git_ref: &str, runs: Vec<Value>) -> &Self {
        self.data()
            .check_runs
            .insert((repo.to_owned(), git_ref.to_owned()), runs);
        self
    }

    /// Commit statuses (`context`, `state`) of a commit.
    pub fn set_statuses(&self, repo: &str, git_ref: &str, statuses: Vec<Value>) -> &Self {
        self.data()
            .statuses
            .insert((repo.to_owned(), git_ref.to_owned()), statuses);
        self
    }

    /// The answer to the next GraphQL request (whole body, e.g. `{"data": {...}}`).
    pub fn push_graphql(&self, answer: Value) -> &Self {
        self.data().graphql.push_back(answer);
        self
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.data().requests.clone()
    }

    /// Requests with this method and path.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<RecordedRequest> {
        self.data()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .cloned()
            .collect()
    }

    /// The issue's or pull request's comments, oldest first.
    pub fn issue_comments(&self, repo: &str, number: u64) -> Vec<Value> {
        self.data()
            .issue_comments
            .values()
            .filter(|(r, n, _)| r == repo && *n == number)
            .map(|(_, _, c)| c.clone())
            .collect()
    }

    /// Adds a comment as `login` (someone else's, for the bot to read).
    pub fn add_issue_comment(&self, repo: &str, number: u64, login: &str, body: &str) -> u64 {
        let mut data = self.data();
        let id = data.next_id();
        let comment = comment_json(repo, number, id, login, body);
        data.issue_comments
            .insert(id, (repo.to_owned(), number, comment));
        id
    }

    /// Reviews posted on a pull request.
    pub fn reviews(&self, repo: &str, number: u64) -> Vec<Value> {
        self.data()
            .reviews
            .iter()
            .filter(|(r, n, _)| r == repo && *n == number)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// Review-thread comments (inline comments of reviews, and replies), oldest first.
    pub fn review_comments(&self, repo: &str, number: u64) -> Vec<Value> {
        self.data()
            .review_comments
            .values()
            .filter(|(r, n, _)| r == repo && *n == number)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// Reactions as (target, content), e.g. `("issues/comments/1001", "eyes")`.
    pub fn reactions(&self, repo: &str) -> Vec<(String, String)> {
        self.data()
            .reactions
            .iter()
            .filter(|(r, _, _)| r == repo)
            .map(|(_, t, v)| {
                (
                    t.clone(),
                    v["content"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Pull requests kodiai opened.
    pub fn created_pulls(&self, repo: &str) -> Vec<Value> {
        self.data()
            .created_pulls
            .iter()
            .filter(|(r, _)| r == repo)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Data {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

fn comment_json(repo: &str, number: u64, id: u64, login: &str, body: &str) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "id": id,
        "node_id": format!("IC_{id}"),
        "body": body,
        "html_url": format!("https://github.com/{repo}/issues/{number}#issuecomment-{id}"),
        "issue_url": format!("https://api.github.com/repos/{repo}/issues/{number}"),
        "user": {"login": login, "type": if login.ends_with("[bot]") { "Bot" } else { "User" }},
        "created_at": now,
        "updated_at": now,
    })
}

/// An answer the fake builds.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(
            status,
            json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
        )
    }

    fn not_found() -> Self {
        Self::message(404, "Not Found")
    }

    fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }
}

async fn handle(
    State(data): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = percent_encoding::percent_decode_str(uri.path())
        .decode_utf8_lossy()
        .into_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let body_json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let header_map: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let host = header_map.get("host").cloned().unwrap_or_default();

    // Recorded on arrival, so that a request the client gave up on (a timeout) is seen too;
    // its status stays 0.
    let index = {
        let mut d = data.lock().unwrap();
        d.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            headers: header_map.clone(),
            body: body_json.clone(),
            at,
            status: 0,
        });
        d.requests.len() - 1
    };

    // A script for this request, if any (used up one at a time).
    let script = {
        let mut d = data.lock().unwrap();
        let found = d
            .scripts
            .iter()
            .position(|s| s.method == method && s.path == path && s.times > 0);
        found.map(|i| {
            d.scripts[i].times -= 1;
            let s = d.scripts[i].clone();
            if d.scripts[i].times == 0 {
                d.scripts.remove(i);
            }
            s
        })
    };
    if let Some(s) = &script
        && !s.delay.is_zero()
    {
        tokio::time::sleep(s.delay).await;
    }
    let answer = match script {
        Some(s) if !s.passthrough => Answer {
            status: s.status,
            headers: s.headers,
            body: Some(s.body),
        },
        _ => {
            let mut d = data.lock().unwrap();
            route(
                &mut d,
                &method,
                &path,
                &query,
                &header_map,
                &body_json,
                &host,
            )
        }
    };

    if let Some(r) = data.lock().unwrap().requests.get_mut(index) {
        r.status = answer.status;
    }

    let mut response = match answer.body {
        Some(body) => (
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
            axum::Json(body),
        )
            .into_response(),
        None => StatusCode::from_u16(answer.status)
            .unwrap_or(StatusCode::OK)
            .into_response(),
    };
    let h = response.headers_mut();
    for (name, value) in &answer.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    if !h.contains_key("x-ratelimit-remaining") {
        h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
        h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    }
    response
}

fn route(
    d: &mut Data,
    method: &Method,
    path: &str,
    query: &str,
    headers: &BTreeMap<String, String>,
    body: &Value,
    host: &str,
) -> Answer {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let post = *method == Method::POST;

    if let ["app", "installations", installation, "access_tokens"] = segments.as_slice() {
        if !post {
            return Answer::not_found();
        }
        return exchange_token(d, installation, headers);
    }

    // Everything else needs a token the fake issued or accepts.
    let token = headers
        .get("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("token "))
        })
        .unwrap_or_default();
    if !d.tokens.iter().any(|t| t == token) {
        return Answer::message(401, "Bad credentials");
    }

    if segments.as_slice() == ["graphql"] && post {
        if let Some(answer) = d.graphql.pop_front() {
            return Answer::json(200, answer);
        }
        return modelled_graphql(d, body).unwrap_or_else(|| {
            Answer::json(
                200,
                json!({"data": null, "errors": [{"message": "the fake has no scripted GraphQL answer"}]}),
            )
        });
    }

    let ["repos", owner, name, rest @ ..] = segments.as_slice() else {
        return Answer::not_found();
    };
    let repo = format!("{owner}/{name}");
    let base = format!("http://{host}{path}");
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);

    if let Some(answer) = mention_route(d, method.as_str(), rest, &repo, body) {
        return answer;
    }
    if let Some(answer) = context_route(d, method, rest, &repo, query) {
        return answer;
    }

    match (method.as_str(), rest) {
        ("GET", []) => {
            let value = d.repos.get(&repo).cloned().unwrap_or_else(|| {
                json!({"id": 1, "name": name, "full_name": repo, "private": false,
                       "owner": {"login": owner}, "default_branch": "main"})
            });
            Answer::json(200, value)
        }
        ("GET", ["collaborators", login, "permission"]) => {
            let role = d
                .permissions
                .get(&(repo.clone(), login.to_lowercase()))
                .cloned()
                .unwrap_or_else(|| "none".into());
            // `permission` is the legacy name: maintain reads as write, triage as read.
            let permission = match role.as_str() {
                "maintain" => "write",
                "triage" => "read",
                other => other,
            };
            Answer::json(
                200,
                json!({"permission": permission, "role_name": role, "user": {"login": login}}),
            )
        }
        ("GET", ["contents", file @ ..]) if !file.is_empty() => {
            let file_path = file.join("/");
            if let Some(r) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "ref")
                && r.1 != default_branch(d, &repo)
            {
                // Only the default branch is kept; another ref has no such file here.
                return Answer::not_found();
            }
            let Some(content) = d.files.get(&(repo.clone(), file_path.clone())) else {
                return Answer::not_found();
            };
            let sha = blob_sha(content);
            let etag = format!("\"{sha}\"");
            if headers.get("if-none-match") == Some(&etag) {
                return Answer {
                    status: 304,
                    headers: vec![("etag".into(), etag)],
                    body: None,
                };
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
            // GitHub wraps the base64 at 60 columns.
            let wrapped: Vec<String> = encoded
                .as_bytes()
                .chunks(60)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            let name = file.last().copied().unwrap_or_default();
            Answer::json(
                200,
                json!({"type": "file", "name": name, "path": file_path, "sha": sha,
                       "size": content.len(), "encoding": "base64",
                       "content": wrapped.join("\n") + "\n"}),
            )
            .with_header("etag", etag)
        }
        ("GET", ["issues", number, "comments"]) => {
            let Ok(number) = number.parse::<u64>() else {
                return Answer::not_found();
            };
            let all: Vec<Value> = d
                .issue_comments
                .values()
                .filter(|(r, n, _)| *r == repo && *n == number)
                .map(|(_, _, c)| c.clone())
                .collect();
            paged(&all, query, &base)
        }
        ("POST", ["issues", number, "comments"]) => {
            let Ok(number) = number.parse::<u64>() else {
                return Answer::not_found();
            };
            let Some(body_text) = text(body, "body") else {
                return Answer::message(422, "Validation Failed: body is missing");
            };
            let id = d.next_id();
            let login = d.bot_login.clone();
            let comment = comment_json(&repo, number, id, &login, &body_text);
            d.issue_comments
                .insert(id, (repo.clone(), number, comment.clone()));
            Answer::json(201, comment)
        }
        ("GET" | "PATCH" | "DELETE", ["issues", "comments", id]) => {
            let Some(entry) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| d.issue_comments.get_mut(&id))
                .filter(|(r, _, _)| *r == repo)
            else {
                return Answer::not_found();
            };
            match method.as_str() {
                "GET" => Answer::json(200, entry.2.clone()),
                "PATCH" => {
                    let Some(body_text) = text(body, "body") else {
                        return Answer::message(422, "Validation Failed: body is missing");
                    };
                    entry.2["body"] = json!(body_text);
                    entry.2["updated_at"] = json!(
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    Answer::json(200, entry.2.clone())
                }
                _ => {
                    if let Ok(id) = id.parse::<u64>() {
                        d.issue_comments.remove(&id);
                    }
                    Answer {
                        status: 204,
                        headers: Vec::new(),
                        body: None,
                    }
                }
            }
        }
        ("POST", ["issues", "comments", id, "reactions"])
        | ("POST", ["pulls", "comments", id, "reactions"])
        | ("POST", ["issues", id, "reactions"]) => {
            let target = rest[..rest.len() - 1].join("/");
            let exists = match rest {
                ["issues", "comments", ..] => id
                    .parse::<u64>()
                    .is_ok_and(|id| d.issue_comments.contains_key(&id)),
                ["pulls", "comments", ..] => id
                    .parse::<u64>()
                    .is_ok_and(|id| d.review_comments.contains_key(&id)),
                _ => id.parse::<u64>().is_ok(),
            };
            if !exists {
                return Answer::not_found();
            }
            let Some(content) = text(body, "content").filter(|c| {
                [
                    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
                ]
                .contains(&c.as_str())
            }) else {
                return Answer::message(422, "Validation Failed: content is not a reaction");
            };
            let login = d.bot_login.clone();
            if let Some((_, _, existing)) = d
                .reactions
                .iter()
                .find(|(r, t, v)| *r == repo && *t == target && v["content"] == json!(content))
            {
                return Answer::json(200, existing.clone());
            }
            let reaction = json!({"id": d.next_id(), "content": content, "user": {"login": login}});
            d.reactions.push((repo.clone(), target, reaction.clone()));
            Answer::json(201, reaction)
        }
        ("POST", ["pulls"]) => {
            let (Some(title), Some(head), Some(base_ref)) =
                (text(body, "title"), text(body, "head"), text(body, "base"))
            else {
                return Answer::message(422, "Validation Failed: title, head and base are needed");
            };
            let number = d.next_id();
            let pull = json!({
                "number": number, "title": title, "body": body.get("body").cloned().unwrap_or(Value::Null),
                "state": "open", "draft": body.get("draft").cloned().unwrap_or(json!(false)),
                "html_url": format!("https://github.com/{repo}/pull/{number}"),
                "head": {"ref": head, "sha": "3333333333333333333333333333333333333333"},
                "base": {"ref": base_ref, "sha": "2222222222222222222222222222222222222222"},
                "user": {"login": d.bot_login.clone(), "type": "Bot"},
            });
            d.created_pulls.push((repo.clone(), pull.clone()));
            d.pulls.insert((repo.clone(), number), pull.clone());
            Answer::json(201, pull)
        }
        (_, ["pulls", number, tail @ ..]) => {
            let Ok(number) = number.parse::<u64>() else {
                return Answer::not_found();
            };
            let key = (repo.clone(), number);
            let Some(pull) = d.pulls.get(&key).cloned() else {
                return Answer::not_found();
            };
            match (method.as_str(), tail) {
                ("GET", []) => Answer::json(200, pull),
                ("GET", ["files"]) => paged(
                    d.pull_files.get(&key).map_or(&[][..], Vec::as_slice),
                    query,
                    &base,
                ),
                ("GET", ["commits"]) => paged(
                    d.pull_commits.get(&key).map_or(&[][..], Vec::as_slice),
                    query,
                    &base,
                ),
                ("GET", ["comments"]) => {
                    let all: Vec<Value> = d
                        .review_comments
                        .values()
                        .filter(|(r, n, _)| *r == repo && *n == number)
                        .map(|(_, _, v)| v.clone())
                        .collect();
                    paged(&all, query, &base)
                }
                ("GET", ["reviews"]) => {
                    let all: Vec<Value> = d
                        .reviews
                        .iter()
                        .filter(|(r, n, _)| *r == repo && *n == number)
                        .map(|(_, _, v)| v.clone())
                        .collect();
                    paged(&all, query, &base)
                }
                ("POST", ["reviews"]) => create_review(d, &repo, number, &pull, body),
                ("DELETE", ["reviews", id]) => delete_pending_review(d, &repo, number, id),
                ("POST", ["comments", id, "replies"]) => {
                    let Some(parent) = id
                        .parse::<u64>()
                        .ok()
                        .and_then(|id| d.review_comments.get(&id))
                        .map(|(_, _, v)| v.clone())
                    else {
                        return Answer::not_found();
                    };
                    let Some(body_text) = text(body, "body") else {
                        return Answer::message(422, "Validation Failed: body is missing");
                    };
                    let id = d.next_id();
                    let login = d.bot_login.clone();
                    let reply = json!({
                        "id": id, "body": body_text, "path": parent["path"], "line": parent["line"],
                        "in_reply_to_id": parent["id"], "user": {"login": login, "type": "Bot"},
                        "html_url": format!("https://github.com/{repo}/pull/{number}#discussion_r{id}"),
                    });
                    d.review_comments
                        .insert(id, (repo.clone(), number, reply.clone()));
                    Answer::json(201, reply)
                }
                _ => Answer::not_found(),
            }
        }
        ("GET", ["commits", git_ref, "check-runs"]) => {
            let runs = d
                .check_runs
                .get(&(repo.clone(), (*git_ref).to_owned()))
                .cloned()
                .unwrap_or_default();
            Answer::json(200, json!({"total_count": runs.len(), "check_runs": runs}))
        }
        ("GET", ["commits", git_ref, "status"]) => {
            let statuses = d
                .statuses
                .get(&(repo.clone(), (*git_ref).to_owned()))
                .cloned()
                .unwrap_or_default();
            let state = if statuses
                .iter()
                .any(|s| s["state"] == "failure" || s["state"] == "error")
            {
                "failure"
            } else if statuses.iter().all(|s| s["state"] == "success") && !statuses.is_empty() {
                "success"
            } else {
                "pending"
            };
            Answer::json(
                200,
                json!({"state": state, "statuses": statuses, "total_count": statuses.len()}),
            )
        }
        ("POST", ["check-runs"]) => {
            let (Some(_name), Some(head_sha)) = (text(body, "name"), text(body, "head_sha")) else {
                return Answer::message(422, "Validation Failed: name and head_sha are needed");
            };
            let id = d.next_id();
            let mut run = body.clone();
            run["id"] = json!(id);
            run["status"] = body.get("status").cloned().unwrap_or(json!("queued"));
            d.check_runs
                .entry((repo.clone(), head_sha))
                .or_default()
                .push(run.clone());
            Answer::json(201, run)
        }
        _ => Answer::not_found(),
    }
}

fn default_branch(d: &Data, repo: &str) -> String {
    d.repos
        .get(repo)
        .and_then(|r| r["default_branch"].as_str())
        .unwrap_or("main")
        .to_owned()
}

/// `POST /app/installations/{id}/access_tokens`: checks the JWT's shape and times as GitHub does
/// (not its signature; tests that care verify it with the public key).
fn exchange_token(d: &mut Data, installation: &str, headers: &BTreeMap<String, String>) -> Answer {
    let jwt = headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let parts: Vec<&str> = jwt.split('.').collect();
    let claims = (parts.len() == 3)
        .then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .ok()
        })
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    let Some(claims) = claims else {
        return Answer::message(401, "A JSON web token could not be decoded");
    };
    let now = chrono::Utc::now().timestamp();
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Answer::message(401, "'Issued at' and 'Expiration time' claims are required");
    };
    if exp - now > 600 {
        return Answer::message(
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        );
    }
    if exp <= now {
        return Answer::message(
            401,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        );
    }
    if iat > now + 5 {
        return Answer::message(
            401,
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        );
    }
    let iss = match &claims["iss"] {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    if let Some(app_id) = d.app_id
        && iss != Some(app_id)
    {
        return Answer::message(401, "Integration not found");
    }
    if installation.parse::<u64>().is_err() {
        return Answer::not_found();
    }
    d.tokens_issued += 1;
    let token = d
        .mention
        .installation_token
        .clone()
        .unwrap_or_else(|| format!("ghs_fake{installation}x{}", d.tokens_issued));
    d.tokens.push(token.clone());
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(d.token_ttl_secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Answer::json(
        201,
        json!({"token": token, "expires_at": expires_at,
               "permissions": {"contents": "write", "issues": "write", "pull_requests": "write"},
               "repository_selection": "all"}),
    )
}

/// `POST /pulls/{n}/reviews`: each inline comment needs a path, a body and a line; when the
/// pull request's files are seeded, the path must be one of them (GitHub: 422).
fn create_review(d: &mut Data, repo: &str, number: u64, pull: &Value, body: &Value) -> Answer {
    let event = body["event"].as_str().unwrap_or("PENDING");
    if !["COMMENT", "APPROVE", "REQUEST_CHANGES", "PENDING"].contains(&event) {
        return Answer::message(422, "Validation Failed: event");
    }
    let files: Option<Vec<String>> = d.pull_files.get(&(repo.to_owned(), number)).map(|fs| {
        fs.iter()
            .filter_map(|f| f["filename"].as_str().map(str::to_owned))
            .collect()
    });
    let comments = body["comments"].as_array().cloned().unwrap_or_default();
    for c in &comments {
        let (Some(path), Some(_), Some(_)) = (
            c["path"].as_str(),
            c["body"].as_str(),
            c["line"].as_u64().or(c["position"].as_u64()),
        ) else {
            return Answer::message(
                422,
                "Validation Failed: each comment needs path, body and line",
            );
        };
        if let Some(files) = &files
            && !files.iter().any(|f| f == path)
        {
            return Answer::message(422, "Unprocessable Entity: Path could not be resolved");
        }
    }
    if let Some(refused) = refuse_review(d, repo, number, &comments, event) {
        return refused;
    }
    let id = d.next_id();
    let login = d.bot_login.clone();
    let state = match event {
        "APPROVE" => "APPROVED",
        "REQUEST_CHANGES" => "CHANGES_REQUESTED",
        "COMMENT" => "COMMENTED",
        _ => "PENDING",
    };
    let review = json!({
        "id": id, "state": state, "body": body.get("body").cloned().unwrap_or(json!("")),
        "commit_id": body.get("commit_id").cloned().unwrap_or_else(|| pull["head"]["sha"].clone()),
        "user": {"login": login, "type": "Bot"},
        "html_url": format!("https://github.com/{repo}/pull/{number}#pullrequestreview-{id}"),
        "comments": comments,
    });
    for c in &comments {
        let cid = d.next_id();
        let mut comment = c.clone();
        comment["id"] = json!(cid);
        comment["pull_request_review_id"] = json!(id);
        comment["user"] = json!({"login": login, "type": "Bot"});
        d.review_comments
            .insert(cid, (repo.to_owned(), number, comment));
    }
    d.reviews.push((repo.to_owned(), number, review.clone()));
    Answer::json(200, review)
}

/// One page of `items` (`per_page` default 30, at most 100; `page` from 1) with GitHub's `Link`
/// header.
fn paged(items: &[Value], query: &str, base: &str) -> Answer {
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let per_page = param("per_page").unwrap_or(30).clamp(1, 100);
    let page = param("page").unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let start = ((page - 1) * per_page).min(items.len());
    let end = (start + per_page).min(items.len());
    let mut answer = Answer::json(200, Value::Array(items[start..end].to_vec()));
    let link =
        |p: usize, rel: &str| format!("<{base}?per_page={per_page}&page={p}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page < last {
        links.push(link(page + 1, "next"));
        links.push(link(last, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
        links.push(link(page - 1, "prev"));
    }
    if !links.is_empty() {
        answer = answer.with_header("link", links.join(", "));
    }
    answer
}

// ---- Review comments GitHub refuses, and pending reviews ----
//
// GitHub refuses a whole review (422) when one inline comment is on a line it cannot resolve,
// without saying which; a review created without `event` is PENDING (seen only by its author,
// at most one per author and pull request) until submitted or deleted.

impl FakeGithub {
    /// Makes any review with an inline comment on `path` at `line` (its `line` or `start_line`)
    /// fail with GitHub's 422, as for a line outside the diff.
    pub fn reject_review_line(&self, repo: &str, path: &str, line: u64) -> &Self {
        self.data()
            .rejected_review_lines
            .push((repo.to_owned(), path.to_owned(), line));
        self
    }

    /// Reviews of the pull request that others see (not pending).
    pub fn visible_reviews(&self, repo: &str, number: u64) -> Vec<Value> {
        self.reviews(repo, number)
            .into_iter()
            .filter(|r| r["state"] != "PENDING")
            .collect()
    }

    /// Pending reviews of the pull request still there.
    pub fn pending_reviews(&self, repo: &str, number: u64) -> Vec<Value> {
        self.reviews(repo, number)
            .into_iter()
            .filter(|r| r["state"] == "PENDING")
            .collect()
    }
}

/// GitHub's answer to a review it will not create, if it will not.
fn refuse_review(
    d: &Data,
    repo: &str,
    number: u64,
    comments: &[Value],
    event: &str,
) -> Option<Answer> {
    let unprocessable = |error: &str| {
        Answer::json(
            422,
            json!({
                "message": "Unprocessable Entity",
                "errors": [error],
                "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request",
                "status": "422",
            }),
        )
    };
    let refused = comments.iter().any(|c| {
        let path = c["path"].as_str().unwrap_or_default();
        [c["line"].as_u64(), c["start_line"].as_u64()]
            .into_iter()
            .flatten()
            .any(|line| {
                d.rejected_review_lines
                    .iter()
                    .any(|(r, p, l)| r == repo && p == path && *l == line)
            })
    });
    if refused {
        return Some(unprocessable(
            "Pull request review thread line must be part of the diff and Pull request review thread diff hunk can't be blank",
        ));
    }
    let pending = d
        .reviews
        .iter()
        .any(|(r, n, v)| r == repo && *n == number && v["state"] == "PENDING");
    (event == "PENDING" && pending)
        .then(|| unprocessable("User can only have one pending review per pull request"))
}

/// `DELETE /pulls/{n}/reviews/{id}`: only a pending review can be deleted.
fn delete_pending_review(d: &mut Data, repo: &str, number: u64, id: &str) -> Answer {
    let Ok(id) = id.parse::<u64>() else {
        return Answer::not_found();
    };
    let Some(index) = d
        .reviews
        .iter()
        .position(|(r, n, v)| r == repo && *n == number && v["id"] == json!(id))
    else {
        return Answer::not_found();
    };
    if d.reviews[index].2["state"] != "PENDING" {
        return Answer::message(
            422,
            "Unprocessable Entity: Can not delete a non-pending pull request review",
        );
    }
    let (_, _, review) = d.reviews.remove(index);
    d.review_comments
        .retain(|_, (_, _, c)| c["pull_request_review_id"] != json!(id));
    Answer::json(200, review)
}

/// The GraphQL queries the fake answers from its data when no answer is scripted:
/// `issueOrPullRequest(number) { lastEditedAt }` (see [`FakeGithub::edit_body`]).
fn modelled_graphql(d: &Data, body: &Value) -> Option<Answer> {
    let query = body["query"].as_str()?;
    if !query.contains("issueOrPullRequest") {
        return None;
    }
    let variables = &body["variables"];
    let repo = format!(
        "{}/{}",
        variables["owner"].as_str()?,
        variables["name"].as_str()?
    );
    let key = (repo, variables["number"].as_u64()?);
    let known = d.mention.issues.contains_key(&key) || d.pulls.contains_key(&key);
    let item = known.then(|| json!({"lastEditedAt": d.mention.body_edits.get(&key)}));
    Some(Answer::json(
        200,
        json!({"data": {"repository": {"issueOrPullRequest": item}}}),
    ))
}

/// A git-blob-like id of the text (40 hex digits, changes when the text does).
fn blob_sha(text: &str) -> String {
    let digest = sha2::Sha256::digest(format!("blob {}\0{text}", text.len()).as_bytes());
    hex::encode(digest)[..40].to_owned()
}

// ---- The mention flow's endpoints: issues, single review comments and reviews, comment times,
// the clone URL of a repository and a fixed installation token (so that the git server of a
// test accepts what the fake issues).

/// What the mention flow's endpoints keep.
#[derive(Default)]
struct MentionData {
    /// Every token exchange answers with this token (default: a fresh one each time).
    installation_token: Option<String>,
    issues: HashMap<(String, u64), Value>,
    /// When the body of an issue or pull request was last edited (GraphQL `lastEditedAt`).
    body_edits: HashMap<(String, u64), String>,
}

impl FakeGithub {
    /// Installation tokens are all `token` (the [`crate::git::GitFixture`]'s, so that pushes
    /// with the token kodiai got from this fake are accepted).
    pub fn installation_token(&self, token: &str) -> &Self {
        self.data().mention.installation_token = Some(token.to_owned());
        self
    }

    /// The repository's `clone_url` (a [`crate::git::GitFixture`] URL).
    pub fn set_clone_url(&self, repo: &str, url: &str) -> &Self {
        let mut d = self.data();
        let (owner, name) = repo.split_once('/').unwrap_or((repo, repo));
        let entry = d.repos.entry(repo.to_owned()).or_insert_with(|| {
            json!({"id": 1, "name": name, "full_name": repo, "private": false,
                   "owner": {"login": owner, "type": "User"}, "default_branch": "main"})
        });
        entry["clone_url"] = json!(url);
        self
    }

    /// An issue (`GET /issues/{n}`): `title`, `body`, `user` login; created now.
    pub fn add_issue(
        &self,
        repo: &str,
        number: u64,
        title: &str,
        body: &str,
        login: &str,
    ) -> &Self {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.data().mention.issues.insert(
            (repo.to_owned(), number),
            json!({
                "number": number, "title": title, "body": body, "state": "open",
                "user": {"login": login, "type": "User"},
                "html_url": format!("https://github.com/{repo}/issues/{number}"),
                "created_at": now, "updated_at": now,
            }),
        );
        self
    }

    /// Replaces the body of issue or pull request `number`, edited at `at` (RFC 3339): what
    /// GraphQL's `lastEditedAt` answers from then on.
    pub fn edit_body(&self, repo: &str, number: u64, body: &str, at: &str) -> &Self {
        let mut d = self.data();
        let key = (repo.to_owned(), number);
        if let Some(issue) = d.mention.issues.get_mut(&key) {
            issue["body"] = json!(body);
        }
        if let Some(pull) = d.pulls.get_mut(&key) {
            pull["body"] = json!(body);
        }
        d.mention.body_edits.insert(key, at.to_owned());
        self
    }

    /// Sets a conversation comment's `created_at` and `updated_at` (RFC 3339).
    pub fn set_issue_comment_times(&self, id: u64, created_at: &str, updated_at: &str) -> &Self {
        if let Some((_, _, c)) = self.data().issue_comments.get_mut(&id) {
            c["created_at"] = json!(created_at);
            c["updated_at"] = json!(updated_at);
        }
        self
    }

    /// Takes a conversation comment's `created_at` away (`null`), as when GitHub does not say.
    pub fn clear_issue_comment_created_at(&self, id: u64) -> &Self {
        if let Some((_, _, c)) = self.data().issue_comments.get_mut(&id) {
            c["created_at"] = Value::Null;
        }
        self
    }

    /// Changes a conversation comment's body, as its author editing it at `updated_at`.
    pub fn edit_issue_comment(&self, id: u64, body: &str, updated_at: &str) -> &Self {
        if let Some((_, _, c)) = self.data().issue_comments.get_mut(&id) {
            c["body"] = json!(body);
            c["updated_at"] = json!(updated_at);
        }
        self
    }

    /// A review-thread comment by `login` at `(path, line)` (a reply when `in_reply_to` is
    /// given); returns its id.
    pub fn add_review_comment(
        &self,
        repo: &str,
        number: u64,
        login: &str,
        body: &str,
        (path, line): (&str, u64),
        in_reply_to: Option<u64>,
    ) -> u64 {
        let mut d = self.data();
        let id = d.next_id();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let comment = json!({
            "id": id, "body": body, "path": path, "line": line, "side": "RIGHT",
            "in_reply_to_id": in_reply_to,
            "user": {"login": login, "type": "User"},
            "html_url": format!("https://github.com/{repo}/pull/{number}#discussion_r{id}"),
            "created_at": now, "updated_at": now,
        });
        d.review_comments
            .insert(id, (repo.to_owned(), number, comment));
        id
    }

    /// A submitted review by `login` with `body`; returns its id.
    pub fn add_review(&self, repo: &str, number: u64, login: &str, body: &str) -> u64 {
        let mut d = self.data();
        let id = d.next_id();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let review = json!({
            "id": id, "state": "COMMENTED", "body": body,
            "user": {"login": login, "type": "User"}, "submitted_at": now,
            "html_url": format!("https://github.com/{repo}/pull/{number}#pullrequestreview-{id}"),
        });
        d.reviews.push((repo.to_owned(), number, review));
        id
    }
}

/// The mention flow's routes, tried before the others.
fn mention_route(
    d: &mut Data,
    method: &str,
    rest: &[&str],
    repo: &str,
    body: &Value,
) -> Option<Answer> {
    let number = |s: &str| s.parse::<u64>().ok();
    match (method, rest) {
        ("GET", ["issues", n]) => {
            let n = number(n)?;
            if let Some(issue) = d.mention.issues.get(&(repo.to_owned(), n)) {
                return Some(Answer::json(200, issue.clone()));
            }
            // A pull request is an issue too.
            let pull = d.pulls.get(&(repo.to_owned(), n))?;
            let mut issue = pull.clone();
            issue["pull_request"] =
                json!({"url": format!("https://api.github.com/repos/{repo}/pulls/{n}")});
            Some(Answer::json(200, issue))
        }
        ("GET" | "PATCH", ["pulls", "comments", id]) => {
            let id = number(id)?;
            let Some(entry) = d.review_comments.get_mut(&id).filter(|(r, _, _)| r == repo) else {
                return Some(Answer::not_found());
            };
            if method == "PATCH" {
                let Some(text) = body.get("body").and_then(Value::as_str) else {
                    return Some(Answer::message(422, "Validation Failed: body is missing"));
                };
                entry.2["body"] = json!(text);
                entry.2["updated_at"] =
                    json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            Some(Answer::json(200, entry.2.clone()))
        }
        ("GET", ["pulls", n, "reviews", id]) => {
            let (n, id) = (number(n)?, number(id)?);
            let review = d
                .reviews
                .iter()
                .find(|(r, num, v)| r == repo && *num == n && v["id"] == json!(id))
                .map(|(_, _, v)| v.clone());
            Some(review.map_or_else(Answer::not_found, |v| Answer::json(200, v)))
        }
        _ => None,
    }
}

/// The App id the server tests' `TestAppBuilder::github_app` configures.
pub const TEST_APP_ID: u64 = 4242;

/// A throwaway RSA key pair for App auth tests, made once per test process with `openssl`.
#[derive(Debug, Clone)]
pub struct TestAppKey {
    /// PKCS#1 PEM, as GitHub hands App keys out.
    pub private_pem: String,
    pub public_pem: String,
}

/// The process's test key (generated on first use; never a real credential).
pub fn test_app_key() -> &'static TestAppKey {
    static KEY: OnceLock<TestAppKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir for the test key");
        let private = dir.path().join("app.pem");
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let private_path = private.to_str().unwrap();
        run(&["genrsa", "-traditional", "-out", private_path, "2048"]);
        let public = run(&["rsa", "-in", private_path, "-pubout"]);
        TestAppKey {
            private_pem: std::fs::read_to_string(&private).unwrap(),
            public_pem: String::from_utf8(public).unwrap(),
        }
    })
}

// The review context (issue 8): files at a ref other than the default branch.

#[derive(Default)]
struct ContextData {
    /// (repository, ref, path) → text.
    files_at: HashMap<(String, String, String), String>,
}

impl FakeGithub {
    /// A file at `git_ref` (a branch name or sha), served by the contents API when asked with
    /// `?ref=` that ref; other refs do not see it.
    pub fn put_file_at(&self, repo: &str, git_ref: &str, path: &str, text: &str) -> &Self {
        self.data().context.files_at.insert(
            (repo.to_owned(), git_ref.to_owned(), path.to_owned()),
            text.to_owned(),
        );
        self
    }
}

/// The routes of [`ContextData`]; `None` leaves the request to [`route`].
fn context_route(
    d: &Data,
    method: &Method,
    rest: &[&str],
    repo: &str,
    query: &str,
) -> Option<Answer> {
    if *method != Method::GET {
        return None;
    }
    match rest {
        ["contents", file @ ..] if !file.is_empty() => {
            let git_ref = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "ref")
                .map(|(_, v)| v.into_owned())?;
            let file_path = file.join("/");
            let content =
                d.context
                    .files_at
                    .get(&(repo.to_owned(), git_ref.clone(), file_path.clone()))?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
            let wrapped: Vec<String> = encoded
                .as_bytes()
                .chunks(60)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            Some(Answer::json(
                200,
                json!({"type": "file", "name": file.last().copied().unwrap_or_default(),
                       "path": file_path, "sha": blob_sha(content), "size": content.len(),
                       "encoding": "base64", "content": wrapped.join("\n") + "\n"}),
            ))
        }
        _ => None,
    }
}
