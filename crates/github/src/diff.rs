//! Unified diffs: what a pull request changed, line by line, and which of those lines GitHub
//! lets a review comment sit on.
//!
//! Two inputs, one model: a whole `git diff` (many files, with git's extended headers: renames,
//! new and deleted files, mode changes, `Binary files … differ`, `GIT binary patch`) via
//! [`Diff::parse_git`], or the per-file `patch` that GitHub's pull files API returns (hunks only,
//! the path and status beside it) via [`DiffFile::from_patch`] and [`Diff::from_pull_files`].
//!
//! Both parse in one pass over the text: hunk headers give the counts of old and new lines, so a
//! removed line whose text starts with `--` (printed `---`) is never taken for a file header, and
//! `\ No newline at end of file` marks the line before it instead of being a line.
//!
//! Commentable lines: GitHub accepts a review comment on a line of a hunk, on the side it belongs
//! to: `RIGHT` for added and context lines (numbered in the new file), `LEFT` for removed and
//! context lines (numbered in the old file). Within one hunk the lines of one side are consecutive
//! numbers, so each hunk is a range per side and a lookup is a binary search over the hunks. A
//! multi-line comment (`start_line` to `line`) must lie in one hunk, on one side.
//! [`anchor`] checks and moves the comments a model proposes against this.
//!
//! [`DiffFile::numbered`] is the patch as a prompt shows it, with new-side line numbers.

pub mod anchor;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::RangeInclusive;

use crate::rest::PullFile;

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    Added,
    Modified,
    Removed,
    Renamed,
    Copied,
}

impl FileStatus {
    /// GitHub's `status` of a pull request file (`added`, `removed`, `modified`, `renamed`,
    /// `copied`, `changed`, `unchanged`); the last two are modifications (of mode, or none).
    pub fn from_github(status: &str) -> Self {
        match status {
            "added" => Self::Added,
            "removed" => Self::Removed,
            "renamed" => Self::Renamed,
            "copied" => Self::Copied,
            _ => Self::Modified,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Modified => "modified",
            Self::Removed => "removed",
            Self::Renamed => "renamed",
            Self::Copied => "copied",
        }
    }
}

/// The side of the diff a review comment is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The old file: removed and context lines, numbered in the base.
    Left,
    /// The new file: added and context lines, numbered in the head.
    Right,
}

impl Side {
    /// The value GitHub's review API takes (`LEFT`, `RIGHT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "LEFT",
            Self::Right => "RIGHT",
        }
    }

    /// `LEFT` or `RIGHT`, any case.
    pub fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("left") {
            Some(Self::Left)
        } else if text.eq_ignore_ascii_case("right") {
            Some(Self::Right)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Context,
    Added,
    Removed,
}

/// One line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub kind: LineKind,
    /// The line's number in the old file (context and removed lines).
    pub old_line: Option<u64>,
    /// The line's number in the new file (context and added lines).
    pub new_line: Option<u64>,
    /// The text without the `+`/`-`/` ` prefix and without the newline.
    pub text: String,
    /// Followed by `\ No newline at end of file`: the last line of its side, without a newline.
    pub no_newline: bool,
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: u64,
    pub old_count: u64,
    pub new_start: u64,
    pub new_count: u64,
    /// What follows the second `@@` (git's function context), trimmed.
    pub section: String,
    pub lines: Vec<DiffLine>,
}

impl Hunk {
    /// The line numbers of `side` this hunk shows (and a comment may use), if any.
    pub fn range(&self, side: Side) -> Option<RangeInclusive<u64>> {
        let number = |l: &DiffLine| match side {
            Side::Left => l.old_line,
            Side::Right => l.new_line,
        };
        let first = self.lines.iter().find_map(number)?;
        let last = self.lines.iter().rev().find_map(number)?;
        Some(first..=last)
    }

    fn header(&self) -> String {
        let mut header = format!(
            "@@ -{},{} +{},{} @@",
            self.old_start, self.old_count, self.new_start, self.new_count
        );
        if !self.section.is_empty() {
            header.push(' ');
            header.push_str(&self.section);
        }
        header
    }
}

/// One file of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffFile {
    /// The file's path: the new one, or the old one when the file was removed (as GitHub's
    /// `filename`, which is also the `path` of a review comment).
    pub path: String,
    /// The path before a rename or copy (GitHub's `previous_filename`).
    pub previous_path: Option<String>,
    pub status: FileStatus,
    /// A binary file: no hunks, nothing to comment on.
    pub binary: bool,
    pub hunks: Vec<Hunk>,
    /// Per side, the ranges of line numbers of the hunks that show that side, with the hunk's
    /// index, in file order (so sorted): what lookups search.
    left: Vec<(RangeInclusive<u64>, usize)>,
    right: Vec<(RangeInclusive<u64>, usize)>,
}

