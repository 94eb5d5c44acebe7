//! Git workspaces for jobs: one bare mirror per repository, cached under the data folder and
//! fetched incrementally, and one `git worktree` per job at the exact commit it needs, removed
//! when the job ends (also when it fails or is cancelled), with a sweep for what a crash leaves.
//!
//! A worktree that a job gave back normally is parked (at most [`PARK_SLOTS`] per mirror) and
//! the next job on the repository takes it, reset to its commit with `checkout --force` and
//! `clean -ffdx`: it then writes only the files that differ rather than the whole tree, which
//! is most of a checkout's cost on a large repository.
//!
//! Layout under [`Settings::root`]:
//!
//! ```text
//! mirrors/<name>.git     bare mirror (its file `kodiai-last-used` dates its last use)
//! locks/<name>.fetch     held exclusively while a mirror is created or fetched
//! locks/<name>.use       held shared by every live checkout of the mirror; eviction needs it
//!                        exclusively, so a mirror in use is never evicted
//! jobs/<job>/lock        held exclusively by the job's live checkout; a sweep removes job
//!                        folders whose lock it can take (their process is gone)
//! jobs/<job>/checkout    the job's worktree (detached HEAD)
//! parked/<name>/<slot>   worktrees of finished jobs, kept for the next job on the repository
//! locks/<name>.park      held exclusively while a worktree is parked or taken
//! home/                  git's HOME: nothing of the host's configuration is read
//! ```
//!
//! The locks are `flock`s (std's `File::lock`), so they hold across processes sharing one data
//! folder and vanish with a killed process: a crash leaves no lock that blocks the next job.
//! Jobs never write shared refs (they commit on a detached HEAD and push `HEAD:refs/heads/…`),
//! so the fetch lock is the only writer of a mirror's refs, and lock files git leaves behind
//! when it is killed can be removed safely under it.

mod checkout;
mod files;
mod git;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

pub use checkout::Checkout;
use checkout::Cleanup;
use files::*;
pub use git::Remote;
use git::{Auth, Git};

/// Where workspaces live and the limits they keep.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The workspaces folder (`<data_dir>/workspaces`).
    pub root: PathBuf,
    /// The git program (`git`, found on `/usr/local/bin:/usr/bin:/bin`).
    pub git_program: PathBuf,
    /// Every git command is killed after this long.
    pub git_timeout: Duration,
    /// Mirrors not in use are evicted, least recently used first, while the cache is larger.
    pub cache_quota_bytes: u64,
    /// A repository larger than this (mirror on disk, or the size the caller knows beforehand)
    /// is refused.
    pub max_repository_bytes: u64,
    /// Author and committer of kodiai's commits.
    pub identity: Identity,
}

/// A commit author: the App's identity or a co-author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Identity {
    pub fn new(name: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            email: email.into(),
        }
    }
}

/// The commit a job's worktree is checked out at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `refs/pull/N/head`, which is also where a fork's pull request head lives in the base
    /// repository; at `head_sha` when given (the commit the event was about), which must then
    /// be that ref's commit or one of its ancestors.
    PullRequest {
        number: u64,
        head_sha: Option<String>,
    },
    /// The tip of a branch (the default branch for issues).
    Branch(String),
}

/// What a job asks for.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// The job's id: its folder's name (`[A-Za-z0-9._-]`, at most 128 characters).
    pub job: String,
    pub remote: Remote,
    pub target: Target,
    /// More branches to have in the mirror (a pull request's base, to diff against).
    pub also_fetch: Vec<String>,
    /// The repository's size when the caller knows it (GitHub's `size`, in bytes): refused
    /// before anything is fetched when above the limit.
    pub size_hint_bytes: Option<u64>,
}

/// What the mirror step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// The mirror did not exist (or was unusable) and was created by this checkout.
    pub created_mirror: bool,
    /// The refs fetched into the mirror.
    pub refs: Vec<String>,
}

/// What a push sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The branch pushed to (without `refs/heads/`).
    pub branch: String,
    /// The remote, without credentials.
    pub url: String,
    /// The commit the branch now points at.
    pub head: String,
    /// The commits made in this workspace and pushed, oldest first.
    pub commits: Vec<String>,
}

/// What [`Checkout::stage_all`] staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// Repository-relative paths, `/`-separated; a rename shows as its old and new path.
    pub paths: Vec<String>,
    /// The staged changes as a unified diff.
    pub diff: String,
}

