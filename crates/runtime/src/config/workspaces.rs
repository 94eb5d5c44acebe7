//! `[workspaces]`: the git mirror cache and kodiai's commits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::ConfigError;
use super::sources::{Sources, positive};

/// Git workspaces: the mirror cache under `<data_dir>/workspaces`, and kodiai's commits.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspacesConfig {
    /// Mirrors not in use are evicted, least recently used first, above this size.
    pub cache_quota_mb: u64,
    /// Repositories larger than this are refused.
    pub max_repository_size_mb: u64,
    /// Each git command (fetch, checkout, push) is killed after this long.
    pub git_timeout_secs: u64,
    /// Author and committer of kodiai's commits (the App's bot account).
    pub commit_name: String,
    pub commit_email: String,
}

impl WorkspacesConfig {
    /// The workspace module's settings for the data folder `data_dir`.
    pub fn settings(&self, data_dir: &Path) -> kodiai_agent::workspace::Settings {
        const MIB: u64 = 1024 * 1024;
        kodiai_agent::workspace::Settings {
            root: data_dir.join("workspaces"),
            git_program: PathBuf::from("git"),
            git_timeout: Duration::from_secs(self.git_timeout_secs),
            cache_quota_bytes: self.cache_quota_mb.saturating_mul(MIB),
            max_repository_bytes: self.max_repository_size_mb.saturating_mul(MIB),
            identity: kodiai_agent::workspace::Identity::new(
                self.commit_name.clone(),
                self.commit_email.clone(),
            ),
        }
    }
}

pub(super) fn read(s: &mut Sources<'_>) -> Result<WorkspacesConfig, ConfigError> {
    const MEGABYTES: &str = "a size in MiB, at least 1";
    let name = |t: &str| {
        let t = t.trim();
        (!t.is_empty() && !t.contains(['<', '>', '\n'])).then(|| t.to_owned())
    };
    Ok(WorkspacesConfig {
        cache_quota_mb: s
            .parse(
                "workspaces.cache_quota_mb",
                &["KODIAI_WORKSPACES_CACHE_QUOTA_MB"],
                MEGABYTES,
                positive,
            )?
            .unwrap_or(20 * 1024),
        max_repository_size_mb: s
            .parse(
                "workspaces.max_repository_size_mb",
                &["KODIAI_MAX_REPOSITORY_SIZE_MB"],
                MEGABYTES,
                positive,
            )?
            .unwrap_or(2 * 1024),
        git_timeout_secs: s
            .parse(
                "workspaces.git_timeout_secs",
                &["KODIAI_GIT_TIMEOUT_SECS"],
                "a whole number of seconds, at least 1",
                positive,
            )?
            .unwrap_or(600),
        commit_name: s
            .parse(
                "workspaces.commit_name",
                &["KODIAI_COMMIT_NAME"],
                "a name without <, > or line breaks",
                name,
            )?
            .unwrap_or_else(|| "kodiai[bot]".to_owned()),
        commit_email: s
            .parse(
                "workspaces.commit_email",
                &["KODIAI_COMMIT_EMAIL"],
                "an e-mail address such as 123+kodiai[bot]@users.noreply.github.com",
                |t| name(t).filter(|t| t.contains('@')),
            )?
            .unwrap_or_else(|| "kodiai[bot]@users.noreply.github.com".to_owned()),
    })
}
