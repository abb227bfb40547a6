//! Webhook signatures: `sha256=<hex>` HMAC-SHA256 of the raw body, checked before anything is
//! parsed, in constant time, against every accepted secret (several during a rotation).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature header.
    Missing,
    /// A header that is not `sha256=<64 hex digits>`, or no secret matches.
    Invalid,
}

/// Checks `header` (`sha256=<hex>`) against `body` under any of `secrets`.
pub fn verify(
    secrets: &[SecretString],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_sig = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Invalid)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Invalid);
    }
    let mut sig = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut sig).map_err(|_| SignatureError::Invalid)?;
    // Every secret is tried (no early exit on the first match) so timing does not reveal which
    // secret of a rotation matched.
    let mut ok = false;
    for secret in secrets {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        else {
            continue;
        };
        mac.update(body);
        ok |= mac.verify_slice(&sig).is_ok();
    }
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// The signature header value for `body` under `secret` (used by `cca replay` and tests).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(v: &[&str]) -> Vec<SecretString> {
        v.iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect()
    }

    #[test]
    fn accepts_any_rotation_secret() {
        let body = b"{\"a\":1}";
        let s = secrets(&["new-secret", "old-secret"]);
        assert_eq!(verify(&s, Some(&sign("old-secret", body)), body), Ok(()));
        assert_eq!(verify(&s, Some(&sign("new-secret", body)), body), Ok(()));
        assert_eq!(
            verify(&s, Some(&sign("other", body)), body),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn refuses_missing_and_malformed() {
        let s = secrets(&["k"]);
        let good = sign("k", b"x");
        assert_eq!(verify(&s, None, b"x"), Err(SignatureError::Missing));
        for bad in [
            "",
            "sha256=",
            "sha1=abcd",
            &good[..good.len() - 1],
            &good.replace("sha256=", "sha256=zz"),
        ] {
            assert_eq!(
                verify(&s, Some(bad), b"x"),
                Err(SignatureError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(verify(&s, Some(&good), b"y"), Err(SignatureError::Invalid));
        assert_eq!(verify(&[], Some(&good), b"x"), Err(SignatureError::Invalid));
    }
}