/// What a sweep cleaned up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Job folders left by jobs that are no longer running.
    pub removed_jobs: Vec<String>,
    /// Mirrors evicted to bring the cache under its quota.
    pub evicted_mirrors: Vec<String>,
}

/// Why a workspace operation failed. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("invalid workspace request: {0}")]
    InvalidInput(String),
    #[error("the git server refused the token (check the installation's access): {message}")]
    Authentication { message: String },
    #[error("git {command} failed: {message}")]
    Git { command: String, message: String },
    #[error("git {command} did not finish within {after:?} and was killed")]
    Timeout { command: String, after: Duration },
    #[error(
        "repository {repository} is too large: {size_bytes} bytes, the limit is {limit_bytes} bytes (workspaces.max_repository_size_mb)"
    )]
    RepositoryTooLarge {
        repository: String,
        size_bytes: u64,
        limit_bytes: u64,
    },
    #[error("{what} {name} not found in {repository}")]
    NotFound {
        what: &'static str,
        name: String,
        repository: String,
    },
    #[error("job {0} already has a live workspace")]
    JobBusy(String),
    #[error("push to {branch} was rejected: {message}")]
    PushRejected { branch: String, message: String },
    #[error("workspace file operation failed: {0}")]
    Io(String),
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> WorkspaceError {
    WorkspaceError::Io(format!("{what} {}: {e}", path.display()))
}

/// The mirror cache and the job folders of one data folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Workspaces {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    git: Git,
}

/// A mirror's paths.
#[derive(Debug, Clone)]
struct Mirror {
    /// The repository's cache key (`host/owner/name`), for messages.
    key: String,
    dir: PathBuf,
    fetch_lock: PathBuf,
    use_lock: PathBuf,
    /// Clean worktrees of finished jobs, kept for the next job (`parked/<name>/<slot>`).
    parked: PathBuf,
    /// Held exclusively while a worktree is parked or taken.
    park_lock: PathBuf,
}

/// Finished jobs' worktrees kept per mirror, at most: a new job's checkout then writes only the
/// files that differ instead of the whole tree.
const PARK_SLOTS: usize = 2;

const LAST_USED_FILE: &str = "kodiai-last-used";
const CHECKOUT_DIR: &str = "checkout";
const JOB_LOCK: &str = "lock";

