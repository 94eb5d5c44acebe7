//! Path patterns of `.kodiai.yml` (`review.paths`, `review.ignore_paths`, `write.allowPaths`,
//! `write.denyPaths`) and the write policy built from them.
//!
//! Patterns read like `.gitignore` lines, compiled with `globset`: `*` stays inside one path
//! component and `**` crosses them; a pattern without a `/` (other than a trailing one)
//! matches at any depth (`.env` is also `config/.env`); a leading `/` anchors it at the
//! repository root; a trailing `/` means the directory and everything under it (`.github/`).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Serialize, Serializer};

/// The write policy's deny list when `.kodiai.yml` sets none (SPEC §3).
pub const DEFAULT_DENY_PATHS: &[&str] = &[
    ".github/",
    ".git/",
    ".kodiai.yml",
    ".env",
    ".env.*",
    "**/*.pem",
    "**/*.key",
    "**/*credentials*",
    "**/*secret*",
];

/// Denied whatever the file says: writing into `.git` could plant hooks that run on the
/// machine itself, so a deny list that forgets it does not open it.
const ALWAYS_DENIED: &str = ".git/";

/// A compiled list of patterns, with the patterns kept to show and to name the one that
/// matched.
#[derive(Clone)]
pub struct PathSet {
    patterns: Vec<String>,
    set: GlobSet,
}

impl PathSet {
    /// Compiles `patterns`; the error names the first bad one and why.
    pub fn new<S: AsRef<str>>(patterns: &[S], case_insensitive: bool) -> Result<Self, BadGlob> {
        let mut builder = GlobSetBuilder::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let pattern = pattern.as_ref();
            let glob = GlobBuilder::new(&translate(pattern))
                .literal_separator(true)
                .case_insensitive(case_insensitive)
                .backslash_escape(true)
                .build()
                .map_err(|e| BadGlob {
                    index,
                    message: format!("`{pattern}` is not a valid glob: {}", e.kind()),
                })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|e| BadGlob {
            index: 0,
            message: format!("the patterns cannot be compiled: {e}"),
        })?;
        Ok(Self {
            patterns: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
            set,
        })
    }

    /// No patterns.
    pub fn empty() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The first pattern that matches `path` (a repository-relative path with `/`).
    pub fn first_match(&self, path: &str) -> Option<&str> {
        self.set
            .matches(path)
            .first()
            .and_then(|i| self.patterns.get(*i))
            .map(String::as_str)
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

impl std::fmt::Debug for PathSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PathSet").field(&self.patterns).finish()
    }
}

impl PartialEq for PathSet {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Serialize for PathSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(serializer)
    }
}

/// A pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadGlob {
    /// Its place in the list.
    pub index: usize,
    pub message: String,
}

/// `.gitignore`-like pattern → globset pattern.
fn translate(pattern: &str) -> String {
    let (anchored, rest) = match pattern.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (directory, body) = match rest.strip_suffix('/') {
        Some(body) => (true, body),
        None => (false, rest),
    };
    let mut glob = String::new();
    if !anchored && !body.contains('/') && !body.starts_with("**") {
        glob.push_str("**/");
    }
    glob.push_str(body);
    if directory {
        glob.push_str("/**");
    }
    glob
}

/// Whether kodiai may write files, and where (`write` in `.kodiai.yml`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WritePolicy {
    /// Off by default: kodiai only comments until a repository turns this on.
    pub enabled: bool,
    /// When not empty, every written path must match one of these.
    pub allow_paths: PathSet,
    /// A written path must match none of these (deny wins over allow). Matched without case,
    /// so that `.ENV` is `.env` on a case-insensitive checkout.
    pub deny_paths: PathSet,
}

/// Why a path may not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteRefusal {
    #[error("write mode is off for this repository (`write.enabled: false` in .kodiai.yml)")]
    Disabled,
    #[error("`{path}` is not a plain repository-relative path")]
    NotRelative { path: String },
    #[error("`{path}` matches `{pattern}` in write.denyPaths")]
    Denied { path: String, pattern: String },
    #[error("`{path}` matches nothing in write.allowPaths")]
    NotAllowed { path: String },
}

impl Default for WritePolicy {
    fn default() -> Self {
        Self::new(false, PathSet::empty(), default_deny_paths())
    }
}

/// The compiled default deny list.
pub fn default_deny_paths() -> PathSet {
    // The default list is ours and compiles (a unit test proves it); `empty()` is unreachable.
    PathSet::new(DEFAULT_DENY_PATHS, true).unwrap_or_else(|_| PathSet::empty())
}

impl WritePolicy {
    pub fn new(enabled: bool, allow_paths: PathSet, deny_paths: PathSet) -> Self {
        Self {
            enabled,
            allow_paths,
            deny_paths,
        }
    }

