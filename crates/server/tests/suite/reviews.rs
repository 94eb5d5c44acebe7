//! Pull-request reviews end to end: a signed `pull_request` webhook into the running app, the
//! fake GitHub, a scripted fake model and real git over the local smart-HTTP server. One review
//! per head with its comments where they belong, anchors outside the diff moved or summarized,
//! a comment GitHub refuses kept in the summary, no second review after a re-run, incremental
//! reviews that never repeat a finding, a review asked for again at a reviewed head, drafts left
//! alone until ready, and one error comment when the model fails.

use crate::suite::harness::TestAppBuilder;
use kodiai_protocol::{Job, JobSpec, JobState, ReviewJob};
use kodiai_store::NewJob;
use kodiai_test_support::cli::{FakeCli, Step};
use kodiai_test_support::git::git;
use kodiai_test_support::llm::{Api, FakeError, FakeLlm, Reply};
use kodiai_test_support::webhooks::fixture;
use serde_json::{Value, json};

use super::common::{REPO, World, on_claude_code};

const AUTHOR: &str = "Codertocat";
const LIB: &str = "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n";
/// `LIB` with `div` added: lines 5-7 are new, line 6 divides.
const LIB_WITH_DIV: &str = "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\npub fn div(a: i32, b: i32) -> i32 {\n    a / b\n}\n";

async fn world(builder: TestAppBuilder, kodiai_yml: Option<&str>) -> Option<World> {
    let files = [("README.md", "# Hello\n"), ("src/lib.rs", LIB)];
    World::start(builder, &files, kodiai_yml).await
}

/// The world with pull request 2 open (not a draft) at a commit that adds `div`
/// (`LIB_WITH_DIV`); that head.
async fn world_with_div(builder: TestAppBuilder) -> Option<(World, String)> {
    let w = world(builder, None).await?;
    let head = w
        .push(&[("src/lib.rs", LIB_WITH_DIV)], "add div", false)
        .await;
    Some((w, head))
}

impl World {
    /// Delivers `payload` as `pull_request` and runs the job it made; the job after.
    async fn review(&self, payload: &Value) -> Job {
        let job_id = self.deliver_job("pull_request", payload).await;
        self.run(&job_id).await
    }

    /// Commits `files` on `feature` (from `main` the first time), points pull request 2 at it
    /// and gives the fake GitHub its files with git's own patches. Returns the head.
    async fn push(&self, files: &[(&str, &str)], message: &str, draft: bool) -> String {
        if self.bare.rev_parse("refs/heads/feature").await.is_none() {
            git(
                &self.bare.path,
                &["update-ref", "refs/heads/feature", &self.main],
            )
            .await;
        }
        let head = self.bare.commit("feature", files, message).await;
        git(&self.bare.path, &["update-ref", "refs/pull/2/head", &head]).await;
        self.fake.add_pull(
            REPO,
            2,
            json!({
                "title": "Add div",
                "body": "Adds division.",
                "draft": draft,
                "user": {"login": AUTHOR, "type": "User"},
                "head": {"ref": "feature", "sha": head},
                "base": {"ref": "main", "sha": self.main},
            }),
        );
        let diff = git(&self.bare.path, &["diff", &self.main, &head]).await;
        self.fake.set_pull_files(REPO, 2, github_files(&diff));
        head
    }

    /// `pull_request.ACTION` for the pull request at `head`.
    fn event(&self, action: &str, head: &str, draft: bool) -> Value {
        let mut payload = fixture("pull_request/opened.payload.json");
        payload["action"] = json!(action);
        let pull = &mut payload["pull_request"];
        pull["draft"] = json!(draft);
        pull["head"]["sha"] = json!(head);
        pull["head"]["ref"] = json!("feature");
        pull["base"]["sha"] = json!(self.main);
        pull["base"]["ref"] = json!("main");
        payload
    }

    fn reviews(&self) -> Vec<Value> {
        self.fake.visible_reviews(REPO, 2)
    }