impl Workspaces {
    /// Creates the folders under `settings.root` when missing.
    pub async fn open(settings: Settings) -> Result<Self, WorkspaceError> {
        let git = Git {
            program: settings.git_program.clone(),
            home: settings.root.join("home"),
            timeout: settings.git_timeout,
        };
        for dir in ["mirrors", "locks", "jobs", "parked", "home"] {
            let path = settings.root.join(dir);
            tokio::fs::create_dir_all(&path)
                .await
                .map_err(|e| io_error("creating", &path, e))?;
        }
        Ok(Self {
            inner: Arc::new(Inner { settings, git }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The bare mirror of `remote` (which may not exist yet).
    pub fn mirror_path(&self, remote: &Remote) -> PathBuf {
        self.mirror(remote).dir
    }

    /// The folder of job `job` (its worktree is `checkout` inside it).
    pub fn job_path(&self, job: &str) -> PathBuf {
        self.inner.settings.root.join("jobs").join(job)
    }

    fn mirror(&self, remote: &Remote) -> Mirror {
        let key = remote.cache_key();
        let name = mirror_name(&key);
        let root = &self.inner.settings.root;
        Mirror {
            key,
            dir: root.join("mirrors").join(format!("{name}.git")),
            fetch_lock: root.join("locks").join(format!("{name}.fetch")),
            use_lock: root.join("locks").join(format!("{name}.use")),
            parked: root.join("parked").join(&name),
            park_lock: root.join("locks").join(format!("{name}.park")),
        }
    }

    /// Brings the mirror up to date with the refs the job needs (creating it on first use) and
    /// checks out a worktree for the job at its target commit (a parked one when there is one). The
    /// job's folder goes when the returned [`Checkout`] is removed (its worktree parked) or
    /// dropped (deleted), and also when this future is dropped half-way.
    pub async fn checkout(&self, request: CheckoutRequest) -> Result<Checkout, WorkspaceError> {
        validate_job(&request.job)?;
        let limit = self.inner.settings.max_repository_bytes;
        if let Some(size) = request.size_hint_bytes.filter(|s| *s > limit) {
            return Err(WorkspaceError::RepositoryTooLarge {
                repository: request.remote.cache_key(),
                size_bytes: size,
                limit_bytes: limit,
            });
        }
        let refs = wanted_refs(&request)?;
        for r in &refs {
            self.check_ref_name(r).await?;
        }
        let mirror = self.mirror(&request.remote);

        // The job's folder first: from here on, dropping `guard` removes it.
        let job_dir = self.job_path(&request.job);
        let job_lock = self.lock_job(&request.job, &job_dir).await?;
        let mut guard = Cleanup {
            job_dir: job_dir.clone(),
            mirror_dir: mirror.dir.clone(),
            git: self.inner.git.clone(),
            armed: true,
            job_lock: Some(job_lock),
        };

        let prepared = self.prepare(&request, &mirror, &job_dir).await;
        let (use_lock, fetch, commit, path, recycled) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                // Clean up now rather than in the background, so that a failed checkout leaves
                // nothing behind by the time its error is seen.
                guard.armed = false;
                if let Err(cleanup) = guard.run().await {
                    tracing::warn!(error = %cleanup, "removing a failed checkout's folder failed");
                }
                return Err(e);
            }
        };
        tracing::info!(job = %request.job, repository = %mirror.key, %commit,
            created_mirror = fetch.created_mirror, recycled, "workspace ready");

        if let Err(e) = self.enforce_quota().await {
            tracing::warn!(error = %e, "mirror cache quota check failed");
        }
        Ok(Checkout {
            path,
            base: commit,
            fetch,
            remote: request.remote,
            cleanup: guard,
            identity: self.inner.settings.identity.clone(),
            git: self.inner.git.clone(),
            recycled,
            parked: mirror.parked.clone(),
            park_lock: mirror.park_lock.clone(),
            _use_lock: use_lock,
        })
    }

    /// The mirror's use lock, the fetch, the commit and the worktree of a checkout.
    async fn prepare(
        &self,
        request: &CheckoutRequest,
        mirror: &Mirror,
        job_dir: &Path,
    ) -> Result<(File, FetchReport, String, PathBuf, bool), WorkspaceError> {
        let use_lock = lock_file(&mirror.use_lock, LockMode::Shared).await?;
        let fetch = self
            .fetch(mirror, &request.remote, &wanted_refs(request)?)
            .await?;
        let commit = self.resolve(mirror, &request.target).await?;
        let path = job_dir.join(CHECKOUT_DIR);
        let path_text = path_str(&path)?;
        let recycled = self.take_parked(mirror, &path, &commit).await;
        if !recycled {
            self.inner
                .git
                .run(
                    &mirror.dir,
                    &["worktree", "add", "--detach", "--force", path_text, &commit],
                    None,
                    &[],
                )
                .await?;
        }
        Ok((use_lock, fetch, commit, path, recycled))
    }

    /// Moves a parked worktree of the mirror to `dest` and brings it to `commit`, exactly: tracked
    /// files as in the commit, nothing untracked or ignored left. `false` (having removed what
    /// did not work) when there is none or it cannot be used.
    async fn take_parked(&self, mirror: &Mirror, dest: &Path, commit: &str) -> bool {
        let git = &self.inner.git;
        let Ok(dest_text) = path_str(dest) else {
            return false;
        };
        let taken = {
            let Ok(_lock) = lock_file(&mirror.park_lock, LockMode::Exclusive).await else {
                return false;
            };
            let mut taken = None;
            for slot in 0..PARK_SLOTS {
                let candidate = mirror.parked.join(slot.to_string());
                if !tokio::fs::try_exists(&candidate).await.unwrap_or(false) {
                    continue;
                }
                let Ok(candidate_text) = path_str(&candidate) else {
                    continue;
                };
                match git
                    .run(
                        &mirror.dir,
                        &["worktree", "move", candidate_text, dest_text],
                        None,
                        &[],
                    )
                    .await
                {
                    Ok(_) => {
                        taken = Some(());
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a parked worktree is unusable: removing it");
                        let _ = remove_dir(&candidate).await;
                        let _ = git
                            .run(&mirror.dir, &["worktree", "prune"], None, &[])
                            .await;
                    }
                }
            }
            taken
        };
        if taken.is_none() {
            return false;
        }
        let reset = async {
            git.run(
                dest,
                &["checkout", "--quiet", "--force", "--detach", commit],
                None,
                &[],
            )
            .await?;
            git.run(dest, &["clean", "-ffdxq"], None, &[]).await
        };
        match reset.await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "resetting a parked worktree failed: removing it");
                let _ = remove_dir(dest).await;
                let _ = git
                    .run(&mirror.dir, &["worktree", "prune"], None, &[])
                    .await;
                false
            }
        }
    }

    /// Takes the job's lock (refusing when a live process holds it) and clears what an earlier
    /// attempt of the same job left behind.
    async fn lock_job(&self, job: &str, job_dir: &Path) -> Result<File, WorkspaceError> {
        // Held by the clean-up of an earlier, cancelled attempt (briefly), or by a process that
        // still runs the job after losing its lease (until it notices).
        let wait = self.inner.settings.git_timeout;
        let lock_path = job_dir.join(JOB_LOCK);
        let lock = tokio::time::timeout(wait, async {
            loop {
                tokio::fs::create_dir_all(job_dir)
                    .await
                    .map_err(|e| io_error("creating", job_dir, e))?;
                let lock = lock_file(&lock_path, LockMode::Exclusive).await?;
                // The holder may have removed the folder, lock file included, before letting go:
                // a lock on that deleted file guards nothing, so start again.
                if same_file(&lock, &lock_path) {
                    return Ok::<File, WorkspaceError>(lock);
                }
            }
        })
        .await
        .map_err(|_| WorkspaceError::JobBusy(job.to_owned()))??;
        let leftover = job_dir.join(CHECKOUT_DIR);
        if tokio::fs::try_exists(&leftover).await.unwrap_or(false) {
            tracing::info!(job, "removing the worktree an earlier attempt left");
            remove_dir(&leftover).await?;
        }
        Ok(lock)
    }

    async fn check_ref_name(&self, name: &str) -> Result<(), WorkspaceError> {
        let root = &self.inner.settings.root;
        match self
            .inner
            .git
            .run(root, &["check-ref-format", name], None, &[])
            .await
        {
            Ok(_) => Ok(()),
            Err(WorkspaceError::Git { .. }) => Err(WorkspaceError::InvalidInput(format!(
                "{name:?} is not a valid git ref name"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Creates the mirror when missing and fetches `refs` into it, under its fetch lock.
    async fn fetch(
        &self,
        mirror: &Mirror,
        remote: &Remote,
        refs: &[String],
    ) -> Result<FetchReport, WorkspaceError> {
        let _fetch_lock = lock_file(&mirror.fetch_lock, LockMode::Exclusive).await?;
        let git = &self.inner.git;
        let mut created_mirror = false;
        if !self.mirror_is_usable(mirror).await {
            if tokio::fs::try_exists(&mirror.dir).await.unwrap_or(false) {
                tracing::warn!(repository = %mirror.key, "mirror unusable: recreating it");
                remove_dir(&mirror.dir).await?;
            }
            tokio::fs::create_dir_all(&mirror.dir)
                .await
                .map_err(|e| io_error("creating", &mirror.dir, e))?;
            git.run(&mirror.dir, &["init", "--bare", "--quiet"], None, &[])
                .await?;
            created_mirror = true;
        } else {
            remove_stale_git_locks(&mirror.dir).await?;
        }

        let refspecs: Vec<String> = refs.iter().map(|r| format!("+{r}:{r}")).collect();
        let url = remote.url.as_str();
        let mut args = vec![
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--quiet",
            url,
        ];
        args.extend(refspecs.iter().map(String::as_str));
        let auth: Auth = remote.auth();
        let result = git.run(&mirror.dir, &args, Some(&auth), &[]).await;
        if let Err(e) = result {
            if created_mirror {
                let _ = remove_dir(&mirror.dir).await;
            }
            return Err(match e {
                WorkspaceError::Git { message, .. }
                    if message.contains("couldn't find remote ref") =>
                {
                    WorkspaceError::NotFound {
                        what: "ref",
                        name: refs.join(", "),
                        repository: mirror.key.clone(),
                    }
                }
                other => other,
            });
        }

        let size = self.mirror_size(mirror).await?;
        let limit = self.inner.settings.max_repository_bytes;
        if size > limit {
            if created_mirror {
                remove_dir(&mirror.dir).await?;
            }
            return Err(WorkspaceError::RepositoryTooLarge {
                repository: mirror.key.clone(),
                size_bytes: size,
                limit_bytes: limit,
            });
        }
        touch(&mirror.dir.join(LAST_USED_FILE)).await?;
        Ok(FetchReport {
            created_mirror,
            refs: refs.to_vec(),
        })
    }

    async fn mirror_is_usable(&self, mirror: &Mirror) -> bool {
        tokio::fs::try_exists(mirror.dir.join("HEAD"))
            .await
            .unwrap_or(false)
            && self
                .inner
                .git
                .run(
                    &mirror.dir,
                    &["rev-parse", "--is-bare-repository"],
                    None,
                    &[],
                )
                .await
                .is_ok_and(|o| o.stdout.trim() == "true")
    }

    /// The mirror's objects on disk, as git counts them.
    async fn mirror_size(&self, mirror: &Mirror) -> Result<u64, WorkspaceError> {
        let out = self
            .inner
            .git
            .run(&mirror.dir, &["count-objects", "-v"], None, &[])
            .await?;
        let mut kib = 0u64;
        for line in out.stdout.lines() {
            if let Some((key, value)) = line.split_once(':')
                && matches!(key.trim(), "size" | "size-pack" | "size-garbage")
            {
                kib += value.trim().parse::<u64>().unwrap_or(0);
            }
        }
        Ok(kib * 1024)
    }

    async fn resolve(&self, mirror: &Mirror, target: &Target) -> Result<String, WorkspaceError> {
        let (reference, wanted) = match target {
            Target::PullRequest { number, head_sha } => {
                (format!("refs/pull/{number}/head"), head_sha.clone())
            }
            Target::Branch(branch) => (format!("refs/heads/{branch}"), None),
        };
        let git = &self.inner.git;
        let tip = git
            .run(
                &mirror.dir,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{reference}^{{commit}}"),
                ],
                None,
                &[],
            )
            .await
            .map_err(|_| WorkspaceError::NotFound {
                what: "ref",
                name: reference.clone(),
                repository: mirror.key.clone(),
            })?
            .stdout
            .trim()
            .to_owned();
        let Some(sha) = wanted else {
            return Ok(tip);
        };
        if sha.len() < 7 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(WorkspaceError::InvalidInput(format!(
                "{sha:?} is not a commit id"
            )));
        }
        let not_found = || WorkspaceError::NotFound {
            what: "commit",
            name: format!("{sha} (on {reference})"),
            repository: mirror.key.clone(),
        };
        let full = git
            .run(
                &mirror.dir,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{sha}^{{commit}}"),
                ],
                None,
                &[],
            )
            .await
            .map_err(|_| not_found())?
            .stdout
            .trim()
            .to_owned();
        git.run(
            &mirror.dir,
            &["merge-base", "--is-ancestor", &full, &tip],
            None,
            &[],
        )
        .await
        .map_err(|_| not_found())?;
        Ok(full)
    }

    /// Evicts mirrors not in use, least recently used first, until the cache fits its quota.
    /// Returns the evicted repositories' folder names.
    pub async fn enforce_quota(&self) -> Result<Vec<String>, WorkspaceError> {
        let root = self.inner.settings.root.clone();
        let quota = self.inner.settings.cache_quota_bytes;
        tokio::task::spawn_blocking(move || evict_blocking(&root, quota))
            .await
            .map_err(|e| WorkspaceError::Io(format!("eviction task: {e}")))?
    }

    /// Cleans up after crashes: removes job folders no live process holds, prunes the mirrors'
    /// worktree records and stale git lock files, and enforces the cache quota. Run it at start
    /// and periodically ([`Workspaces::spawn_sweeper`]).
    pub async fn sweep(&self) -> Result<SweepReport, WorkspaceError> {
        let jobs_dir = self.inner.settings.root.join("jobs");
        let mut removed_jobs = Vec::new();
        let mut entries = tokio::fs::read_dir(&jobs_dir)
            .await
            .map_err(|e| io_error("listing", &jobs_dir, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing", &jobs_dir, e))?
        {
            let dir = entry.path();
            // A live job holds its lock; a folder whose lock can be taken is a leftover.
            if let Some(_lock) = try_lock_file(&dir.join(JOB_LOCK)).await? {
                remove_dir(&dir).await?;
                removed_jobs.push(entry.file_name().to_string_lossy().into_owned());
            }
        }

        let mirrors_dir = self.inner.settings.root.join("mirrors");
        let mut entries = tokio::fs::read_dir(&mirrors_dir)
            .await
            .map_err(|e| io_error("listing", &mirrors_dir, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing", &mirrors_dir, e))?
        {
            let dir = entry.path();
            let Some(name) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".git"))
            else {
                continue;
            };
            let fetch_lock = self
                .inner
                .settings
                .root
                .join("locks")
                .join(format!("{name}.fetch"));
            if let Some(_lock) = try_lock_file(&fetch_lock).await? {
                remove_stale_git_locks(&dir).await?;
            }
            if let Err(e) = self
                .inner
                .git
                .run(&dir, &["worktree", "prune"], None, &[])
                .await
            {
                tracing::warn!(mirror = name, error = %e, "worktree prune failed");
            }
        }
        // Parked worktrees whose mirror is gone (a crash between evicting the two).
        let parked_dir = self.inner.settings.root.join("parked");
        let mut entries = tokio::fs::read_dir(&parked_dir)
            .await
            .map_err(|e| io_error("listing", &parked_dir, e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing", &parked_dir, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !tokio::fs::try_exists(mirrors_dir.join(format!("{name}.git")))
                .await
                .unwrap_or(true)
            {
                remove_dir(&entry.path()).await?;
            }
        }

        let evicted_mirrors = self.enforce_quota().await?;
        if !removed_jobs.is_empty() || !evicted_mirrors.is_empty() {
            tracing::info!(?removed_jobs, ?evicted_mirrors, "workspace sweep");
        }
        Ok(SweepReport {
            removed_jobs,
            evicted_mirrors,
        })
    }

    /// Runs [`Workspaces::sweep`] now and then every `interval` until `stop` resolves.
    pub fn spawn_sweeper(
        &self,
        interval: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut ticks = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    () = &mut stop => break,
                    _ = ticks.tick() => {
                        if let Err(e) = this.sweep().await {
                            tracing::warn!(error = %e, "workspace sweep failed");
                        }
                    }
                }
            }
        })
    }
}

