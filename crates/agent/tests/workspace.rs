//! The workspace module against real git over authenticated smart HTTP (`git http-backend`
//! behind the test-support server): mirrors, worktrees, commits and pushes, limits, crashes and
//! cancellation. After every test the data folder, the served repositories and the captured
//! logs are searched for the token.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kodiai_agent::workspace::{
    CheckoutRequest, Identity, Remote, Settings, Target, WorkspaceError, Workspaces,
    issue_branch_name,
};
use kodiai_test_support::git::{GitFixture, assert_secret_absent, git};
use secrecy::SecretString;

/// Every log line of this test binary, at every level (one global subscriber: the workspace
/// module also logs from spawned tasks and other threads).
fn logs() -> String {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buffer = LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    });
    String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Harness {
    fixture: GitFixture,
    data: tempfile::TempDir,
    ws: Workspaces,
    _serial: Serial,
}

/// Tests that assert which mirrors are in use run alone: a git that another test forks in the
/// same process holds a copy of every open file (and so of its flocks) until it execs, which
/// can make a released lock look held for a moment. (Harmless in kodiai: eviction is a best
/// effort that the next sweep repeats.)
static SERIAL: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[allow(dead_code, reason = "held for its drop")]
enum Serial {
    Shared(tokio::sync::RwLockReadGuard<'static, ()>),
    Alone(tokio::sync::RwLockWriteGuard<'static, ()>),
}

fn settings(root: PathBuf) -> Settings {
    Settings {
        root,
        git_program: PathBuf::from("git"),
        git_timeout: Duration::from_secs(120),
        cache_quota_bytes: u64::MAX,
        max_repository_bytes: 1 << 30,
        identity: Identity::new("kodiai[bot]", "kodiai[bot]@users.noreply.github.com"),
    }
}

impl Harness {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(change: impl FnOnce(&mut Settings)) -> Self {
        Self::build(Serial::Shared(SERIAL.read().await), change).await
    }

    async fn alone() -> Self {
        Self::build(Serial::Alone(SERIAL.write().await), |_| {}).await
    }

    async fn build(serial: Serial, change: impl FnOnce(&mut Settings)) -> Self {
        logs();
        let fixture = GitFixture::start().await;
        let data = tempfile::tempdir().unwrap();
        let mut settings = settings(data.path().join("workspaces"));
        change(&mut settings);
        let ws = Workspaces::open(settings).await.unwrap();
        Self {
            fixture,
            data,
            ws,
            _serial: serial,
        }
    }

    fn remote(&self, name: &str) -> Remote {
        Remote::new(
            self.fixture.url(name),
            SecretString::from(self.fixture.token.clone()),
        )
        .unwrap()
    }

    fn request(&self, job: &str, repo: &str, target: Target) -> CheckoutRequest {
        CheckoutRequest {
            job: job.to_owned(),
            remote: self.remote(repo),
            target,
            also_fetch: Vec::new(),
            size_hint_bytes: None,
        }
    }

    /// The token is nowhere: not in the data folder (mirrors, worktrees), not in the served
    /// repositories, not in the logs, not in `texts` (error messages).
    fn assert_no_token(&self, texts: &[&str]) {
        let logs = logs();
        let mut all = texts.to_vec();
        all.push(&logs);
        assert_secret_absent(
            &self.fixture.token,
            &[self.data.path(), self.fixture.root()],
            &all,
        );
        // What must hold besides: the module logged its git commands at all.
        assert!(logs.contains("git"), "the log capture works");
    }
}

fn branch(name: &str) -> Target {
    Target::Branch(name.to_owned())
}

fn pull(number: u64, head_sha: Option<&str>) -> Target {
    Target::PullRequest {
        number,
        head_sha: head_sha.map(str::to_owned),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The worktrees git knows for a mirror in job folders (not the parked ones).
async fn worktrees(mirror: &Path) -> Vec<String> {
    git(mirror, &["worktree", "list", "--porcelain"])
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .filter(|p| p.contains("/workspaces/jobs/"))
        .map(str::to_owned)
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_mirror_is_created_once_then_fetched_incrementally() {
    let h = Harness::new().await;
    let repo = h.fixture.create_repo("acme/app").await;
    let first = repo
        .commit("main", &[("README.md", "hello\n")], "first")
        .await;

    let one =
        h.ws.checkout(h.request("job-1", "acme/app", branch("main")))
            .await
            .unwrap();
    assert!(one.fetch_report().created_mirror);
    assert_eq!(one.base_commit(), first);
    assert_eq!(one.path(), h.ws.job_path("job-1").join("checkout"));
    assert_eq!(read(&one.path().join("README.md")), "hello\n");
    one.remove().await.unwrap();
    assert!(!h.ws.job_path("job-1").exists());

    let second = repo
        .commit("main", &[("src/lib.rs", "pub fn f() {}\n")], "second")
        .await;
    let before = h.fixture.server.requests().len();
    let two =
        h.ws.checkout(h.request("job-2", "acme/app", branch("main")))
            .await
            .unwrap();
    assert!(!two.fetch_report().created_mirror, "the mirror is reused");
    assert_eq!(two.base_commit(), second);
    assert_eq!(read(&two.path().join("src/lib.rs")), "pub fn f() {}\n");

    // Incremental: the fetch told the server what the mirror already had.
    let requests = h.fixture.server.requests();
    let have = format!("have {first}");
    assert!(
        requests[before..].iter().any(|r| r.method == "POST"
            && r.path.ends_with("/git-upload-pack")
            && String::from_utf8_lossy(&r.body).contains(&have)),
        "the second fetch negotiated from the mirror's commits"
    );
    assert!(requests.iter().all(|r| r.authorized));
    // No remote (and so no URL) is written into the mirror's configuration.
    let config = read(&h.ws.mirror_path(&h.remote("acme/app")).join("config"));
    assert!(!config.contains("remote"), "{config}");
    assert!(!config.contains("extraheader"), "{config}");

    h.assert_no_token(&[]);
    two.remove().await.unwrap();
    assert!(
        worktrees(&h.ws.mirror_path(&h.remote("acme/app")))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_finished_worktree_is_recycled_clean_for_the_next_job() {
    let h = Harness::new().await;
    let repo = h.fixture.create_repo("acme/app").await;
    repo.commit(
        "main",
        &[
            ("README.md", "one\n"),
            (".gitignore", "target/\n"),
            ("old.txt", "old\n"),
        ],
        "one",
    )
    .await;
    let first =
        h.ws.checkout(h.request("job-1", "acme/app", branch("main")))
            .await
            .unwrap();
    assert!(!first.recycled());
    // What a job leaves in its tree: changes, new files, ignored build output.
    std::fs::write(first.path().join("README.md"), "changed by the job\n").unwrap();
    std::fs::write(first.path().join("new.txt"), "untracked\n").unwrap();
    std::fs::create_dir_all(first.path().join("target")).unwrap();
    std::fs::write(first.path().join("target/out"), "ignored\n").unwrap();
    first.commit_all("local commit", &[]).await.unwrap();
    first.remove().await.unwrap();
    assert!(!h.ws.job_path("job-1").exists());

    let mut files = vec![("README.md", "two\n")];
    files.push(("src/new.rs", "fn main() {}\n"));
    let two = repo.commit("main", &files, "two").await;
    let second =
        h.ws.checkout(h.request("job-2", "acme/app", branch("main")))
            .await
            .unwrap();
    assert!(second.recycled(), "the parked worktree was taken");
    assert_eq!(second.path(), h.ws.job_path("job-2").join("checkout"));
    assert_eq!(second.head().await.unwrap(), two);
    assert_eq!(read(&second.path().join("README.md")), "two\n");
    assert_eq!(read(&second.path().join("src/new.rs")), "fn main() {}\n");
    assert!(!second.path().join("new.txt").exists());
    assert!(!second.path().join("target").exists());
    assert_eq!(
        git(second.path(), &["status", "--porcelain", "--ignored"]).await,
        ""
    );
    // Its commits start from this job's commit.
    std::fs::write(second.path().join("x.txt"), "x\n").unwrap();
    let commit = second.commit_all("x", &[]).await.unwrap().unwrap();
    let report = second.push("kodiai/x", None).await.unwrap();
    assert_eq!(report.commits, vec![commit.clone()]);
    assert_eq!(repo.show(&commit, "%P").await, two);

    // Two at once: one recycled, one new; both parked afterwards, none beyond the slots.
    second.remove().await.unwrap();
    let (a, b) = tokio::join!(
        h.ws.checkout(h.request("job-3", "acme/app", branch("main"))),
        h.ws.checkout(h.request("job-4", "acme/app", branch("main"))),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(u8::from(a.recycled()) + u8::from(b.recycled()), 1);
    a.remove().await.unwrap();
    b.remove().await.unwrap();
    let mirror = h.ws.mirror_path(&h.remote("acme/app"));
    let listed = git(&mirror, &["worktree", "list", "--porcelain"]).await;
    assert_eq!(listed.matches("/workspaces/parked/").count(), 2, "{listed}");
    assert!(worktrees(&mirror).await.is_empty());
    h.assert_no_token(&[]);
}

#[tokio::test]
async fn a_fork_pull_request_is_checked_out_at_its_head() {
    let h = Harness::new().await;
    let base = h.fixture.create_repo("acme/app").await;
    let main = base
        .commit("main", &[("README.md", "base\n")], "base")
        .await;
    let fork = h.fixture.create_repo("contrib/app").await;
    fork.fetch_ref(&base, &main, "refs/heads/main").await;
    let head = fork
        .commit("fix", &[("fix.txt", "from the fork\n")], "fork fix")
        .await;
    // GitHub publishes a fork's pull request head in the base repository.
    base.fetch_ref(&fork, &head, "refs/pull/7/head").await;
    // The contributor pushes again after the event kodiai is handling.
    let newer = fork.commit("fix", &[("fix.txt", "newer\n")], "newer").await;
    base.fetch_ref(&fork, &newer, "refs/pull/7/head").await;

    let mut request = h.request("review-7", "acme/app", pull(7, Some(&head)));
    request.also_fetch = vec!["main".to_owned()];
    let checkout = h.ws.checkout(request).await.unwrap();
    assert_eq!(checkout.base_commit(), head);
    assert_eq!(checkout.head().await.unwrap(), head);
    assert_eq!(read(&checkout.path().join("fix.txt")), "from the fork\n");
    let mirror = h.ws.mirror_path(&h.remote("acme/app"));
    assert_eq!(
        git(&mirror, &["rev-parse", "refs/heads/main"]).await.trim(),
        main,
        "the base branch is in the mirror to diff against"
    );

    // A commit that is not on the pull request is refused, by name.
    let error =
        h.ws.checkout(h.request("review-7b", "acme/app", pull(7, Some(&"ab".repeat(20)))))
            .await
            .unwrap_err();
    assert!(matches!(error, WorkspaceError::NotFound { .. }), "{error}");
    assert!(!h.ws.job_path("review-7b").exists());
    let missing =
        h.ws.checkout(h.request("review-8", "acme/app", pull(8, None)))
            .await
            .unwrap_err();
    assert!(
        matches!(missing, WorkspaceError::NotFound { .. }),
        "{missing}"
    );

    h.assert_no_token(&[&error.to_string(), &missing.to_string()]);
    checkout.remove().await.unwrap();
}

#[tokio::test]
async fn commits_and_pushes_land_with_the_bot_identity_and_the_trailer() {
    let h = Harness::new().await;
    let repo = h.fixture.create_repo("acme/app").await;
    repo.commit("main", &[("README.md", "base\n")], "base")
        .await;
    let feature = repo
        .commit("feature", &[("bug.rs", "bug\n")], "feature")
        .await;
    repo.fetch_ref(&repo, &feature, "refs/pull/3/head").await;

    let checkout =
        h.ws.checkout(h.request("fix-3", "acme/app", pull(3, Some(&feature))))
            .await
            .unwrap();
    let co_author = Identity::new("Ann Example", "ann@example.com");
    assert_eq!(
        checkout
            .commit_all("Nothing yet", std::slice::from_ref(&co_author))
            .await
            .unwrap(),
        None,
        "no change, no commit"
    );
    std::fs::write(checkout.path().join("bug.rs"), "fixed\n").unwrap();
    std::fs::write(checkout.path().join("test.rs"), "#[test] fn t() {}\n").unwrap();
    let commit = checkout
        .commit_all("Fix the bug\n\nExplained here.", &[co_author])
        .await
        .unwrap()
        .expect("a commit");

    // To the pull request's branch.
    let report = checkout.push("feature", None).await.unwrap();
    assert_eq!(report.branch, "feature");
    assert_eq!(report.head, commit);
    assert_eq!(report.commits, vec![commit.clone()]);
    assert_eq!(report.url, h.fixture.url("acme/app").as_str());
    assert_eq!(repo.rev_parse("refs/heads/feature").await.unwrap(), commit);
    assert_eq!(
        repo.show(&commit, "%an <%ae>|%cn <%ce>").await,
        "kodiai[bot] <kodiai[bot]@users.noreply.github.com>|kodiai[bot] <kodiai[bot]@users.noreply.github.com>"
    );
    assert_eq!(
        repo.show(&commit, "%(trailers:key=Co-authored-by,valueonly)")
            .await,
        "Ann Example <ann@example.com>"
    );
    assert_eq!(repo.show(&commit, "%s").await, "Fix the bug");
    assert_eq!(repo.show(&commit, "%P").await, feature);
    assert_eq!(repo.file(&commit, "bug.rs").await, "fixed\n");

    // To a new branch for an issue.
    let new_branch = issue_branch_name(5, "Fix the thing!");
    assert_eq!(new_branch, "kodiai/issue-5-fix-the-thing");
    let report = checkout.push(&new_branch, None).await.unwrap();
    assert_eq!(report.commits, vec![commit.clone()]);
    assert_eq!(
        repo.rev_parse(&format!("refs/heads/{new_branch}"))
            .await
            .unwrap(),
        commit
    );

    // Never a force push: a branch that moved on refuses.
    repo.commit("main", &[("other.txt", "x\n")], "moved on")
        .await;
    let rejected = checkout.push("main", None).await.unwrap_err();
    assert!(
        matches!(rejected, WorkspaceError::PushRejected { .. }),
        "{rejected}"
    );
    let bad = checkout.push("no..good", None).await.unwrap_err();
    assert!(matches!(bad, WorkspaceError::InvalidInput(_)), "{bad}");

    h.assert_no_token(&[&rejected.to_string()]);
    checkout.remove().await.unwrap();
}

#[tokio::test]
async fn a_push_to_a_fork_goes_to_the_fork_with_its_own_remote() {
    let h = Harness::new().await;
    let base = h.fixture.create_repo("acme/app").await;
    let main = base
        .commit("main", &[("README.md", "base\n")], "base")
        .await;
    let fork = h.fixture.create_repo("contrib/app").await;
    fork.fetch_ref(&base, &main, "refs/heads/main").await;
    let head = fork.commit("patch-1", &[("a.txt", "a\n")], "a").await;
    base.fetch_ref(&fork, &head, "refs/pull/9/head").await;

    let checkout =
        h.ws.checkout(h.request("fix-9", "acme/app", pull(9, Some(&head))))
            .await
            .unwrap();
    std::fs::write(checkout.path().join("a.txt"), "b\n").unwrap();
    let commit = checkout.commit_all("Tweak", &[]).await.unwrap().unwrap();
    let report = checkout
        .push("patch-1", Some(&h.remote("contrib/app")))
        .await
        .unwrap();
    assert_eq!(report.url, h.fixture.url("contrib/app").as_str());
    assert_eq!(fork.rev_parse("refs/heads/patch-1").await.unwrap(), commit);
    assert_eq!(base.rev_parse("refs/heads/patch-1").await, None);
    h.assert_no_token(&[]);
    checkout.remove().await.unwrap();
}

#[tokio::test]
async fn a_wrong_token_fails_with_a_clear_error_and_leaves_nothing() {
    let h = Harness::new().await;
    h.fixture.create_repo("acme/app").await;
    let wrong = "ghs_wrongwrongwrongwrongwrong0001";
    let request = CheckoutRequest {
        remote: Remote::new(h.fixture.url("acme/app"), SecretString::from(wrong)).unwrap(),
        ..h.request("job-denied", "acme/app", branch("main"))
    };
    let error = h.ws.checkout(request).await.unwrap_err();
    assert!(
        matches!(error, WorkspaceError::Authentication { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(message.contains("refused the token"), "{message}");
    assert!(h.fixture.server.requests().iter().all(|r| !r.authorized));
    assert!(!h.ws.job_path("job-denied").exists());
    assert!(!h.ws.mirror_path(&h.remote("acme/app")).exists());

    h.assert_no_token(&[&message]);
    assert_secret_absent(wrong, &[h.data.path()], &[&message, &logs()]);
}

#[tokio::test]
async fn two_jobs_on_one_repository_at_once_both_succeed() {
    let h = Harness::new().await;
    let repo = h.fixture.create_repo("acme/app").await;
    let main = repo
        .commit("main", &[("README.md", "base\n")], "base")
        .await;
    let pr = repo
        .commit_on("refs/pull/1/head", &[("pr.txt", "pr\n")], "pr")
        .await;
    assert_ne!(main, pr);

    let (a, b) = tokio::join!(
        h.ws.checkout(h.request("job-a", "acme/app", branch("main"))),
        h.ws.checkout(h.request("job-b", "acme/app", pull(1, None))),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.base_commit(), main);
    assert_eq!(b.base_commit(), pr);
    assert_ne!(a.path(), b.path());
    assert!(
        a.fetch_report().created_mirror ^ b.fetch_report().created_mirror,
        "one of them created the mirror, the other waited and reused it"
    );

    std::fs::write(a.path().join("a.txt"), "a\n").unwrap();
    std::fs::write(b.path().join("b.txt"), "b\n").unwrap();
    let (ca, cb) = tokio::join!(a.commit_all("a", &[]), b.commit_all("b", &[]));
    let (ca, cb) = (ca.unwrap().unwrap(), cb.unwrap().unwrap());
    let (pa, pb) = tokio::join!(a.push("kodiai/a", None), b.push("kodiai/b", None));
    pa.unwrap();
    pb.unwrap();
    assert_eq!(repo.rev_parse("refs/heads/kodiai/a").await.unwrap(), ca);
    assert_eq!(repo.rev_parse("refs/heads/kodiai/b").await.unwrap(), cb);

    let mirror = h.ws.mirror_path(&h.remote("acme/app"));
    assert_eq!(worktrees(&mirror).await.len(), 2);
    let (ra, rb) = tokio::join!(a.remove(), b.remove());
    ra.unwrap();
    rb.unwrap();
    assert!(worktrees(&mirror).await.is_empty());
    assert!(entries(&h.data.path().join("workspaces/jobs")).is_empty());
    h.assert_no_token(&[]);
}

#[tokio::test]
async fn what_a_killed_job_leaves_does_not_break_the_next_one() {
    let h = Harness::new().await;
    let repo = h.fixture.create_repo("acme/app").await;
    repo.commit("main", &[("README.md", "one\n")], "one").await;
    let setup =
        h.ws.checkout(h.request("job-setup", "acme/app", branch("main")))
            .await
            .unwrap();
    setup.remove().await.unwrap();

    // What a process killed in the middle of a job leaves: the job's folder with its worktree
    // (and an index lock of a git killed in it), the mirror's record of that worktree, and lock
    // files of a fetch killed while it updated refs. Its flocks died with it.
    let mirror = h.ws.mirror_path(&h.remote("acme/app"));
    let crashed = h.ws.job_path("job-crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::File::create(crashed.join("lock")).unwrap();
    let leftover = crashed.join("checkout");
    git(
        &mirror,
        &[
            "worktree",
            "add",
            "--detach",
            leftover.to_str().unwrap(),
            "main",
        ],
    )
    .await;
    let admin = git(&leftover, &["rev-parse", "--git-dir"]).await;
    std::fs::File::create(Path::new(admin.trim()).join("index.lock")).unwrap();
    std::fs::File::create(mirror.join("refs/heads/main.lock")).unwrap();
    std::fs::File::create(mirror.join("packed-refs.lock")).unwrap();
    let gone = h.ws.job_path("job-gone");
    std::fs::create_dir_all(gone.join("checkout")).unwrap();
    std::fs::write(gone.join("checkout/file"), "x").unwrap();

    let orphan = h.data.path().join("workspaces/parked/no-such-mirror/0");
    std::fs::create_dir_all(&orphan).unwrap();

    // A new process on the same data folder.
    let ws = Workspaces::open(h.ws.settings().clone()).await.unwrap();
    let two = repo.commit("main", &[("README.md", "two\n")], "two").await;
    let next = ws
        .checkout(h.request("job-next", "acme/app", branch("main")))
        .await
        .unwrap();
    assert_eq!(
        next.base_commit(),
        two,
        "the fetch updated main despite the stale locks"
    );
    // The retried job gets a fresh worktree in place of its leftover.
    let retried = ws
        .checkout(h.request("job-crashed", "acme/app", branch("main")))
        .await
        .unwrap();
    assert_eq!(retried.base_commit(), two);
    assert_eq!(read(&retried.path().join("README.md")), "two\n");

    // The sweep removes what no live job holds, and only that.
    let report = ws.sweep().await.unwrap();
    assert_eq!(report.removed_jobs, vec!["job-gone".to_owned()]);
    assert!(next.path().exists() && retried.path().exists());
    assert!(
        !orphan.parent().unwrap().exists(),
        "parked worktrees of a missing mirror go"
    );
    next.remove().await.unwrap();
    retried.remove().await.unwrap();
    assert!(entries(&h.data.path().join("workspaces/jobs")).is_empty());
    assert!(worktrees(&mirror).await.is_empty());
    h.assert_no_token(&[]);
}

#[tokio::test]
async fn a_job_cancelled_in_the_middle_of_a_fetch_leaves_nothing_behind() {
    let h = Harness::new().await;
    let repo = h.fixture.create_repo("acme/app").await;
    let main = repo.commit("main", &[("README.md", "one\n")], "one").await;

    h.fixture.server.hold();
    let before = h.fixture.server.requests().len();
    let ws = h.ws.clone();
    let request = h.request("job-cancelled", "acme/app", branch("main"));
    let task = tokio::spawn(async move { ws.checkout(request).await });
    // git is now waiting for the server's answer.
    h.fixture.server.wait_for_requests(before + 1).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    h.fixture.server.release();

    // The job again (its retry waits for the cancelled attempt's clean-up), and another one.
    let retry =
        h.ws.checkout(h.request("job-cancelled", "acme/app", branch("main")))
            .await
            .unwrap();
    assert_eq!(retry.base_commit(), main);
    let other =
        h.ws.checkout(h.request("job-other", "acme/app", branch("main")))
            .await
            .unwrap();
    retry.remove().await.unwrap();
    other.remove().await.unwrap();
    assert!(entries(&h.data.path().join("workspaces/jobs")).is_empty());
    assert_eq!(
        h.ws.sweep().await.unwrap().removed_jobs,
        Vec::<String>::new()
    );
    h.assert_no_token(&[]);
}

#[tokio::test]
async fn a_repository_above_the_size_limit_is_refused() {
    let h = Harness::with(|s| s.max_repository_bytes = 1024).await;
    let repo = h.fixture.create_repo("acme/big").await;
    let content = (0..4000)
        .map(|i| format!("line {i} {}\n", i * 7919 % 104_729))
        .collect::<String>();
    repo.commit("main", &[("big.txt", &content)], "big").await;

    let mut request = h.request("job-hint", "acme/big", branch("main"));
    request.size_hint_bytes = Some(10 * 1024 * 1024);
    let hinted = h.ws.checkout(request).await.unwrap_err();
    assert!(
        matches!(hinted, WorkspaceError::RepositoryTooLarge { .. }),
        "{hinted}"
    );
    assert!(
        h.fixture.server.requests().is_empty(),
        "refused before fetching"
    );

    let error =
        h.ws.checkout(h.request("job-big", "acme/big", branch("main")))
            .await
            .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(
            error,
            WorkspaceError::RepositoryTooLarge {
                limit_bytes: 1024,
                ..
            }
        ),
        "{message}"
    );
    assert!(message.contains("max_repository_size_mb"), "{message}");
    assert!(!h.ws.mirror_path(&h.remote("acme/big")).exists());
    assert!(!h.ws.job_path("job-big").exists());
    h.assert_no_token(&[&message]);
}

#[tokio::test]
async fn the_cache_evicts_the_least_recently_used_mirrors_not_in_use() {
    let h = Harness::alone().await;
    for name in ["acme/a", "acme/b", "acme/c"] {
        let repo = h.fixture.create_repo(name).await;
        repo.commit("main", &[("README.md", name)], "init").await;
        let checkout =
            h.ws.checkout(h.request("job", name, branch("main")))
                .await
                .unwrap();
        checkout.remove().await.unwrap();
    }
    // b used again: the least recently used is now a, then c.
    let b =
        h.ws.checkout(h.request("job-b", "acme/b", branch("main")))
            .await
            .unwrap();
    b.remove().await.unwrap();

    let path = |name: &str| h.ws.mirror_path(&h.remote(name));
    // A mirror's share of the cache: the mirror and its parked worktrees.
    let size = |name: &str| {
        let mirror = path(name);
        let stem = mirror.file_stem().unwrap().to_owned();
        let parked = h.data.path().join("workspaces/parked").join(stem);
        dir_size(&mirror)
            + if parked.exists() {
                dir_size(&parked)
            } else {
                0
            }
    };
    let quota = size("acme/b") + size("acme/c");
    let mut small = h.ws.settings().clone();
    small.cache_quota_bytes = quota;
    let ws = Workspaces::open(small).await.unwrap();
    let evicted = ws.enforce_quota().await.unwrap();
    assert_eq!(evicted.len(), 1, "{evicted:?}");
    assert!(!path("acme/a").exists());
    assert!(path("acme/b").exists() && path("acme/c").exists());

    // A mirror in use is never evicted, even far over the quota.
    let mut tiny = h.ws.settings().clone();
    tiny.cache_quota_bytes = 1;
    let ws = Workspaces::open(tiny).await.unwrap();
    let held = ws
        .checkout(h.request("job-held", "acme/c", branch("main")))
        .await
        .unwrap();
    assert!(
        !path("acme/b").exists(),
        "evicted by the checkout's quota check"
    );
    assert!(path("acme/c").exists());
    assert!(ws.enforce_quota().await.unwrap().is_empty());
    held.remove().await.unwrap();
    assert_eq!(ws.enforce_quota().await.unwrap().len(), 1);
    assert!(!path("acme/c").exists());

    // An evicted repository comes back on its next use.
    let again = ws
        .checkout(h.request("job-again", "acme/a", branch("main")))
        .await
        .unwrap();
    assert!(again.fetch_report().created_mirror);
    again.remove().await.unwrap();
    h.assert_no_token(&[]);
}

#[tokio::test]
async fn bad_requests_are_refused_before_git_runs() {
    let h = Harness::new().await;
    for job in ["", "../escape", "a/b"] {
        let error =
            h.ws.checkout(h.request(job, "acme/app", branch("main")))
                .await
                .unwrap_err();
        assert!(matches!(error, WorkspaceError::InvalidInput(_)), "{error}");
    }
    for name in ["main:refs/heads/x", "bad..name", "with space"] {
        let error =
            h.ws.checkout(h.request("job", "acme/app", branch(name)))
                .await
                .unwrap_err();
        assert!(
            matches!(error, WorkspaceError::InvalidInput(_)),
            "{name}: {error}"
        );
    }
    assert!(h.fixture.server.requests().is_empty());
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[tokio::test]
async fn a_git_command_that_hangs_is_killed_at_the_timeout() {
    let h = Harness::with(|s| s.git_timeout = Duration::from_secs(3)).await;
    let repo = h.fixture.create_repo("acme/app").await;
    repo.commit("main", &[("README.md", "one\n")], "one").await;
    h.fixture.server.hold();
    let error =
        h.ws.checkout(h.request("job-slow", "acme/app", branch("main")))
            .await
            .unwrap_err();
    h.fixture.server.release();
    assert!(matches!(error, WorkspaceError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("git fetch"), "{error}");
    assert!(!h.ws.job_path("job-slow").exists());
    h.assert_no_token(&[&error.to_string()]);
}
