//! The tools end to end on real files, real git repositories and real child processes, called
//! through the router the way the loop calls them (JSON arguments in, the model's text out).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kodiai_protocol::ToolCall;
use pretty_assertions::assert_eq;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Barrier;

use super::*;

fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall {
        id: format!("call-{name}-{}", fastrand_id()),
        name: name.to_owned(),
        arguments,
    }
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A workspace with a few files, a .gitignore, and a git repository with two commits.
struct Fixture {
    dir: tempfile::TempDir,
    outside: tempfile::TempDir,
    router: ToolRouter,
}

fn sh(dir: &Path, script: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .status()
        .expect("sh");
    assert!(status.success(), "{script}");
}

async fn fixture(options: WorkspaceToolOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.txt"), "top secret\n").expect("write");
    let d = dir.path();
    std::fs::create_dir_all(d.join("src/nested")).expect("mkdir");
    std::fs::create_dir_all(d.join("target")).expect("mkdir");
    std::fs::create_dir_all(d.join(".github/workflows")).expect("mkdir");
    std::fs::write(d.join(".gitignore"), "target/\n*.log\n").expect("write");
    std::fs::write(
        d.join("src/lib.rs"),
        "pub fn add(a: i32, b: i32) -> i32 {\n    a + b\n}\n\npub fn sub(a: i32, b: i32) -> i32 {\n    a - b\n}\n",
    )
    .expect("write");
    std::fs::write(
        d.join("src/nested/deep.rs"),
        "// TODO: remove add\nfn helper() {}\n",
    )
    .expect("write");
    std::fs::write(d.join("README.md"), "# Demo\nadd and sub\n").expect("write");
    std::fs::write(d.join(".github/workflows/ci.yml"), "on: push\n").expect("write");
    sh(
        d,
        "git init -q -b main . && git add -A && git commit -q -m 'first commit'",
    );
    std::fs::write(d.join("NOTES.md"), "notes\n").expect("write");
    sh(d, "git add NOTES.md && git commit -q -m 'add notes'");
    // Ignored and binary files, after the commits.
    std::fs::write(d.join("target/out.rs"), "pub fn add_generated() {}\n").expect("write");
    std::fs::write(d.join("debug.log"), "add add add\n").expect("write");
    std::fs::write(d.join("blob.bin"), b"add\0\x01\x02binary").expect("write");
    std::os::unix::fs::symlink(outside.path(), d.join("escape")).expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), d.join("secret-link"))
        .expect("symlink");

    let root = WorkspaceRoot::new(d).expect("root");
    let mut registry = ToolRegistry::new();
    registry
        .register_all(workspace_tools(&root, &options).await)
        .expect("register");
    Fixture {
        dir,
        outside,
        router: ToolRouter::new(registry),
    }
}

impl Fixture {
    async fn run(&self, name: &str, arguments: serde_json::Value) -> ToolOutput {
        self.router
            .dispatch(&call(name, arguments), &ToolContext::default())
            .await
            .expect("not fatal")
            .output
    }

    async fn ok(&self, name: &str, arguments: serde_json::Value) -> String {
        let output = self.run(name, arguments.clone()).await;
        assert!(!output.is_error, "{name} {arguments}: {}", output.content);
        output.content
    }

    async fn refused(&self, name: &str, arguments: serde_json::Value) -> String {
        let output = self.run(name, arguments.clone()).await;
        assert!(
            output.is_error,
            "{name} {arguments} must fail: {}",
            output.content
        );
        output.content
    }
}

#[tokio::test]
async fn the_workspace_tools_describe_themselves() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    assert_eq!(
        f.router.registry().names(),
        [
            "read_file",
            "list_files",
            "search",
            "edit_file",
            "write_file",
            "git_diff",
            "git_log"
        ]
    );
    for spec in f.router.registry().specs() {
        assert_eq!(spec.input_schema["type"], "object", "{}", spec.name);
        assert!(spec.input_schema.get("$schema").is_none());
        assert!(!spec.description.is_empty());
    }
    let read = &f.router.registry().specs()[0];
    assert_eq!(read.input_schema["required"], json!(["path"]));
    assert!(
        read.input_schema["properties"]["offset"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("counting from 1"))
    );
}

