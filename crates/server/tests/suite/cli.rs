//! The real binary: exit codes, one-line configuration errors, masked secrets, `migrate`, and
//! `serve` on both backends.

use std::path::Path;
use std::process::Output;

use kodiai_bench::ServeProcess;
use kodiai_protocol::ReadyResponse;
use kodiai_test_support::TestDb;
use pretty_assertions::assert_eq;

const EXE: &str = env!("CARGO_BIN_EXE_kodiai");

/// Runs the binary in `dir` with a clean slate of kodiai's own variables plus `env`.
async fn kodiai(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(EXE);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("KODIAI_CONFIG")
        .env_remove("RUST_LOG")
        .env("KODIAI_DATA_DIR", dir.join("data"));
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_bad_value_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = kodiai(dir.path(), &["serve"], &[("PORT", "80x0")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&output),
        ["kodiai: configuration error: PORT = \"80x0\": expected a port number (0-65535)"]
    );
    // Nothing was created: the bad value stopped start-up before anything else.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn config_file_problems_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = kodiai(
        dir.path(),
        &["--config", "missing.toml", "config", "check"],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let lines = stderr_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("kodiai: configuration error: missing.toml: cannot read"),
        "{lines:?}"
    );

    // ./kodiai.toml is read when present; a typo in it is named.
    std::fs::write(dir.path().join("kodiai.toml"), "[server]\nprot = 8000\n").unwrap();
    let output = kodiai(dir.path(), &["config", "check"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&output),
        ["kodiai: configuration error: kodiai.toml: unknown key `server.prot`"]
    );

    std::fs::write(dir.path().join("kodiai.toml"), "[server]\nport = 8000\n").unwrap();
    let output = kodiai(dir.path(), &["config", "check"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", stderr_lines(&output));
}

#[tokio::test]
async fn unknown_commands_and_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        kodiai(dir.path(), &["frobnicate"], &[]).await.status.code(),
        Some(2)
    );
    assert_eq!(
        kodiai(dir.path(), &["bench", "startup", "--runs", "zero"], &[])
            .await
            .status
            .code(),
        Some(2)
    );
}

#[tokio::test]
async fn secrets_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        ("GITHUB_WEBHOOK_SECRET", "whsec-5150"),
        ("GITHUB_TOKEN", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("ANTHROPIC_API_KEY", "sk-ant-api03-xyz"),
        ("OPENAI_API_KEY", "sk-proj-xyz"),
        ("SECRET_KEY", "jwt-signing-key-777"),
        ("KODIAI_ADMIN_TOKEN", "admin-token-888"),
        (
            "DATABASE_URL",
            "postgres://kodiai:db-password-999@127.0.0.1:1/kodiai",
        ),
    ];
    let output = kodiai(dir.path(), &["config", "print"], &secrets).await;
    assert_eq!(output.status.code(), Some(0));
    let printed = String::from_utf8(output.stdout).unwrap();
    let needles = [
        "whsec-5150",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "sk-ant-api03-xyz",
        "sk-proj-xyz",
        "jwt-signing-key-777",
        "admin-token-888",
        "db-password-999",
    ];
    for needle in needles {
        assert!(!printed.contains(needle), "{needle} leaked:\n{printed}");
    }
    assert!(printed.contains("token = \"********\""), "{printed}");

    // A database that cannot be reached: exit 1, one line, password masked.
    let output = kodiai(dir.path(), &["migrate"], &secrets).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("kodiai:****@127.0.0.1:1/kodiai"),
        "{stderr}"
    );
    assert!(!stderr.contains("db-password-999"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn migrate_creates_the_sqlite_file_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = kodiai(dir.path(), &["migrate"], &[]).await;
        assert_eq!(output.status.code(), Some(0), "{:?}", stderr_lines(&output));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let applied = format!(
            "{} migrations applied\n",
            kodiai_test_support::migration_count()
        );
        assert!(stdout.ends_with(&applied), "{stdout}");
    }
    assert!(dir.path().join("data/kodiai.db").is_file());
}

#[tokio::test]
async fn migrate_and_serve_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    let output = kodiai(dir.path(), &["migrate"], &[("DATABASE_URL", &url)]).await;
    assert_eq!(output.status.code(), Some(0), "{:?}", stderr_lines(&output));

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(
        tables,
        [
            "_sqlx_migrations",
            "errors",
            "installations",
            "job_events",
            "job_rate_limits",
            "jobs",
            "llm_calls",
            "repositories",
            "review_findings",
            "reviewed_heads",
            "webhook_deliveries"
        ]
    );

    let mut server = ServeProcess::start(Path::new(EXE), dir.path(), &[("DATABASE_URL", &url)])
        .await
        .unwrap();
    let ready: ReadyResponse = reqwest::get(format!("http://{}/ready", server.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready.database, "postgres");
    assert_eq!(ready.migrations, kodiai_test_support::migration_count());
    server.kill().await;
}

#[tokio::test]
async fn serve_on_a_new_sqlite_file_answers_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(Path::new(EXE), dir.path(), &[])
        .await
        .unwrap();
    let response = reqwest::get(format!("http://{}/health", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(dir.path().join("kodiai.db").is_file());
    server.kill().await;
}
