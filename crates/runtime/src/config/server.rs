//! `[server]`: where and how the HTTP server listens.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::sources::{Sources, positive};

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    /// A request that has no response by then gets 504.
    pub request_timeout_secs: u64,
    /// Largest request body accepted by the API (the webhook route has GitHub's own 25 MiB).
    pub body_limit_bytes: usize,
    /// After SIGTERM or SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Origins allowed by CORS; empty means no cross-origin access. `*` allows any origin
    /// (without credentials).
    pub cors_allowed_origins: Vec<String>,
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<ServerConfig, ConfigError> {
    let config = ServerConfig {
        host: s
            .parse(
                "server.host",
                &["KODIAI_HOST"],
                "an IP address such as 0.0.0.0 or 127.0.0.1",
                parse_host,
            )?
            .unwrap_or(IpAddr::from([0, 0, 0, 0])),
        port: s
            .parse("server.port", &["PORT"], "a port number (0-65535)", |t| {
                t.parse().ok()
            })?
            .unwrap_or(8000),
        request_timeout_secs: s
            .parse(
                "server.request_timeout_secs",
                &["KODIAI_REQUEST_TIMEOUT_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(30),
        body_limit_bytes: s
            .parse(
                "server.body_limit_bytes",
                &["KODIAI_BODY_LIMIT_BYTES"],
                "a size in bytes, at least 1024",
                |t| t.parse::<usize>().ok().filter(|n| *n >= 1024),
            )?
            .unwrap_or(2 * 1024 * 1024),
        shutdown_grace_secs: s
            .parse(
                "server.shutdown_grace_secs",
                &["KODIAI_SHUTDOWN_GRACE_SECS"],
                "a whole number of seconds",
                |t| t.parse().ok(),
            )?
            .unwrap_or(30),
        cors_allowed_origins: s
            .parse(
                "server.cors_allowed_origins",
                &["KODIAI_CORS_ORIGINS"],
                "a comma-separated list of origins such as https://app.example.com, or *",
                parse_origins,
            )?
            .unwrap_or_default(),
    };
    Ok(config)
}

fn parse_host(text: &str) -> Option<IpAddr> {
    match text {
        "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        _ => text.parse().ok(),
    }
}

fn parse_origins(text: &str) -> Option<Vec<String>> {
    let mut origins = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "*" {
            origins.push(part.to_owned());
            continue;
        }
        let url = url::Url::parse(part).ok()?;
        // An origin is scheme://host[:port]: no path, query or fragment.
        if !matches!(url.scheme(), "http" | "https")
            || url.host().is_none()
            || url.path() != "/"
            || url.query().is_some()
            || part.ends_with('/')
        {
            return None;
        }
        origins.push(part.to_owned());
    }
    Some(origins)
}
