//! From the file as written ([`RawConfig`]) to [`RepoConfig`]: ranges, globs, handles, model
//! names and MCP servers checked, each problem with the line of its key; the TypeScript
//! kodiai's keys folded into ours.

use std::collections::BTreeMap;

use super::raw::{Flag, Int, McpTransport, RawConfig, RawMcpServer, ReviewAction};
use super::tree::{KeyPath, Node};
use super::{
    Diagnostic, MAX_HANDLE_CHARS, MAX_PROMPT_CHARS, McpServer, PathSet, RepoConfig, Severity,
    WritePolicy, default_deny_paths,
};

/// Other names a key has besides its own (compared as the tree compares keys, so spelling
/// variants like `maxTurns` need no entry).
const ALTERNATIVES: &[(&str, &str)] = &[
    ("ignore_paths", "skipPaths"),
    ("approve_when_clean", "autoApprove"),
];

struct Checker<'a> {
    tree: &'a Node,
    diagnostics: &'a mut Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    fn warning(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    fn push(&mut self, severity: Severity, path: &KeyPath, message: String) {
        let found = self.tree.find(path, ALTERNATIVES);
        // Name the key as the file spells it, when it is there.
        let key = match &found {
            Some(f) if f.path.0.len() == path.0.len() => f.path.to_string(),
            _ => path.to_string(),
        };
        self.diagnostics.push(Diagnostic {
            severity,
            line: found.map(|f| f.line),
            key: Some(key),
            message,
        });
    }

    fn range(&mut self, path: &str, value: Option<Int>, min: u32, max: u32, default: u32) -> u32 {
        let Some(Int(value)) = value else {
            return default;
        };
        match u32::try_from(value) {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.error(
                    &KeyPath::parse(path),
                    format!("expected a whole number from {min} to {max}, found {value}"),
                );
                default
            }
        }
    }

    fn globs(&mut self, path: &str, patterns: Option<Vec<String>>, no_case: bool) -> PathSet {
        let Some(patterns) = patterns else {
            return PathSet::empty();
        };
        self.compile(path, &patterns, no_case)
            .unwrap_or_else(PathSet::empty)
    }

    fn compile(&mut self, path: &str, patterns: &[String], no_case: bool) -> Option<PathSet> {
        for (index, pattern) in patterns.iter().enumerate() {
            if pattern.trim().is_empty() {
                self.error(
                    &KeyPath::parse(path).index(index),
                    "an empty pattern matches nothing; remove it",
                );
                return None;
            }
        }
        match PathSet::new(patterns, no_case) {
            Ok(set) => Some(set),
            Err(bad) => {
                self.error(&KeyPath::parse(path).index(bad.index), bad.message);
                None
            }
        }
    }

    fn handle(&mut self, path: KeyPath, handle: &str) -> bool {
        let ok = handle.len() <= MAX_HANDLE_CHARS + 1
            && handle.strip_prefix('@').is_some_and(|login| {
                !login.is_empty()
                    && !login.starts_with('-')
                    && login
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !ok {
            self.error(
                &path,
                format!(
                    "expected `@` and a login of letters, digits, `-` or `_` (at most \
                     {MAX_HANDLE_CHARS}), e.g. `@kodiai`; found {handle:?}"
                ),
            );
        }
        ok
    }

    fn prompt(&mut self, path: &str, prompt: Option<String>) -> Option<String> {
        let prompt = prompt.filter(|p| !p.trim().is_empty())?;
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            self.error(
                &KeyPath::parse(path),
                format!("at most {MAX_PROMPT_CHARS} characters"),
            );
            return None;
        }
        Some(prompt)
    }

    fn logins(&mut self, path: &str, logins: Option<Vec<String>>) -> Vec<String> {
        let logins = logins.unwrap_or_default();
        for (index, login) in logins.iter().enumerate() {
            let bare = login.strip_prefix('@').unwrap_or(login);
            let ok = !bare.is_empty()
                && bare.len() <= MAX_HANDLE_CHARS
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_[]".contains(c));
            if !ok {
                self.error(
                    &KeyPath::parse(path).index(index),
                    format!("expected a GitHub login, found {login:?}"),
                );
            }
        }
        logins
            .into_iter()
            .map(|l| l.strip_prefix('@').map(str::to_owned).unwrap_or(l))
            .collect()
    }
}