/// The refs a checkout fetches into the mirror.
fn wanted_refs(request: &CheckoutRequest) -> Result<Vec<String>, WorkspaceError> {
    let mut refs = vec![match &request.target {
        Target::PullRequest { number, .. } => format!("refs/pull/{number}/head"),
        Target::Branch(branch) => format!("refs/heads/{branch}"),
    }];
    for branch in &request.also_fetch {
        let r = format!("refs/heads/{branch}");
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    if refs
        .iter()
        .any(|r| r.contains(':') || r.starts_with('+') || r.contains(char::is_whitespace))
    {
        return Err(WorkspaceError::InvalidInput(format!(
            "invalid branch name in {refs:?}"
        )));
    }
    Ok(refs)
}

fn validate_job(job: &str) -> Result<(), WorkspaceError> {
    let ok = !job.is_empty()
        && job.len() <= 128
        && job != "."
        && job != ".."
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(WorkspaceError::InvalidInput(format!(
            "job id {job:?} must be 1-128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        )))
    }
}

/// A file-system-safe, collision-free folder name for a cache key: a readable part and a hash.
fn mirror_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = sha2::Sha256::digest(key.as_bytes());
    format!("{readable}-{}", hex::encode(&hash[..6]))
}

fn path_str(path: &Path) -> Result<&str, WorkspaceError> {
    path.to_str().ok_or_else(|| {
        WorkspaceError::InvalidInput(format!("{} is not valid UTF-8", path.display()))
    })
}

/// `kodiai/issue-<n>-<slug>`: the branch a fix for an issue is pushed to.
pub fn issue_branch_name(number: u64, title: &str) -> String {
    format!("kodiai/issue-{number}-{}", slug(title))
}

/// `kodiai/pr-<n>-<slug>`: the branch for changes to a pull request kodiai cannot push to.
pub fn pull_request_branch_name(number: u64, title: &str) -> String {
    format!("kodiai/pr-{number}-{}", slug(title))
}

/// Lower-case ASCII words joined by `-`, at most 40 characters; `change` when nothing is left.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for word in title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let extra = usize::from(!out.is_empty()) + word.len();
        if out.len() + extra > 40 {
            if out.is_empty() {
                out.push_str(&word[..40]);
            }
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word);
    }
    if out.is_empty() {
        "change".to_owned()
    } else {
        out
    }
}

#[cfg(test)]
mod tests;
