//! Opens the session store the operator commands work on: the one named by `SESSION_STORE` or
//! `SESSIONS_TABLE`, as the webhook reads them, else the SQLite file of `cca up`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use cca_store::{DynamoStore, SessionStore, SqliteStore};

use crate::data_dir::{DataDir, DataDirArgs};

/// Which store to open.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Session store: `dynamodb:<table>` or `sqlite:<path>`. Default: the SQLite file of `cca up`.
    #[arg(long, env = "SESSION_STORE", global = true, value_name = "STORE")]
    pub session_store: Option<String>,
    /// DynamoDB sessions table (same as `--session-store dynamodb:<table>`).
    #[arg(long, env = "SESSIONS_TABLE", global = true, value_name = "TABLE")]
    pub sessions_table: Option<String>,
    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

/// Where the sessions are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dynamo(String),
    Sqlite(PathBuf),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dynamo(table) => write!(f, "dynamodb:{table}"),
            Location::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
        }
    }
}

impl StoreArgs {
    /// The store named by the arguments, with the webhook's precedence: `SESSION_STORE` first,
    /// then `SESSIONS_TABLE`, then (for the operator only) the local default.
    pub fn location(&self) -> anyhow::Result<Location> {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        if let Some(spec) = non_empty(&self.session_store) {
            return match spec.split_once(':') {
                Some(("dynamodb", table)) if !table.is_empty() => {
                    Ok(Location::Dynamo(table.to_owned()))
                }
                Some(("sqlite", path)) if !path.is_empty() => {
                    Ok(Location::Sqlite(PathBuf::from(path)))
                }
                _ => bail!("SESSION_STORE={spec:?} is neither dynamodb:<table> nor sqlite:<path>"),
            };
        }
        if let Some(table) = non_empty(&self.sessions_table) {
            return Ok(Location::Dynamo(table));
        }
        Ok(Location::Sqlite(
            DataDir::resolve(&self.data_dir)?.sessions_db(),
        ))
    }
}

/// Opens the store at `location`; `None` when it is a SQLite file that does not exist yet, which
/// holds no sessions (opening it would create an empty database where the user did not ask).
pub async fn open(location: &Location) -> anyhow::Result<Option<Arc<dyn SessionStore>>> {
    match location {
        Location::Sqlite(path) => {
            if !path.exists() {
                return Ok(None);
            }
            let store = SqliteStore::open(path)
                .with_context(|| format!("cannot open the session store {location}"))?;
            Ok(Some(Arc::new(store)))
        }
        Location::Dynamo(table) => {
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Ok(Some(Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(&aws),
                table.clone(),
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(store: Option<&str>, table: Option<&str>) -> StoreArgs {
        StoreArgs {
            session_store: store.map(str::to_owned),
            sessions_table: table.map(str::to_owned),
            data_dir: DataDirArgs {
                data_dir: Some(PathBuf::from("/data")),
            },
        }
    }

    #[test]
    fn the_store_is_chosen_as_the_webhook_chooses_it() {
        assert_eq!(
            args(Some("sqlite:/x.db"), Some("t")).location().unwrap(),
            Location::Sqlite("/x.db".into())
        );
        assert_eq!(
            args(Some("dynamodb:s"), None).location().unwrap(),
            Location::Dynamo("s".into())
        );
        assert_eq!(
            args(None, Some("t")).location().unwrap(),
            Location::Dynamo("t".into())
        );
        assert_eq!(
            args(Some(""), None).location().unwrap(),
            Location::Sqlite("/data/sessions.db".into())
        );
        let err = args(Some("redis:x"), None).location().unwrap_err();
        assert!(err.to_string().starts_with("SESSION_STORE="));
    }
}