    /// Whether kodiai may write `path` (relative to the repository root, `/`-separated; a
    /// leading `./` is allowed). Paths that climb out (`..`), absolute paths and backslashes
    /// are refused, whatever the lists say.
    pub fn check(&self, path: &str) -> Result<(), WriteRefusal> {
        if !self.enabled {
            return Err(WriteRefusal::Disabled);
        }
        let Some(clean) = normalize(path) else {
            return Err(WriteRefusal::NotRelative {
                path: path.to_owned(),
            });
        };
        if let Some(pattern) = self.deny_paths.first_match(&clean) {
            return Err(WriteRefusal::Denied {
                path: clean,
                pattern: pattern.to_owned(),
            });
        }
        if always_denied(&clean) {
            return Err(WriteRefusal::Denied {
                path: clean,
                pattern: ALWAYS_DENIED.to_owned(),
            });
        }
        if !self.allow_paths.is_empty() && !self.allow_paths.is_match(&clean) {
            return Err(WriteRefusal::NotAllowed { path: clean });
        }
        Ok(())
    }

    /// `check` as a yes or no.
    pub fn may_write(&self, path: &str) -> bool {
        self.check(path).is_ok()
    }
}

fn always_denied(path: &str) -> bool {
    path.split('/').any(|c| c.eq_ignore_ascii_case(".git"))
}

/// `./a//b` → `a/b`; `None` for what is not a plain relative path.
fn normalize(path: &str) -> Option<String> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: Option<&[&str]>) -> WritePolicy {
        WritePolicy::new(
            true,
            PathSet::new(allow, false).unwrap(),
            match deny {
                Some(deny) => PathSet::new(deny, true).unwrap(),
                None => default_deny_paths(),
            },
        )
    }

    #[test]
    fn the_default_deny_list_compiles() {
        assert_eq!(
            PathSet::new(DEFAULT_DENY_PATHS, true).unwrap().patterns(),
            DEFAULT_DENY_PATHS
        );
    }

    #[test]
    fn the_default_deny_list_refuses_what_spec_names() {
        let policy = policy(&[], None);
        for (path, pattern) in [
            (".github/workflows/ci.yml", ".github/"),
            (".git/hooks/pre-commit", ".git/"),
            (".kodiai.yml", ".kodiai.yml"),
            (".env", ".env"),
            ("config/.env", ".env"),
            (".env.production", ".env.*"),
            ("deploy/tls/server.pem", "**/*.pem"),
            ("id_rsa.key", "**/*.key"),
            ("src/aws_credentials.json", "**/*credentials*"),
            ("k8s/my-secret.yaml", "**/*secret*"),
            ("DEPLOY/Server.PEM", "**/*.pem"),
            (".ENV", ".env"),
        ] {
            assert_eq!(
                policy.check(path),
                Err(WriteRefusal::Denied {
                    path: path.to_owned(),
                    pattern: pattern.to_owned()
                }),
                "{path}"
            );
        }
        for path in [
            "src/main.rs",
            "README.md",
            "docs/github.md",
            "environment.md",
            "src/keys.rs",
        ] {
            assert_eq!(policy.check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn allow_paths_limit_and_deny_wins() {
        let policy = policy(&["src/**", "/Cargo.toml", "*.md"], None);
        assert!(policy.may_write("src/lib.rs"));
        assert!(policy.may_write("src/a/b/c.rs"));
        assert!(policy.may_write("Cargo.toml"));
        assert!(policy.may_write("docs/guide.md"));
        assert_eq!(
            policy.check("crates/x/Cargo.toml"),
            Err(WriteRefusal::NotAllowed {
                path: "crates/x/Cargo.toml".into()
            })
        );
        assert!(!policy.may_write("tests/a.rs"));
        // In src/, but denied.
        assert!(matches!(
            policy.check("src/secret_store.rs"),
            Err(WriteRefusal::Denied { .. })
        ));
    }

    #[test]
    fn a_star_stays_in_one_directory() {
        let policy = policy(&["src/*.rs"], Some(&[]));
        assert!(policy.may_write("src/lib.rs"));
        assert!(!policy.may_write("src/a/lib.rs"));
    }

    #[test]
    fn paths_that_climb_out_or_are_absolute_are_refused() {
        let policy = policy(&[], Some(&[]));
        for path in [
            "../etc/passwd",
            "src/../../x",
            "/etc/passwd",
            "src\\x.rs",
            "",
            ".",
        ] {
            assert!(
                matches!(policy.check(path), Err(WriteRefusal::NotRelative { .. })),
                "{path}"
            );
        }
        assert_eq!(policy.check("./src//lib.rs"), Ok(()));
    }

    #[test]
    fn a_deny_list_without_git_still_denies_git() {
        let policy = policy(&[], Some(&["*.lock"]));
        assert!(policy.may_write(".github/workflows/ci.yml"));
        assert!(!policy.may_write(".git/config"));
        assert!(!policy.may_write("sub/.git/hooks/post-checkout"));
        assert!(!policy.may_write("Cargo.lock"));
    }

    #[test]
    fn write_mode_is_off_by_default() {
        assert_eq!(
            WritePolicy::default().check("src/lib.rs"),
            Err(WriteRefusal::Disabled)
        );
    }

    #[test]
    fn a_bad_glob_is_named_with_its_place() {
        let error = PathSet::new(&["src/**", "a[b"], false).unwrap_err();
        assert_eq!(error.index, 1);
        assert!(
            error.message.starts_with("`a[b` is not a valid glob"),
            "{error:?}"
        );
    }
}
