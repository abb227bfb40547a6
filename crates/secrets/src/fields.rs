//! Reading the fields of a secret's JSON object with errors that name the field, never the value.
//!
//! `serde`'s own messages quote the offending value ("invalid type: string \"ghp_…\""), so the
//! JSON is parsed into a [`Value`] and each field is read here by hand.

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::SecretError;

/// A secret's JSON object, with the secret's name for error messages.
pub(crate) struct Fields<'a> {
    secret: &'a str,
    map: Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Parses `json` as an object. Syntax errors from `serde_json` give a line and column only.
    pub(crate) fn parse(secret: &'a str, json: &str) -> Result<Self, SecretError> {
        match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(map)) => Ok(Self { secret, map }),
            Ok(other) => Err(malformed(
                secret,
                format!("expected a JSON object, found {}", kind(&other)),
            )),
            Err(e) => Err(malformed(
                secret,
                format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            )),
        }
    }

    /// An error about this secret.
    pub(crate) fn error(&self, reason: impl Into<String>) -> SecretError {
        malformed(self.secret, reason.into())
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    /// A required, non-empty string, trimmed: a value pasted into the console often carries a
    /// trailing newline, which would silently change every signature made with it.
    pub(crate) fn string(&self, field: &str) -> Result<String, SecretError> {
        self.opt_string(field)?
            .ok_or_else(|| self.error(format!("missing field `{field}`")))
    }

    /// An optional string; absent, `null` and empty mean `None`.
    pub(crate) fn opt_string(&self, field: &str) -> Result<Option<String>, SecretError> {
        match self.present(field) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(other) => Err(self.error(format!(
                "field `{field}` must be a string, found {}",
                kind(other)
            ))),
        }
    }

    /// A required secret string.
    pub(crate) fn secret(&self, field: &str) -> Result<SecretString, SecretError> {
        self.string(field).map(SecretString::from)
    }

    /// An optional non-negative integer, given as a JSON number or a numeric string (the
    /// console's key/value editor stores every value as a string).
    pub(crate) fn opt_u64(&self, field: &str) -> Result<Option<u64>, SecretError> {
        let bad = || {
            self.error(format!(
                "field `{field}` must be a whole number or a string of digits"
            ))
        };
        match self.present(field) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A required integer, as [`Self::opt_u64`].
    pub(crate) fn u64(&self, field: &str) -> Result<u64, SecretError> {
        self.opt_u64(field)?
            .ok_or_else(|| self.error(format!("missing field `{field}`")))
    }

    /// An optional array of secret strings (older webhook secrets kept during a rotation);
    /// empty entries are skipped.
    pub(crate) fn secret_list(&self, field: &str) -> Result<Vec<SecretString>, SecretError> {
        match self.present(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) if s.trim().is_empty() => None,
                    Value::String(s) => Some(Ok(SecretString::from(s.trim()))),
                    other => Some(Err(self.error(format!(
                        "field `{field}[{i}]` must be a string, found {}",
                        kind(other)
                    )))),
                })
                .collect(),
            Some(other) => Err(self.error(format!(
                "field `{field}` must be an array of strings, found {}",
                kind(other)
            ))),
        }
    }

    /// The raw value of a field, for shapes read by their own rules.
    pub(crate) fn value(&self, field: &str) -> Option<&Value> {
        self.present(field)
    }
}

pub(crate) fn malformed(secret: &str, reason: String) -> SecretError {
    SecretError::Malformed {
        secret: secret.to_owned(),
        reason,
    }
}

/// The JSON type of a value, for messages that must not show the value itself.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