pub(super) fn to_config(
    raw: RawConfig,
    tree: &Node,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<RepoConfig> {
    let mut c = Checker { tree, diagnostics };
    let defaults = RepoConfig::default();

    let trigger = match raw.trigger {
        Some(t) if c.handle(KeyPath::parse("trigger"), &t) => t,
        _ => defaults.trigger.clone(),
    };

    // review
    let r = raw.review.unwrap_or_default();
    let triggers = r.triggers.unwrap_or_default();
    let mut on: Vec<ReviewAction> = r.on.unwrap_or_else(|| defaults.review.on.clone());
    for (flag, action) in [
        (triggers.on_opened, ReviewAction::Opened),
        (triggers.on_ready_for_review, ReviewAction::ReadyForReview),
        (triggers.on_synchronize, ReviewAction::Synchronize),
        (triggers.on_reopened, ReviewAction::Reopened),
    ] {
        match flag {
            Some(Flag(true)) => on.push(action),
            Some(Flag(false)) => on.retain(|a| *a != action),
            None => {}
        }
    }
    on.sort();
    on.dedup();
    let review = super::ReviewSettings {
        enabled: flag(r.enabled, defaults.review.enabled),
        on,
        paths: c.globs("review.paths", r.paths, false),
        ignore_paths: c.globs("review.ignore_paths", r.ignore_paths, false),
        skip_authors: c.logins("review.skip_authors", r.skip_authors),
        skip_drafts: flag(r.skip_drafts, defaults.review.skip_drafts),
        prompt: c.prompt("review.prompt", r.prompt),
        approve_when_clean: flag(r.approve_when_clean, defaults.review.approve_when_clean),
        incremental: flag(r.incremental, defaults.review.incremental),
    };

    // mention
    let m = raw.mention.unwrap_or_default();
    let mut aliases = Vec::new();
    for (index, alias) in m.aliases.unwrap_or_default().into_iter().enumerate() {
        if c.handle(KeyPath::parse("mention.aliases").index(index), &alias) {
            aliases.push(alias);
        }
    }
    if m.accept_claude_alias == Some(Flag(true)) {
        aliases.push("@claude".to_owned());
    }
    let mut seen = std::collections::BTreeSet::new();
    aliases.retain(|a| !a.eq_ignore_ascii_case(&trigger) && seen.insert(a.to_ascii_lowercase()));
    let mention = super::MentionSettings {
        enabled: flag(m.enabled, defaults.mention.enabled),
        prompt: c.prompt("mention.prompt", m.prompt),
        aliases,
        on_issue_edited: flag(m.on_issue_edited, defaults.mention.on_issue_edited),
    };

    // permissions: `mention.allowedUsers` (TypeScript kodiai) joins `permissions.allowed_users`.
    let p = raw.permissions.unwrap_or_default();
    let mut allowed_users = c.logins("permissions.allowed_users", p.allowed_users);
    for login in c.logins("mention.allowedUsers", m.allowed_users) {
        if !allowed_users.iter().any(|u| u.eq_ignore_ascii_case(&login)) {
            allowed_users.push(login);
        }
    }
    let permissions = super::Permissions {
        allow_bots: flag(p.allow_bots, defaults.permissions.allow_bots),
        allowed_users,
        reply_when_refused: flag(
            p.reply_when_refused,
            defaults.permissions.reply_when_refused,
        ),
    };

    // settings: the top-level `maxTurns` and `timeoutSeconds` of the TypeScript kodiai too.
    let s = raw.settings.unwrap_or_default();
    let d = &defaults.settings;
    let max_turns = match (s.max_turns, raw.max_turns_top) {
        (Some(_), Some(_)) => {
            c.warning(
                &KeyPath::parse("maxTurns"),
                "`settings.max_turns` is set too, and wins",
            );
            c.range("settings.max_turns", s.max_turns, 1, 200, d.max_turns)
        }
        (Some(_), None) => c.range("settings.max_turns", s.max_turns, 1, 200, d.max_turns),
        (None, top) => c.range("maxTurns", top, 1, 200, d.max_turns),
    };
    let timeout_seconds = match (s.timeout_seconds, raw.timeout_seconds_top) {
        (Some(_), Some(_)) => {
            c.warning(
                &KeyPath::parse("timeoutSeconds"),
                "`settings.timeout_seconds` is set too, and wins",
            );
            let v = s.timeout_seconds;
            c.range("settings.timeout_seconds", v, 10, 7200, d.timeout_seconds)
        }
        (Some(_), None) => {
            let v = s.timeout_seconds;
            c.range("settings.timeout_seconds", v, 10, 7200, d.timeout_seconds)
        }
        (None, top) => c.range("timeoutSeconds", top, 10, 7200, d.timeout_seconds),
    };
    let allowed_tools = s.allowed_tools.unwrap_or_default();
    for (index, tool) in allowed_tools.iter().enumerate() {
        let ok = !tool.is_empty()
            && tool.len() <= 64
            && tool
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !ok {
            c.error(
                &KeyPath::parse("settings.allowed_tools").index(index),
                format!("expected a tool name such as `run_command`, found {tool:?}"),
            );
        }
    }
    let settings = super::RunSettings {
        max_turns,
        timeout_seconds,
        collapse_responses: flag(s.collapse_responses, d.collapse_responses),
        allowed_tools,
    };

    // model
    let model = match raw.model.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match kodiai_runtime::config::parse_model(text) {
            Some(model) => Some(model),
            None => {
                c.error(
                    &KeyPath::parse("model"),
                    format!(
                        "expected `provider/model`, e.g. `anthropic/claude-sonnet-4-5`, or empty \
                         for the server's default; found {text:?}"
                    ),
                );
                None
            }
        },
    };

    // mcp_servers
    let mut mcp_servers = BTreeMap::new();
    for (name, server) in raw.mcp_servers.unwrap_or_default() {
        if let Some(server) = mcp_server(&mut c, &name, server) {
            mcp_servers.insert(name, server);
        }
    }

    // write
    let w = raw.write.unwrap_or_default();
    let allow_paths = c.globs("write.allow_paths", w.allow_paths, false);
    let deny_paths = match w.deny_paths {
        None => default_deny_paths(),
        Some(patterns) => c
            .compile("write.deny_paths", &patterns, true)
            .unwrap_or_else(default_deny_paths),
    };
    let write = WritePolicy::new(flag(w.enabled, false), allow_paths, deny_paths);

    Some(RepoConfig {
        trigger,
        review,
        mention,
        permissions,
        settings,
        model,
        mcp_servers,
        write,
    })
}

