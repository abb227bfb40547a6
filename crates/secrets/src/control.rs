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

/// Where a process gets the control key: Secrets Manager (`CONTROL_SECRET_ARN`, deployed), or the
/// value itself (`CCA_CONTROL_SECRET`, `cca up`), checked as a stored key is.
#[derive(Debug, Clone)]
pub enum ControlSource {
    SecretArn(String),
    Local(SecretString),
}

impl ControlSource {
    /// From the two variables, the ARN winning; `why` says what needs the key, for the error
    /// when neither is set.
    pub fn from_vars(
        arn: Option<&str>,
        local: Option<&str>,
        why: &'static str,
    ) -> Result<Self, cca_domain::config::ConfigError> {
        use cca_domain::config::ConfigError;
        let set = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match (set(arn), set(local)) {
            (Some(arn), _) => Ok(ControlSource::SecretArn(arn)),
            (None, Some(key)) => parse_control("CCA_CONTROL_SECRET", &key)
                .map(|k| ControlSource::Local(k.0))
                .map_err(|e| ConfigError::Invalid {
                    var: "CCA_CONTROL_SECRET",
                    reason: e.to_string(),
                }),
            (None, None) => Err(ConfigError::Missing {
                var: "CONTROL_SECRET_ARN",
                why,
            }),
        }
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_arn_wins_and_a_local_key_is_checked_as_a_stored_one() {
        let long = "k".repeat(MIN_CONTROL_KEY_LEN);
        assert!(matches!(
            ControlSource::from_vars(Some("arn:x"), Some(&long), "w"),
            Ok(ControlSource::SecretArn(a)) if a == "arn:x"
        ));
        match ControlSource::from_vars(None, Some(&format!(" {long} ")), "w") {
            Ok(ControlSource::Local(k)) => assert_eq!(k.expose_secret(), long),
            other => panic!("{other:?}"),
        }
        let short = ControlSource::from_vars(None, Some("short"), "w").unwrap_err();
        assert!(
            short
                .to_string()
                .starts_with("CCA_CONTROL_SECRET is invalid"),
            "{short}"
        );
        let none = ControlSource::from_vars(Some(""), None, "needed").unwrap_err();
        assert_eq!(none.to_string(), "CONTROL_SECRET_ARN is not set: needed");
    }
}
