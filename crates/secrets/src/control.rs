//! The control key: the secret from which the webhook and the agent both derive a session's
//! control-API token, so no token is ever stored or passed to the container.

use secrecy::SecretString;

use crate::SecretError;
use crate::fields::malformed;

/// Shortest control key accepted, in bytes: 32 hex characters carry 128 bits, enough for an
/// HMAC key nobody can guess; anything shorter is more likely a placeholder than a generated key
/// (`openssl rand -hex 32` gives 64).
pub const MIN_CONTROL_KEY_LEN: usize = 32;

/// The control key, stored in Secrets Manager as a plain string.
#[derive(Debug, Clone)]
pub struct ControlSecret(pub SecretString);

/// Parses the control key of the secret named `name`: surrounding whitespace is dropped, and
/// a key shorter than [`MIN_CONTROL_KEY_LEN`] is refused.
pub fn parse_control(name: &str, text: &str) -> Result<ControlSecret, SecretError> {
    let key = text.trim();
    if key.len() < MIN_CONTROL_KEY_LEN {
        return Err(malformed(
            name,
            format!(
                "the control key has {} bytes; at least {MIN_CONTROL_KEY_LEN} are needed",
                key.len()
            ),
        ));
    }
    Ok(ControlSecret(SecretString::from(key)))
}