fn mcp_server(c: &mut Checker<'_>, name: &str, server: RawMcpServer) -> Option<McpServer> {
    let path = KeyPath::parse("mcp_servers").key(name);
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    if !name_ok {
        // The name becomes part of tool names (`server__tool`).
        c.error(
            &path,
            "a server name is letters, digits, `-` and `_` (at most 64)",
        );
        return None;
    }
    let transport = match (server.transport, &server.command, &server.url) {
        (Some(t), _, _) => t,
        (None, Some(_), None) => McpTransport::Stdio,
        (None, None, Some(_)) => McpTransport::Http,
        (None, Some(_), Some(_)) => {
            c.error(&path, "set `command` (stdio) or `url` (http), not both");
            return None;
        }
        (None, None, None) => {
            c.error(&path, "set `command` (stdio) or `url` (http)");
            return None;
        }
    };
    match transport {
        McpTransport::Stdio => {
            let Some(command) = server.command.filter(|c| !c.trim().is_empty()) else {
                c.error(&path, "a stdio server needs `command`");
                return None;
            };
            if server.url.is_some() || !server.headers.is_empty() {
                c.error(&path, "`url` and `headers` belong to http servers");
                return None;
            }
            Some(McpServer::Stdio {
                command,
                args: server.args,
                env: server.env,
            })
        }
        McpTransport::Http => {
            let Some(url) = server.url else {
                c.error(&path, "an http server needs `url`");
                return None;
            };
            match url::Url::parse(&url) {
                Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
                _ => {
                    c.error(
                        &path.clone().key("url"),
                        format!("expected an http or https URL, found {url:?}"),
                    );
                    return None;
                }
            }
            if server.command.is_some() || !server.args.is_empty() || !server.env.is_empty() {
                c.error(&path, "`command`, `args` and `env` belong to stdio servers");
                return None;
            }
            Some(McpServer::Http {
                url,
                headers: server.headers,
            })
        }
    }
}

fn flag(value: Option<Flag>, default: bool) -> bool {
    value.map_or(default, |Flag(v)| v)
}