#[tokio::test]
async fn escapes_are_refused_with_an_error_the_model_sees_and_the_next_call_works() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let message = f.refused("read_file", json!({"path": "../x"})).await;
    assert!(message.contains("climbs out of the workspace"), "{message}");
    let message = f.refused("read_file", json!({"path": "/etc/passwd"})).await;
    assert!(message.contains("absolute path"), "{message}");
    let message = f
        .refused("read_file", json!({"path": "escape/secret.txt"}))
        .await;
    assert!(message.contains("symbolic link"), "{message}");
    let message = f.refused("read_file", json!({"path": "secret-link"})).await;
    assert!(message.contains("symbolic link"), "{message}");
    assert!(!message.contains("top secret"));
    f.refused(
        "write_file",
        json!({"path": "escape/new.txt", "content": "x"}),
    )
    .await;
    f.refused("write_file", json!({"path": "src/../../x", "content": "x"}))
        .await;
    f.refused(
        "edit_file",
        json!({"path": "/etc/hostname", "old_text": "a", "new_text": "b"}),
    )
    .await;
    f.refused("list_files", json!({"path": "escape"})).await;
    f.refused("search", json!({"pattern": "secret", "path": "escape"}))
        .await;
    f.refused("git_log", json!({"path": "../elsewhere"})).await;
    assert!(!f.outside.path().join("new.txt").exists());

    // The walk does not follow links either: the secret outside is never searched.
    let found = f.ok("search", json!({"pattern": "top secret"})).await;
    assert_eq!(found, "no matches");
    // And the run goes on.
    let text = f
        .ok("read_file", json!({"path": "src/../src/lib.rs"}))
        .await;
    assert!(text.starts_with("     1\tpub fn add"), "{text}");
}

#[tokio::test]
async fn read_file_numbers_lines_and_pages_with_offset_and_limit() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let page = f
        .ok(
            "read_file",
            json!({"path": "src/lib.rs", "offset": 2, "limit": 2}),
        )
        .await;
    assert_eq!(
        page,
        "     2\t    a + b\n     3\t}\n(lines 2-3 of 7; offset=4 reads on)\n"
    );
    let whole = f.ok("read_file", json!({"path": "README.md"})).await;
    assert_eq!(whole, "     1\t# Demo\n     2\tadd and sub\n");
    let past = f
        .refused("read_file", json!({"path": "README.md", "offset": 9}))
        .await;
    assert!(past.contains("past the end"), "{past}");
    let binary = f.refused("read_file", json!({"path": "blob.bin"})).await;
    assert!(binary.contains("binary"), "{binary}");
    let dir = f.refused("read_file", json!({"path": "src"})).await;
    assert!(dir.contains("directory"), "{dir}");
    let missing = f.refused("read_file", json!({"path": "nope.rs"})).await;
    assert!(missing.contains("does not exist"), "{missing}");
}

#[tokio::test]
async fn list_files_honours_gitignore_and_globs() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let all = f.ok("list_files", json!({})).await;
    assert_eq!(
        all,
        ".github/workflows/ci.yml\n.gitignore\nNOTES.md\nREADME.md\nblob.bin\nsrc/lib.rs\nsrc/nested/deep.rs\n"
    );
    let rust = f.ok("list_files", json!({"pattern": "**/*.rs"})).await;
    assert_eq!(rust, "src/lib.rs\nsrc/nested/deep.rs\n");
    let nested = f
        .ok(
            "list_files",
            json!({"path": "src/nested", "pattern": "*.rs"}),
        )
        .await;
    assert_eq!(nested, "src/nested/deep.rs\n");
    let capped = f.ok("list_files", json!({"limit": 2})).await;
    assert_eq!(
        capped,
        ".github/workflows/ci.yml\n.gitignore\n(5 more files not shown; narrow the pattern or the path)\n"
    );
    let bad = f.refused("list_files", json!({"pattern": "a[b"})).await;
    assert!(bad.contains("invalid glob"), "{bad}");
}

