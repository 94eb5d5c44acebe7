//! Webhook signatures: GitHub signs each delivery's exact body with HMAC-SHA256 under the
//! webhook secret and sends `X-Hub-Signature-256: sha256=<hex>`. [`WebhookVerifier`] checks
//! that header against one or more secrets (several while a secret is being rotated), in
//! constant time, before anything reads the body.
//!
//! The SHA-1 header (`X-Hub-Signature`) is never accepted: GitHub sends both, and SHA-1 alone
//! is not enough.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// The header GitHub puts the signature in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused. The messages never quote the signature or a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The server has no webhook secret, so nothing can be verified.
    #[error("webhooks are disabled: this server has no GITHUB_WEBHOOK_SECRET set")]
    NoSecret,
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header (the SHA-1 X-Hub-Signature alone is not accepted)")]
    Missing,
    /// The header is not `sha256=` and 64 hex digits.
    #[error("malformed X-Hub-Signature-256 header: expected sha256=<64 hex digits>")]
    Malformed,
    /// Well-formed, but no configured secret produces it for this body.
    #[error("the X-Hub-Signature-256 signature does not match the body")]
    Mismatch,
}

/// Checks webhook signatures against the configured secrets.
#[derive(Clone)]
pub struct WebhookVerifier {
    secrets: Vec<SecretString>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl WebhookVerifier {
    /// A verifier accepting a signature made with any of `secrets` (the current one first, then
    /// the ones being rotated out). Empty secrets are dropped: an empty key would let anyone sign.
    pub fn new(secrets: impl IntoIterator<Item = SecretString>) -> Self {
        Self {
            secrets: secrets
                .into_iter()
                .filter(|s| !s.expose_secret().is_empty())
                .collect(),
        }
    }

    /// Whether any secret is configured.
    pub fn is_enabled(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Verifies `header` (the value of `X-Hub-Signature-256`, if sent) against `body`.
    pub fn verify(&self, body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
        if self.secrets.is_empty() {
            return Err(SignatureError::NoSecret);
        }
        let header = header.ok_or(SignatureError::Missing)?;
        let expected = parse_header(header)?;
        // Every secret is tried, so the time taken does not tell which one matched.
        let mut matched = false;
        for secret in &self.secrets {
            matched |= mac(secret.expose_secret().as_bytes(), body)
                .verify_slice(&expected)
                .is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// `sha256=<hex>` → the 32 bytes.
fn parse_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let hex_digits = header
        .trim_ascii()
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| SignatureError::Malformed)?;
    Ok(bytes)
}

#[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` under `secret`: for tests, the
/// benchmark and anyone replaying a delivery by hand.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn verifier(secrets: &[&str]) -> WebhookVerifier {
        WebhookVerifier::new(secrets.iter().map(|s| SecretString::from(*s)))
    }

    #[test]
    fn githubs_documented_test_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET.as_bytes(), BODY), SIGNATURE);
        assert_eq!(
            verifier(&[SECRET]).verify(BODY, Some(SIGNATURE.as_bytes())),
            Ok(())
        );
    }

    #[test]
    fn every_flipped_bit_in_body_or_signature_is_refused() {
        let v = verifier(&[SECRET]);
        for i in 0..BODY.len() * 8 {
            let mut body = BODY.to_vec();
            body[i / 8] ^= 1 << (i % 8);
            assert_eq!(
                v.verify(&body, Some(SIGNATURE.as_bytes())),
                Err(SignatureError::Mismatch),
                "body bit {i}"
            );
        }
        let digits = SIGNATURE.strip_prefix("sha256=").unwrap();
        let mut bytes = hex::decode(digits).unwrap();
        for i in 0..bytes.len() * 8 {
            bytes[i / 8] ^= 1 << (i % 8);
            let header = format!("sha256={}", hex::encode(&bytes));
            assert_eq!(
                v.verify(BODY, Some(header.as_bytes())),
                Err(SignatureError::Mismatch),
                "signature bit {i}"
            );
            bytes[i / 8] ^= 1 << (i % 8);
        }
    }

    #[test]
    fn missing_malformed_and_sha1_headers_are_refused() {
        let v = verifier(&[SECRET]);
        assert_eq!(v.verify(BODY, None), Err(SignatureError::Missing));
        for header in [
            "",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
            "sha256=757107ea",
            "sha256=zz7107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "SHA256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ] {
            assert_eq!(
                v.verify(BODY, Some(header.as_bytes())),
                Err(SignatureError::Malformed),
                "{header:?}"
            );
        }
    }

    #[test]
    fn any_of_several_secrets_verifies_while_rotating() {
        let v = verifier(&["the new secret", SECRET]);
        assert_eq!(v.verify(BODY, Some(SIGNATURE.as_bytes())), Ok(()));
        let new = sign(b"the new secret", BODY);
        assert_eq!(v.verify(BODY, Some(new.as_bytes())), Ok(()));
        let other = sign(b"a retired secret", BODY);
        assert_eq!(
            v.verify(BODY, Some(other.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn without_a_secret_nothing_verifies() {
        let v = verifier(&[""]);
        assert!(!v.is_enabled());
        assert_eq!(
            v.verify(BODY, Some(sign(b"", BODY).as_bytes())),
            Err(SignatureError::NoSecret)
        );
    }
}
