//! The file tools: `read_file` (numbered lines, offset and limit), `list_files` (glob,
//! gitignore-aware), `edit_file` (exact replace of a unique text) and `write_file`. They do their
//! IO on the blocking pool and cap what they read and return.

use std::io::Read as _;
use std::path::Path;

use globset::{Glob, GlobMatcher};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolContext, ToolError, ToolOutput, ToolResult, WorkspaceRoot, blocking};

/// Files larger than this are not read whole (`read_file`, `edit_file`): `search` finds lines in them.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// `read_file` shows this many lines unless the model asks for fewer or more.
const DEFAULT_READ_LINES: usize = 2000;
/// And never more than this many.
const MAX_READ_LINES: usize = 10_000;
/// Longer lines are cut, so that a minified file does not fill the context.
const MAX_LINE_CHARS: usize = 2000;
/// `list_files` returns this many paths unless asked for fewer or more.
const DEFAULT_LIST_LIMIT: usize = 1000;
/// And never more than this many.
const MAX_LIST_LIMIT: usize = 20_000;

/// `read_file`.
#[derive(Debug, Clone)]
pub struct ReadFile {
    root: WorkspaceRoot,
}

impl ReadFile {
    /// `read_file` over this workspace.
    pub fn new(root: WorkspaceRoot) -> Self {
        Self { root }
    }
}

/// Arguments of `read_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArgs {
    /// The file, relative to the workspace root.
    pub path: String,
    /// The first line to show, counting from 1 (default 1).
    #[serde(default)]
    pub offset: Option<usize>,
    /// How many lines to show (default 2000, at most 10000).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Tool for ReadFile {
    type Args = ReadFileArgs;

    fn name(&self) -> &str {
        "read_file"
    }

    fn description(&self) -> String {
        "Read a text file of the workspace. Lines are numbered from 1 (`  12\\tcode`); use \
         `offset` and `limit` to page through a long file."
            .to_owned()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: ReadFileArgs, _ctx: &ToolContext) -> ToolResult {
        let path = self.root.resolve_existing(&args.path)?;
        let shown = self.root.display(&path);
        let offset = args.offset.unwrap_or(1).max(1);
        let limit = args
            .limit
            .unwrap_or(DEFAULT_READ_LINES)
            .clamp(1, MAX_READ_LINES);
        blocking(move || {
            let text = read_text(&path, &shown)?;
            Ok(ToolOutput::text(numbered(&text, &shown, offset, limit)?))
        })
        .await
    }
}