impl DiffFile {
    fn new(
        path: String,
        previous_path: Option<String>,
        status: FileStatus,
        binary: bool,
        hunks: Vec<Hunk>,
    ) -> Self {
        let ranges = |side| {
            hunks
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.range(side).map(|r| (r, i)))
                .collect()
        };
        let (left, right) = (ranges(Side::Left), ranges(Side::Right));
        Self {
            path,
            previous_path,
            status,
            binary,
            hunks,
            left,
            right,
        }
    }

    /// One file from GitHub's pull files API: its `patch` (hunks only) with its path and status.
    /// A file without a patch (binary, or too large for GitHub to show) has no hunks.
    pub fn from_patch(
        path: &str,
        status: FileStatus,
        previous_path: Option<&str>,
        patch: Option<&str>,
    ) -> Self {
        let hunks = patch.map(parse_hunks_only).unwrap_or_default();
        Self::new(
            path.to_owned(),
            previous_path.map(str::to_owned),
            status,
            false,
            hunks,
        )
    }

    /// A file of [`crate::rest::InstallationClient::list_pull_files`].
    pub fn from_pull_file(file: &PullFile) -> Self {
        Self::from_patch(
            &file.filename,
            FileStatus::from_github(&file.status),
            file.previous_filename.as_deref(),
            file.patch.as_deref(),
        )
    }

    /// The path in the old tree (`None` for an added file).
    pub fn old_path(&self) -> Option<&str> {
        match self.status {
            FileStatus::Added => None,
            _ => Some(self.previous_path.as_deref().unwrap_or(&self.path)),
        }
    }

    /// The path in the new tree (`None` for a removed file).
    pub fn new_path(&self) -> Option<&str> {
        match self.status {
            FileStatus::Removed => None,
            _ => Some(&self.path),
        }
    }

    fn ranges(&self, side: Side) -> &[(RangeInclusive<u64>, usize)] {
        match side {
            Side::Left => &self.left,
            Side::Right => &self.right,
        }
    }

    /// The range of `side` line numbers hunk `hunk` shows.
    pub fn hunk_range(&self, side: Side, hunk: usize) -> Option<RangeInclusive<u64>> {
        let ranges = self.ranges(side);
        ranges
            .binary_search_by_key(&hunk, |(_, h)| *h)
            .ok()
            .map(|i| ranges[i].0.clone())
    }

    /// The hunk whose `side` shows `line`: the line can carry a comment on that side.
    pub fn hunk_of(&self, side: Side, line: u64) -> Option<usize> {
        let ranges = self.ranges(side);
        // Hunks are in file order and do not overlap, so their ranges are sorted.
        let after = ranges.partition_point(|(r, _)| *r.start() <= line);
        after
            .checked_sub(1)
            .map(|i| &ranges[i])
            .filter(|(r, _)| r.contains(&line))
            .map(|(_, hunk)| *hunk)
    }

    /// Every line of `side` that can carry a comment, with its hunk, in order.
    pub fn commentable_lines(&self, side: Side) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.ranges(side)
            .iter()
            .flat_map(|(r, hunk)| r.clone().map(move |line| (line, *hunk)))
    }

    /// The commentable `side` line nearest to `line`, at most `max_distance` away, with its hunk.
    /// On a tie the earlier line wins.
    pub fn nearest(&self, side: Side, line: u64, max_distance: u64) -> Option<(u64, usize)> {
        if let Some(h) = self.hunk_of(side, line) {
            return Some((line, h));
        }
        let ranges = self.ranges(side);
        let after = ranges.partition_point(|(r, _)| *r.start() <= line);
        let before = after
            .checked_sub(1)
            .map(|i| (*ranges[i].0.end(), ranges[i].1));
        let next = ranges.get(after).map(|(r, hunk)| (*r.start(), *hunk));
        [before, next]
            .into_iter()
            .flatten()
            .map(|(l, i)| (l.abs_diff(line), l, i))
            .filter(|(d, _, _)| *d <= max_distance)
            .min()
            .map(|(_, l, i)| (l, i))
    }

    /// The patch for a prompt: each hunk's header, then its lines with the new-side line number
    /// in a right-aligned column before the `+`/`-`/` ` marker. Removed lines have no new-side
    /// number and show a blank column; a review comment names the number shown (side `RIGHT`).
    ///
    /// ```text
    /// @@ -10,3 +10,4 @@ fn main
    /// 10  let a = 1;
    /// 11 +let b = 2;
    ///    -let c = 3;
    /// 12 +let c = 4;
    /// ```
    pub fn numbered(&self) -> String {
        let width = self
            .hunks
            .iter()
            .filter_map(|h| h.range(Side::Right))
            .map(|r| r.end().to_string().len())
            .max()
            .unwrap_or(1);
        let mut out = String::new();
        for hunk in &self.hunks {
            out.push_str(&hunk.header());
            out.push('\n');
            for line in &hunk.lines {
                let marker = match line.kind {
                    LineKind::Context => ' ',
                    LineKind::Added => '+',
                    LineKind::Removed => '-',
                };
                let _ = match line.new_line {
                    Some(n) => write!(out, "{n:>width$} {marker}{}", line.text),
                    None => write!(out, "{:>width$} {marker}{}", "", line.text),
                };
                out.push('\n');
                if line.no_newline {
                    out.push_str("\\ No newline at end of file\n");
                }
            }
        }
        out
    }
}