    /// The inline comments of review `id`, as (path, line, body).
    fn comments_of(&self, review: &Value) -> Vec<(String, u64, String)> {
        self.fake
            .review_comments(REPO, 2)
            .into_iter()
            .filter(|c| c["pull_request_review_id"] == review["id"])
            .map(|c| {
                (
                    c["path"].as_str().unwrap().to_owned(),
                    c["line"].as_u64().unwrap(),
                    c["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn error_comments(&self) -> Vec<String> {
        self.fake
            .issue_comments(REPO, 2)
            .iter()
            .filter_map(|c| c["body"].as_str())
            .filter(|b| b.contains("<!-- kodiai:review-failed:"))
            .map(str::to_owned)
            .collect()
    }
}

/// A `git diff` as GitHub's pull files: path, status and the hunks as `patch`.
fn github_files(diff: &str) -> Vec<Value> {
    diff.split("diff --git ")
        .filter(|chunk| !chunk.is_empty())
        .map(|chunk| {
            let path = chunk
                .lines()
                .find_map(|l| l.strip_prefix("+++ b/"))
                .unwrap()
                .to_owned();
            let status = if chunk.contains("\nnew file mode") {
                "added"
            } else {
                "modified"
            };
            let patch = &chunk[chunk.find("\n@@").unwrap() + 1..];
            let count = |p: char| {
                patch
                    .lines()
                    .filter(|l| l.starts_with(p) && !l.starts_with("@@"))
                    .count()
            };
            json!({"filename": path, "status": status, "additions": count('+'),
                   "deletions": count('-'), "patch": patch.trim_end()})
        })
        .collect()
}

fn comment(id: &str, args: Value) -> Reply {
    Reply::tool_calls(&[(id, "create_inline_comment", args)])
}

/// Where inline comments (as [`World::comments_of`] gives them) sit: (path, line).
fn anchors(comments: &[(String, u64, String)]) -> Vec<(&str, u64)> {
    comments.iter().map(|(p, l, _)| (p.as_str(), *l)).collect()
}

/// Scripts a model that comments on line 6 (division by zero) and line 5 (naming) of
/// `LIB_WITH_DIV`'s `src/lib.rs` at once, then ends with "Two notes.".
fn two_notes(llm: &FakeLlm) {
    llm.push(Reply::tool_calls(&[
        (
            "c1",
            "create_inline_comment",
            json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero."}),
        ),
        (
            "c2",
            "create_inline_comment",
            json!({"path": "src/lib.rs", "line": 5, "body": "Name it `checked_div`."}),
        ),
    ]))
    .push(Reply::text("Two notes."));
}

fn marker_of(head: &str) -> String {
    format!("<!-- kodiai:review:{}#2@{head} -->", REPO.to_lowercase())
}

app_test!(
    an_opened_pull_request_gets_one_review_with_its_comments_on_their_lines,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        w.llm
            .push(Reply::tool_calls(&[
                (
                    "c1",
                    "create_inline_comment",
                    json!({"path": "src/lib.rs", "line": 6,
                           "body": "Division by zero panics when `b` is 0."}),
                ),
                (
                    "c2",
                    "create_inline_comment",
                    json!({"path": "src/lib.rs", "line": 2,
                           "body": "`add` subtracts.\n```suggestion\n    a + b\n```"}),
                ),
            ]))
            .push(Reply::text(
                "Two problems: `div` panics on 0 and `add` subtracts.",
            ));
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let result = job.result.unwrap();
        assert_eq!(result["decision"], "reviewed", "{result}");

        let reviews = w.reviews();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        let review = &reviews[0];
        assert_eq!(review["state"], "COMMENTED");
        assert_eq!(review["commit_id"], json!(head));
        let body = review["body"].as_str().unwrap();
        assert!(body.starts_with(&marker_of(&head)), "{body}");
        assert!(body.contains("`div` panics on 0"), "{body}");
        let comments = w.comments_of(review);
        assert_eq!(anchors(&comments), [("src/lib.rs", 6), ("src/lib.rs", 2)]);
        assert!(comments[1].2.contains("```suggestion\n    a + b\n```"));
        // The model saw the patch with new-side numbers, and the tools' answers.
        let prompts = w.prompts_since(0);
        assert!(prompts.contains("a / b"), "{prompts}");
        assert!(prompts.contains("noted on src/lib.rs:6"), "{prompts}");
        w.llm.assert_invariants();
    }
);

app_test!(
    a_clean_pull_request_is_approved_without_a_body,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        w.llm.push(Reply::text("Looks fine."));
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        assert_eq!(reviews[0]["state"], "APPROVED");
        assert_eq!(reviews[0]["body"], json!(""), "no body: {reviews:?}");
        assert!(w.comments_of(&reviews[0]).is_empty());

        // The same head delivered again: the approval is found, nothing is posted or asked.
        let asked = w.llm.requests().len();
        let job_id = w
            .deliver_job("pull_request", &w.event("reopened", &head, false))
            .await;
        w.fake
            .put_file(REPO, ".kodiai.yml", "review:\n  on: [opened, reopened]\n");
        let job = w.run(&job_id).await;
        assert_eq!(job.result.unwrap()["found_posted"], true);
        assert_eq!(w.reviews().len(), 1);
        assert_eq!(w.llm.requests().len(), asked);
    }
);

app_test!(
    anchors_outside_the_diff_are_moved_or_summarized_in_one_review,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        w.llm
            .push(comment(
                "c1",
                json!({"path": "src/lib.rs", "line": 9, "body": "Add a test for div."}),
            ))
            .push(comment(
                "c2",
                json!({"path": "README.md", "line": 1, "body": "Document div."}),
            ))
            .push(Reply::text("Two notes."));
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        let comments = w.comments_of(&reviews[0]);
        assert_eq!(comments.len(), 1, "{comments:?}");
        assert_eq!((comments[0].0.as_str(), comments[0].1), ("src/lib.rs", 7));
        assert!(comments[0].2.contains("About line 9"), "{comments:?}");
        let body = reviews[0]["body"].as_str().unwrap();
        assert!(body.contains("README.md:1"), "{body}");
        assert!(body.contains("Document div."), "{body}");
        // The model was told where each one went.
        let prompts = w.prompts_since(0);
        assert!(prompts.contains("will be on src/lib.rs:7"), "{prompts}");
        assert!(prompts.contains("review's summary"), "{prompts}");
    }
);

app_test!(
    a_comment_github_refuses_goes_to_the_summary_of_the_one_review,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        w.fake.reject_review_line(REPO, "src/lib.rs", 6);
        two_notes(&w.llm);
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.result.unwrap()["refused_by_github"], 1);
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        let comments = w.comments_of(&reviews[0]);
        assert_eq!(anchors(&comments), [("src/lib.rs", 5)]);
        let body = reviews[0]["body"].as_str().unwrap();
        assert!(
            body.contains("src/lib.rs:6") && body.contains("Division by zero."),
            "{body}"
        );
        assert!(w.fake.pending_reviews(REPO, 2).is_empty());
    }
);

