//! How kodiai proves who it is to GitHub: as a GitHub App (an RS256 JWT signed with the App's
//! private key, exchanged for installation tokens that are cached until five minutes before they
//! expire) or, for a single user, with a personal token (`GITHUB_TOKEN`).
//!
//! Tokens and keys are `SecretString`s or opaque wrappers whose `Debug` shows nothing, so that no
//! log line, error or `{:?}` can carry them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::time::Instant;

/// The JWT's `iat` is set this far in the past, against clock drift (GitHub's advice).
pub const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// The JWT's `exp`, from now. GitHub refuses more than ten minutes; this stays under.
pub const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// An installation token is replaced this long before GitHub's `expires_at`.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What the client authenticates with.
#[derive(Clone)]
pub enum Credentials {
    /// A GitHub App: its id and private key.
    App { app_id: u64, key: AppKey },
    /// A personal access token (personal-token mode): one user, no installations.
    Token(SecretString),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App { app_id, .. } => f.debug_struct("App").field("app_id", app_id).finish(),
            Self::Token(_) => f.write_str("Token(********)"),
        }
    }
}

/// Why credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The PEM text is not an RSA private key. The key itself is never in the message.
    #[error("the GitHub App private key is not an RSA private key in PEM form ({0})")]
    BadKey(String),
    #[error("could not sign the GitHub App JWT ({0})")]
    Sign(String),
}

/// A GitHub App's private key, ready to sign. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct AppKey(EncodingKey);

impl AppKey {
    /// From PEM text (PKCS#1 `RSA PRIVATE KEY`, as GitHub hands it out, or PKCS#8). Reading the
    /// key from a path is the configuration's job (`GITHUB_PRIVATE_KEY` is text or a path).
    pub fn from_pem(pem: &SecretString) -> Result<Self, AuthError> {
        EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
            .map(Self)
            .map_err(|e| AuthError::BadKey(e.kind_name()))
    }
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(********)")
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    /// The error's kind only: some kinds' messages could quote key material.
    fn kind_name(&self) -> String {
        let kind = format!("{:?}", self.kind());
        kind.split(['(', ' '])
            .next()
            .unwrap_or("invalid")
            .to_owned()
    }
}

#[derive(Serialize)]
struct AppClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// The App's JWT for `now`: `iat` one minute back, `exp` nine minutes ahead, `iss` the App id.
pub fn app_jwt(app_id: u64, key: &AppKey, now: SystemTime) -> Result<SecretString, AuthError> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let claims = AppClaims {
        iat: now.saturating_sub(JWT_BACKDATE).as_secs(),
        exp: (now + JWT_LIFETIME).as_secs(),
        iss: app_id.to_string(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.0)
        .map(SecretString::from)
        .map_err(|e| AuthError::Sign(e.kind_name()))
}

/// A token GitHub gave for one installation, and when to stop using it.
struct CachedToken {
    token: SecretString,
    /// Five minutes before GitHub's `expires_at`, on tokio's clock.
    refresh_at: Instant,
}

/// Installation tokens by installation id. Each installation has its own async lock, held while
/// its token is fetched, so concurrent calls wait for one refresh instead of each making one.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<CachedToken>>>>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache")
    }
}

impl TokenCache {
    fn slot(&self, installation: u64) -> Arc<tokio::sync::Mutex<Option<CachedToken>>> {
        // Poisoning only means a panic elsewhere mid-insert; the map itself is intact.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(installation).or_default().clone()
    }

    /// The installation's cached token, or a new one from `fetch` (token and GitHub's
    /// `expires_at`) when there is none or it is within five minutes of expiry.
    pub async fn get_or_refresh<F, Fut, E>(
        &self,
        installation: u64,
        fetch: F,
    ) -> Result<SecretString, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, DateTime<Utc>), E>>,
    {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, expires_at) = fetch().await?;
        let lifetime = (expires_at - Utc::now()).to_std().unwrap_or_default();
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(TOKEN_REFRESH_MARGIN),
        });
        Ok(token)
    }

    /// Forgets the installation's token (GitHub said 401: revoked or expired early).
    pub async fn invalidate(&self, installation: u64) {
        *self.slot(installation).lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_refresh_at_a_time_and_again_five_minutes_before_expiry() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let fetch = |fetches: Arc<AtomicU32>| async move {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            // A slow exchange, so that the concurrent callers pile up behind it.
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, ()>((
                SecretString::from(format!("ghs_{n}")),
                Utc::now() + chrono::Duration::hours(1),
            ))
        };
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                let fetches = fetches.clone();
                tokio::spawn(async move { cache.get_or_refresh(7, || fetch(fetches)).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().expose_secret(), "ghs_1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // The token came at 1 s (the exchange took that long) and lives an hour: still used at
        // 54 min, replaced from 55 min 1 s on.
        tokio::time::advance(Duration::from_secs(54 * 60)).await;
        let t = cache
            .get_or_refresh(7, || fetch(fetches.clone()))
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "ghs_1");
        tokio::time::advance(Duration::from_secs(61 + 1)).await;
        let t = cache
            .get_or_refresh(7, || fetch(fetches.clone()))
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "ghs_2");
        // Another installation has its own token.
        let t = cache
            .get_or_refresh(8, || fetch(fetches.clone()))
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "ghs_3");
        cache.invalidate(7).await;
        let t = cache
            .get_or_refresh(7, || fetch(fetches.clone()))
            .await
            .unwrap();
        assert_eq!(t.expose_secret(), "ghs_4");
    }

    #[test]
    fn a_bad_key_is_refused_without_quoting_it() {
        let pem = SecretString::from(
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END RSA PRIVATE KEY-----\n"
                .to_owned(),
        );
        let err = AppKey::from_pem(&pem).unwrap_err().to_string();
        assert!(err.contains("not an RSA private key"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let creds = Credentials::Token(SecretString::from("ghp_supersecret".to_owned()));
        assert!(!format!("{creds:?}").contains("supersecret"));
    }
}