#[tokio::test]
async fn search_finds_regex_matches_skipping_ignored_and_binary_files() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let found = f.ok("search", json!({"pattern": r"fn \w+\(a"})).await;
    assert_eq!(
        found,
        "src/lib.rs:1:pub fn add(a: i32, b: i32) -> i32 {\nsrc/lib.rs:5:pub fn sub(a: i32, b: i32) -> i32 {\n"
    );
    let add = f.ok("search", json!({"pattern": "add"})).await;
    assert_eq!(
        add,
        "README.md:2:add and sub\nsrc/lib.rs:1:pub fn add(a: i32, b: i32) -> i32 {\nsrc/nested/deep.rs:1:// TODO: remove add\n"
    );
    let todo = f
        .ok(
            "search",
            json!({"pattern": "todo", "case_insensitive": true, "glob": "**/*.rs"}),
        )
        .await;
    assert_eq!(todo, "src/nested/deep.rs:1:// TODO: remove add\n");
    let in_dir = f
        .ok("search", json!({"pattern": "add", "path": "src/nested"}))
        .await;
    assert_eq!(in_dir, "src/nested/deep.rs:1:// TODO: remove add\n");
    let capped = f
        .ok("search", json!({"pattern": "a", "max_results": 1}))
        .await;
    assert!(
        capped
            .ends_with("(stopped at 1 matching lines; narrow the pattern, the path or the glob)\n"),
        "{capped}"
    );
    assert_eq!(capped.lines().count(), 2, "{capped}");
    let bad = f.refused("search", json!({"pattern": "(unclosed"})).await;
    assert!(bad.contains("invalid regex"), "{bad}");
}

#[tokio::test]
async fn edit_file_replaces_exactly_one_occurrence() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let lib = f.dir.path().join("src/lib.rs");
    let before = std::fs::read_to_string(&lib).expect("read");

    let absent = f
        .refused(
            "edit_file",
            json!({"path": "src/lib.rs", "old_text": "a * b", "new_text": "x"}),
        )
        .await;
    assert!(absent.contains("not found"), "{absent}");
    let twice = f
        .refused(
            "edit_file",
            json!({"path": "src/lib.rs", "old_text": "(a: i32, b: i32) -> i32", "new_text": "()"}),
        )
        .await;
    assert!(twice.contains("occurs 2 times"), "{twice}");
    assert_eq!(std::fs::read_to_string(&lib).expect("read"), before);

    let done = f
        .ok(
            "edit_file",
            json!({"path": "src/lib.rs", "old_text": "    a - b\n", "new_text": "    a.wrapping_sub(b)\n"}),
        )
        .await;
    assert_eq!(done, "edited `src/lib.rs`: the new text is at lines 6-7");
    assert_eq!(
        std::fs::read_to_string(&lib).expect("read"),
        before.replace("    a - b\n", "    a.wrapping_sub(b)\n")
    );
    std::fs::write(f.dir.path().join("latin1.txt"), b"caf\xe9 au lait\n").expect("write");
    let latin1 = f
        .refused(
            "edit_file",
            json!({"path": "latin1.txt", "old_text": "au lait", "new_text": "noir"}),
        )
        .await;
    assert!(latin1.contains("not valid UTF-8"), "{latin1}");
    assert_eq!(
        std::fs::read(f.dir.path().join("latin1.txt")).expect("read"),
        b"caf\xe9 au lait\n"
    );
    let bad_args = f
        .refused("edit_file", json!({"path": "src/lib.rs", "old": "x"}))
        .await;
    assert!(
        bad_args.contains("invalid arguments for edit_file"),
        "{bad_args}"
    );
}

#[tokio::test]
async fn write_file_creates_directories_and_stays_out_of_git() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let created = f
        .ok(
            "write_file",
            json!({"path": "docs/new/guide.md", "content": "# Guide\n"}),
        )
        .await;
    assert_eq!(created, "created `docs/new/guide.md` (8 bytes)");
    assert_eq!(
        std::fs::read_to_string(f.dir.path().join("docs/new/guide.md")).expect("read"),
        "# Guide\n"
    );
    let again = f
        .ok(
            "write_file",
            json!({"path": "docs/new/guide.md", "content": "x"}),
        )
        .await;
    assert_eq!(again, "overwrote `docs/new/guide.md` (1 bytes)");
    let git = f
        .refused(
            "write_file",
            json!({"path": ".git/hooks/post-checkout", "content": "#!/bin/sh\n"}),
        )
        .await;
    assert!(git.contains(".git"), "{git}");
    assert!(!f.dir.path().join(".git/hooks/post-checkout").exists());
}