app_test!(
    a_rerun_after_a_review_was_posted_posts_nothing_new,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        // The model comments, then fails: a partial review, and the job fails.
        w.llm
            .push(comment(
                "c1",
                json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero."}),
            ))
            .push(Reply::error(FakeError::Status(400, "bad request".into())));
        let job_id = w
            .deliver_job("pull_request", &w.event("opened", &head, false))
            .await;
        let job = w.run(&job_id).await;
        assert_eq!(job.state, JobState::Failed, "{job:?}");
        assert_eq!(w.reviews().len(), 1);
        let body = w.reviews()[0]["body"].as_str().unwrap().to_owned();
        assert!(body.contains("This review is incomplete"), "{body}");
        let errors = w.error_comments();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("stays as it is"), "{}", errors[0]);

        // The same job run again (an operator's retry; as after a crash): its step says the
        // review is posted. Nothing new is posted and the model is not asked.
        let asked = w.llm.requests().len();
        let state = w.app.state();
        state
            .store
            .retry_job(&job_id, state.clock.now())
            .await
            .unwrap();
        let job = w.run(&job_id).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        // A new job for the same head (a replayed delivery): the marker is found.
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.result.unwrap()["found_posted"], true);
        assert_eq!(w.reviews().len(), 1, "still one review");
        assert_eq!(w.error_comments().len(), 1);
        assert_eq!(w.llm.requests().len(), asked);
    }
);

impl World {
    /// Queues the review a mention asks for ("review this") of the head `job` reviewed, as the
    /// mention of delivery `delivery` would; its job id.
    async fn request_review(&self, job: &Job, delivery: &str) -> String {
        let mut review: ReviewJob = serde_json::from_value(job.payload.clone()).unwrap();
        review.action = "requested".into();
        review.delivery_id = delivery.into();
        let state = self.app.state();
        let new = NewJob::new(JobSpec::Review(review))
            .installation(1)
            .concurrency_key("installation:1");
        state
            .store
            .enqueue(&new, state.clock.now())
            .await
            .unwrap()
            .id
    }
}

