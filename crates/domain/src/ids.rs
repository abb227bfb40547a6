//! Identifiers as newtypes, each normalised and validated once, where it is made.
//!
//! A value of one of these types is known to be well formed, so code that receives one never
//! re-checks it, and two spellings of the same thing (`Owner/Repo`, `owner/repo`) compare equal.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("repository name {0:?} is not of the form owner/name")]
    Repo(String),
    #[error("branch name {0:?} is not a valid git branch name")]
    Branch(String),
    #[error("JIRA key {0:?} is not of the form PROJECT-123")]
    JiraKey(String),
    #[error("session id {0:?} is not a lower-case DNS label")]
    Session(String),
    #[error("login {0:?} is empty or too long")]
    Login(String),
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The normalised text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// `owner/name` of a GitHub repository, lower-cased (GitHub treats names case-insensitively, and
/// the store keys on this text, so two spellings must not make two sessions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoName(String);
string_newtype!(RepoName);

impl RepoName {
    /// Parses `owner/name`; both parts non-empty, of GitHub's characters.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.len() <= 100
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && p != "."
                && p != ".."
        };
        match s.split_once('/') {
            Some((o, n)) if ok_part(o) && ok_part(n) => Ok(Self(s.to_ascii_lowercase())),
            _ => Err(IdError::Repo(s.to_owned())),
        }
    }

    /// The owner part.
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or("", |(o, _)| o)
    }

    /// The name part.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, n)| n)
    }
}

/// A git branch name, checked against the rules of `git check-ref-format --branch` that matter
/// for names this system makes or receives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BranchName(String);
string_newtype!(BranchName);

impl BranchName {
    /// Parses a branch name (without `refs/heads/`).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = s.is_empty()
            || s.len() > 255
            || s.starts_with('/')
            || s.ends_with('/')
            || s.ends_with('.')
            || s.ends_with(".lock")
            || s.starts_with('-')
            || s.contains("..")
            || s.contains("//")
            || s.contains("@{")
            || s.bytes()
                .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b));
        if bad {
            Err(IdError::Branch(s.to_owned()))
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

/// A JIRA issue key such as `PROJ-123`, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JiraKey(String);
string_newtype!(JiraKey);

impl JiraKey {
    /// Parses `PROJECT-123` (project: a letter then letters, digits or `_`).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let up = s.to_ascii_uppercase();
        let ok = match up.rsplit_once('-') {
            Some((p, n)) => {
                p.len() <= 64
                    && p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                    && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !n.is_empty()
                    && n.len() <= 18
                    && n.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        };
        if ok {
            Ok(Self(up))
        } else {
            Err(IdError::JiraKey(s.to_owned()))
        }
    }

    /// The project part, `PROJ` of `PROJ-123`.
    pub fn project(&self) -> &str {
        self.0.rsplit_once('-').map_or("", |(p, _)| p)
    }
}

/// A GitHub login (user or bot).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Login(String);
string_newtype!(Login);

impl Login {
    /// GitHub's login rules: letters, digits and `-`, at most 39 characters, and a `[bot]`
    /// suffix for Apps. Checked strictly because logins go into API paths.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let name = s.strip_suffix("[bot]").unwrap_or(s);
        let ok = !name.is_empty()
            && name.len() <= 39
            && !name.starts_with('-')
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Login(s.to_owned()))
        }
    }
}

/// Length of a random agent session id, in base-32 characters: 16 × 5 = 80 bits, above the
/// 60 bits the spec asks for, so ids cannot be guessed or enumerated from the preview URL.
pub const AGENT_ID_LEN: usize = 16;

/// The longest session id: one DNS label under the UAT domain (63), kept to 50 as the original's
/// target group and preview names were.
pub const MAX_SESSION_ID_LEN: usize = 50;

/// Lower-case base-32 alphabet without look-alikes; every id starts with a letter so it is a
/// valid DNS label and never parses as a number.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// A session id: a lower-case DNS label, used as the preview host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);
string_newtype!(SessionId);

impl SessionId {
    /// Accepts an existing id: 1–50 characters of `[a-z0-9-]`, starting with a letter, not
    /// ending with `-`. Upper case is folded, since host names arrive in any case.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let low = s.to_ascii_lowercase();
        let ok = !low.is_empty()
            && low.len() <= MAX_SESSION_ID_LEN
            && low.as_bytes()[0].is_ascii_lowercase()
            && !low.ends_with('-')
            && low
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(low))
        } else {
            Err(IdError::Session(s.to_owned()))
        }
    }

    /// A new random agent session id from the operating system's generator.
    pub fn random_agent() -> Self {
        let mut rng = rand::rng();
        let mut s = String::with_capacity(AGENT_ID_LEN);
        // First character a letter (the alphabet's first 24 entries are letters).
        s.push(ID_ALPHABET[rng.random_range(0..24)] as char);
        for _ in 1..AGENT_ID_LEN {
            s.push(ID_ALPHABET[rng.random_range(0..32)] as char);
        }
        Self(s)
    }

    /// The preview id of a PR branch: see [`crate::naming::preview_session_id`].
    pub fn preview(branch: &BranchName) -> Self {
        Self(crate::naming::preview_session_id(branch.as_str()))
    }

    /// Whether this id names a PR preview (`tt-…`) rather than an agent session.
    pub fn is_preview(&self) -> bool {
        self.0.starts_with(crate::naming::PREVIEW_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_normalised_and_checked() {
        assert_eq!(
            RepoName::parse("Octo/Hello.World").unwrap().as_str(),
            "octo/hello.world"
        );
        for bad in ["", "octo", "/x", "x/", "a/b/c", "a b/c", "../x", "a/.."] {
            assert!(RepoName::parse(bad).is_err(), "{bad}");
        }
        let r = RepoName::parse("o/n").unwrap();
        assert_eq!((r.owner(), r.name()), ("o", "n"));
    }

    #[test]
    fn branch_names_follow_git_rules() {
        for ok in ["claude/12", "feature/a_b", "main"] {
            assert!(BranchName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a..b", "a b", "a:b", "a~1", "a.lock", "-x", "a@{1}",
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jira_keys() {
        let k = JiraKey::parse("agnts-121").unwrap();
        assert_eq!(k.as_str(), "AGNTS-121");
        assert_eq!(k.project(), "AGNTS");
        for bad in ["", "AGNTS", "AGNTS-", "-1", "1A-2", "A-B"] {
            assert!(JiraKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn logins() {
        for ok in ["octocat", "a-b", "dependabot[bot]", "A1"] {
            assert!(Login::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a b", "a/b", "&%", "[bot]", &"x".repeat(40)] {
            assert!(Login::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_ids_are_random_dns_labels() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let id = SessionId::random_agent();
            assert_eq!(id.as_str().len(), AGENT_ID_LEN);
            assert!(SessionId::parse(id.as_str()).is_ok());
            assert!(!id.is_preview());
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn session_ids_fold_case_and_refuse_bad_labels() {
        assert_eq!(SessionId::parse("AbC").unwrap().as_str(), "abc");
        for bad in ["", "1abc", "ab-", "a_b", "a.b", &"a".repeat(51)] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
    }
}
