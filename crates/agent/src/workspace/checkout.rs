//! A job's worktree ([`Checkout`]): commit, push, stage and remove it; and the [`Cleanup`] that
//! removes its folder when the job ends, also when it was cancelled or failed.

use super::*;

/// A job's worktree. Remove it with [`Checkout::remove`]; dropping it removes it too (in the
/// background).
#[derive(Debug)]
pub struct Checkout {
    pub(super) path: PathBuf,
    pub(super) base: String,
    pub(super) fetch: FetchReport,
    pub(super) remote: Remote,
    pub(super) cleanup: Cleanup,
    pub(super) identity: Identity,
    pub(super) git: Git,
    pub(super) recycled: bool,
    pub(super) parked: PathBuf,
    pub(super) park_lock: PathBuf,
    pub(super) _use_lock: File,
}

impl Checkout {
    /// The worktree was a finished job's, reset to this job's commit and cleaned (rather than
    /// written anew).
    pub fn recycled(&self) -> bool {
        self.recycled
    }

    /// The worktree's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The commit the worktree was checked out at.
    pub fn base_commit(&self) -> &str {
        &self.base
    }

    pub fn fetch_report(&self) -> &FetchReport {
        &self.fetch
    }

    /// The worktree's current commit.
    pub async fn head(&self) -> Result<String, WorkspaceError> {
        Ok(self
            .git
            .run(&self.path, &["rev-parse", "HEAD"], None, &[])
            .await?
            .stdout
            .trim()
            .to_owned())
    }

    /// Commits every change in the worktree (new, changed and deleted files) as the App, with a
    /// `Co-authored-by` trailer per co-author. `None` when there was nothing to commit.
    pub async fn commit_all(
        &self,
        message: &str,
        co_authors: &[Identity],
    ) -> Result<Option<String>, WorkspaceError> {
        self.commit(message, co_authors, true).await
    }

    async fn commit(
        &self,
        message: &str,
        co_authors: &[Identity],
        stage: bool,
    ) -> Result<Option<String>, WorkspaceError> {
        if message.trim().is_empty() {
            return Err(WorkspaceError::InvalidInput(
                "a commit needs a message".into(),
            ));
        }
        if stage {
            self.git
                .run(&self.path, &["add", "--all"], None, &[])
                .await?;
        }
        // What is staged (everything, after `add --all`): nothing means no commit.
        let staged = self
            .git
            .run(
                &self.path,
                &["diff", "--cached", "--name-only", "-z"],
                None,
                &[],
            )
            .await?;
        if staged.stdout.is_empty() {
            return Ok(None);
        }
        let trailers: Vec<String> = co_authors
            .iter()
            .map(|a| format!("Co-authored-by: {} <{}>", a.name, a.email))
            .collect();
        let mut args = vec!["commit", "--quiet", "--no-verify", "-m", message];
        for t in &trailers {
            args.extend(["--trailer", t.as_str()]);
        }
        let id = &self.identity;
        let env = [
            ("GIT_AUTHOR_NAME", id.name.as_str()),
            ("GIT_AUTHOR_EMAIL", id.email.as_str()),
            ("GIT_COMMITTER_NAME", id.name.as_str()),
            ("GIT_COMMITTER_EMAIL", id.email.as_str()),
        ];
        self.git.run(&self.path, &args, None, &env).await?;
        let head = self.head().await?;
        tracing::info!(commit = %head, "committed");
        Ok(Some(head))
    }

    /// Stages every change in the worktree (`git add --all`) and returns what is staged: the
    /// paths (both sides of a rename) and the staged diff, for a caller to check (write policy,
    /// secret scan) before [`Checkout::commit_staged`], or to give back with
    /// [`Checkout::unstage_all`].
    pub async fn stage_all(&self) -> Result<Staged, WorkspaceError> {
        self.git
            .run(&self.path, &["add", "--all"], None, &[])
            .await?;
        let names = self
            .git
            .run(
                &self.path,
                &["diff", "--cached", "--name-only", "--no-renames", "-z"],
                None,
                &[],
            )
            .await?;
        let paths = names
            .stdout
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let diff = self
            .git
            .run(
                &self.path,
                &[
                    "diff",
                    "--cached",
                    "--no-color",
                    "--no-ext-diff",
                    "--no-renames",
                ],
                None,
                &[],
            )
            .await?
            .stdout;
        Ok(Staged { paths, diff })
    }

    /// Unstages everything (the files in the worktree stay as they are).
    pub async fn unstage_all(&self) -> Result<(), WorkspaceError> {
        self.git
            .run(&self.path, &["reset", "--quiet"], None, &[])
            .await?;
        Ok(())
    }

    /// Commits what is staged, as [`Checkout::commit_all`] does; `None` when nothing is.
    pub async fn commit_staged(
        &self,
        message: &str,
        co_authors: &[Identity],
    ) -> Result<Option<String>, WorkspaceError> {
        self.commit(message, co_authors, false).await
    }

