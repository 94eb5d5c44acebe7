//! `kodiai app manifest`: the GitHub App manifest for a kodiai server, and the one-button page
//! that hands it to GitHub (GitHub's manifest flow takes it as a form field, not a link).
//!
//! The manifest asks for what SPEC §2 and §5-§9 use and nothing more: the webhook events that
//! are routed or recorded, and the permissions to read and push code, review and comment on
//! pull requests, comment on and react to issues, and read CI results. `installation` and
//! `installation_repositories` need no subscription: GitHub sends them to every App.

use serde_json::{Value, json};
use url::Url;

/// The events kodiai routes (SPEC §2) or records (CI status for prompts and the fleet view).
pub const EVENTS: &[&str] = &[
    "check_suite",
    "issue_comment",
    "issues",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "push",
    "workflow_run",
];

/// Repository permissions, each with what needs it.
pub const PERMISSIONS: &[(&str, &str, &str)] = &[
    (
        "actions",
        "read",
        "workflow_run events; CI results in prompts",
    ),
    ("checks", "read", "check_suite events; CI status of commits"),
    (
        "contents",
        "write",
        "clone and fetch, read .kodiai.yml, push fixes; push events",
    ),
    (
        "issues",
        "write",
        "comment on and react to issues; issues and issue_comment events",
    ),
    (
        "metadata",
        "read",
        "required by GitHub; collaborator permissions of who calls kodiai",
    ),
    (
        "pull_requests",
        "write",
        "reviews, inline comments, opening pull requests; pull_request* events",
    ),
    ("statuses", "read", "commit statuses for CI results"),
];

/// GitHub's limit on App names.
const MAX_NAME_CHARS: usize = 34;

/// A bad argument, as one line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("--url {0:?}: expected the server's public https URL, e.g. https://kodiai.example.com")]
    BadUrl(String),
    #[error("--name {0:?}: expected 1 to {MAX_NAME_CHARS} characters")]
    BadName(String),
    #[error("--org {0:?}: expected a GitHub organization login")]
    BadOrg(String),
    #[error("--github-url {0:?}: expected GitHub's web URL, e.g. https://github.com")]
    BadGithubUrl(String),
}

/// `https://HOST[/PREFIX]` without a trailing slash; no query, fragment or credentials.
pub fn base_url(text: &str) -> Result<String, ManifestError> {
    let bad = || ManifestError::BadUrl(text.to_owned());
    let url = Url::parse(text).map_err(|_| bad())?;
    if url.scheme() != "https"
        || url.host_str().is_none_or(str::is_empty)
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// The manifest for a server at `url` (see [`base_url`]). After creating the App, GitHub
/// sends the browser to `/health` on that server with `?code=…` in the address: the code to
/// exchange for the App's id, key and webhook secret (README, "Create the GitHub App").
pub fn manifest(url: &str, name: &str) -> Result<Value, ManifestError> {
    let base = base_url(url)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ManifestError::BadName(name.to_owned()));
    }
    let permissions: serde_json::Map<String, Value> = PERMISSIONS
        .iter()
        .map(|(permission, access, _)| ((*permission).to_owned(), json!(access)))
        .collect();
    Ok(json!({
        "name": name,
        "description": "kodiai: reviews pull requests and answers @mentions on this installation's repositories.",
        "url": base,
        "hook_attributes": { "url": format!("{base}/webhooks/github"), "active": true },
        "redirect_url": format!("{base}/health"),
        "public": false,
        "default_permissions": permissions,
        "default_events": EVENTS,
    }))
}

/// A page with one button that posts `manifest` to GitHub's "new App" form, for a personal
/// account or for `org`. `github_url` is GitHub's web address (GitHub Enterprise Server: its
/// own).
pub fn html_form(
    manifest: &Value,
    org: Option<&str>,
    github_url: &str,
) -> Result<String, ManifestError> {
    let github = Url::parse(github_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
        .ok_or_else(|| ManifestError::BadGithubUrl(github_url.to_owned()))?;
    let github = github.as_str().trim_end_matches('/');
    let action = match org {
        None => format!("{github}/settings/apps/new"),
        Some(org) => {
            let ok = !org.is_empty()
                && org.len() <= 39
                && org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
            if !ok {
                return Err(ManifestError::BadOrg(org.to_owned()));
            }
            format!("{github}/organizations/{org}/settings/apps/new")
        }
    };
    let manifest = escape_html(&manifest.to_string());
    let action = escape_html(&action);
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Create the kodiai GitHub App</title></head>\n\
         <body>\n<form action=\"{action}\" method=\"post\">\n\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\n\
         <button type=\"submit\">Create the GitHub App on GitHub</button>\n\
         </form>\n</body>\n</html>\n"
    ))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_manifest_names_the_webhook_events_and_permissions() {
        let manifest = manifest("https://kodiai.example.com/", "kodiai").unwrap();
        insta::assert_json_snapshot!(manifest);
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://kodiai.example.com/webhooks/github"
        );
    }

    #[test]
    fn a_path_prefix_is_kept() {
        let manifest = manifest("https://example.com/kodiai", "kodiai").unwrap();
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://example.com/kodiai/webhooks/github"
        );
        assert_eq!(
            manifest["redirect_url"],
            "https://example.com/kodiai/health"
        );
    }

    #[test]
    fn bad_urls_and_names_are_refused() {
        for url in [
            "http://example.com",
            "example.com",
            "https://",
            "https://example.com/?a=1",
            "https://user:pw@example.com",
            "https://example.com/#x",
        ] {
            assert!(
                matches!(manifest(url, "kodiai"), Err(ManifestError::BadUrl(_))),
                "{url}"
            );
        }
        assert!(matches!(
            manifest("https://example.com", ""),
            Err(ManifestError::BadName(_))
        ));
        assert!(matches!(
            manifest("https://example.com", &"k".repeat(35)),
            Err(ManifestError::BadName(_))
        ));
    }

    #[test]
    fn the_form_posts_the_escaped_manifest_to_github() {
        let manifest = manifest("https://example.com", "kodiai \"<test>\"").unwrap();
        let page = html_form(&manifest, Some("acme"), "https://github.com/").unwrap();
        assert!(page.contains(
            "<form action=\"https://github.com/organizations/acme/settings/apps/new\" method=\"post\">"
        ));
        assert!(page.contains("&quot;name&quot;:&quot;kodiai \\&quot;&lt;test&gt;\\&quot;&quot;"));
        assert!(!page.contains("<test>"));
        let personal = html_form(&manifest, None, "https://ghe.example.com").unwrap();
        assert!(personal.contains("action=\"https://ghe.example.com/settings/apps/new\""));
        assert!(matches!(
            html_form(&manifest, Some("a/b"), "https://github.com"),
            Err(ManifestError::BadOrg(_))
        ));
    }
}
