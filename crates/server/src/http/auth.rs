//! Authentication of API calls. Today one credential exists: the operator's admin token
//! (`KODIAI_ADMIN_TOKEN`), sent as `Authorization: Bearer <token>` and checked by the
//! [`AdminAuth`] extractor; users, sessions and API keys (SPEC §10) join it here.
//!
//! A handler that takes `AdminAuth` as its first argument answers 401 before it reads anything
//! else of the request, so an unauthenticated caller learns nothing from 400s or 404s.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// The `WWW-Authenticate` challenge of a request without credentials.
const CHALLENGE: &str = "Bearer realm=\"kodiai\"";
/// The challenge of a request with credentials that are wrong (RFC 6750 §3.1).
const CHALLENGE_INVALID: &str = "Bearer realm=\"kodiai\", error=\"invalid_token\"";

/// Proof that the request carries the admin token. Take it as a handler's first argument.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.config.auth.admin_token.as_ref() else {
            return Err(ApiError::unauthorized(
                "the admin API is disabled: this server has no KODIAI_ADMIN_TOKEN set",
                CHALLENGE,
            ));
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "missing credentials: send `Authorization: Bearer <admin token>`",
                CHALLENGE,
            ));
        };
        let Some(presented) = bearer_token(value.as_bytes()) else {
            return Err(ApiError::unauthorized(
                "the Authorization header must be `Bearer <admin token>`",
                CHALLENGE_INVALID,
            ));
        };
        // Constant time over the bytes, so that the answer time does not reveal how much of a
        // guess was right. (`subtle` returns early on a length mismatch: the token's length is
        // the one thing a timing attacker could learn.)
        if bool::from(presented.ct_eq(expected.expose_secret().as_bytes())) {
            Ok(Self)
        } else {
            // The presented value is never quoted: it may be a real secret sent to the wrong place.
            Err(ApiError::unauthorized(
                "invalid admin token",
                CHALLENGE_INVALID,
            ))
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme name is case-insensitive,
/// RFC 9110 §11.1); `None` for another scheme or an empty token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.strip_prefix(b" ")?.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_tokens_are_read_from_the_header_value() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"), None);
        assert_eq!(bearer_token(b""), None);
    }
}
