//! Opens the session store the operator commands work on: the one named by `SESSION_STORE` or
//! `SESSIONS_TABLE`, as the webhook reads them, else the SQLite file of `cca up`.

use std::sync::Arc;

use cca_settings::{Aws, StoreSpec, open_store};
use cca_store::SessionStore;

use crate::data_dir::{DataDir, DataDirArgs};

/// Which store to open.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "operator_store")]
pub struct StoreArgs {
    // `SESSION_STORE` or `SESSIONS_TABLE`; without either, the SQLite file of `cca up`.
    #[command(flatten)]
    pub store: cca_settings::StoreArgs,
    #[command(flatten)]
    pub data_dir: DataDirArgs,
}

/// Where the sessions are: the webhook's own notion, so both read the variables alike.
pub type Location = StoreSpec;

impl StoreArgs {
    /// Whether a store is named (rather than the local default).
    pub fn is_named(&self) -> anyhow::Result<bool> {
        Ok(self.store.spec()?.is_some())
    }

    /// The store named by the arguments, with the webhook's precedence: `SESSION_STORE` first,
    /// then `SESSIONS_TABLE`, then (for the operator only) the local default.
    pub fn location(&self) -> anyhow::Result<Location> {
        match self.store.spec()? {
            Some(spec) => Ok(spec),
            None => Ok(StoreSpec::Sqlite {
                path: DataDir::resolve(&self.data_dir)?.sessions_db(),
            }),
        }
    }
}

/// Opens the store at `location`; `None` when it is a SQLite file that does not exist yet, which
/// holds no sessions (opening it would create an empty database where the user did not ask).
pub async fn open(location: &Location, aws: &Aws) -> anyhow::Result<Option<Arc<dyn SessionStore>>> {
    if let StoreSpec::Sqlite { path } = location {
        if !path.exists() {
            return Ok(None);
        }
    }
    Ok(Some(open_store(location, aws).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn args(store: Option<&str>, table: Option<&str>) -> StoreArgs {
        StoreArgs {
            store: cca_settings::StoreArgs {
                session_store: store.map(str::to_owned),
                sessions_table: table.map(str::to_owned),
            },
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