/// The file as text (invalid UTF-8 replaced), or the model's error for a directory, a binary or
/// an oversized file.
fn read_text(path: &Path, shown: &str) -> Result<String, ToolError> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| ToolError::respond(format!("cannot read `{shown}`: {e}")))?;
    if metadata.is_dir() {
        return Err(ToolError::respond(format!(
            "`{shown}` is a directory; use list_files to see what is in it"
        )));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(ToolError::respond(format!(
            "`{shown}` is {} bytes, more than read_file reads ({MAX_FILE_BYTES}); use search",
            metadata.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| ToolError::respond(format!("cannot read `{shown}`: {e}")))?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(ToolError::respond(format!("`{shown}` is a binary file")));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn numbered(text: &str, shown: &str, offset: usize, limit: usize) -> Result<String, ToolError> {
    if text.is_empty() {
        return Ok(format!("(`{shown}` is empty)"));
    }
    let lines: Vec<&str> = text.lines().collect();
    let total = lines.len();
    if offset > total {
        return Err(ToolError::respond(format!(
            "offset {offset} is past the end of `{shown}`, which has {total} lines"
        )));
    }
    let end = (offset - 1 + limit).min(total);
    let mut out = String::new();
    for (index, line) in lines[offset - 1..end].iter().enumerate() {
        let number = offset + index;
        out.push_str(&format!("{number:>6}\t"));
        push_capped(&mut out, line, MAX_LINE_CHARS);
        out.push('\n');
    }
    if offset > 1 || end < total {
        out.push_str(&format!("(lines {offset}-{end} of {total}"));
        if end < total {
            out.push_str(&format!("; offset={} reads on", end + 1));
        }
        out.push_str(")\n");
    }
    Ok(out)
}

/// Appends at most `max` characters of `line`, with a marker when it was cut.
pub(crate) fn push_capped(out: &mut String, line: &str, max: usize) {
    match line.char_indices().nth(max) {
        None => out.push_str(line),
        Some((cut, _)) => {
            out.push_str(&line[..cut]);
            out.push_str(" …[line cut]");
        }
    }
}

/// `list_files`.
#[derive(Debug, Clone)]
pub struct ListFiles {
    root: WorkspaceRoot,
}

impl ListFiles {
    /// `list_files` over this workspace.
    pub fn new(root: WorkspaceRoot) -> Self {
        Self { root }
    }
}

/// Arguments of `list_files`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesArgs {
    /// A glob the paths must match, relative to `path` (`**/*.rs`, `src/*.toml`); `*` also matches
    /// `/`. Default: every file.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The directory to list, relative to the workspace root (default: the root).
    #[serde(default)]
    pub path: Option<String>,
    /// At most this many paths (default 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl Tool for ListFiles {
    type Args = ListFilesArgs;

    fn name(&self) -> &str {
        "list_files"
    }

    fn description(&self) -> String {
        "List the files of the workspace (or of a directory in it), sorted, optionally filtered \
         by a glob. Files ignored by .gitignore and the .git directory are left out."
            .to_owned()
    }

    fn writes(&self) -> bool {
        false
    }

    async fn call(&self, args: ListFilesArgs, _ctx: &ToolContext) -> ToolResult {
        let start = self
            .root
            .resolve_existing(args.path.as_deref().unwrap_or("."))?;
        let glob = args.pattern.as_deref().map(compile_glob).transpose()?;
        let limit = args
            .limit
            .unwrap_or(DEFAULT_LIST_LIMIT)
            .clamp(1, MAX_LIST_LIMIT);
        let root = self.root.clone();
        blocking(move || {
            let mut files = Vec::new();
            for entry in walker(&start).build() {
                let Ok(entry) = entry else { continue };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    continue;
                }
                if let Some(glob) = &glob {
                    let relative = entry.path().strip_prefix(&start).unwrap_or(entry.path());
                    if !glob.is_match(relative) {
                        continue;
                    }
                }
                files.push(root.display(entry.path()));
            }
            files.sort_unstable();
            let total = files.len();
            if total == 0 {
                return Ok(ToolOutput::text("no files match"));
            }
            let mut out = files.into_iter().take(limit).collect::<Vec<_>>().join("\n");
            out.push('\n');
            if total > limit {
                out.push_str(&format!(
                    "({} more files not shown; narrow the pattern or the path)\n",
                    total - limit
                ));
            }
            Ok(ToolOutput::text(out))
        })
        .await
    }
}

pub(crate) fn compile_glob(pattern: &str) -> Result<GlobMatcher, ToolError> {
    Glob::new(pattern)
        .map(|glob| glob.compile_matcher())
        .map_err(|e| ToolError::respond(format!("invalid glob `{pattern}`: {e}")))
}

/// The walk every listing and search uses: .gitignore, .ignore and git's global excludes are
/// honoured (in a git repository or not), hidden files are included (`.github/` matters), the
/// `.git` directory is not, and links are not followed (they could lead out of the workspace).
pub(crate) fn walker(start: &Path) -> ignore::WalkBuilder {
    let mut builder = ignore::WalkBuilder::new(start);
    builder
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| entry.file_name() != ".git");
    builder
}

/// `edit_file`.
#[derive(Debug, Clone)]
pub struct EditFile {
    root: WorkspaceRoot,
}

impl EditFile {
    /// `edit_file` over this workspace.
    pub fn new(root: WorkspaceRoot) -> Self {
        Self { root }
    }
}

/// Arguments of `edit_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EditFileArgs {
    /// The file, relative to the workspace root.
    pub path: String,
    /// The exact text to replace, whitespace included; it must occur exactly once in the file.
    pub old_text: String,
    /// The text to put in its place.
    pub new_text: String,
}

