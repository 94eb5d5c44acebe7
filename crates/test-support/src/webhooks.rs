//! GitHub's side of webhooks for tests: deliveries signed exactly as GitHub signs them
//! (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`) and GitHub's real payloads (the
//! octokit examples in `crates/test-support/fixtures/github-webhooks`); the server's tests send
//! them with `TestApp::send_webhook`.
//!
//! The signature is computed here with `hmac` directly, not with kodiai's own code, so that a
//! bug in kodiai's verification cannot hide behind the same bug in the test.

use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The webhook secret every server of the tests (`TestApp`) has unless the test sets `GITHUB_WEBHOOK_SECRET`.
pub const WEBHOOK_SECRET: &str = "kodiai-test-webhook-secret";

/// `sha256=<hex>` of `body` under `secret`, as GitHub sends it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The fixtures folder, in this repository: `crates/test-support/fixtures/github-webhooks`,
/// `<event>/<file>.json`. It covers every routing rule of the ingress.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/github-webhooks")
}

/// The full set of octokit's examples (97 payloads, same layout) at
/// `../shared/fixtures/github-webhooks` beside the repository, when this machine has it: an
/// optional extra check. `None` where it is absent (a fresh clone); the tests that use it say
/// that they skipped it. No test needs it.
pub fn shared_fixtures_dir() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/github-webhooks");
    dir.is_dir().then_some(dir)
}

/// Every payload of a fixtures folder (`dir/<event>/<file>`, folders starting with `_` left
/// out) as (event, file name, the file's exact bytes), sorted by event and file.
pub fn every_fixture(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut all = Vec::new();
    let events = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("the fixtures folder {}: {e}", dir.display()));
    for entry in events {
        let path = entry.unwrap().path();
        let event = path.file_name().unwrap().to_str().unwrap().to_owned();
        if event.starts_with('_') || !path.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&path).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_str().unwrap().to_owned();
            all.push((event.clone(), name, std::fs::read(&file).unwrap()));
        }
    }
    all.sort();
    all
}

/// One fixture (`event/file.json`), parsed.
pub fn fixture(path: &str) -> serde_json::Value {
    let full = fixtures_dir().join(path);
    let text = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// A fresh delivery id, as GitHub's GUIDs look.
pub fn delivery_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// One delivery to send: what GitHub would send, with knobs to break it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub delivery_id: String,
    pub body: Vec<u8>,
    /// `None`: no `X-Hub-Signature-256` header.
    pub signature: Option<String>,
    pub content_type: &'static str,
}

impl Delivery {
    /// `payload` as JSON, signed with [`WEBHOOK_SECRET`], with a fresh delivery id.
    pub fn new(event: &str, payload: &serde_json::Value) -> Self {
        Self::raw(event, serde_json::to_vec(payload).expect("JSON"))
    }

    /// These exact bytes, signed with [`WEBHOOK_SECRET`], with a fresh delivery id.
    pub fn raw(event: &str, body: Vec<u8>) -> Self {
        Self {
            event: event.to_owned(),
            delivery_id: delivery_id(),
            signature: Some(signature(WEBHOOK_SECRET, &body)),
            body,
            content_type: "application/json",
        }
    }

    pub fn id(mut self, delivery_id: &str) -> Self {
        self.delivery_id = delivery_id.to_owned();
        self
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn githubs_test_vector() {
        assert_eq!(
            super::signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
