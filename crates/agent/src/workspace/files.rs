//! The file-system side of workspaces: cross-process `flock`s, folder removal, the last-used
//! stamp, stale git lock files, sizes and the eviction of least-recently-used mirrors.

use super::*;

#[derive(Clone, Copy)]
pub(super) enum LockMode {
    Shared,
    Exclusive,
}

/// Opens (creating) and locks a lock file, waiting for it on a blocking thread.
pub(super) async fn lock_file(path: &Path, mode: LockMode) -> Result<File, WorkspaceError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = open_lock(&path)?;
        match mode {
            LockMode::Shared => file.lock_shared(),
            LockMode::Exclusive => file.lock(),
        }
        .map_err(|e| io_error("locking", &path, e))?;
        Ok(file)
    })
    .await
    .map_err(|e| WorkspaceError::Io(format!("lock task: {e}")))?
}

/// Locks a lock file exclusively if nobody holds it; `None` when somebody does.
pub(super) async fn try_lock_file(path: &Path) -> Result<Option<File>, WorkspaceError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || try_lock_blocking(&path))
        .await
        .map_err(|e| WorkspaceError::Io(format!("lock task: {e}")))?
}

pub(super) fn try_lock_blocking(path: &Path) -> Result<Option<File>, WorkspaceError> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error("locking", path, e)),
    }
}

/// The open `file` is the one at `path` (not a file deleted since it was opened).
pub(super) fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

pub(super) fn open_lock(path: &Path) -> Result<File, WorkspaceError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening", path, e))
}

pub(super) async fn remove_dir(path: &Path) -> Result<(), WorkspaceError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", &path, e)),
    })
    .await
    .map_err(|e| WorkspaceError::Io(format!("remove task: {e}")))?
}

pub(super) async fn touch(path: &Path) -> Result<(), WorkspaceError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_error("opening", &path, e))?;
        file.set_modified(SystemTime::now())
            .map_err(|e| io_error("touching", &path, e))
    })
    .await
    .map_err(|e| WorkspaceError::Io(format!("touch task: {e}")))?
}

/// Removes the lock files a killed git leaves in a mirror (`packed-refs.lock`, `refs/**.lock`,
/// `shallow.lock`, …). Only called under the mirror's fetch lock, when no git of ours writes them.
pub(super) async fn remove_stale_git_locks(mirror: &Path) -> Result<(), WorkspaceError> {
    let mirror = mirror.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut stale = Vec::new();
        for name in [
            "packed-refs.lock",
            "shallow.lock",
            "config.lock",
            "HEAD.lock",
            "index.lock",
            "FETCH_HEAD.lock",
        ] {
            let p = mirror.join(name);
            if p.exists() {
                stale.push(p);
            }
        }
        let mut stack = vec![mirror.join("refs")];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "lock") {
                    stale.push(p);
                }
            }
        }
        for p in stale {
            tracing::info!(path = %p.display(), "removing a stale git lock file");
            std::fs::remove_file(&p).map_err(|e| io_error("removing", &p, e))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| WorkspaceError::Io(format!("lock clean-up task: {e}")))?
}

/// Bytes of the files under `dir` (not following symbolic links).
pub(super) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

pub(super) fn evict_blocking(root: &Path, quota: u64) -> Result<Vec<String>, WorkspaceError> {
    let mirrors_dir = root.join("mirrors");
    let entries =
        std::fs::read_dir(&mirrors_dir).map_err(|e| io_error("listing", &mirrors_dir, e))?;
    let mut mirrors: Vec<(SystemTime, u64, String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(name) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".git"))
            .map(str::to_owned)
        else {
            continue;
        };
        let used = std::fs::metadata(dir.join(LAST_USED_FILE))
            .or_else(|_| std::fs::metadata(&dir))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let parked = root.join("parked").join(&name);
        mirrors.push((used, dir_size(&dir) + dir_size(&parked), name, dir));
    }
    let mut total: u64 = mirrors.iter().map(|m| m.1).sum();
    mirrors.sort_by_key(|m| m.0);
    let mut evicted = Vec::new();
    let mut seen = HashSet::new();
    for (_, size, name, dir) in mirrors {
        if total <= quota {
            break;
        }
        if !seen.insert(name.clone()) {
            continue;
        }
        // Every live checkout holds this lock shared: taking it exclusively means unused.
        let Some(_lock) = try_lock_blocking(&root.join("locks").join(format!("{name}.use")))?
        else {
            continue;
        };
        std::fs::remove_dir_all(&dir).map_err(|e| io_error("evicting", &dir, e))?;
        let parked = root.join("parked").join(&name);
        match std::fs::remove_dir_all(&parked) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("evicting", &parked, e)),
        }
        tracing::info!(mirror = %name, bytes = size, "evicted a mirror from the cache");
        total = total.saturating_sub(size);
        evicted.push(name);
    }
    Ok(evicted)
}
