//! Which store a process opens, as every binary reads it from its settings: `SESSION_STORE`
//! (`dynamodb:<table>` or `sqlite:<path>`), else `SESSIONS_TABLE` (the original's variable,
//! meaning DynamoDB). One parser, so the webhook, the proxy and the operator commands never
//! disagree on where the sessions are.

use std::fmt;
use std::path::PathBuf;

/// Where sessions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The deployed system's DynamoDB table.
    Dynamo { table: String },
    /// An SQLite file (`cca up`).
    Sqlite { path: PathBuf },
}

/// A `SESSION_STORE` value of neither form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SESSION_STORE is invalid: {0:?} is neither dynamodb:<table> nor sqlite:<path>")]
pub struct InvalidStoreSpec(pub String);

impl StoreSpec {
    /// The store named by `session_store`, else by `sessions_table`; `None` when neither is set
    /// (empty counts as unset).
    pub fn from_vars(
        session_store: Option<&str>,
        sessions_table: Option<&str>,
    ) -> Result<Option<Self>, InvalidStoreSpec> {
        if let Some(s) = session_store.map(str::trim).filter(|s| !s.is_empty()) {
            return match s.split_once(':') {
                Some(("dynamodb", t)) if !t.is_empty() => Ok(Some(StoreSpec::Dynamo {
                    table: t.to_owned(),
                })),
                Some(("sqlite", p)) if !p.is_empty() => Ok(Some(StoreSpec::Sqlite {
                    path: PathBuf::from(p),
                })),
                _ => Err(InvalidStoreSpec(s.to_owned())),
            };
        }
        Ok(sessions_table
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| StoreSpec::Dynamo {
                table: t.to_owned(),
            }))
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Dynamo { table } => write!(f, "dynamodb:{table}"),
            StoreSpec::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_variables_and_their_precedence() {
        let spec = |a, b| StoreSpec::from_vars(a, b);
        assert_eq!(
            spec(Some("sqlite:/x.db"), Some("t")),
            Ok(Some(StoreSpec::Sqlite {
                path: "/x.db".into()
            }))
        );
        assert_eq!(
            spec(Some(" dynamodb:s "), None),
            Ok(Some(StoreSpec::Dynamo { table: "s".into() }))
        );
        assert_eq!(
            spec(None, Some("t")),
            Ok(Some(StoreSpec::Dynamo { table: "t".into() }))
        );
        assert_eq!(spec(Some(""), Some("")), Ok(None));
        let err = spec(Some("redis:x"), None).unwrap_err();
        assert!(err.to_string().starts_with("SESSION_STORE is invalid"));
        assert!(spec(Some("sqlite:"), None).is_err());
        assert_eq!(
            StoreSpec::Sqlite { path: "/a".into() }.to_string(),
            "sqlite:/a"
        );
    }
}