impl Tool for EditFile {
    type Args = EditFileArgs;

    fn name(&self) -> &str {
        "edit_file"
    }

    fn description(&self) -> String {
        "Replace one exact piece of text in a file. `old_text` must occur exactly once (include \
         surrounding lines to make it unique); read the file first to copy it exactly."
            .to_owned()
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: EditFileArgs, _ctx: &ToolContext) -> ToolResult {
        let path = self.root.resolve_writable(&args.path)?;
        let shown = self.root.display(&path);
        if args.old_text.is_empty() {
            return Err(ToolError::respond(
                "old_text is empty; to create or overwrite a whole file use write_file",
            ));
        }
        if args.old_text == args.new_text {
            return Err(ToolError::respond(
                "old_text and new_text are the same; nothing would change",
            ));
        }
        blocking(move || {
            if !path.exists() {
                return Err(ToolError::respond(format!(
                    "`{shown}` does not exist; use write_file to create it"
                )));
            }
            let text = read_text(&path, &shown)?;
            let mut found = text.match_indices(&args.old_text);
            let Some((at, _)) = found.next() else {
                return Err(ToolError::respond(format!(
                    "old_text was not found in `{shown}`; read the file and copy the text exactly \
                     (whitespace and indentation included)"
                )));
            };
            let others = found.count();
            if others > 0 {
                return Err(ToolError::respond(format!(
                    "old_text occurs {} times in `{shown}`; include more of the surrounding lines \
                     so that it occurs once",
                    others + 1
                )));
            }
            let mut edited = String::with_capacity(text.len() + args.new_text.len());
            edited.push_str(&text[..at]);
            edited.push_str(&args.new_text);
            edited.push_str(&text[at + args.old_text.len()..]);
            std::fs::write(&path, &edited)
                .map_err(|e| ToolError::respond(format!("cannot write `{shown}`: {e}")))?;
            let first = text[..at].matches('\n').count() + 1;
            let last = first + args.new_text.matches('\n').count();
            Ok(ToolOutput::text(format!(
                "edited `{shown}`: the new text is at lines {first}-{last}"
            )))
        })
        .await
    }
}

/// `write_file`.
#[derive(Debug, Clone)]
pub struct WriteFile {
    root: WorkspaceRoot,
}

impl WriteFile {
    /// `write_file` over this workspace.
    pub fn new(root: WorkspaceRoot) -> Self {
        Self { root }
    }
}

/// Arguments of `write_file`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArgs {
    /// The file, relative to the workspace root; missing directories are created.
    pub path: String,
    /// The whole new content of the file.
    pub content: String,
}

impl Tool for WriteFile {
    type Args = WriteFileArgs;

    fn name(&self) -> &str {
        "write_file"
    }

    fn description(&self) -> String {
        "Create a file, or replace a file's whole content. Prefer edit_file to change part of \
         an existing file."
            .to_owned()
    }

    fn writes(&self) -> bool {
        true
    }

    async fn call(&self, args: WriteFileArgs, _ctx: &ToolContext) -> ToolResult {
        let path = self.root.resolve_writable(&args.path)?;
        let shown = self.root.display(&path);
        if args.content.len() as u64 > MAX_FILE_BYTES {
            return Err(ToolError::respond(format!(
                "the content is {} bytes, more than write_file writes ({MAX_FILE_BYTES})",
                args.content.len()
            )));
        }
        blocking(move || {
            if path.is_dir() {
                return Err(ToolError::respond(format!("`{shown}` is a directory")));
            }
            let existed = path.exists();
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    ToolError::respond(format!("cannot create the directories of `{shown}`: {e}"))
                })?;
            }
            std::fs::write(&path, args.content.as_bytes())
                .map_err(|e| ToolError::respond(format!("cannot write `{shown}`: {e}")))?;
            Ok(ToolOutput::text(format!(
                "{} `{shown}` ({} bytes)",
                if existed { "overwrote" } else { "created" },
                args.content.len()
            )))
        })
        .await
    }
}
