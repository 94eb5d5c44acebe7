//! Where settings come from: the file's keys and the environment's variables (the first
//! non-empty one wins), each value parsed with one line of error naming the key, the value
//! (masked when secret) and what is expected; the keys nobody asked for are unknown. And the
//! parsers and maskers the sections share.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

use super::{ConfigError, Env};

/// What `config print` shows in place of a secret that is set.
pub(super) const MASK: &str = "********";

pub(super) fn read_file(path: &Path) -> Result<(PathBuf, toml::Table), ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: shown.clone(),
        message: format!("cannot read the configuration file: {e}"),
    })?;
    let table = text.parse::<toml::Table>().map_err(|e| {
        let position = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        ConfigError::File {
            path: shown.clone(),
            message: format!("not valid TOML: {position}{}", e.message().trim()),
        }
    })?;
    Ok((path.to_owned(), table))
}

/// How a raw value may be shown in an error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    /// Never shown.
    Secret,
    /// Shown with its password masked.
    Url,
}

/// One setting's raw text and where it came from.
pub(super) struct Raw {
    pub(super) text: String,
    pub(super) origin: String,
    pub(super) kind: Kind,
}

impl Raw {
    fn shown(&self) -> String {
        match self.kind {
            Kind::Plain => self.text.clone(),
            Kind::Secret => MASK.to_owned(),
            Kind::Url => kodiai_store::redact_url(&self.text),
        }
    }

    pub(super) fn invalid(&self, expected: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            value: self.shown(),
            expected: expected.to_owned(),
        }
    }

    pub(super) fn parse_with<T>(
        &self,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ConfigError> {
        parse(self.text.trim()).ok_or_else(|| self.invalid(expected))
    }
}

pub(super) struct Sources<'a> {
    pub(super) file: Option<(PathBuf, toml::Table)>,
    pub(super) env: &'a Env,
    /// Every file key asked for, so that the rest can be reported as unknown.
    pub(super) known: BTreeSet<String>,
}

impl Sources<'_> {
    /// The raw value of a setting: the first non-empty environment variable of `vars`, else the
    /// file's non-empty `key` (dotted), else nothing.
    pub(super) fn get(
        &mut self,
        key: &str,
        vars: &[&str],
        kind: Kind,
    ) -> Result<Option<Raw>, ConfigError> {
        self.known.insert(key.to_owned());
        for var in vars {
            if let Some(text) = self.env.get(*var).filter(|t| !t.trim().is_empty()) {
                return Ok(Some(Raw {
                    text: text.clone(),
                    origin: (*var).to_owned(),
                    kind,
                }));
            }
        }
        let Some((path, table)) = &self.file else {
            return Ok(None);
        };
        let mut parts = key.split('.').peekable();
        let mut current = table;
        while let Some(part) = parts.next() {
            let Some(value) = current.get(part) else {
                return Ok(None);
            };
            if parts.peek().is_some() {
                match value {
                    toml::Value::Table(inner) => current = inner,
                    _ => return Ok(None),
                }
                continue;
            }
            let origin = format!("{key} in {}", path.display());
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => {
                    let mut texts = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            toml::Value::String(s) => texts.push(s.clone()),
                            other => texts.push(other.to_string()),
                        }
                    }
                    texts.join(",")
                }
                other => {
                    return Err(ConfigError::Invalid {
                        origin,
                        value: if kind == Kind::Secret {
                            MASK.into()
                        } else {
                            other.to_string()
                        },
                        expected: "a single value, not a table".into(),
                    });
                }
            };
            // An empty value means unset, in the file as in the environment (`config print`
            // writes unset secrets as "").
            if text.trim().is_empty() {
                return Ok(None);
            }
            return Ok(Some(Raw { text, origin, kind }));
        }
        Ok(None)
    }

    pub(super) fn parse<T>(
        &mut self,
        key: &str,
        vars: &[&str],
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(key, vars, Kind::Plain)? {
            Some(raw) => raw.parse_with(expected, parse).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn secret(
        &mut self,
        key: &str,
        vars: &[&str],
    ) -> Result<Option<SecretString>, ConfigError> {
        Ok(self
            .get(key, vars, Kind::Secret)?
            .map(|raw| SecretString::from(raw.text.trim().to_owned())))
    }

    pub(super) fn reject_unknown_keys(&self) -> Result<(), ConfigError> {
        let Some((path, table)) = &self.file else {
            return Ok(());
        };
        let mut stack: Vec<(String, &toml::Table)> = vec![(String::new(), table)];
        while let Some((prefix, table)) = stack.pop() {
            for (name, value) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                let is_section = self.known.iter().any(|k| k.starts_with(&format!("{key}.")));
                match value {
                    toml::Value::Table(inner) if is_section => stack.push((key, inner)),
                    _ if self.known.contains(&key) => {}
                    _ => {
                        return Err(ConfigError::UnknownKey {
                            path: path.display().to_string(),
                            key,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

pub(super) fn positive(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|n| *n > 0)
}

pub(super) fn parse_http_url(text: &str) -> Option<url::Url> {
    url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

#[expect(
    clippy::expect_used,
    reason = "only called with literal URLs that parse"
)]
pub(super) fn fixed_url(text: &str) -> url::Url {
    url::Url::parse(text).expect("a literal default URL")
}

/// A GitHub login or slug: letters, digits, dashes, and an optional `[bot]` suffix.
pub(super) fn parse_login(text: &str) -> Option<String> {
    let name = text.strip_suffix("[bot]").unwrap_or(text);
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| text.to_owned())
}

pub(super) fn masked_list<S: Serializer>(
    secrets: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let shown: Vec<&str> = secrets.iter().map(|_| MASK).collect();
    shown.serialize(serializer)
}

pub(super) fn masked<S: Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(s) if !s.expose_secret().is_empty() => serializer.serialize_str(MASK),
        _ => serializer.serialize_str(""),
    }
}
