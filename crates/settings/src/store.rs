//! Where the sessions are: `SESSION_STORE`, else `SESSIONS_TABLE`, and the store they open.

use std::sync::Arc;

use anyhow::Context as _;
use cca_store::{DynamoStore, SessionStore, SqliteStore, StoreSpec};

use crate::{Aws, ConfigError};

/// The session store's two variables (`SESSION_STORE` wins).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Session store: `dynamodb:<table>` or `sqlite:<path>`.
    #[arg(long, env = "SESSION_STORE", global = true, value_name = "STORE")]
    pub session_store: Option<String>,
    /// DynamoDB sessions table (the original's name; same as `SESSION_STORE=dynamodb:<table>`).
    #[arg(long, env = "SESSIONS_TABLE", global = true, value_name = "TABLE")]
    pub sessions_table: Option<String>,
}

impl StoreArgs {
    /// The store named, `None` when neither variable is set (empty counts as unset).
    pub fn spec(&self) -> Result<Option<StoreSpec>, ConfigError> {
        StoreSpec::from_vars(
            self.session_store.as_deref(),
            self.sessions_table.as_deref(),
        )
        .map_err(|e| ConfigError::Invalid {
            var: "SESSION_STORE",
            reason: format!("{:?} is neither dynamodb:<table> nor sqlite:<path>", e.0),
        })
    }

    /// The store named; one of the variables is required.
    pub fn required(&self) -> Result<StoreSpec, ConfigError> {
        self.spec()?.ok_or(ConfigError::Missing {
            var: "SESSION_STORE",
            why: "set SESSION_STORE=sqlite:<path> or dynamodb:<table> (or SESSIONS_TABLE)",
        })
    }
}

/// Opens the store at `spec` (an SQLite file is created when missing).
pub async fn open_store(spec: &StoreSpec, aws: &Aws) -> anyhow::Result<Arc<dyn SessionStore>> {
    Ok(match spec {
        StoreSpec::Dynamo { table } => Arc::new(DynamoStore::new(
            aws_sdk_dynamodb::Client::new(aws.config().await),
            table.clone(),
        )),
        StoreSpec::Sqlite { path } => Arc::new(
            SqliteStore::open(path)
                .with_context(|| format!("cannot open the session store {spec}"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(store: Option<&str>, table: Option<&str>) -> StoreArgs {
        StoreArgs {
            session_store: store.map(str::to_owned),
            sessions_table: table.map(str::to_owned),
        }
    }

    #[test]
    fn errors_name_the_variable_and_the_table_alone_means_dynamodb() {
        let missing = args(None, Some(" ")).required().unwrap_err().to_string();
        assert!(missing.starts_with("SESSION_STORE is not set"), "{missing}");
        let invalid = args(Some("redis:x"), None).spec().unwrap_err().to_string();
        assert!(invalid.starts_with("SESSION_STORE is invalid"), "{invalid}");
        assert_eq!(
            args(None, Some("t")).required().unwrap(),
            StoreSpec::Dynamo { table: "t".into() }
        );
        assert_eq!(args(None, None).spec().unwrap(), None);
    }
}
