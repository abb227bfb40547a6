//! The per-session token of an agent's control API.
//!
//! Only the webhook and the agent hold the control key (a secret in Secrets Manager, or a local
//! file), so only they can derive a session's token: `hex(HMAC-SHA256(key, "cca-control-v1:" +
//! session id))`. The id alone, which is visible in preview URLs, grants nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::SessionId;

/// Domain separation: a token for another purpose made with the same key can never equal this.
const CONTEXT: &[u8] = b"cca-control-v1:";

/// The bearer token of a session's control API.
pub fn control_token(key: &[u8], session: &SessionId) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(CONTEXT);
    mac.update(session.as_str().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a presented token in constant time.
pub fn verify_control_token(key: &[u8], session: &SessionId, presented: &str) -> bool {
    let Ok(bytes) = hex::decode(presented) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(CONTEXT);
    mac.update(session.as_str().as_bytes());
    mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_per_session_and_per_key() {
        let a = SessionId::parse("abc").unwrap();
        let b = SessionId::parse("abd").unwrap();
        let t = control_token(b"k1", &a);
        assert!(verify_control_token(b"k1", &a, &t));
        assert!(!verify_control_token(b"k1", &b, &t));
        assert!(!verify_control_token(b"k2", &a, &t));
        assert!(!verify_control_token(b"k1", &a, "zz"));
        assert!(!verify_control_token(b"k1", &a, ""));
    }
}