app_test!(
    review_this_on_a_reviewed_head_reviews_again_without_repeating_a_finding,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        w.llm
            .push(comment(
                "c1",
                json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero."}),
            ))
            .push(Reply::text("One problem."));
        let opened = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(opened.state, JobState::Succeeded, "{opened:?}");
        assert_eq!(w.reviews().len(), 1);

        // Asked for in a mention at the same head: a second review, without the first's finding.
        two_notes(&w.llm);
        let requested = w.request_review(&opened, "mention-1").await;
        let job = w.run(&requested).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let result = job.result.unwrap();
        assert_eq!(result["decision"], "reviewed", "{result}");
        assert_eq!(result["repeats_dropped"], 1, "{result}");
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 2, "{reviews:?}");
        let comments = w.comments_of(&reviews[1]);
        assert_eq!(anchors(&comments), [("src/lib.rs", 5)]);
        let body = reviews[1]["body"].as_str().unwrap();
        assert!(body.contains(":requested:mention-1 -->"), "{body}");
        assert!(
            body.contains("already posted in an earlier review"),
            "{body}"
        );

        // The same request again (its mention replayed, or a crash before the job's step was
        // recorded): its own review is found; the model is not asked.
        let asked = w.llm.requests().len();
        let replayed = w.request_review(&opened, "mention-1").await;
        let job = w.run(&replayed).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let result = job.result.unwrap();
        assert_eq!(result["found_posted"], true, "{result}");
        assert_eq!(result["review_id"], reviews[1]["id"], "{result}");
        assert_eq!(w.reviews().len(), 2);
        assert_eq!(w.llm.requests().len(), asked);

        // Asked once more, and nothing is found: an approval that carries its marker.
        w.llm.push(Reply::text("Fine now."));
        let again = w.request_review(&opened, "mention-2").await;
        let job = w.run(&again).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 3, "{reviews:?}");
        assert_eq!(reviews[2]["state"], "APPROVED");
        let body = reviews[2]["body"].as_str().unwrap();
        assert!(body.contains(":requested:mention-2 -->"), "{body}");
    }
);

app_test!(
    a_synchronize_reviews_only_the_new_commit_and_never_repeats_a_finding,
    builder | builder | {
        let Some(w) = world(builder, Some("review:\n  on: [opened, synchronize]\n")).await else {
            return;
        };
        let first = w
            .push(&[("src/lib.rs", LIB_WITH_DIV)], "add div", false)
            .await;
        let div = json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero panics."});
        w.llm
            .push(comment("c1", div.clone()))
            .push(Reply::text("One problem."));
        let job = w.review(&w.event("opened", &first, false)).await;
        assert_eq!(job.state, JobState::Succeeded);

        let second = w
            .push(
                &[(
                    "src/rem.rs",
                    "pub fn rem(a: i32, b: i32) -> i32 {\n    a % b\n}\n",
                )],
                "add rem",
                false,
            )
            .await;
        let asked = w.llm.requests().len();
        // The model repeats the old finding and finds a new one.
        w.llm
            .push(Reply::tool_calls(&[
                ("c2", "create_inline_comment", div),
                (
                    "c3",
                    "create_inline_comment",
                    json!({"path": "src/rem.rs", "line": 2, "body": "Remainder by zero panics."}),
                ),
            ]))
            .push(Reply::text("One new problem."));
        let mut sync = w.event("synchronize", &second, false);
        sync["before"] = json!(first);
        sync["after"] = json!(second);
        let job = w.review(&sync).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let result = job.result.unwrap();
        assert_eq!(result["incremental_from"], json!(first), "{result}");
        assert_eq!(result["repeats_dropped"], 1, "{result}");

        let reviews = w.reviews();
        assert_eq!(reviews.len(), 2, "{reviews:?}");
        let comments = w.comments_of(&reviews[1]);
        assert_eq!(anchors(&comments), [("src/rem.rs", 2)]);
        // The second prompt showed only what the new commit changed.
        let prompt = w.prompts_since(asked);
        assert!(prompt.contains("a % b"), "{prompt}");
        assert!(!prompt.contains("a / b"), "{prompt}");
        assert!(
            prompt.contains(&format!("reviewed before, at `{first}`")),
            "{prompt}"
        );
    }
);

