//! Who may trigger kodiai: the sender needs write access to the repository (the collaborator
//! permission API says `write`, `maintain` or `admin`) or is listed in `.kodiai.yml`'s
//! `permissions.allowed_users`. Answers are cached briefly (a mention storm in one thread asks
//! GitHub once), per repository and login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::{InstallationClient, Result};

/// A user's role on a repository, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// `write`, `maintain` and `admin` may make kodiai act.
    pub fn can_write(self) -> bool {
        self >= Self::Write
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Read => "read",
            Self::Triage => "triage",
            Self::Write => "write",
            Self::Maintain => "maintain",
            Self::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "none" => Self::None,
            "read" | "pull" => Self::Read,
            "triage" => Self::Triage,
            "write" | "push" => Self::Write,
            "maintain" => Self::Maintain,
            "admin" => Self::Admin,
            _ => return None,
        })
    }
}

/// The answer to "may this sender trigger kodiai here?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerDecision {
    /// Listed in `permissions.allowed_users` (GitHub was not asked).
    AllowedUser,
    /// Has write access or more.
    Permitted(Permission),
    /// Below write access; `reason` is what the job records.
    Refused {
        permission: Permission,
        reason: String,
    },
}

impl TriggerDecision {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Self::Refused { .. })
    }
}

/// Permissions by (repository, login), lower-cased, with the time they were asked.
#[derive(Debug)]
pub struct PermissionCache {
    ttl: Duration,
    entries: Mutex<HashMap<(String, String), (Permission, Instant)>>,
}

/// Entries past this many are dropped wholesale (expired ones first) so the map stays bounded.
const MAX_ENTRIES: usize = 10_000;

impl PermissionCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &(String, String)) -> Option<Permission> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(p, _)| *p)
    }

    fn put(&self, key: (String, String), permission: Permission) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (permission, Instant::now()));
    }
}

impl InstallationClient {
    /// The user's permission on the repository
    /// (`GET /repos/{owner}/{repo}/collaborators/{username}/permission`), cached for the
    /// client's `permission_cache_ttl`. A user GitHub does not know (404) has none.
    pub async fn collaborator_permission(
        &self,
        owner: &str,
        repo: &str,
        login: &str,
    ) -> Result<Permission> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            permission: String,
            /// Finer than `permission` (`maintain`, `triage`, or a custom role's name).
            #[serde(default)]
            role_name: String,
        }
        let key = (
            format!("{owner}/{repo}").to_lowercase(),
            login.to_lowercase(),
        );
        let cache = self.github().permissions();
        if let Some(p) = cache.get(&key) {
            return Ok(p);
        }
        let call = self.call(
            Method::GET,
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            &["repos", owner, repo, "collaborators", login, "permission"],
        );
        let permission = match self.request::<Answer>(call).await {
            // A custom role's name is not one of GitHub's; its base `permission` then decides.
            Ok(a) => Permission::parse(&a.role_name)
                .or_else(|| Permission::parse(&a.permission))
                .unwrap_or(Permission::None),
            Err(e) if e.status() == Some(404) => Permission::None,
            Err(e) => return Err(e),
        };
        cache.put(key, permission);
        Ok(permission)
    }

    /// Whether `login` may trigger kodiai on the repository: listed in `allowed_users`
    /// (case-insensitive, GitHub logins are), or write access or more.
    pub async fn may_trigger(
        &self,
        owner: &str,
        repo: &str,
        login: &str,
        allowed_users: &[String],
    ) -> Result<TriggerDecision> {
        if allowed_users
            .iter()
            .any(|u| u.trim_start_matches('@').eq_ignore_ascii_case(login))
        {
            return Ok(TriggerDecision::AllowedUser);
        }
        let permission = self.collaborator_permission(owner, repo, login).await?;
        Ok(if permission.can_write() {
            TriggerDecision::Permitted(permission)
        } else {
            TriggerDecision::Refused {
                permission,
                reason: format!(
                    "{login} has {} access to {owner}/{repo}; write, maintain or admin is needed",
                    permission.as_str()
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_maintain_and_admin_may_write() {
        for (text, can) in [
            ("none", false),
            ("read", false),
            ("triage", false),
            ("write", true),
            ("maintain", true),
            ("admin", true),
        ] {
            assert_eq!(Permission::parse(text).unwrap().can_write(), can, "{text}");
        }
        assert_eq!(Permission::parse("custom-role"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn cache_entries_expire() {
        let cache = PermissionCache::new(Duration::from_secs(120));
        let key = ("o/r".to_owned(), "alice".to_owned());
        cache.put(key.clone(), Permission::Write);
        assert_eq!(cache.get(&key), Some(Permission::Write));
        tokio::time::advance(Duration::from_secs(121)).await;
        assert_eq!(cache.get(&key), None);
    }
}