/// The files of a diff, found by path.
#[derive(Debug, Clone, Default)]
pub struct Diff {
    files: Vec<DiffFile>,
    by_path: HashMap<String, usize>,
}

impl Diff {
    pub fn from_files(files: Vec<DiffFile>) -> Self {
        let by_path = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.path.clone(), i))
            .collect();
        Self { files, by_path }
    }

    /// A whole `git diff` (or `git format-patch`, `git show`) output.
    pub fn parse_git(text: &str) -> Self {
        Self::from_files(parse_git_files(text))
    }

    /// The changed files of a pull request as GitHub lists them.
    pub fn from_pull_files(files: &[PullFile]) -> Self {
        Self::from_files(files.iter().map(DiffFile::from_pull_file).collect())
    }

    pub fn files(&self) -> &[DiffFile] {
        &self.files
    }

    /// The file a review comment on `path` goes to (its new path, or the old one if removed).
    pub fn file(&self, path: &str) -> Option<&DiffFile> {
        self.by_path.get(path).map(|&i| &self.files[i])
    }
}

/// Lines of a text, without their `\n` (a `\r` before it is part of the line: a CRLF file's
/// lines end in `\r` in its diff too).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    (!text.is_empty())
        .then(|| text.split('\n'))
        .into_iter()
        .flatten()
}

/// `@@ -a[,b] +c[,d] @@ section`.
fn parse_hunk_header(line: &str) -> Option<Hunk> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, section) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |text: &str| -> Option<(u64, u64)> {
        match text.split_once(',') {
            Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
            None => Some((text.parse().ok()?, 1)),
        }
    };
    let (old_start, old_count) = range(old)?;
    let (new_start, new_count) = range(new)?;
    Some(Hunk {
        old_start,
        old_count,
        new_start,
        new_count,
        section: section.trim().to_owned(),
        lines: Vec::new(),
    })
}

/// Reads hunk lines into `hunk` while its counts are not used up; the text it stops at (the next
/// header, or anything else) is left to the caller.
struct HunkReader {
    hunk: Hunk,
    old_left: u64,
    new_left: u64,
    old_line: u64,
    new_line: u64,
}

impl HunkReader {
    fn new(hunk: Hunk) -> Self {
        Self {
            old_left: hunk.old_count,
            new_left: hunk.new_count,
            old_line: hunk.old_start,
            new_line: hunk.new_start,
            hunk,
        }
    }

    fn done(&self) -> bool {
        self.old_left == 0 && self.new_left == 0
    }

    /// Takes `line` if it belongs to the hunk; `false` means the hunk ended before it.
    fn take(&mut self, line: &str) -> bool {
        if line.starts_with('\\') {
            // `\ No newline at end of file` (localized by some gits: any `\` line is the marker).
            if let Some(last) = self.hunk.lines.last_mut() {
                last.no_newline = true;
                return true;
            }
            return false;
        }
        if self.done() {
            return false;
        }
        let (kind, text) = match line.as_bytes().first() {
            Some(b'+') if self.new_left > 0 => (LineKind::Added, &line[1..]),
            Some(b'-') if self.old_left > 0 => (LineKind::Removed, &line[1..]),
            Some(b' ') if self.old_left > 0 && self.new_left > 0 => (LineKind::Context, &line[1..]),
            // An empty context line whose space an editor or a mail client stripped.
            None if self.old_left > 0 && self.new_left > 0 => (LineKind::Context, ""),
            _ => return false,
        };
        let (old_line, new_line) = match kind {
            LineKind::Context => (Some(self.old_line), Some(self.new_line)),
            LineKind::Added => (None, Some(self.new_line)),
            LineKind::Removed => (Some(self.old_line), None),
        };
        if old_line.is_some() {
            self.old_line += 1;
            self.old_left -= 1;
        }
        if new_line.is_some() {
            self.new_line += 1;
            self.new_left -= 1;
        }
        self.hunk.lines.push(DiffLine {
            kind,
            old_line,
            new_line,
            text: text.to_owned(),
            no_newline: false,
        });
        true
    }
}

