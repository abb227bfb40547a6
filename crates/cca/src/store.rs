//! Opens the session store the operator commands work on: the one named by `SESSION_STORE` or
//! `SESSIONS_TABLE`, as the webhook reads them, else the SQLite file of `cca up`.

use std::sync::Arc;

use anyhow::Context as _;
use cca_store::{DynamoStore, SessionStore, SqliteStore};
use cca_webhook::config::StoreSpec;

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

/// Where the sessions are: the webhook's own notion, so both read the variables alike.
pub type Location = StoreSpec;

impl StoreArgs {
    /// The store named by the arguments, with the webhook's precedence: `SESSION_STORE` first,
    /// then `SESSIONS_TABLE`, then (for the operator only) the local default.
    pub fn location(&self) -> anyhow::Result<Location> {
        match StoreSpec::from_vars(
            self.session_store.as_deref(),
            self.sessions_table.as_deref(),
        )? {
            Some(spec) => Ok(spec),
            None => Ok(StoreSpec::Sqlite {
                path: DataDir::resolve(&self.data_dir)?.sessions_db(),
            }),
        }
    }
}

/// Opens the store at `location`; `None` when it is a SQLite file that does not exist yet, which
/// holds no sessions (opening it would create an empty database where the user did not ask).
pub async fn open(location: &Location) -> anyhow::Result<Option<Arc<dyn SessionStore>>> {
    match location {
        StoreSpec::Sqlite { path } => {
            if !path.exists() {
                return Ok(None);
            }
            let store = SqliteStore::open(path)
                .with_context(|| format!("cannot open the session store {location}"))?;
            Ok(Some(Arc::new(store)))
        }
        StoreSpec::Dynamo { table } => {
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
    use std::path::PathBuf;

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
            Location::Sqlite {
                path: "/x.db".into()
            }
        );
        assert_eq!(
            args(Some("dynamodb:s"), None).location().unwrap(),
            Location::Dynamo { table: "s".into() }
        );
        assert_eq!(
            args(None, Some("t")).location().unwrap(),
            Location::Dynamo { table: "t".into() }
        );
        assert_eq!(
            args(Some(""), None).location().unwrap(),
            Location::Sqlite {
                path: "/data/sessions.db".into()
            }
        );
        let err = args(Some("redis:x"), None).location().unwrap_err();
        assert!(
            err.to_string().starts_with("SESSION_STORE is invalid"),
            "{err}"
        );
    }
}
