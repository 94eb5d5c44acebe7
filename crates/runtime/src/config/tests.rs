use std::path::PathBuf;
use std::time::Duration;

use kodiai_store::DatabaseLocation;
use pretty_assertions::assert_eq;
use secrecy::ExposeSecret;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> Option<(PathBuf, toml::Table)> {
    Some((PathBuf::from("kodiai.toml"), text.parse().unwrap()))
}

fn error(file_text: Option<&str>, pairs: &[(&str, &str)]) -> String {
    Config::from_sources(file_text.and_then(file), &env(pairs))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_need_nothing() {
    let config = Config::from_sources(None, &Env::new()).unwrap();
    assert_eq!(config.server.port, 8000);
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(
        config.database.url,
        DatabaseLocation::Sqlite(PathBuf::from("./data/kodiai.db"))
    );
    assert_eq!(config.log.format, LogFormat::Auto);
    assert_eq!(config.github.api_url.as_str(), "https://api.github.com/");
    assert!(config.server.cors_allowed_origins.is_empty());
}

#[test]
fn the_graphql_endpoint_follows_the_rest_api_unless_set() {
    for (api, graphql) in [
        (None, "https://api.github.com/graphql"),
        (
            Some("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/api/graphql",
        ),
        (
            Some("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com/api/graphql",
        ),
        (
            Some("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000/graphql",
        ),
    ] {
        let pairs: Vec<(&str, &str)> = api.map(|a| ("GITHUB_API_URL", a)).into_iter().collect();
        let config = Config::from_sources(None, &env(&pairs)).unwrap();
        assert_eq!(config.github.graphql_url.as_str(), graphql, "{api:?}");
    }
    let config = Config::from_sources(
        None,
        &env(&[
            ("GITHUB_API_URL", "https://ghe.example.com/api/v3"),
            ("GITHUB_GRAPHQL_URL", "https://gql.example.com/graphql"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.github.graphql_url.as_str(),
        "https://gql.example.com/graphql"
    );
}

#[test]
fn environment_overrides_the_file() {
    let config = Config::from_sources(
        file("data_dir = \"/srv/kodiai\"\n[server]\nport = 9000\nhost = \"127.0.0.1\"\n[log]\nformat = \"pretty\"\n"),
        &env(&[("PORT", "9100"), ("LOG_FORMAT", "json")]),
    )
    .unwrap();
    assert_eq!(config.server.port, 9100);
    assert_eq!(config.server.host.to_string(), "127.0.0.1");
    assert_eq!(config.log.format, LogFormat::Json);
    // The default database follows the data folder.
    assert_eq!(
        config.database.url,
        DatabaseLocation::Sqlite(PathBuf::from("/srv/kodiai/kodiai.db"))
    );
}

#[test]
fn a_bad_value_names_key_value_and_expectation() {
    assert_eq!(
        error(None, &[("PORT", "80x0")]),
        "PORT = \"80x0\": expected a port number (0-65535)"
    );
    assert_eq!(
        error(Some("[server]\nrequest_timeout_secs = 0\n"), &[]),
        "server.request_timeout_secs in kodiai.toml = \"0\": expected a whole number of seconds, at least 1"
    );
    assert_eq!(
        error(None, &[("LOG_FORMAT", "xml")]),
        "LOG_FORMAT = \"xml\": expected json, pretty or auto"
    );
    assert_eq!(
        error(None, &[("DATABASE_URL", "mysql://root@db/k")]),
        "DATABASE_URL = \"mysql://root@db/k\": expected a URL starting with postgres://, postgresql:// or sqlite://"
    );
    assert_eq!(
        error(None, &[("KODIAI_MODEL", "claude")]),
        "KODIAI_MODEL = \"claude\": expected provider/model, e.g. anthropic/claude-sonnet-4-5 or ollama/qwen2.5-coder"
    );
    assert!(
        error(None, &[("KODIAI_CORS_ORIGINS", "https://a.example/path")])
            .starts_with("KODIAI_CORS_ORIGINS")
    );
}

#[test]
fn every_message_is_one_line() {
    for message in [
        error(None, &[("RUST_LOG", "kodiai=[[[")]),
        error(None, &[("GITHUB_API_URL", "ftp://x")]),
        error(Some("[server]\nprot = 1\n"), &[]),
    ] {
        assert!(!message.contains('\n'), "{message}");
    }
    let bad_toml = Config::load(
        Some(std::path::Path::new("/definitely/not/here.toml")),
        &Env::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad_toml.starts_with("/definitely/not/here.toml: cannot read"),
        "{bad_toml}"
    );
}

#[test]
fn unknown_keys_in_the_file_are_reported() {
    assert_eq!(
        error(Some("[server]\nprot = 1\n"), &[]),
        "kodiai.toml: unknown key `server.prot`"
    );
    assert_eq!(
        error(Some("colour = 1\n"), &[]),
        "kodiai.toml: unknown key `colour`"
    );
    assert_eq!(
        error(Some("[nope]\na = 1\n"), &[]),
        "kodiai.toml: unknown key `nope`"
    );
}

#[test]
fn toml_syntax_errors_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kodiai.toml");
    std::fs::write(&path, "[server]\nport = = 3\n").unwrap();
    let message = Config::load(Some(&path), &Env::new())
        .unwrap_err()
        .to_string();
    assert!(message.contains("not valid TOML: line 2"), "{message}");
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn secrets_are_masked_in_errors_and_in_print() {
    let message = error(
        None,
        &[
            ("GITHUB_APP_ID", "42"),
            ("GITHUB_PRIVATE_KEY", "hunter2-not-a-key"),
        ],
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.starts_with("GITHUB_PRIVATE_KEY = \"********\""),
        "{message}"
    );

    let message = error(
        None,
        &[(
            "DATABASE_URL",
            "postgres://u:pw-s3cr3t@db:5432/k?sslmode=nope",
        )],
    );
    assert!(!message.contains("pw-s3cr3t"), "{message}");

    let config = Config::from_sources(
        None,
        &env(&[
            ("GITHUB_WEBHOOK_SECRET", "whsec-111"),
            ("ANTHROPIC_API_KEY", "sk-ant-222"),
            ("KODIAI_ADMIN_TOKEN", "adm-333"),
            ("DATABASE_URL", "postgres://kodiai:pw-444@db/kodiai"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config
            .github
            .webhook_secret
            .as_ref()
            .unwrap()
            .expose_secret(),
        "whsec-111"
    );
    let printed = config.to_masked_toml().unwrap();
    for secret in ["whsec-111", "sk-ant-222", "adm-333", "pw-444"] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(
        printed.contains("webhook_secret = \"********\""),
        "{printed}"
    );
    assert!(!format!("{config:?}").contains("sk-ant-222"));
}

#[test]
fn printed_config_reads_back_as_the_same_config() {
    let config = Config::from_sources(
        file("[server]\nport = 9001\ncors_allowed_origins = [\"https://a.example\"]\n"),
        &Env::new(),
    )
    .unwrap();
    let printed = config.to_masked_toml().unwrap();
    let again = Config::from_sources(file(&printed), &Env::new()).unwrap();
    assert_eq!(again.to_masked_toml().unwrap(), printed);
    assert_eq!(again.server.cors_allowed_origins, ["https://a.example"]);
}

#[test]
fn private_key_from_text_or_file() {
    let pem = "-----BEGIN RSA PRIVATE KEY-----\\nMIIB\\n-----END RSA PRIVATE KEY-----";
    let config = Config::from_sources(
        None,
        &env(&[("GITHUB_APP_ID", "7"), ("GITHUB_PRIVATE_KEY", pem)]),
    )
    .unwrap();
    assert!(
        config
            .github
            .private_key
            .unwrap()
            .expose_secret()
            .contains("\nMIIB\n")
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.pem");
    std::fs::write(&path, pem.replace("\\n", "\n")).unwrap();
    let config = Config::from_sources(
        None,
        &env(&[
            ("GITHUB_APP_ID", "7"),
            ("GITHUB_PRIVATE_KEY", path.to_str().unwrap()),
        ]),
    )
    .unwrap();
    assert!(config.github.private_key.is_some());

    assert_eq!(
        error(None, &[("GITHUB_APP_ID", "7")]),
        "GITHUB_PRIVATE_KEY = \"\": expected the App's private key, since GITHUB_APP_ID is set"
    );
}

#[test]
fn job_settings_come_from_the_file_and_bad_ones_name_the_key() {
    let table: toml::Table =
        "[jobs]\nworkers = 8\nper_key_concurrency = 3\n[jobs.timeouts]\nnoop = 5\n"
            .parse()
            .unwrap();
    let config = Config::from_sources(Some(("kodiai.toml".into(), table)), &Env::new()).unwrap();
    assert_eq!(config.jobs.workers, 8);
    assert_eq!(config.jobs.per_key_concurrency, 3);
    assert_eq!(config.jobs.timeouts.get("noop"), Some(&5));
    assert_eq!(config.jobs.timeout_secs, 1800);

    let env: Env = [("KODIAI_WORKERS".to_owned(), "many".to_owned())].into();
    let error = Config::from_sources(None, &env).unwrap_err();
    assert_eq!(
        error.to_string(),
        "KODIAI_WORKERS = \"many\": expected a whole number from 0 to 256"
    );
    let table: toml::Table = "[jobs.timeouts]\nrevue = 5\n".parse().unwrap();
    let error = Config::from_sources(Some(("kodiai.toml".into(), table)), &Env::new()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "kodiai.toml: unknown key `jobs.timeouts.revue`"
    );
}

#[test]
fn llm_fallbacks_retries_timeouts_and_prices() {
    let config = Config::from_sources(
        file(concat!(
            "[llm]\nfallback_models = [\"openai/gpt-4.1\", \"ollama/qwen2.5-coder\"]\n",
            "max_retries = 5\nidle_timeout_secs = 30\n",
            "[llm.prices.\"openrouter/anthropic/claude-sonnet-4.5\"]\ninput = 3\noutput = 15.5\n",
        )),
        &env(&[("KODIAI_LLM_FIRST_BYTE_TIMEOUT_SECS", "45")]),
    )
    .unwrap();
    assert_eq!(
        config.llm.fallback_models,
        ["openai/gpt-4.1", "ollama/qwen2.5-coder"]
    );
    assert_eq!(config.llm.max_retries, 5);
    assert_eq!(config.llm.idle_timeout_secs, 30);
    assert_eq!(config.llm.first_byte_timeout_secs, 45);
    assert_eq!(config.llm.connect_timeout_secs, 10);
    let price = config.llm.prices["openrouter/anthropic/claude-sonnet-4.5"];
    assert_eq!(
        (price.input, price.output, price.cache_read),
        (3.0, 15.5, 3.0)
    );
    // Printed prices read back.
    let printed = config.to_masked_toml().unwrap();
    let again = Config::from_sources(file(&printed), &Env::new()).unwrap();
    assert_eq!(again.llm.prices, config.llm.prices);
}

#[test]
fn bad_llm_settings_name_the_key() {
    assert_eq!(
        error(
            None,
            &[("KODIAI_FALLBACK_MODELS", "openai/gpt-4.1, nomodel")]
        ),
        "KODIAI_FALLBACK_MODELS = \"openai/gpt-4.1, nomodel\": expected a comma-separated list of provider/model"
    );
    let bad_price = error(
        Some("[llm.prices.\"gpt-4.1\"]\ninput = -1\noutput = 2\n"),
        &[],
    );
    assert!(
        bad_price.starts_with("llm.prices.\"gpt-4.1\" in kodiai.toml = "),
        "{bad_price}"
    );
    assert!(!bad_price.contains('\n'));
    assert_eq!(
        error(
            Some("[llm.prices.m]\ninput = 1\noutput = 2\nextra = 3\n"),
            &[]
        )
        .lines()
        .count(),
        1
    );
}

#[test]
fn workspace_settings_have_defaults_and_bad_ones_name_the_key() {
    let config = Config::from_sources(None, &Env::new()).unwrap();
    let settings = config.workspaces.settings(&config.data_dir);
    assert_eq!(settings.root, PathBuf::from("./data/workspaces"));
    assert_eq!(settings.identity.name, "kodiai[bot]");
    assert_eq!(
        settings.identity.email,
        "kodiai[bot]@users.noreply.github.com"
    );
    assert_eq!(settings.max_repository_bytes, 2048 * 1024 * 1024);
    assert_eq!(settings.git_timeout, Duration::from_secs(600));

    let config = Config::from_sources(
        file("[workspaces]\ncache_quota_mb = 100\ncommit_name = \"acme-bot[bot]\"\n"),
        &env(&[("KODIAI_GIT_TIMEOUT_SECS", "30")]),
    )
    .unwrap();
    assert_eq!(config.workspaces.cache_quota_mb, 100);
    assert_eq!(config.workspaces.commit_name, "acme-bot[bot]");
    assert_eq!(config.workspaces.git_timeout_secs, 30);

    assert_eq!(
        error(None, &[("KODIAI_MAX_REPOSITORY_SIZE_MB", "0")]),
        "KODIAI_MAX_REPOSITORY_SIZE_MB = \"0\": expected a size in MiB, at least 1"
    );
    assert_eq!(
        error(None, &[("KODIAI_COMMIT_EMAIL", "bot")]),
        "KODIAI_COMMIT_EMAIL = \"bot\": expected an e-mail address such as 123+kodiai[bot]@users.noreply.github.com"
    );
}

#[test]
fn agent_settings_pick_the_backend_and_the_optional_tools() {
    use kodiai_agent::backends::{BackendConfig, BackendKind};
    let config = Config::from_sources(None, &Env::new()).unwrap();
    assert_eq!(config.agent.backend, BackendKind::Native);
    assert!(config.agent.allowed_tools.is_empty());
    assert!(!config.agent.allows("run_command"));

    let config = Config::from_sources(
        file("[agent]\nbackend = \"gemini-cli\"\nallowed_tools = [\"run_command\", \"docs__search\"]\n"),
        &env(&[("GEMINI_CLI_PATH", "/opt/gemini/bin/gemini"), ("CLAUDE_CLI_PATH", "/opt/claude")]),
    )
    .unwrap();
    assert_eq!(config.agent.backend, BackendKind::GeminiCli);
    assert!(config.agent.allows("run_command"));
    assert_eq!(
        config
            .agent
            .backend_config(BackendKind::GeminiCli, &config.llm),
        BackendConfig::GeminiCli {
            path: Some(PathBuf::from("/opt/gemini/bin/gemini"))
        }
    );
    assert_eq!(
        config
            .agent
            .backend_config(BackendKind::ClaudeCode, &config.llm),
        BackendConfig::ClaudeCode {
            path: Some(PathBuf::from("/opt/claude"))
        }
    );

    assert_eq!(
        error(None, &[("KODIAI_AGENT_BACKEND", "codex")]),
        "KODIAI_AGENT_BACKEND = \"codex\": expected native, claude-code or gemini-cli"
    );
    assert_eq!(
        error(None, &[("KODIAI_ALLOWED_TOOLS", "run_command,rm -rf")]),
        "KODIAI_ALLOWED_TOOLS = \"run_command,rm -rf\": expected a comma-separated list of tool names such as run_command"
    );
}

#[test]
fn an_mcp_server_may_not_take_the_name_of_kodiais_own() {
    let message = error(
        Some("[mcp.servers.github-ci]\ntransport = \"stdio\"\ncommand = \"ci-server\"\n"),
        &[],
    );
    assert!(message.contains("mcp.servers.github-ci"), "{message}");
    assert!(message.contains("kodiai's own servers"), "{message}");
    let config = Config::from_sources(
        file("[mcp.servers.ci]\ntransport = \"stdio\"\ncommand = \"ci-server\"\n"),
        &Env::new(),
    )
    .unwrap();
    assert_eq!(config.mcp.servers.len(), 1);
}