#[tokio::test]
async fn git_diff_and_git_log_show_the_repository() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    assert_eq!(
        f.ok("git_diff", json!({})).await,
        "(no changes)\n\nuntracked files (not in the diff):\nblob.bin\nescape\nsecret-link\n"
    );
    f.ok(
        "edit_file",
        json!({"path": "README.md", "old_text": "add and sub", "new_text": "add, sub"}),
    )
    .await;
    f.ok(
        "write_file",
        json!({"path": "src/new.rs", "content": "x\n"}),
    )
    .await;
    let diff = f.ok("git_diff", json!({"path": "README.md"})).await;
    assert!(diff.contains("-add and sub\n+add, sub\n"), "{diff}");
    assert!(!diff.contains("untracked"), "{diff}");
    let all = f.ok("git_diff", json!({})).await;
    assert!(
        all.contains("untracked files (not in the diff):\n"),
        "{all}"
    );
    assert!(all.contains("src/new.rs\n"), "{all}");
    let base = f.ok("git_diff", json!({"base": "HEAD~1"})).await;
    assert!(base.contains("+++ b/NOTES.md"), "{base}");

    let log = f.ok("git_log", json!({})).await;
    let subjects: Vec<&str> = log
        .lines()
        .map(|l| l.rsplit(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(subjects, ["add notes", "first commit"]);
    assert!(log.contains(" Ada: "), "{log}");
    let one = f
        .ok("git_log", json!({"max_count": 1, "path": "src"}))
        .await;
    assert!(one.ends_with("Ada: first commit\n"), "{one}");
    let injected = f
        .refused("git_log", json!({"revision": "--output=/tmp/x"}))
        .await;
    assert!(injected.contains("not a revision"), "{injected}");
    let unknown = f
        .refused("git_diff", json!({"base": "no-such-branch"}))
        .await;
    assert!(unknown.contains("git failed"), "{unknown}");
}

// The router: registry rules, error kinds and parallelism, with small tools of the test's own.

#[derive(Debug, Deserialize, JsonSchema)]
struct ProbeArgs {
    tag: String,
}

struct Probe {
    name: &'static str,
    writes: bool,
    barrier: Option<Arc<Barrier>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Tool for Probe {
    type Args = ProbeArgs;
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> String {
        "a probe".to_owned()
    }
    fn writes(&self) -> bool {
        self.writes
    }
    async fn call(&self, args: ProbeArgs, _ctx: &ToolContext) -> ToolResult {
        self.log
            .lock()
            .expect("log")
            .push(format!("start {}", args.tag));
        if let Some(barrier) = &self.barrier {
            barrier.wait().await;
        }
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        self.log
            .lock()
            .expect("log")
            .push(format!("end {}", args.tag));
        match args.tag.as_str() {
            "fatal" => Err(ToolError::Fatal("the workspace is gone".to_owned())),
            "fixable" => Err(ToolError::respond("try again with another tag")),
            tag => Ok(ToolOutput::text(format!("done {tag}"))),
        }
    }
}

fn probe(
    name: &'static str,
    writes: bool,
    barrier: Option<Arc<Barrier>>,
    log: &Arc<Mutex<Vec<String>>>,
) -> Arc<dyn DynTool> {
    Arc::new(Probe {
        name,
        writes,
        barrier,
        log: log.clone(),
    })
}

#[test]
fn the_registry_refuses_duplicate_and_invalid_names() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut registry = ToolRegistry::new();
    registry
        .register(probe("reader", false, None, &log))
        .expect("first");
    assert_eq!(
        registry.register(probe("reader", true, None, &log)),
        Err(RegistryError::Duplicate("reader".to_owned()))
    );
    assert_eq!(
        registry.register(probe("has space", false, None, &log)),
        Err(RegistryError::InvalidName("has space".to_owned()))
    );
    assert_eq!(registry.len(), 1);
    assert!(registry.get("reader").is_some_and(|tool| !tool.writes()));
}

#[tokio::test(start_paused = true)]
async fn read_only_calls_run_in_parallel() {
    let log = Arc::new(Mutex::new(Vec::new()));
    // Each call waits for the other at the barrier: run one after the other, they never finish.
    let barrier = Arc::new(Barrier::new(2));
    let mut registry = ToolRegistry::new();
    registry
        .register(probe("reader", false, Some(barrier), &log))
        .expect("register");
    let router = ToolRouter::new(registry);
    let calls = [
        call("reader", json!({"tag": "a"})),
        call("reader", json!({"tag": "b"})),
    ];
    let results = tokio::time::timeout(
        Duration::from_secs(60),
        router.dispatch_all(&calls, &ToolContext::default()),
    )
    .await
    .expect("the reads ran in parallel")
    .expect("not fatal");
    let contents: Vec<_> = results.iter().map(|r| r.output.content.as_str()).collect();
    assert_eq!(contents, ["done a", "done b"]);
    assert_eq!(results[0].call_id, calls[0].id);
    assert_eq!(results[1].call_id, calls[1].id);
}

#[tokio::test]
async fn a_batch_with_a_write_runs_in_order_and_errors_are_sorted_by_kind() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut registry = ToolRegistry::new();
    registry
        .register(probe("reader", false, None, &log))
        .expect("register");
    registry
        .register(probe("writer", true, None, &log))
        .expect("register");
    let router = ToolRouter::new(registry);
    let ctx = ToolContext::default();

    let calls = [
        call("reader", json!({"tag": "r1"})),
        call("writer", json!({"tag": "w"})),
        call("reader", json!({"tag": "fixable"})),
        call("nonexistent", json!({})),
        call("reader", json!({"wrong": 1})),
    ];
    let results = router.dispatch_all(&calls, &ctx).await.expect("not fatal");
    assert_eq!(
        *log.lock().expect("log"),
        [
            "start r1",
            "end r1",
            "start w",
            "end w",
            "start fixable",
            "end fixable"
        ]
    );
    let outputs: Vec<_> = results
        .iter()
        .map(|r| (r.output.is_error, r.output.content.as_str()))
        .collect();
    assert_eq!(outputs[0], (false, "done r1"));
    assert_eq!(outputs[1], (false, "done w"));
    assert_eq!(outputs[2], (true, "try again with another tag"));
    assert_eq!(
        outputs[3],
        (
            true,
            "there is no tool named `nonexistent`; the tools are: reader, writer"
        )
    );
    assert!(
        outputs[4].0 && outputs[4].1.starts_with("invalid arguments for reader: "),
        "{:?}",
        outputs[4]
    );

    let fatal = router
        .dispatch_all(
            &[
                call("writer", json!({"tag": "fatal"})),
                call("writer", json!({"tag": "after"})),
            ],
            &ctx,
        )
        .await
        .expect_err("fatal");
    assert_eq!(fatal.message, "the workspace is gone");
    assert!(!log.lock().expect("log").contains(&"start after".to_owned()));
}

