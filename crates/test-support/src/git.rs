//! Real git for tests: bare repositories built in a temp folder and served over smart HTTP with
//! Basic auth by a token ([`GitHttpServer`]: `git http-backend` behind a hyper CGI bridge,
//! in-process), so that tests fetch and push exactly as against GitHub; and
//! [`assert_secret_absent`], the search for a token in folders and captured logs.

use std::path::{Path, PathBuf};

use base64::Engine as _;
pub use kodiai_git_server::{GitHttpServer, RecordedRequest};
use secrecy::SecretString;

/// A folder of bare repositories and the HTTP server in front of it, with its token.
pub struct GitFixture {
    pub server: GitHttpServer,
    /// The installation token the server accepts (as a test would get it from GitHub).
    pub token: String,
    dir: tempfile::TempDir,
}

impl GitFixture {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp folder for bare repositories");
        let token = format!("ghs_test{:032x}", fastrand::u128(..));
        let server = GitHttpServer::start(dir.path(), SecretString::from(token.clone()))
            .await
            .expect("git HTTP server starts");
        Self { server, token, dir }
    }

    /// The folder the repositories live in.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A new empty bare repository `name` (`owner/repo`).
    pub async fn create_repo(&self, name: &str) -> BareRepo {
        let path = self.dir.path().join(format!("{name}.git"));
        std::fs::create_dir_all(&path).unwrap();
        git(
            &path,
            &["init", "--bare", "--quiet", "--initial-branch=main"],
        )
        .await;
        BareRepo { path }
    }

    pub fn url(&self, name: &str) -> url::Url {
        self.server.url(name)
    }
}

/// A bare repository on disk, changed with git plumbing (no HTTP, no worktree).
#[derive(Debug, Clone)]
pub struct BareRepo {
    pub path: PathBuf,
}

impl BareRepo {
    /// Commits `files` (path, content) on top of `branch` (creating it) as "Test Author", and
    /// returns the new commit id.
    pub async fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let reference = format!("refs/heads/{branch}");
        self.commit_on(&reference, files, message).await
    }

    /// Like [`Self::commit`], on any ref (`refs/pull/7/head`).
    pub async fn commit_on(
        &self,
        reference: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let scratch = tempfile::tempdir().unwrap();
        let index = scratch.path().join("index");
        let index_text = index.to_str().unwrap();
        let parent = self.rev_parse(reference).await;
        if let Some(parent) = &parent {
            git_env(
                &self.path,
                &["read-tree", parent],
                &[("GIT_INDEX_FILE", index_text)],
            )
            .await;
        }
        for (path, content) in files {
            let file = scratch.path().join("blob");
            std::fs::write(&file, content).unwrap();
            let blob = git(&self.path, &["hash-object", "-w", file.to_str().unwrap()]).await;
            git_env(
                &self.path,
                &[
                    "update-index",
                    "--add",
                    "--cacheinfo",
                    &format!("100644,{},{path}", blob.trim()),
                ],
                &[("GIT_INDEX_FILE", index_text)],
            )
            .await;
        }
        let tree = git_env(
            &self.path,
            &["write-tree"],
            &[("GIT_INDEX_FILE", index_text)],
        )
        .await;
        let mut args = vec!["commit-tree", tree.trim(), "-m", message];
        if let Some(parent) = &parent {
            args.extend(["-p", parent.as_str()]);
        }
        let identity = [
            ("GIT_AUTHOR_NAME", "Test Author"),
            ("GIT_AUTHOR_EMAIL", "author@example.com"),
            ("GIT_COMMITTER_NAME", "Test Author"),
            ("GIT_COMMITTER_EMAIL", "author@example.com"),
        ];
        let commit = git_env(&self.path, &args, &identity)
            .await
            .trim()
            .to_owned();
        git(&self.path, &["update-ref", reference, &commit]).await;
        commit
    }

    /// Points `reference` at `commit`, fetching it from `from` first (how GitHub exposes a fork's
    /// pull request head as `refs/pull/N/head` of the base repository).
    pub async fn fetch_ref(&self, from: &BareRepo, commit: &str, reference: &str) {
        let source = from.path.to_str().unwrap();
        git(
            &self.path,
            &[
                "fetch",
                "--quiet",
                source,
                &format!("+{commit}:{reference}"),
            ],
        )
        .await;
    }

    /// The commit `rev` names, if any.
    pub async fn rev_parse(&self, rev: &str) -> Option<String> {
        let output = command(
            &self.path,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
            &[],
        )
        .output()
        .await
        .unwrap();
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `git log -1 --format=<format> <rev>`.
    pub async fn show(&self, rev: &str, format: &str) -> String {
        git(
            &self.path,
            &["log", "-1", &format!("--format={format}"), rev],
        )
        .await
        .trim_end()
        .to_owned()
    }

    /// A file's content at `rev`.
    pub async fn file(&self, rev: &str, path: &str) -> String {
        git(&self.path, &["show", &format!("{rev}:{path}")]).await
    }
}

/// Runs git in `dir` with a clean environment and returns its output; panics on failure.
pub async fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[]).await
}

async fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = command(dir, args, env).output().await.unwrap();
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

/// Panics when `token`, or the Basic header value that carries it, occurs in any file under
/// `folders` or in any of `texts` (captured logs, error messages).
pub fn assert_secret_absent(token: &str, folders: &[&Path], texts: &[&str]) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let needles = [token.as_bytes(), basic.as_bytes()];
    for text in texts {
        for needle in needles {
            assert!(
                !contains(text.as_bytes(), needle),
                "the token appears in a captured text"
            );
        }
    }
    let mut files = 0;
    let mut stack: Vec<PathBuf> = folders.iter().map(|f| f.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                for needle in needles {
                    assert!(
                        !contains(&bytes, needle),
                        "the token appears in {}",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(
        folders.is_empty() || files > 0,
        "the search found no files: wrong folders?"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
