//! Sealed values for the sign-in gate: AES-256-GCM (authenticated encryption, so a sealed value
//! is both signed and unreadable), with a random nonce per value and the value's purpose and
//! host as associated data. A value sealed for one purpose or one preview host does not open as
//! another: the browser could carry it anywhere, the key is what it is checked against.
//!
//! Text form: `base64url(nonce ‖ ciphertext ‖ tag)`, no padding, safe in a cookie, a query
//! string and a `state` parameter.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a sealed value is for; part of the associated data, so one never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session cookie of one preview host.
    Cookie,
    /// The `state` of a GitHub authorization: where to return, and the browser's binding.
    State,
    /// The one-time code the auth host hands a preview host.
    Code,
    /// The binding cookie a preview host sets when a sign-in starts.
    Binding,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Cookie => b"cca-preview-cookie-v1",
            Self::State => b"cca-preview-state-v1",
            Self::Code => b"cca-preview-code-v1",
            Self::Binding => b"cca-preview-binding-v1",
        }
    }
}

/// Longest text [`Sealer::open`] looks at: a cookie is well under a kilobyte; anything longer is
/// refused before any work.
pub const MAX_SEALED_LEN: usize = 4096;

/// Seals and opens values under one key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer whose key is derived from `secret` (HMAC-SHA256 of a fixed label), so any secret
    /// of enough entropy, such as the App's client secret, serves.
    pub fn from_secret(secret: &[u8]) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let key = hmac::sign(&derive, b"cca preview gate key v1");
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_ref())
            .expect("a SHA-256 output is an AES-256 key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// `plain` sealed for `purpose` on `host`.
    pub fn seal(&self, purpose: Purpose, host: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("the system random source works");
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(purpose, host)),
                &mut body,
            )
            .expect("AES-GCM seals any value this small");
        out.extend_from_slice(&body);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The plain value, when `text` was sealed by this key for `purpose` on `host` and nobody
    /// changed a bit of it.
    pub fn open(&self, purpose: Purpose, host: &str, text: &str) -> Option<Vec<u8>> {
        if text.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut raw = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[..NONCE_LEN]);
        let plain_len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(purpose, host)),
                &mut raw[NONCE_LEN..],
            )
            .ok()?
            .len();
        raw.drain(..NONCE_LEN);
        raw.truncate(plain_len);
        Some(raw)
    }
}

/// The SHA-256 of `value`, hex: how a browser's binding nonce travels without the nonce.
pub fn digest_hex(value: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `n` random bytes as base64url text (nonces and one-time values).
pub fn random_text(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn aad(purpose: Purpose, host: &str) -> Vec<u8> {
    let mut aad = purpose.label().to_vec();
    aad.push(0);
    aad.extend_from_slice(host.to_ascii_lowercase().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_purpose_host_and_key() {
        let sealer = Sealer::from_secret(b"a client secret of some length");
        let text = sealer.seal(Purpose::Cookie, "a.preview.test", b"alice");
        assert_eq!(
            sealer
                .open(Purpose::Cookie, "A.preview.test", &text)
                .as_deref(),
            Some(&b"alice"[..])
        );
        assert_eq!(sealer.open(Purpose::Cookie, "b.preview.test", &text), None);
        assert_eq!(sealer.open(Purpose::Code, "a.preview.test", &text), None);
        let other = Sealer::from_secret(b"another secret");
        assert_eq!(other.open(Purpose::Cookie, "a.preview.test", &text), None);
        // Every bit counts.
        let mut raw = URL_SAFE_NO_PAD.decode(&text).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(&raw);
            assert_eq!(
                sealer.open(Purpose::Cookie, "a.preview.test", &tampered),
                None,
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        for junk in ["", "x", "!!!!", &"A".repeat(MAX_SEALED_LEN + 1)] {
            assert_eq!(sealer.open(Purpose::Cookie, "a.preview.test", junk), None);
        }
        // Two seals of one value differ (random nonce).
        assert_ne!(
            text,
            sealer.seal(Purpose::Cookie, "a.preview.test", b"alice")
        );
    }
}