// run_command.

fn command_options() -> WorkspaceToolOptions {
    WorkspaceToolOptions {
        run_command: Some(RunCommandOptions {
            default_timeout: Duration::from_secs(30),
            ..RunCommandOptions::default()
        }),
        ..WorkspaceToolOptions::default()
    }
}

fn pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[tokio::test]
async fn run_command_is_off_unless_enabled() {
    let f = fixture(WorkspaceToolOptions::default()).await;
    let off = f.refused("run_command", json!({"command": "true"})).await;
    assert!(
        off.starts_with("there is no tool named `run_command`"),
        "{off}"
    );
}

#[tokio::test]
async fn run_command_runs_in_the_workspace_without_host_environment() {
    let f = fixture(command_options()).await;
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO")),
        "cargo test gives the host CARGO_* variables"
    );
    let out = f
        .ok("run_command", json!({"command": "pwd; env | sort"}))
        .await;
    assert!(out.starts_with("exit code: 0"), "{out}");
    let stdout = out.split("--- stdout ---\n").nth(1).expect("stdout");
    let canonical = f.dir.path().canonicalize().expect("canonical");
    assert!(
        stdout.starts_with(&format!("{}\n", canonical.display())),
        "{out}"
    );
    let names: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once('=').map(|(k, _)| k))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    for name in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "TMPDIR",
                "LANG",
                "LC_ALL",
                "TERM",
                "NO_COLOR",
                "CI",
                "GIT_TERMINAL_PROMPT",
                "PWD",
                "SHLVL",
                "OLDPWD",
                "_"
            ]
            .contains(name),
            "unexpected variable {name} in {out}"
        );
    }
    assert!(!stdout.contains("CARGO"), "{out}");

    let failed = f
        .refused(
            "run_command",
            json!({"command": "echo oops >&2; exit 3", "workdir": "src"}),
        )
        .await;
    assert!(failed.starts_with("exit code: 3"), "{failed}");
    assert!(failed.contains("--- stderr ---\noops\n"), "{failed}");
    f.refused("run_command", json!({"command": "true", "workdir": "../"}))
        .await;
}

