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

mod git;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::Digest as _;

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

/// A job's worktree. Remove it with [`Checkout::remove`]; dropping it removes it too (in the
/// background).
#[derive(Debug)]
pub struct Checkout {
    path: PathBuf,
    base: String,
    fetch: FetchReport,
    remote: Remote,
    cleanup: Cleanup,
    identity: Identity,
    git: Git,
    recycled: bool,
    parked: PathBuf,
    park_lock: PathBuf,
    _use_lock: File,
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
struct Cleanup {
    job_dir: PathBuf,
    mirror_dir: PathBuf,
    git: Git,
    armed: bool,
    /// The job's lock, held until the folder is gone, so that a retry of the job waits for the
    /// clean-up of its cancelled attempt instead of racing it.
    job_lock: Option<File>,
}

impl Cleanup {
    async fn run(&self) -> Result<(), WorkspaceError> {
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

#[derive(Clone, Copy)]
enum LockMode {
    Shared,
    Exclusive,
}

/// Opens (creating) and locks a lock file, waiting for it on a blocking thread.
async fn lock_file(path: &Path, mode: LockMode) -> Result<File, WorkspaceError> {
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
async fn try_lock_file(path: &Path) -> Result<Option<File>, WorkspaceError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || try_lock_blocking(&path))
        .await
        .map_err(|e| WorkspaceError::Io(format!("lock task: {e}")))?
}

fn try_lock_blocking(path: &Path) -> Result<Option<File>, WorkspaceError> {
    let file = open_lock(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error("locking", path, e)),
    }
}

/// The open `file` is the one at `path` (not a file deleted since it was opened).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn open_lock(path: &Path) -> Result<File, WorkspaceError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| io_error("opening", path, e))
}

async fn remove_dir(path: &Path) -> Result<(), WorkspaceError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", &path, e)),
    })
    .await
    .map_err(|e| WorkspaceError::Io(format!("remove task: {e}")))?
}

async fn touch(path: &Path) -> Result<(), WorkspaceError> {
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
async fn remove_stale_git_locks(mirror: &Path) -> Result<(), WorkspaceError> {
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
fn dir_size(dir: &Path) -> u64 {
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

fn evict_blocking(root: &Path, quota: u64) -> Result<Vec<String>, WorkspaceError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_are_slugged_and_bounded() {
        assert_eq!(
            issue_branch_name(5, "Workspaces: cached mirrors, a worktree per job!"),
            "kodiai/issue-5-workspaces-cached-mirrors-a-worktree-per"
        );
        assert_eq!(pull_request_branch_name(9, "¡¿ ?!"), "kodiai/pr-9-change");
        assert_eq!(
            issue_branch_name(1, &"x".repeat(60)).len(),
            "kodiai/issue-1-".len() + 40
        );
    }

    #[test]
    fn job_ids_are_checked() {
        assert!(validate_job("0190f3a2-7c1e-7d30-9b55-2f9c1d3c2a11").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_job(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mirror_names_differ_for_keys_that_read_alike() {
        let a = mirror_name("github.com/a/b_c");
        let b = mirror_name("github.com/a_b/c");
        assert_ne!(a, b);
        assert!(a.starts_with("github.com_a_b_c-"));
    }
}