/// The hunks of one file's patch (GitHub's `patch`: no file headers). Lines outside a hunk are
/// skipped.
fn parse_hunks_only(patch: &str) -> Vec<Hunk> {
    let mut hunks = Vec::new();
    let mut reader: Option<HunkReader> = None;
    for line in lines(patch) {
        if let Some(r) = reader.as_mut()
            && r.take(line)
        {
            continue;
        }
        if let Some(hunk) = parse_hunk_header(line) {
            if let Some(r) = reader.take() {
                hunks.push(r.hunk);
            }
            reader = Some(HunkReader::new(hunk));
        }
    }
    hunks.extend(reader.map(|r| r.hunk));
    hunks
}

/// A file being read from a `git diff`.
#[derive(Default)]
struct FileBuilder {
    /// From `diff --git a/… b/…`, used when no other header names the paths.
    header_old: Option<String>,
    header_new: Option<String>,
    /// From `---`/`+++`, `rename from/to`, `copy from/to`.
    old: Option<String>,
    new: Option<String>,
    added: bool,
    removed: bool,
    renamed: bool,
    copied: bool,
    binary: bool,
    hunks: Vec<Hunk>,
}

impl FileBuilder {
    fn from_header(line: &str) -> Self {
        let (old, new) = split_git_header(line.trim_start_matches("diff --git "));
        Self {
            header_old: old,
            header_new: new,
            ..Self::default()
        }
    }

    fn finish(self) -> Option<DiffFile> {
        let old = self.old.or(self.header_old);
        let new = self.new.or(self.header_new);
        let status = if self.added {
            FileStatus::Added
        } else if self.removed {
            FileStatus::Removed
        } else if self.renamed {
            FileStatus::Renamed
        } else if self.copied {
            FileStatus::Copied
        } else {
            FileStatus::Modified
        };
        let (path, previous) = match status {
            FileStatus::Removed => (old.or(new)?, None),
            FileStatus::Renamed | FileStatus::Copied => (new.or(old.clone())?, old),
            _ => (new.or(old)?, None),
        };
        Some(DiffFile::new(
            path,
            previous,
            status,
            self.binary,
            self.hunks,
        ))
    }
}

/// The files of a whole `git diff`.
fn parse_git_files(text: &str) -> Vec<DiffFile> {
    let mut files = Vec::new();
    let mut file: Option<FileBuilder> = None;
    let mut reader: Option<HunkReader> = None;
    // Inside `GIT binary patch` data, which runs to the next `diff --git`.
    let mut in_binary_patch = false;
    for line in lines(text) {
        if let Some(r) = reader.as_mut() {
            if r.take(line) {
                continue;
            }
            if let (Some(f), Some(r)) = (file.as_mut(), reader.take()) {
                f.hunks.push(r.hunk);
            }
        }
        if line.starts_with("diff --git ") {
            files.extend(file.take().and_then(FileBuilder::finish));
            file = Some(FileBuilder::from_header(line));
            in_binary_patch = false;
            continue;
        }
        let Some(f) = file.as_mut() else {
            // Text before the first file (a commit message of `git show` or `format-patch`).
            continue;
        };
        if in_binary_patch {
            continue;
        }
        if let Some(hunk) = parse_hunk_header(line) {
            reader = Some(HunkReader::new(hunk));
        } else if !f.hunks.is_empty() {
            // Between or after hunks only hunk headers count (e.g. a `format-patch` signature).
        } else if let Some(path) = line.strip_prefix("--- ") {
            f.old = diff_path(path, "a/");
        } else if let Some(path) = line.strip_prefix("+++ ") {
            f.new = diff_path(path, "b/");
        } else if let Some(path) = line.strip_prefix("rename from ") {
            f.renamed = true;
            f.old = Some(unquote(path));
        } else if let Some(path) = line.strip_prefix("rename to ") {
            f.renamed = true;
            f.new = Some(unquote(path));
        } else if let Some(path) = line.strip_prefix("copy from ") {
            f.copied = true;
            f.old = Some(unquote(path));
        } else if let Some(path) = line.strip_prefix("copy to ") {
            f.copied = true;
            f.new = Some(unquote(path));
        } else if line.starts_with("new file mode ") {
            f.added = true;
        } else if line.starts_with("deleted file mode ") {
            f.removed = true;
        } else if line == "GIT binary patch" {
            f.binary = true;
            in_binary_patch = true;
        } else if line.starts_with("Binary files ") && line.ends_with(" differ") {
            f.binary = true;
        }
    }
    if let (Some(f), Some(r)) = (file.as_mut(), reader.take()) {
        f.hunks.push(r.hunk);
    }
    files.extend(file.and_then(FileBuilder::finish));
    files
}

