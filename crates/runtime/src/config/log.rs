//! `[log]`: the log format and filter.

use serde::Serialize;

use super::ConfigError;
use super::sources::Sources;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, pretty otherwise.
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter, e.g. `info,kodiai=debug`.
    pub filter: String,
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<LogConfig, ConfigError> {
    let config = LogConfig {
        format: s
            .parse(
                "log.format",
                &["LOG_FORMAT"],
                "json, pretty or auto",
                |t| match t {
                    "json" => Some(LogFormat::Json),
                    "pretty" | "text" => Some(LogFormat::Pretty),
                    "auto" => Some(LogFormat::Auto),
                    _ => None,
                },
            )?
            .unwrap_or(LogFormat::Auto),
        filter: s
            .parse(
                "log.filter",
                &["RUST_LOG"],
                "a log filter such as info or info,kodiai=debug",
                |t| {
                    tracing_subscriber::EnvFilter::try_new(t)
                        .ok()
                        .map(|_| t.to_owned())
                },
            )?
            .unwrap_or_else(|| "info".to_owned()),
    };
    Ok(config)
}