app_test!(
    a_draft_is_reviewed_only_once_it_is_ready,
    builder | builder | {
        let Some(w) = world(builder, None).await else {
            return;
        };
        let head = w
            .push(&[("src/lib.rs", LIB_WITH_DIV)], "add div", true)
            .await;
        let job = w.review(&w.event("opened", &head, true)).await;
        assert_eq!(job.result.unwrap()["decision"], "skipped");
        assert!(w.reviews().is_empty());
        assert!(w.llm.requests().is_empty(), "no model call for a draft");

        w.llm
            .push(comment(
                "c1",
                json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero."}),
            ))
            .push(Reply::text("One problem."));
        let job = w.review(&w.event("ready_for_review", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(w.reviews().len(), 1);
    }
);

app_test!(
    a_failing_model_leaves_one_error_comment_and_no_review,
    builder | builder | {
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        for _ in 0..2 {
            w.llm.push(Reply::error(FakeError::Status(
                400,
                "the model refused".into(),
            )));
            let job = w.review(&w.event("opened", &head, false)).await;
            assert_eq!(job.state, JobState::Failed, "{job:?}");
        }
        assert!(w.reviews().is_empty());
        let errors = w.error_comments();
        assert_eq!(
            errors.len(),
            1,
            "one error comment for two failures: {errors:?}"
        );
        let body = &errors[0];
        assert!(body.contains("could not finish reviewing"), "{body}");
        assert!(body.contains("What happened: the model failed"), "{body}");
        assert!(body.contains("No review was posted."), "{body}");
        for never in ["panicked", "backtrace", "sk-ant-test"] {
            assert!(!body.contains(never), "{never}: {body}");
        }
    }
);

// ---- `kodiai review` on a local checkout ----

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

/// A checkout with `main` (LIB) and the branch `feature` (LIB_WITH_DIV) checked out.
async fn local_checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let run = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(path)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Dev")
            .env("GIT_AUTHOR_EMAIL", "dev@example.com")
            .env("GIT_COMMITTER_NAME", "Dev")
            .env("GIT_COMMITTER_EMAIL", "dev@example.com")
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {output:?}");
    };
    run(&["init", "-q", "-b", "main"]);
    std::fs::create_dir(path.join("src")).unwrap();
    std::fs::write(path.join("src/lib.rs"), LIB).unwrap();
    run(&["add", "."]);
    run(&["commit", "-q", "-m", "initial"]);
    run(&["checkout", "-q", "-b", "feature"]);
    std::fs::write(path.join("src/lib.rs"), LIB_WITH_DIV).unwrap();
    run(&["commit", "-q", "-am", "Add div\n\nDivides two numbers."]);
    dir
}

