//! The one GitHub client every REST and GraphQL call goes through: authentication (App
//! installation tokens or a personal token), a timeout on every call, retries with backoff on
//! 5xx and on primary and secondary rate limits (honouring `Retry-After` and
//! `X-RateLimit-Reset`), the per-installation [`governor`](crate::governor) for content-creating
//! calls, and metrics by route and status.
//!
//! Why a thin reqwest client of our own rather than octocrab: the parts that matter here are the
//! retry policy, the governor placed *inside* the retry loop (every attempt of a POST counts),
//! waits on tokio's clock (so `tokio::time::pause()` drives backoff, rate-limit waits and the
//! governor in tests), metrics labelled by route template, and base URLs that point at a local
//! stand-in. octocrab would need wrapping for all of that, and its models would still need our own
//! structs for the fields we use. The calls kodiai makes are few; each has a typed method in
//! [`rest`](crate::rest) and the rest can use [`InstallationClient::request`].
//!
//! Tokens travel only in the `Authorization` header; URLs, errors and logs never contain them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use crate::auth::{AppKey, AuthError, Credentials, TokenCache, app_jwt};
use crate::contents::ContentsCache;
use crate::governor::{GovernorKey, GovernorLimits, Governors};
use crate::permissions::PermissionCache;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A GitHub call that did not succeed. Callers (job handlers) decide with
/// [`Error::is_transient`] whether to try the job again later.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// GitHub answered with an error status (after any retries). `message` is GitHub's own.
    #[error("GitHub {method} {route}: {status} {message}")]
    Status {
        method: Method,
        route: &'static str,
        status: u16,
        message: String,
    },
    /// Still rate limited after the retries, or GitHub asks for a longer wait than we allow.
    #[error("GitHub {route}: rate limited, retry in {}s", retry_after.as_secs())]
    RateLimited {
        route: &'static str,
        retry_after: Duration,
    },
    /// The request did not get an answer: connection refused, timeout, reset.
    #[error("GitHub {route}: {message}")]
    Transport {
        route: &'static str,
        message: String,
    },
    /// GitHub answered 2xx with a body we do not understand.
    #[error("GitHub {route}: unexpected response body: {message}")]
    Decode {
        route: &'static str,
        message: String,
    },
    /// GraphQL answered with `errors`.
    #[error("GitHub GraphQL: {0}")]
    Graphql(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An App call without an installation id (the event carried none).
    #[error("GitHub App mode needs an installation id for this call")]
    NoInstallation,
    /// A `Link: rel="next"` that points off the API's host; not followed with our token.
    #[error("GitHub {route}: pagination link leaves the API host")]
    ForeignLink { route: &'static str },
}

impl Error {
    /// Worth retrying the whole job later (rate limits, 5xx, transport), as opposed to an answer
    /// that will not change (404, 422, bad credentials).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The HTTP status GitHub answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Everything about the client except the credentials.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// REST base, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api_url: Url,
    pub graphql_url: Url,
    /// Per attempt, connect to last byte.
    pub timeout: Duration,
    /// Retries after the first attempt (5xx, transport errors, rate limits).
    pub max_retries: u32,
    /// First backoff after a 5xx; doubled per retry, capped at [`ClientOptions::backoff_max`].
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A rate-limit wait longer than this fails the call with [`Error::RateLimited`] instead
    /// (the job is retried later rather than holding a worker for an hour).
    pub max_rate_limit_wait: Duration,
    pub governor: GovernorLimits,
    /// How long a collaborator permission answer is trusted.
    pub permission_cache_ttl: Duration,
    pub user_agent: String,
}

impl ClientOptions {
    /// github.com, with the defaults documented in README.
    pub fn new(api_url: Url, graphql_url: Url) -> Self {
        Self {
            api_url,
            graphql_url,
            timeout: Duration::from_secs(30),
            max_retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            governor: GovernorLimits::default(),
            permission_cache_ttl: Duration::from_secs(120),
            user_agent: concat!("kodiai/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The shared client. Cheap to clone; one per process.
#[derive(Clone, Debug)]
pub struct GithubClient {
    inner: Arc<Inner>,
    /// The handles kodiai answers to (without `@`), neutralized in everything it writes.
    own_handles: Arc<[String]>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    credentials: Credentials,
    options: ClientOptions,
    tokens: TokenCache,
    governors: Governors,
    pub(crate) permissions: PermissionCache,
    pub(crate) contents: ContentsCache,
}

impl GithubClient {
    pub fn new(credentials: Credentials, options: ClientOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            // GitHub redirects renamed repositories (301 to the new path). reqwest drops the
            // Authorization header when a redirect leaves the host, so a token never follows.
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| Error::Transport {
                route: "client",
                message: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                governors: Governors::new(options.governor),
                permissions: PermissionCache::new(options.permission_cache_ttl),
                contents: ContentsCache::default(),
                credentials,
                options,
                tokens: TokenCache::default(),
            }),
            own_handles: Arc::from(Vec::new()),
        })
    }

    /// The client with the handles kodiai answers to (its App slug, `<slug>[bot]`, its bot
    /// login, the trigger); with or without `@`, blanks dropped. Every body the client writes
    /// has them neutralized (see [`InstallationClient::gate`]).
    pub fn with_own_handles<I, S>(mut self, handles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut own: Vec<String> = Vec::new();
        for handle in handles {
            let handle = handle.as_ref().trim().trim_start_matches('@');
            if !handle.is_empty() && !own.iter().any(|h| h.eq_ignore_ascii_case(handle)) {
                own.push(handle.to_owned());
            }
        }
        self.own_handles = Arc::from(own);
        self
    }

    /// The handles set with [`GithubClient::with_own_handles`].
    pub fn own_handles(&self) -> &[String] {
        &self.own_handles
    }

    /// An App client from the App id and its private key's PEM text.
    pub fn app(app_id: u64, private_key: &SecretString, options: ClientOptions) -> Result<Self> {
        let key = AppKey::from_pem(private_key)?;
        Self::new(Credentials::App { app_id, key }, options)
    }

    /// Personal-token mode.
    pub fn personal_token(token: SecretString, options: ClientOptions) -> Result<Self> {
        Self::new(Credentials::Token(token), options)
    }

    pub fn is_app(&self) -> bool {
        matches!(self.inner.credentials, Credentials::App { .. })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// Calls on behalf of one installation (the `installation.id` of the webhook). In
    /// personal-token mode the id is not needed and all calls share one governor.
    pub fn installation(&self, installation_id: Option<u64>) -> InstallationClient {
        InstallationClient {
            client: self.clone(),
            installation_id,
        }
    }

    pub(crate) fn permissions(&self) -> &PermissionCache {
        &self.inner.permissions
    }

    pub(crate) fn contents(&self) -> &ContentsCache {
        &self.inner.contents
    }
}

/// One REST or GraphQL request, before authentication.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// The route template, e.g. `/repos/{owner}/{repo}/issues/{number}/comments`: the metrics
    /// label and the name in errors (never the concrete path, which would explode the labels).
    pub route: &'static str,
    pub url: Url,
    pub body: Option<serde_json::Value>,
    /// Counts against the installation's governor (comments, reviews, reactions, pulls).
    pub creates_content: bool,
    pub accept: &'static str,
    pub if_none_match: Option<String>,
}

/// An answer: status, headers, body bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    pub fn json<T: DeserializeOwned>(&self, route: &'static str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Decode {
            route,
            message: e.to_string(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client bound to one installation (or to the personal token).
#[derive(Debug, Clone)]
pub struct InstallationClient {
    client: GithubClient,
    installation_id: Option<u64>,
}

const JSON: &str = "application/vnd.github+json";
const API_VERSION: &str = "2022-11-28";

impl InstallationClient {
    pub fn installation_id(&self) -> Option<u64> {
        self.installation_id
    }

    pub(crate) fn github(&self) -> &GithubClient {
        &self.client
    }

    /// A body kodiai wrote, as it may leave: own handles neutralized, or the whole body replaced
    /// by a notice when it carries a secret (logged and counted by the gate). Every write method
    /// of [`rest`](crate::rest) calls it; a new one must too.
    pub fn gate(&self, text: &str) -> String {
        let handles: Vec<&str> = self.client.own_handles.iter().map(String::as_str).collect();
        crate::sanitize::gate_outgoing(text, &handles).into_text()
    }

    /// The REST URL of `segments` under the API base, each segment percent-encoded.
    pub fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.client.inner.options.api_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A call to `segments` under the API base. Anything but GET/HEAD counts as creating
    /// content unless changed with [`Call::creates_content`].
    pub fn call(&self, method: Method, route: &'static str, segments: &[&str]) -> Call {
        let creates_content = !matches!(method, Method::GET | Method::HEAD);
        Call {
            url: self.api_url(segments),
            method,
            route,
            body: None,
            creates_content,
            accept: JSON,
            if_none_match: None,
        }
    }

    /// Sends a call and decodes a 2xx JSON answer.
    pub async fn request<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let route = call.route;
        self.send(call).await?.json(route)
    }

    /// Every page of a list endpoint (`per_page=100`, following `Link: rel="next"` on the API's
    /// own host), concatenated. `max_items` stops early (GitHub caps some lists anyway, e.g.
    /// 3,000 pull request files).
    pub async fn paginate<T: DeserializeOwned>(
        &self,
        mut call: Call,
        max_items: usize,
    ) -> Result<Vec<T>> {
        call.url.query_pairs_mut().append_pair("per_page", "100");
        let api = self.client.inner.options.api_url.clone();
        let mut items = Vec::new();
        loop {
            let route = call.route;
            let response = self.send(call.clone()).await?;
            let page: Vec<T> = response.json(route)?;
            let empty = page.is_empty();
            items.extend(page);
            if empty || items.len() >= max_items {
                break;
            }
            let Some(next) = response.header("link").and_then(next_link) else {
                break;
            };
            let next = Url::parse(&next).map_err(|_| Error::ForeignLink { route })?;
            if next.origin() != api.origin() {
                return Err(Error::ForeignLink { route });
            }
            call.url = next;
        }
        items.truncate(max_items);
        Ok(items)
    }

    /// A GraphQL query or mutation; `data` decoded as `T`. Mutations count against the governor.
    pub async fn graphql<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<T> {
        #[derive(serde::Deserialize)]
        struct Answer<T> {
            data: Option<T>,
            #[serde(default)]
            errors: Vec<GraphqlError>,
        }
        #[derive(serde::Deserialize)]
        struct GraphqlError {
            message: String,
            #[serde(default, rename = "type")]
            kind: String,
        }
        const ROUTE: &str = "/graphql";
        let call = Call {
            method: Method::POST,
            route: ROUTE,
            url: self.client.inner.options.graphql_url.clone(),
            body: Some(serde_json::json!({ "query": query, "variables": variables })),
            creates_content: query.trim_start().starts_with("mutation"),
            accept: JSON,
            if_none_match: None,
        };
        let options = &self.client.inner.options;
        let mut retries = 0u32;
        loop {
            let response = self.send(call.clone()).await?;
            let answer: Answer<T> = response.json(ROUTE)?;
            // GraphQL's primary limit is a 200 with an error of type RATE_LIMITED; the headers
            // say when it resets, as for REST.
            if answer.errors.iter().any(|e| e.kind == "RATE_LIMITED") {
                let wait = header_wait(&response.headers, SystemTime::now())
                    .unwrap_or_else(|| SECONDARY_DEFAULT_WAIT.saturating_mul(1 << retries.min(4)));
                if wait > options.max_rate_limit_wait || retries >= options.max_retries {
                    return Err(Error::RateLimited {
                        route: ROUTE,
                        retry_after: wait,
                    });
                }
                metrics::counter!("github_rate_limited_total", "route" => ROUTE).increment(1);
                tracing::warn!(
                    route = ROUTE,
                    wait_secs = wait.as_secs(),
                    "GitHub GraphQL rate limit; waiting"
                );
                retries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            return match (answer.data, answer.errors.is_empty()) {
                (Some(data), true) => Ok(data),
                (_, false) => Err(Error::Graphql(
                    answer
                        .errors
                        .into_iter()
                        .map(|e| e.message)
                        .collect::<Vec<_>>()
                        .join("; "),
                )),
                (None, true) => Err(Error::Graphql("no data in the answer".into())),
            };
        }
    }

    /// Sends a call with authentication, the governor, retries and metrics. Returns 2xx and 304
    /// answers; anything else is an [`Error`].
    pub async fn send(&self, call: Call) -> Result<RawResponse> {
        let options = &self.client.inner.options;
        let route = call.route;
        let mut retries = 0u32;
        let mut refreshed_token = false;
        if self.client.is_app() && self.installation_id.is_none() {
            return Err(Error::NoInstallation);
        }
        loop {
            // The governor first: its wait can be long, and the token is taken fresh after it.
            if call.creates_content {
                let key = match (&self.client.inner.credentials, self.installation_id) {
                    (Credentials::App { .. }, Some(id)) => GovernorKey::Installation(id),
                    _ => GovernorKey::PersonalToken,
                };
                self.client.inner.governors.for_key(key).acquire().await;
            }
            let authorization = self.authorization().await?;
            let outcome = self.attempt(&call, &authorization).await;
            let delay = match outcome {
                Ok(response) if (200..300).contains(&response.status) || response.status == 304 => {
                    return Ok(response);
                }
                Ok(response) => {
                    if response.status == 401 && !refreshed_token && self.uses_installation_token()
                    {
                        // A revoked or early-expired installation token: one fresh try.
                        refreshed_token = true;
                        if let Some(id) = self.installation_id {
                            self.client.inner.tokens.invalidate(id).await;
                        }
                        continue;
                    }
                    match retry_delay(&response, retries, options, SystemTime::now()) {
                        Some(Wait::RateLimit(wait))
                            if wait > options.max_rate_limit_wait
                                || retries >= options.max_retries =>
                        {
                            return Err(Error::RateLimited {
                                route,
                                retry_after: wait,
                            });
                        }
                        Some(Wait::RateLimit(wait)) => {
                            metrics::counter!("github_rate_limited_total", "route" => route)
                                .increment(1);
                            tracing::warn!(
                                route,
                                wait_secs = wait.as_secs(),
                                status = response.status,
                                "GitHub rate limit; waiting"
                            );
                            wait
                        }
                        Some(Wait::Backoff(wait)) if retries < options.max_retries => {
                            tracing::warn!(
                                route,
                                wait_ms = wait.as_millis() as u64,
                                status = response.status,
                                "GitHub error; retrying"
                            );
                            wait
                        }
                        _ => {
                            return Err(Error::Status {
                                method: call.method.clone(),
                                route,
                                status: response.status,
                                message: error_message(&response.body),
                            });
                        }
                    }
                }
                Err(e) => {
                    // A request that never reached GitHub (connect) may always be repeated; a
                    // timed-out POST may have been applied, so only reads are repeated then.
                    let repeatable = e.is_connect()
                        || (e.is_timeout() && matches!(call.method, Method::GET | Method::HEAD));
                    if !repeatable || retries >= options.max_retries {
                        return Err(Error::Transport {
                            route,
                            message: transport_message(&e),
                        });
                    }
                    tracing::warn!(route, error = %transport_message(&e), "GitHub unreachable; retrying");
                    backoff(retries, options)
                }
            };
            retries += 1;
            metrics::counter!("github_retries_total", "route" => route).increment(1);
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        authorization: &SecretString,
    ) -> std::result::Result<RawResponse, reqwest::Error> {
        let started = Instant::now();
        let mut auth = HeaderValue::from_str(authorization.expose_secret())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        auth.set_sensitive(true);
        let mut request = self
            .client
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .header("authorization", auth)
            .header("accept", call.accept)
            .header("x-github-api-version", API_VERSION);
        if let Some(etag) = &call.if_none_match {
            request = request.header("if-none-match", etag);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let result = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(RawResponse {
                status,
                headers,
                body,
            })
        }
        .await;
        let status = match &result {
            Ok(r) => r.status.to_string(),
            Err(e) if e.is_timeout() => "timeout".to_owned(),
            Err(_) => "error".to_owned(),
        };
        metrics::counter!("github_requests_total", "method" => call.method.to_string(), "route" => call.route, "status" => status)
            .increment(1);
        metrics::histogram!("github_request_duration_seconds", "route" => call.route)
            .record(started.elapsed().as_secs_f64());
        if let Ok(response) = &result
            && let Some(remaining) = response
                .header("x-ratelimit-remaining")
                .and_then(|v| v.parse::<f64>().ok())
        {
            let resource = response
                .header("x-ratelimit-resource")
                .unwrap_or("core")
                .to_owned();
            metrics::gauge!("github_rate_limit_remaining", "resource" => resource).set(remaining);
        }
        result
    }

    fn uses_installation_token(&self) -> bool {
        self.client.is_app() && self.installation_id.is_some()
    }

    /// The token git authenticates with to push and fetch as this installation (the
    /// installation token, cached and refreshed like the API's; the personal token in that
    /// mode). For a workspace's remote only: it must never reach a log, a prompt or a body.
    pub async fn git_token(&self) -> Result<SecretString> {
        let inner = &self.client.inner;
        match &inner.credentials {
            Credentials::Token(token) => Ok(token.clone()),
            Credentials::App { app_id, key } => {
                let id = self.installation_id.ok_or(Error::NoInstallation)?;
                inner
                    .tokens
                    .get_or_refresh(id, || self.exchange_token(*app_id, key, id))
                    .await
            }
        }
    }

    /// The `Authorization` header value for this installation.
    async fn authorization(&self) -> Result<SecretString> {
        let inner = &self.client.inner;
        match &inner.credentials {
            Credentials::Token(token) => Ok(SecretString::from(format!(
                "Bearer {}",
                token.expose_secret()
            ))),
            Credentials::App { app_id, key } => {
                let id = self.installation_id.ok_or(Error::NoInstallation)?;
                let token = inner
                    .tokens
                    .get_or_refresh(id, || self.exchange_token(*app_id, key, id))
                    .await?;
                Ok(SecretString::from(format!(
                    "Bearer {}",
                    token.expose_secret()
                )))
            }
        }
    }

    /// `POST /app/installations/{id}/access_tokens` with the App's JWT.
    async fn exchange_token(
        &self,
        app_id: u64,
        key: &AppKey,
        installation_id: u64,
    ) -> Result<(SecretString, chrono::DateTime<chrono::Utc>)> {
        #[derive(serde::Deserialize)]
        struct AccessToken {
            token: SecretString,
            expires_at: chrono::DateTime<chrono::Utc>,
        }
        const ROUTE: &str = "/app/installations/{installation_id}/access_tokens";
        let id = installation_id.to_string();
        let call = self.call(
            Method::POST,
            ROUTE,
            &["app", "installations", &id, "access_tokens"],
        );
        let app = self.client.installation(None);
        let options = &self.client.inner.options;
        let mut retries = 0;
        loop {
            let jwt = app_jwt(app_id, key, SystemTime::now())?;
            let authorization = SecretString::from(format!("Bearer {}", jwt.expose_secret()));
            let delay = match app.attempt(&call, &authorization).await {
                Ok(response) if response.status == 201 || response.status == 200 => {
                    let token: AccessToken = response.json(ROUTE)?;
                    tracing::debug!(installation_id, expires_at = %token.expires_at, "installation token issued");
                    return Ok((token.token, token.expires_at));
                }
                Ok(response) => match retry_delay(&response, retries, options, SystemTime::now()) {
                    Some(Wait::RateLimit(w) | Wait::Backoff(w))
                        if retries < options.max_retries && w <= options.max_rate_limit_wait =>
                    {
                        w
                    }
                    _ => {
                        return Err(Error::Status {
                            method: Method::POST,
                            route: ROUTE,
                            status: response.status,
                            message: error_message(&response.body),
                        });
                    }
                },
                Err(e) if e.is_connect() && retries < options.max_retries => {
                    backoff(retries, options)
                }
                Err(e) => {
                    return Err(Error::Transport {
                        route: ROUTE,
                        message: transport_message(&e),
                    });
                }
            };
            retries += 1;
            tokio::time::sleep(delay).await;
        }
    }
}

/// Why and how long to wait before the next attempt.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    /// GitHub said how long (or we wait GitHub's minimum for a secondary limit).
    RateLimit(Duration),
    /// A 5xx: exponential backoff with jitter.
    Backoff(Duration),
}

/// GitHub's advice when a secondary limit names no time: wait at least a minute.
const SECONDARY_DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Decides whether an error answer is retried, and after how long: `Retry-After` first, then an
/// exhausted primary limit's `X-RateLimit-Reset`, then a secondary limit's minimum; 5xx back off.
fn retry_delay(
    response: &RawResponse,
    retries: u32,
    options: &ClientOptions,
    now: SystemTime,
) -> Option<Wait> {
    let status = response.status;
    if status == 403 || status == 429 {
        if let Some(wait) = header_wait(&response.headers, now) {
            return Some(Wait::RateLimit(wait));
        }
        let message = error_message(&response.body).to_ascii_lowercase();
        if status == 429 || message.contains("secondary rate limit") || message.contains("abuse") {
            let doubled = SECONDARY_DEFAULT_WAIT.saturating_mul(1 << retries.min(4));
            return Some(Wait::RateLimit(doubled));
        }
        return None;
    }
    // A 503 may say when to come back; otherwise back off.
    (status >= 500).then(|| match header_wait(&response.headers, now) {
        Some(wait) => Wait::RateLimit(wait),
        None => Wait::Backoff(backoff(retries, options)),
    })
}

/// The wait a rate-limited answer's headers ask for: `Retry-After` (seconds, or an HTTP date as
/// RFC 9110 allows), else the time until `X-RateLimit-Reset` when `X-RateLimit-Remaining` is 0.
fn header_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(value) {
            let at = SystemTime::from(at.with_timezone(&chrono::Utc));
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    if header("x-ratelimit-remaining") == Some("0")
        && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())
    {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // One second past the reset, against clock skew and rounding.
        return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
    }
    None
}

/// `base * 2^retries`, capped, plus up to a quarter of it at random (so that many clients that
/// failed together do not retry together).
fn backoff(retries: u32, options: &ClientOptions) -> Duration {
    let exp = options
        .backoff_base
        .saturating_mul(1u32 << retries.min(16))
        .min(options.backoff_max);
    exp + exp.mul_f64(fastrand::f64() * 0.25)
}

/// GitHub's `message` from an error body, shortened; the raw text when it is not JSON.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: String,
    }
    let text = match serde_json::from_slice::<Body>(body) {
        Ok(b) => b.message,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let mut text: String = text.chars().take(300).collect();
    if text.is_empty() {
        text.push_str("(no message)");
    }
    text
}

/// A transport error without its URL (the URL is safe, but long; the route names the call).
fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == r#"rel="next""#)
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// Serializes a request body.
pub(crate) fn body<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

#[cfg(test)]
mod tests;