/// The path of a `---`/`+++` line: `None` for `/dev/null`, the `a/`/`b/` prefix dropped, quotes
/// undone, and the tab git adds after a name with a space removed.
fn diff_path(text: &str, prefix: &str) -> Option<String> {
    let text = text.strip_suffix('\t').unwrap_or(text);
    if text == "/dev/null" {
        return None;
    }
    let path = unquote(text);
    Some(path.strip_prefix(prefix).map(str::to_owned).unwrap_or(path))
}

/// `a/old b/new` of a `diff --git` line. Quoted names are read as such; unquoted names with
/// spaces are split where both halves are equal (the only case without other headers to say:
/// a mode change or a binary file with the same path on both sides).
fn split_git_header(text: &str) -> (Option<String>, Option<String>) {
    let strip = |p: String, prefix: &str| p.strip_prefix(prefix).map(str::to_owned).unwrap_or(p);
    if text.starts_with('"') {
        if let Some((old, rest)) = take_quoted(text) {
            let new = rest.trim_start();
            return (Some(strip(old, "a/")), Some(strip(unquote(new), "b/")));
        }
        return (None, None);
    }
    if let Some(i) = text.find(" \"") {
        return (
            Some(strip(text[..i].to_owned(), "a/")),
            Some(strip(unquote(&text[i + 1..]), "b/")),
        );
    }
    // `a/X b/X`: the halves around the middle space.
    let half = text.len() / 2;
    if text.len() % 2 == 1
        && text.as_bytes().get(half) == Some(&b' ')
        && text.is_char_boundary(half)
        && text[..half].strip_prefix("a/") == text[half + 1..].strip_prefix("b/")
    {
        return (
            Some(strip(text[..half].to_owned(), "a/")),
            Some(strip(text[half + 1..].to_owned(), "b/")),
        );
    }
    match text.split_once(" b/") {
        Some((old, new)) => (Some(strip(old.to_owned(), "a/")), Some(new.to_owned())),
        None => (None, None),
    }
}

/// A C-quoted name at the start of `text` and what follows it.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((unquote(&text[..=i]), &text[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