async fn kodiai_review(
    fake: &FakeLlm,
    dir: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    tokio::process::Command::new(EXE)
        .arg("review")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("KODIAI_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("GEMINI_API_KEY")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("ANTHROPIC_API_KEY", "sk-ant-test-not-real")
        .env("ANTHROPIC_BASE_URL", fake.base_url())
        .env("KODIAI_MODEL", "anthropic/claude-haiku-4-5")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn kodiai_review_prints_the_findings_of_the_branch_and_exits_by_them() {
    let dir = local_checkout().await;
    let fake = FakeLlm::start(Api::Anthropic).await;
    fake.push(comment(
        "c1",
        json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero panics.",
               "rule": "div-by-zero"}),
    ))
    .push(Reply::text("One problem."));
    let output = kodiai_review(&fake, dir.path(), &["--base", "main", "--json"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["path"], "src/lib.rs");
    assert_eq!(findings[0]["line"], 6);
    assert_eq!(findings[0]["placement"], "exact");
    assert_eq!(findings[0]["rule"], "div-by-zero");
    assert_eq!(report["summary"], "One problem.");
    // The prompt was the review prompt of the branch: its name, its commit, its patch.
    let prompt = fake.requests()[0].body.to_string();
    for needle in ["feature", "Divides two numbers.", "a / b"] {
        assert!(prompt.contains(needle), "{needle}: {prompt}");
    }

    // Text output; a clean branch exits 0.
    fake.push(Reply::text("Nothing to say."));
    let output = kodiai_review(&fake, dir.path(), &[]).await;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("0 finding(s) on 1 file(s) changed since main"),
        "{text}"
    );

    // A bad base: one line naming it, exit 2.
    let output = kodiai_review(&fake, dir.path(), &["--base", "nope"]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--base nope"), "{stderr}");
}

app_test!(
    a_review_on_the_claude_code_cli_reaches_the_jobs_tools_through_kodiai_mcp,
    builder | builder | {
        let cli = FakeCli::start().await;
        let notes = tempfile::tempdir().unwrap();
        let builder = on_claude_code(builder, &cli).config_file(&notes_server(notes.path()));
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        cli.push(vec![
            Step::call(
                "github-inline-comment",
                "create_inline_comment",
                json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero panics."}),
            ),
            Step::call(
                "github-comment",
                "update_progress",
                json!({"checklist": "- [x] read the diff"}),
            ),
            Step::call("github-ci", "get_ci_status", json!({})),
            Step::text("One problem: `div` panics on 0."),
        ]);
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let result = job.result.clone().unwrap();
        assert_eq!(result["model"], "anthropic/claude-sonnet-4-5", "{result}");

        // The comment made through the relay is the review's, on its line.
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        let body = reviews[0]["body"].as_str().unwrap();
        assert!(body.starts_with(&marker_of(&head)), "{body}");
        assert!(body.contains("`div` panics on 0"), "{body}");
        assert_eq!(anchors(&w.comments_of(&reviews[0])), [("src/lib.rs", 6)]);

        // The CLI got the job's three tool servers, each a `kodiai mcp github-*` relay.
        let runs = cli.runs();
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert!(run.failed.is_empty(), "{:?}", run.failed);
        let tools: Vec<(&str, Vec<&str>)> = run
            .tools
            .iter()
            .map(|(s, t)| (s.as_str(), t.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            tools[..3],
            [
                ("github-ci", vec!["get_ci_status"]),
                ("github-comment", vec!["update_progress"]),
                ("github-inline-comment", vec!["create_inline_comment"]),
            ]
        );
        // and the operator's `[mcp.servers]`, as configured.
        assert_eq!(tools[3].0, "notes");
        assert!(tools[3].1.contains(&"read_file"), "{tools:?}");
        let servers = &run.mcp_config["mcpServers"];
        assert_eq!(
            servers["github-ci"]["command"],
            env!("CARGO_BIN_EXE_kodiai")
        );
        assert_eq!(servers["github-ci"]["args"], json!(["mcp", "github-ci"]));
        let allowed = run.arg("--allowedTools").unwrap();
        for server in ["github-ci", "github-comment", "github-inline-comment"] {
            assert!(allowed.contains(&format!("mcp__{server}")), "{allowed}");
        }
        assert_eq!(run.arg("--model"), Some("claude-sonnet-4-5"));
        // The prompt carried the patch, the system prompt the tools' names as the CLI shows
        // them; the tools answered from inside the job.
        assert!(run.arg("-p").unwrap().contains("a / b"));
        let system = run.arg("--append-system-prompt").unwrap();
        assert!(
            system.contains(
                "`create_inline_comment` is `mcp__github-inline-comment__create_inline_comment`"
            ),
            "{system}"
        );
        let answers: Vec<(&str, bool)> = run
            .answers
            .iter()
            .map(|a| (a.tool.as_str(), a.is_error))
            .collect();
        assert_eq!(
            answers,
            [
                ("create_inline_comment", false),
                ("update_progress", false),
                ("get_ci_status", false)
            ]
        );
        assert!(
            run.answers[0].text.contains("noted on src/lib.rs:6"),
            "{:?}",
            run.answers[0]
        );
        let events = w
            .app
            .state()
            .store
            .events_after(&job.id, 0, 1000)
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.data.to_string().contains("read the diff")),
            "{events:?}"
        );
        // The installation token stayed in the job: the CLI saw the socket's key only.
        let seen = format!("{:?} {}", run.argv, run.mcp_config);
        assert!(!seen.contains(&w.git.token), "the token reached the CLI");
        assert!(w.llm.requests().is_empty(), "the native model was not used");
    }
);

/// `kodiai.toml` with the MCP server `notes`: `kodiai mcp workspace` over `dir`.
fn notes_server(dir: &std::path::Path) -> String {
    format!(
        "[mcp.servers.notes]\ntransport = \"stdio\"\ncommand = {:?}\nargs = [\"mcp\", \"workspace\", \"--dir\", {:?}]\n",
        env!("CARGO_BIN_EXE_kodiai"),
        dir.display().to_string()
    )
}

