//! `[auth]`: the API's signing key and admin token.

use secrecy::SecretString;
use serde::Serialize;

use super::ConfigError;
use super::sources::{Sources, masked};

#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    /// Signs the API's session tokens.
    #[serde(serialize_with = "masked")]
    pub secret_key: Option<SecretString>,
    /// A bearer token with admin rights, for operators and scripts.
    #[serde(serialize_with = "masked")]
    pub admin_token: Option<SecretString>,
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<AuthConfig, ConfigError> {
    let config = AuthConfig {
        secret_key: s.secret("auth.secret_key", &["SECRET_KEY"])?,
        admin_token: s.secret("auth.admin_token", &["KODIAI_ADMIN_TOKEN"])?,
    };
    Ok(config)
}