/// Undoes git's C-style quoting of a path (`"tab\there"`, octal UTF-8 bytes `\303\251`);
/// an unquoted path is returned as it is.
fn unquote(text: &str) -> String {
    let Some(inner) = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|_| text.len() >= 2)
    else {
        return text.to_owned();
    };
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        let byte = match c {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    if let Some(d @ b'0'..=b'7') = bytes.get(i) {
                        value = value * 8 + u32::from(d - b'0');
                        i += 1;
                    }
                }
                u8::try_from(value).unwrap_or(b'?')
            }
            other => other,
        };
        out.push(byte);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_github_patch_is_numbered_on_both_sides() {
        let patch = "@@ -1,3 +1,3 @@ fn main() {\n a\n-b\n+B\n c\n--- not a header\n@@ -10,2 +10,3 @@\n x\n+y\n z";
        // `--- not a header` would be a removed line if the hunk expected more; its counts (3 old,
        // 3 new) end before it, so it is skipped.
        let file = DiffFile::from_patch("src/a.rs", FileStatus::Modified, None, Some(patch));
        assert_eq!(file.hunks.len(), 2);
        let h = &file.hunks[0];
        assert_eq!(h.section, "fn main() {");
        let numbers: Vec<_> = h
            .lines
            .iter()
            .map(|l| (l.kind, l.old_line, l.new_line, l.text.as_str()))
            .collect();
        assert_eq!(
            numbers,
            vec![
                (LineKind::Context, Some(1), Some(1), "a"),
                (LineKind::Removed, Some(2), None, "b"),
                (LineKind::Added, None, Some(2), "B"),
                (LineKind::Context, Some(3), Some(3), "c"),
            ]
        );
        assert_eq!(file.hunk_range(Side::Right, 0), Some(1..=3));
        assert_eq!(file.hunk_range(Side::Left, 0), Some(1..=3));
        assert_eq!(file.hunk_range(Side::Right, 1), Some(10..=12));
        assert_eq!(file.hunk_range(Side::Left, 1), Some(10..=11));
        assert_eq!(file.hunk_of(Side::Right, 12), Some(1));
        assert_eq!(file.hunk_of(Side::Left, 12), None);
        assert_eq!(file.hunk_of(Side::Right, 5), None);
        assert_eq!(file.nearest(Side::Right, 5, 2), Some((3, 0)));
        assert_eq!(file.nearest(Side::Right, 8, 2), Some((10, 1)));
        assert_eq!(file.nearest(Side::Right, 6, 2), None);
        assert_eq!(file.nearest(Side::Right, 40, 100), Some((12, 1)));
    }

    #[test]
    fn hunks_without_one_side_do_not_confuse_lookups() {
        // `-U0`: the middle hunk only adds (no LEFT lines), the last only removes.
        let patch = "@@ -5 +5 @@\n-a\n+A\n@@ -9,0 +10,2 @@\n+b\n+c\n@@ -20 +21,0 @@\n-d";
        let file = DiffFile::from_patch("x", FileStatus::Modified, None, Some(patch));
        assert_eq!(file.hunk_range(Side::Left, 1), None);
        assert_eq!(file.hunk_range(Side::Right, 2), None);
        assert_eq!(file.hunk_of(Side::Left, 20), Some(2));
        assert_eq!(file.hunk_of(Side::Left, 5), Some(0));
        assert_eq!(file.nearest(Side::Left, 4, 3), Some((5, 0)));
        assert_eq!(file.nearest(Side::Left, 12, 10), Some((5, 0)));
        assert_eq!(file.nearest(Side::Left, 14, 10), Some((20, 2)));
        assert_eq!(file.nearest(Side::Right, 3, 5), Some((5, 0)));
        assert_eq!(file.nearest(Side::Right, 13, 5), Some((11, 1)));
        let left: Vec<_> = file.commentable_lines(Side::Left).collect();
        assert_eq!(left, vec![(5, 0), (20, 2)]);
    }

    #[test]
    fn removed_lines_that_look_like_headers_stay_lines() {
        let patch = "@@ -1,3 +1,1 @@\n--- a/x\n-+++ b/x\n keep";
        let file = DiffFile::from_patch("x", FileStatus::Modified, None, Some(patch));
        let texts: Vec<_> = file.hunks[0]
            .lines
            .iter()
            .map(|l| (l.kind, l.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            vec![
                (LineKind::Removed, "-- a/x"),
                (LineKind::Removed, "+++ b/x"),
                (LineKind::Context, "keep"),
            ]
        );
    }

    #[test]
    fn numbered_shows_new_side_numbers() {
        let patch = "@@ -8,3 +8,3 @@ impl A\n x\n-y\n+Y\n z\n\\ No newline at end of file";
        let file = DiffFile::from_patch("a", FileStatus::Modified, None, Some(patch));
        assert!(file.hunks[0].lines[3].no_newline);
        assert_eq!(
            file.numbered(),
            "@@ -8,3 +8,3 @@ impl A\n 8  x\n   -y\n 9 +Y\n10  z\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn quoted_and_spaced_paths() {
        assert_eq!(unquote(r#""caf\303\251 \"x\"\tb""#), "café \"x\"\tb");
        assert_eq!(
            split_git_header("a/dir name/f b/dir name/f"),
            (Some("dir name/f".into()), Some("dir name/f".into()))
        );
        assert_eq!(
            split_git_header(r#""a/t\tb" "b/t\tb""#),
            (Some("t\tb".into()), Some("t\tb".into()))
        );
        assert_eq!(diff_path("b/with space\t", "b/"), Some("with space".into()));
        assert_eq!(diff_path("/dev/null", "a/"), None);
    }

    #[test]
    fn empty_input_has_no_files() {
        assert!(Diff::parse_git("").files().is_empty());
        assert!(
            DiffFile::from_patch("x", FileStatus::Modified, None, Some(""))
                .hunks
                .is_empty()
        );
    }
}