app_test!(
    a_reviews_agent_gets_the_tools_of_the_configured_mcp_servers,
    builder
        | builder
        | {
            let notes = tempfile::tempdir().unwrap();
            std::fs::write(
                notes.path().join("rules.md"),
                "Every division checks its divisor.\n",
            )
            .unwrap();
            let builder = builder.config_file(&notes_server(notes.path()));
            let Some((w, head)) = world_with_div(builder).await else {
                return;
            };
            w.llm
            .push(Reply::tool_calls(&[(
                "n1",
                "notes__read_file",
                json!({"path": "rules.md"}),
            )]))
            .push(comment(
                "c1",
                json!({"path": "src/lib.rs", "line": 6, "body": "The rules ask for a check of `b`."}),
            ))
            .push(Reply::text("One rule broken."));
            let job = w.review(&w.event("opened", &head, false)).await;
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
            let prompts = w.prompts();
            assert!(
                prompts.contains("Every division checks its divisor."),
                "{prompts}"
            );
            let reviews = w.reviews();
            assert_eq!(reviews.len(), 1, "{reviews:?}");
            assert_eq!(anchors(&w.comments_of(&reviews[0])), [("src/lib.rs", 6)]);
            w.llm.assert_invariants();
        }
);

/// The real Claude Code CLI, when `KODIAI_TEST_CLAUDE_CLI` names it (`.ci/run` installs a pinned
/// version from npm); `None`, with a warning, when it does not.
fn real_claude_cli() -> Option<String> {
    use std::io::Write as _;
    let found = std::env::var("KODIAI_TEST_CLAUDE_CLI").ok();
    if found.is_none() {
        // Straight to the terminal: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "\nwarning: KODIAI_TEST_CLAUDE_CLI is not set: the review on the real Claude Code CLI \
             is skipped (.ci/run installs it from npm)"
        );
    }
    found
}

app_test!(
    a_review_on_the_real_claude_code_cli_comments_through_kodiai_mcp,
    builder | builder | {
        let Some(claude) = real_claude_cli() else {
            return;
        };
        let builder = builder
            .env("KODIAI_AGENT_BACKEND", "claude-code")
            .env("CLAUDE_CLI_PATH", &claude)
            .env("KODIAI_TOOL_SERVER", env!("CARGO_BIN_EXE_kodiai"));
        let Some((w, head)) = world_with_div(builder).await else {
            return;
        };
        // The model (the fake Anthropic API the CLI is pointed at) calls kodiai's tool by the
        // name Claude Code gives it.
        w.llm
            .push(Reply::tool_calls(&[(
                "toolu_1",
                "mcp__github-inline-comment__create_inline_comment",
                json!({"path": "src/lib.rs", "line": 6, "body": "Division by zero panics."}),
            )]))
            .push(Reply::text("One problem: `div` panics on 0."));
        let job = w.review(&w.event("opened", &head, false)).await;
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        let result = job.result.clone().unwrap();
        assert_eq!(result["outcome"], "completed", "{result}");
        assert_eq!(result["turns"], 2, "{result}");
        let reviews = w.reviews();
        assert_eq!(reviews.len(), 1, "{reviews:?}");
        let body = reviews[0]["body"].as_str().unwrap();
        assert!(body.contains("`div` panics on 0"), "{body}");
        assert_eq!(anchors(&w.comments_of(&reviews[0])), [("src/lib.rs", 6)]);

        // What the CLI sent the model: kodiai's tools among its own, the patch, then the
        // tool's answer from inside the job; never the installation token.
        let requests: Vec<_> = w
            .llm
            .requests()
            .into_iter()
            .filter(|r| r.path == "/v1/messages")
            .collect();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let tools: Vec<&str> = requests[0].body["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        for tool in [
            "mcp__github-inline-comment__create_inline_comment",
            "mcp__github-comment__update_progress",
            "mcp__github-ci__get_ci_status",
        ] {
            assert!(tools.contains(&tool), "{tools:?}");
        }
        assert!(requests[0].body.to_string().contains("a / b"));
        assert!(
            requests[1]
                .body
                .to_string()
                .contains("noted on src/lib.rs:6"),
            "{}",
            requests[1].body
        );
        let sent = w.prompts();
        assert!(!sent.contains(&w.git.token), "the token reached the model");
    }
);
