//! `.kodiai.yml` as raw text, from the repository's default branch (never from a pull request's
//! head, so that a pull request cannot change how it is reviewed). Parsing is the server's.
//!
//! Cached by blob sha: each repository remembers the ETag and sha of its last answer and asks
//! with `If-None-Match`, so an unchanged file costs a 304 (which GitHub does not count against
//! the rate limit) and no decoding; the text itself is kept per blob sha.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use reqwest::Method;

use crate::client::{Error, InstallationClient, Result};
use crate::rest::FileContent;

/// Where the repository configuration lives.
pub const REPO_CONFIG_PATH: &str = ".kodiai.yml";
/// Larger files are not read (GitHub's contents API inlines up to 1 MB; a configuration file is
/// a few KB). The parser has its own, smaller limit and reports it.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Blobs kept; past this the cache starts over.
const MAX_BLOBS: usize = 4096;

/// What the default branch holds at [`REPO_CONFIG_PATH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoFile {
    /// No such file: the defaults apply.
    Missing,
    Found {
        sha: String,
        text: Arc<str>,
    },
    /// Too big to read, or not text; the caller reports it like an invalid file.
    Unreadable {
        sha: String,
        size: u64,
        reason: String,
    },
}

#[derive(Debug, Default)]
pub struct ContentsCache {
    inner: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// (repository, path) → (ETag, blob sha) of the last 200.
    etags: HashMap<(String, String), (String, String)>,
    blobs: HashMap<String, Arc<str>>,
}

impl ContentsCache {
    fn lookup(&self, key: &(String, String)) -> Option<(String, String, Arc<str>)> {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (etag, sha) = state.etags.get(key)?;
        let text = state.blobs.get(sha)?;
        Some((etag.clone(), sha.clone(), text.clone()))
    }

    fn blob(&self, sha: &str) -> Option<Arc<str>> {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.blobs.get(sha).cloned()
    }

    fn store(&self, key: (String, String), etag: Option<String>, sha: &str, text: Arc<str>) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if state.blobs.len() >= MAX_BLOBS {
            state.blobs.clear();
            state.etags.clear();
        }
        state.blobs.insert(sha.to_owned(), text);
        match etag {
            Some(etag) => state.etags.insert(key, (etag, sha.to_owned())),
            None => state.etags.remove(&key),
        };
    }

    fn forget(&self, key: &(String, String)) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        state.etags.remove(key);
    }
}

impl InstallationClient {
    /// `.kodiai.yml` from the default branch, as text.
    pub async fn fetch_repo_config(&self, owner: &str, repo: &str) -> Result<RepoFile> {
        self.fetch_default_branch_file(owner, repo, REPO_CONFIG_PATH)
            .await
    }

    /// A text file from the default branch (`GET /repos/{owner}/{repo}/contents/{path}` without
    /// `ref`), cached by blob sha.
    pub async fn fetch_default_branch_file(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
    ) -> Result<RepoFile> {
        const ROUTE: &str = "/repos/{owner}/{repo}/contents/{path}";
        let key = (format!("{owner}/{repo}").to_lowercase(), path.to_owned());
        let cache = self.github().contents();
        let cached = cache.lookup(&key);
        let mut segments = vec!["repos", owner, repo, "contents"];
        segments.extend(path.split('/').filter(|s| !s.is_empty()));
        let mut call = self.call(Method::GET, ROUTE, &segments);
        call.if_none_match = cached.as_ref().map(|(etag, _, _)| etag.clone());
        let response = match self.send(call).await {
            Ok(r) => r,
            Err(e) if e.status() == Some(404) => {
                cache.forget(&key);
                return Ok(RepoFile::Missing);
            }
            Err(e) => return Err(e),
        };
        if response.status == 304
            && let Some((_, sha, text)) = cached
        {
            return Ok(RepoFile::Found { sha, text });
        }
        if response.status == 304 {
            // A 304 to a question we did not ask conditionally; treat as not understood.
            return Err(Error::Decode {
                route: ROUTE,
                message: "304 without a cached copy".into(),
            });
        }
        // A directory answers with a JSON array: no configuration file there.
        let Ok(file) = response.json::<FileContent>(ROUTE) else {
            return Ok(RepoFile::Missing);
        };
        if file.kind != "file" && !file.kind.is_empty() {
            return Ok(RepoFile::Missing);
        }
        let etag = response
            .headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(text) = cache.blob(&file.sha) {
            cache.store(key, etag, &file.sha, text.clone());
            return Ok(RepoFile::Found {
                sha: file.sha,
                text,
            });
        }
        let text = match decode(&file) {
            Ok(text) => Arc::<str>::from(text),
            Err(reason) => {
                return Ok(RepoFile::Unreadable {
                    sha: file.sha,
                    size: file.size,
                    reason,
                });
            }
        };
        cache.store(key, etag, &file.sha, text.clone());
        Ok(RepoFile::Found {
            sha: file.sha,
            text,
        })
    }
}

fn decode(file: &FileContent) -> std::result::Result<String, String> {
    if file.size > MAX_FILE_BYTES || file.encoding == "none" {
        return Err(format!(
            "the file is {} bytes, more than kodiai reads ({MAX_FILE_BYTES})",
            file.size
        ));
    }
    if file.encoding != "base64" {
        return Err(format!(
            "GitHub sent the file as {:?}, not base64",
            file.encoding
        ));
    }
    // GitHub wraps the base64 at 60 columns.
    let compact: String = file
        .content
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| "GitHub sent content that is not valid base64".to_owned())?;
    String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, encoding: &str, content: &str) -> FileContent {
        FileContent {
            sha: "abc".into(),
            size,
            kind: "file".into(),
            encoding: encoding.into(),
            content: content.into(),
        }
    }

    #[test]
    fn wrapped_base64_decodes_and_bad_files_say_why() {
        // "trigger: \"@bot\"\n" wrapped over two lines, as GitHub sends it.
        assert_eq!(
            decode(&file(16, "base64", "dHJpZ2dlcjog\nIkBib3QiCg==\n")).unwrap(),
            "trigger: \"@bot\"\n"
        );
        assert!(
            decode(&file(2_000_000, "none", ""))
                .unwrap_err()
                .contains("2000000 bytes")
        );
        assert!(
            decode(&file(3, "base64", "//79"))
                .unwrap_err()
                .contains("UTF-8")
        );
        assert!(
            decode(&file(3, "base64", "@@@"))
                .unwrap_err()
                .contains("base64")
        );
    }
}