#[tokio::test]
async fn run_command_caps_its_output() {
    let mut options = command_options();
    if let Some(run) = &mut options.run_command {
        run.output_cap = 1000;
    }
    let f = fixture(options).await;
    let out = f
        .ok(
            "run_command",
            json!({"command": "head -c 300000 /dev/zero | tr '\\0' a"}),
        )
        .await;
    let stdout = out.split("--- stdout ---\n").nth(1).expect("stdout");
    assert!(stdout.starts_with(&"a".repeat(1000)), "{out}");
    assert!(out.contains("\n(299000 more bytes cut)"), "{out}");
}

#[tokio::test]
async fn run_command_past_its_timeout_is_killed_with_all_its_children() {
    let f = fixture(command_options()).await;
    // The shell prints its own pid and the pid of a child, then waits for it.
    let out = f
        .refused(
            "run_command",
            json!({"command": "echo $$; sleep 300 & echo $!; wait", "timeout_secs": 1}),
        )
        .await;
    assert!(out.starts_with("timed out after 1s"), "{out}");
    let stdout = out.split("--- stdout ---\n").nth(1).expect("stdout");
    let pids = pids(stdout.split("--- stderr ---").next().unwrap_or(""));
    assert_eq!(pids.len(), 2, "{out}");
    kodiai_test_support::process::assert_exit(pids);
}

#[tokio::test]
async fn a_cancelled_run_command_is_killed_with_all_its_children() {
    let f = fixture(command_options()).await;
    let fifo_dir = tempfile::tempdir().expect("tempdir");
    let fifo = fifo_dir.path().join("pids");
    sh(fifo_dir.path(), "mkfifo pids");
    let ctx = ToolContext::default();
    let router = f.router.clone();
    let task_ctx = ctx.clone();
    let command = format!("sleep 300 & echo $$ $! > {}; wait", fifo.display());
    let running = tokio::spawn(async move {
        router
            .dispatch(&call("run_command", json!({"command": command})), &task_ctx)
            .await
    });
    // Opening the fifo blocks until the command has written its pids: no polling.
    let pids = tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).expect("fifo"))
        .await
        .expect("reader");
    let pids = self::pids(&pids);
    assert_eq!(pids.len(), 2, "{pids:?}");
    ctx.cancel.cancel();
    let result = running.await.expect("task").expect("not fatal");
    assert!(result.output.is_error);
    assert!(
        result.output.content.starts_with("cancelled"),
        "{}",
        result.output.content
    );
    kodiai_test_support::process::assert_exit(pids);
}

#[tokio::test]
async fn run_command_has_no_network_where_the_kernel_allows_it() {
    let root = WorkspaceRoot::new(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("root");
    let tool = RunCommand::new(root, RunCommandOptions::default()).await;
    let spec = DynTool::spec(&tool);
    let ctx = ToolContext::default();
    match tool.isolation() {
        NetworkIsolation::Namespace | NetworkIsolation::UserNamespace => {
            assert!(spec.description.contains("no network access"));
            let out = tool
                .call_json(json!({"command": "cat /proc/net/dev"}), &ctx)
                .await
                .expect("runs");
            let interfaces: Vec<&str> = out
                .content
                .lines()
                .filter_map(|line| line.split_once(':').map(|(name, _)| name.trim()))
                .filter(|name| !name.is_empty() && !name.contains(' ') && !name.contains('|'))
                .collect();
            assert_eq!(interfaces, ["lo"], "{}", out.content);
        }
        NetworkIsolation::Unavailable(reason) => {
            assert!(!reason.is_empty());
            assert!(spec.description.contains("has network access"));
        }
        NetworkIsolation::Allowed => panic!("the default options deny the network"),
    }
    let allowed = RunCommand::new(
        WorkspaceRoot::new(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("root"),
        RunCommandOptions {
            deny_network: false,
            ..RunCommandOptions::default()
        },
    )
    .await;
    assert_eq!(allowed.isolation(), &NetworkIsolation::Allowed);
}