    /// Pushes the worktree's HEAD to `branch` of `to` (default: the repository it was checked out
    /// from; a fork's URL for a fork pull request that allows maintainer edits). Never forces.
    pub async fn push(
        &self,
        branch: &str,
        to: Option<&Remote>,
    ) -> Result<PushReport, WorkspaceError> {
        let remote = to.unwrap_or(&self.remote);
        let reference = format!("refs/heads/{branch}");
        if self
            .git
            .run(&self.path, &["check-ref-format", &reference], None, &[])
            .await
            .is_err()
        {
            return Err(WorkspaceError::InvalidInput(format!(
                "{branch:?} is not a valid branch name"
            )));
        }
        let head = self.head().await?;
        let commits: Vec<String> = self
            .git
            .run(
                &self.path,
                &["rev-list", "--reverse", &format!("{}..HEAD", self.base)],
                None,
                &[],
            )
            .await?
            .stdout
            .lines()
            .map(str::to_owned)
            .collect();
        let refspec = format!("HEAD:{reference}");
        let auth = remote.auth();
        let url = remote.url.as_str();
        match self
            .git
            .run(
                &self.path,
                &["push", "--porcelain", "--quiet", url, &refspec],
                Some(&auth),
                &[],
            )
            .await
        {
            Ok(_) => {}
            Err(WorkspaceError::Git { message, .. })
                if message.contains("rejected")
                    || message.contains("non-fast-forward")
                    || message.contains("failed to push some refs") =>
            {
                return Err(WorkspaceError::PushRejected {
                    branch: branch.to_owned(),
                    message,
                });
            }
            Err(e) => return Err(e),
        }
        tracing::info!(%branch, url, %head, commits = commits.len(), "pushed");
        Ok(PushReport {
            branch: branch.to_owned(),
            url: url.to_owned(),
            head,
            commits,
        })
    }

    /// Removes the worktree and the job's folder.
    ///
    /// The worktree itself is parked for the next job on the repository when a slot is free (it
    /// is reset and cleaned when taken); otherwise, and when parking fails, it is deleted.
    pub async fn remove(mut self) -> Result<(), WorkspaceError> {
        self.cleanup.armed = false;
        if let Err(e) = self.park().await {
            tracing::debug!(error = %e, "worktree not parked");
        }
        self.cleanup.run().await
    }

    async fn park(&self) -> Result<(), WorkspaceError> {
        let _lock = lock_file(&self.park_lock, LockMode::Exclusive).await?;
        let mut free = None;
        for slot in 0..PARK_SLOTS {
            let candidate = self.parked.join(slot.to_string());
            if !tokio::fs::try_exists(&candidate).await.unwrap_or(true) {
                free = Some(candidate);
                break;
            }
        }
        let Some(slot) = free else {
            return Err(WorkspaceError::Io("every parking slot is taken".into()));
        };
        tokio::fs::create_dir_all(&self.parked)
            .await
            .map_err(|e| io_error("creating", &self.parked, e))?;
        self.git
            .run(
                &self.cleanup.mirror_dir,
                &["worktree", "move", path_str(&self.path)?, path_str(&slot)?],
                None,
                &[],
            )
            .await?;
        Ok(())
    }
}

/// Removes a job's folder and prunes the mirror's record of its worktree, unless disarmed;
/// when dropped armed (a cancelled job, a failed checkout) it does so in the background.
#[derive(Debug)]
pub(super) struct Cleanup {
    pub(super) job_dir: PathBuf,
    pub(super) mirror_dir: PathBuf,
    pub(super) git: Git,
    pub(super) armed: bool,
    /// The job's lock, held until the folder is gone, so that a retry of the job waits for the
    /// clean-up of its cancelled attempt instead of racing it.
    pub(super) job_lock: Option<File>,
}

impl Cleanup {
    pub(super) async fn run(&self) -> Result<(), WorkspaceError> {
        remove_dir(&self.job_dir).await?;
        if tokio::fs::try_exists(&self.mirror_dir)
            .await
            .unwrap_or(false)
        {
            self.git
                .run(&self.mirror_dir, &["worktree", "prune"], None, &[])
                .await?;
        }
        Ok(())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let this = Cleanup {
            job_dir: self.job_dir.clone(),
            mirror_dir: self.mirror_dir.clone(),
            git: self.git.clone(),
            armed: false,
            job_lock: self.job_lock.take(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = this.run().await {
                        tracing::warn!(error = %e, "removing a job's workspace failed");
                    }
                });
            }
            // No runtime (dropped at exit): the folder at least; the sweep prunes the record.
            Err(_) => {
                let _ = std::fs::remove_dir_all(&this.job_dir);
            }
        }
    }
}
