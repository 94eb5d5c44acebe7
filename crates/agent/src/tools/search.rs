//! `search`: a regex search over the workspace on ripgrep's own libraries (`ignore` walks in
//! parallel and honours .gitignore, `grep-searcher` reads and detects binaries, `grep-regex`
//! matches), on the blocking pool, with the match count and file size capped.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::GlobMatcher;
use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::sinks::Lossy;
use grep_searcher::{BinaryDetection, SearcherBuilder};
use ignore::WalkState;
use schemars::JsonSchema;
use serde::Deserialize;

use super::files::{compile_glob, push_capped, walker};
use super::{Tool, ToolContext, ToolError, ToolOutput, ToolResult, WorkspaceRoot, blocking};

/// Matching lines returned unless the model asks for fewer or more.
const DEFAULT_MAX_RESULTS: usize = 200;
/// And never more than this many.
const MAX_RESULTS: usize = 5000;
/// Files larger than this are skipped (generated data, not code).
const MAX_SEARCH_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// A matching line is cut after this many characters.
const MAX_MATCH_CHARS: usize = 500;

/// `search`.
#[derive(Debug, Clone)]
pub struct Search {
    root: WorkspaceRoot,
}

impl Search {
    /// `search` over this workspace.
    pub fn new(root: WorkspaceRoot) -> Self {
        Self { root }
    }
}

/// Arguments of `search`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    /// A regular expression (Rust `regex` syntax, as ripgrep), matched line by line.
    pub pattern: String,
    /// A file or directory to search in, relative to the workspace root (default: the root).
    #[serde(default)]
    pub path: Option<String>,
    /// Only files whose path (relative to `path`) matches this glob, e.g. `**/*.rs`.
    #[serde(default)]
    pub glob: Option<String>,
    /// Match without regard to case (default false).
    #[serde(default)]
    pub case_insensitive: Option<bool>,
    /// At most this many matching lines (default 200, at most 5000).
    #[serde(default)]
    pub max_results: Option<usize>,
}

impl Tool for Search {
    type Args = SearchArgs;

    fn name(&self) -> &str {
        "search"
    }

    fn description(&self) -> String {
        "Search the workspace's files for a regular expression, like ripgrep: prints \
         `path:line:text` for each matching line. Files ignored by .gitignore, binary files and \
         the .git directory are skipped."
            .to_owned()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: SearchArgs, _ctx: &ToolContext) -> ToolResult {
        let start = self
            .root
            .resolve_existing(args.path.as_deref().unwrap_or("."))?;
        let matcher = RegexMatcherBuilder::new()
            .case_insensitive(args.case_insensitive.unwrap_or(false))
            .line_terminator(Some(b'\n'))
            .build(&args.pattern)
            .map_err(|e| ToolError::respond(format!("invalid regex: {e}")))?;
        let glob = args.glob.as_deref().map(compile_glob).transpose()?;
        let max = args
            .max_results
            .unwrap_or(DEFAULT_MAX_RESULTS)
            .clamp(1, MAX_RESULTS);
        let root = self.root.clone();
        blocking(move || {
            let found = search_tree(start, &matcher, glob.as_ref(), max);
            let mut lines: Vec<(String, u64, String)> = found
                .into_iter()
                .flat_map(|(path, matches)| {
                    let shown = root.display(&path);
                    matches
                        .into_iter()
                        .map(move |(line, text)| (shown.clone(), line, text))
                })
                .collect();
            if lines.is_empty() {
                return Ok(ToolOutput::text("no matches"));
            }
            lines.sort_unstable();
            let capped = lines.len() >= max;
            lines.truncate(max);
            let mut out = String::new();
            for (path, line, text) in &lines {
                out.push_str(&format!("{path}:{line}:"));
                push_capped(&mut out, text, MAX_MATCH_CHARS);
                out.push('\n');
            }
            if capped {
                out.push_str(&format!(
                    "(stopped at {max} matching lines; narrow the pattern, the path or the glob)\n"
                ));
            }
            Ok(ToolOutput::text(out))
        })
        .await
    }
}

/// The matching lines per file, from a parallel walk that stops once `max` lines were found.
fn search_tree(
    start: PathBuf,
    matcher: &RegexMatcher,
    glob: Option<&GlobMatcher>,
    max: usize,
) -> Vec<(PathBuf, Vec<(u64, String)>)> {
    let found = Mutex::new(Vec::new());
    let count = AtomicUsize::new(0);
    let mut builder = walker(&start);
    builder.max_filesize(Some(MAX_SEARCH_FILE_BYTES));
    builder.build_parallel().run(|| {
        let mut searcher = SearcherBuilder::new()
            .line_number(true)
            .binary_detection(BinaryDetection::quit(0))
            .build();
        let matcher = matcher.clone();
        let (found, count, start) = (&found, &count, &start);
        Box::new(move |entry| {
            let Ok(entry) = entry else {
                return WalkState::Continue;
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return WalkState::Continue;
            }
            if let Some(glob) = glob {
                let relative = entry.path().strip_prefix(start).unwrap_or(entry.path());
                if !glob.is_match(relative) {
                    return WalkState::Continue;
                }
            }
            let mut matches = Vec::new();
            // An unreadable file is skipped, as ripgrep does (with a message there).
            let _ = searcher.search_path(
                &matcher,
                entry.path(),
                Lossy(|line, text| {
                    matches.push((line, text.trim_end_matches(['\n', '\r']).to_owned()));
                    Ok(matches.len() < max)
                }),
            );
            if matches.is_empty() {
                return WalkState::Continue;
            }
            let total = count.fetch_add(matches.len(), Ordering::Relaxed) + matches.len();
            if let Ok(mut found) = found.lock() {
                found.push((entry.into_path(), matches));
            }
            if total >= max {
                WalkState::Quit
            } else {
                WalkState::Continue
            }
        })
    });
    found
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
