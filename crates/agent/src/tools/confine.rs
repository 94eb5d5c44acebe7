//! Confinement: every path a model gives a tool is resolved against the workspace root and
//! refused, with a message the model reads, when it is absolute, climbs out with `..`, or leaves
//! the root through a symbolic link.
//!
//! A path is normalized lexically first (`a/./b/../c` is `a/c`; a `..` above the root is refused),
//! then its longest existing prefix is canonicalized (which follows every link in it) and must
//! still be inside the canonical root. Components that do not exist yet (a file `write_file`
//! creates) are appended to that canonical prefix, so they cannot be links.
//!
//! Architecture Invariant: a process that runs at the same time could swap a directory for a link
//! between the check and the use; the built-in tools do not do that, and `run_command`, which
//! could, runs with the workspace as its working directory, where it can reach no more than it
//! already can.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::ToolError;

/// The canonical root of a workspace; the tools resolve every path through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRoot {
    root: PathBuf,
}

impl WorkspaceRoot {
    /// The root at `dir`, which must be an existing directory.
    pub fn new(dir: &Path) -> io::Result<Self> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self { root })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// An existing file or directory inside the workspace (`""` and `"."` are the root).
    pub fn resolve_existing(&self, raw: &str) -> Result<PathBuf, ToolError> {
        let (path, missing) = self.resolve(raw)?;
        if missing {
            return Err(ToolError::respond(format!(
                "`{raw}` does not exist in the workspace"
            )));
        }
        Ok(path)
    }

    /// A path inside the workspace that may not exist yet (a file to create, a deleted file git
    /// still knows).
    pub fn resolve_maybe_missing(&self, raw: &str) -> Result<PathBuf, ToolError> {
        Ok(self.resolve(raw)?.0)
    }

    /// A path a tool may write to: inside the workspace and not inside `.git`, whose files
    /// (hooks, config) git would run or obey on the host.
    pub fn resolve_writable(&self, raw: &str) -> Result<PathBuf, ToolError> {
        let path = self.resolve_maybe_missing(raw)?;
        let relative = path.strip_prefix(&self.root).unwrap_or(&path);
        if relative.components().next() == Some(Component::Normal(".git".as_ref())) {
            return Err(ToolError::respond(format!(
                "`{raw}` is inside .git; tools may not write there"
            )));
        }
        if path == self.root {
            return Err(ToolError::respond(
                "the workspace root is a directory, not a file",
            ));
        }
        Ok(path)
    }

    /// How a resolved path is shown to the model: relative to the root, with `/`.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(relative) if relative.as_os_str().is_empty() => ".".to_owned(),
            Ok(relative) => relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
            Err(_) => path.display().to_string(),
        }
    }

    /// The resolved path, and whether some trailing part of it does not exist.
    fn resolve(&self, raw: &str) -> Result<(PathBuf, bool), ToolError> {
        let relative = normalize(raw)?;
        let mut existing = self.root.join(&relative);
        let mut missing = Vec::new();
        loop {
            match std::fs::symlink_metadata(&existing) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && existing != self.root => {
                    if let Some(name) = existing.file_name() {
                        missing.push(name.to_owned());
                    }
                    existing.pop();
                }
                Err(e) => {
                    return Err(ToolError::respond(format!("cannot access `{raw}`: {e}")));
                }
            }
        }
        let canonical = match existing.canonicalize() {
            Ok(canonical) => canonical,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ToolError::respond(format!(
                    "`{raw}` goes through a symbolic link whose target does not exist"
                )));
            }
            Err(e) => return Err(ToolError::respond(format!("cannot access `{raw}`: {e}"))),
        };
        if !canonical.starts_with(&self.root) {
            return Err(ToolError::respond(format!(
                "`{raw}` leaves the workspace through a symbolic link; only paths inside the \
                 workspace are allowed"
            )));
        }
        let is_missing = !missing.is_empty();
        let mut path = canonical;
        path.extend(missing.into_iter().rev());
        Ok((path, is_missing))
    }
}

/// The lexical form of a path relative to the root, or the model's error.
fn normalize(raw: &str) -> Result<PathBuf, ToolError> {
    if raw.contains('\0') {
        return Err(ToolError::respond("a path may not contain NUL"));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Prefix(_) | Component::RootDir => {
                return Err(ToolError::respond(format!(
                    "`{raw}` is an absolute path; give a path relative to the workspace root"
                )));
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(ToolError::respond(format!(
                        "`{raw}` climbs out of the workspace with `..`; only paths inside the \
                         workspace are allowed"
                    )));
                }
            }
            Component::Normal(part) => parts.push(part),
        }
    }
    Ok(parts.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots_and_refuses_escapes() {
        assert_eq!(normalize("a/./b/../c").ok(), Some(PathBuf::from("a/c")));
        assert_eq!(normalize("").ok(), Some(PathBuf::new()));
        assert_eq!(normalize("./").ok(), Some(PathBuf::new()));
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\0b"] {
            assert!(
                matches!(normalize(bad), Err(ToolError::RespondToModel(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn links_out_are_refused_and_links_in_are_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "s").expect("write");
        std::fs::create_dir(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/a.rs"), "a").expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).expect("link");
        std::os::unix::fs::symlink("src", dir.path().join("inner")).expect("link");
        std::os::unix::fs::symlink("/nonexistent/x", dir.path().join("dangling")).expect("link");
        let root = WorkspaceRoot::new(dir.path()).expect("root");

        let refused = root.resolve_existing("out/secret").expect_err("link out");
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        assert!(root.resolve_writable("out/new-file").is_err());
        assert!(root.resolve_writable("dangling").is_err());
        assert!(root.resolve_writable(".git/hooks/pre-commit").is_err());

        let inner = root.resolve_existing("inner/a.rs").expect("link in");
        assert_eq!(root.display(&inner), "src/a.rs");
        let new = root.resolve_writable("src/new/dir/file.txt").expect("new");
        assert_eq!(root.display(&new), "src/new/dir/file.txt");
        assert!(root.resolve_existing("src/missing.rs").is_err());
        assert_eq!(
            root.display(&root.resolve_existing(".").expect("root")),
            "."
        );
    }
}
