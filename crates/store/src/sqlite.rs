//! The SQLite session store, for `cca up` and other single-machine setups.
//!
//! One connection behind a mutex, each operation one `BEGIN IMMEDIATE` transaction run on the
//! blocking pool: the write lock is taken before the first read, so a check and the write that
//! depends on it cannot interleave with another writer, whether that writer is a task of this
//! process or another process on the same file (WAL mode lets readers proceed meanwhile).
//! Active keys live in `claims`, webhook deliveries in `deliveries`; both mirror the DynamoDB
//! store's pointer and delivery items.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use cca_domain::session::SessionPatch;
use cca_domain::{ActiveKey, RepoName, Session, SessionId, Status};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::record::{self, CLEARED_BY_RELAUNCH, FIELDS, Fields, Value, backend};
use crate::{
    DELIVERY_LEASE_SECS, DELIVERY_TTL_SECS, ListFilter, SessionStore, StoreError, StoreResult,
};

/// Version of the schema below, kept in `PRAGMA user_version`. A file written by a newer build is
/// refused rather than misread.
const SCHEMA_VERSION: i64 = 4;

/// How long an operation waits for another process's write lock before failing. Operations hold
/// the lock for milliseconds, so waiting 5 s means the other process is stuck, not busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    session_id        TEXT PRIMARY KEY NOT NULL,
    session_type      TEXT NOT NULL,
    source            TEXT NOT NULL,
    repo_full_name    TEXT NOT NULL,
    issue_number      INTEGER,
    pr_number         INTEGER,
    branch_name       TEXT NOT NULL,
    jira_issue_key    TEXT,
    status            TEXT NOT NULL,
    image_channel     TEXT NOT NULL,
    installation_id   INTEGER,
    initial_prompt    TEXT,
    task_arn          TEXT,
    container_ip      TEXT,
    app_port          INTEGER,
    control_port      INTEGER,
    uat_url           TEXT,
    claude_session_id TEXT,
    cost_usd          REAL,
    turns             INTEGER,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    last_activity     INTEGER,
    heartbeat_at      INTEGER,
    ttl               INTEGER,
    preview_public    INTEGER,
    plan_mode         INTEGER,
    runs              INTEGER,
    prompt_threads    TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_by_pr ON sessions (repo_full_name, pr_number);
CREATE TABLE IF NOT EXISTS claims (
    key    TEXT PRIMARY KEY NOT NULL,
    owner  TEXT NOT NULL,
    active INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deliveries (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS deliveries_by_expiry ON deliveries (expires_at);
";

/// Sessions in a SQLite file (or in memory, for tests).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if absent) the database at `path`, in WAL mode, with the schema in place.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| backend("open", format_args!("{}: {e}", path.display())))?;
        Self::init(conn)
    }

    /// A private database that lives as long as the store.
    pub fn in_memory() -> StoreResult<Self> {
        let conn = Connection::open_in_memory().map_err(|e| backend("open", e))?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        let err = |e: rusqlite::Error| backend("open", e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        // An in-memory database answers "memory": WAL only applies to files.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        // In WAL mode NORMAL loses at most the last transactions on power loss, never consistency.
        conn.execute_batch("PRAGMA synchronous = NORMAL")
            .map_err(err)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA).map_err(err)?;
                tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                    .map_err(err)?;
            }
            // Version 1 had no heartbeat column, version 2 no preview_public, version 3 none of
            // plan_mode, runs and prompt_threads: each older file gains the columns it lacks,
            // in order.
            1..=3 => {
                let added = [
                    "ALTER TABLE sessions ADD COLUMN heartbeat_at INTEGER;",
                    "ALTER TABLE sessions ADD COLUMN preview_public INTEGER;",
                    "ALTER TABLE sessions ADD COLUMN plan_mode INTEGER; ALTER TABLE sessions ADD COLUMN runs INTEGER; ALTER TABLE sessions ADD COLUMN prompt_threads TEXT;",
                ];
                let from = usize::try_from(version - 1).unwrap_or_default();
                tx.execute_batch(&format!(
                    "{} PRAGMA user_version = {SCHEMA_VERSION}",
                    added[from..].concat()
                ))
                .map_err(err)?;
            }
            SCHEMA_VERSION => {}
            newer => {
                return Err(backend(
                    "open",
                    format_args!(
                        "schema version {newer} is newer than this build's {SCHEMA_VERSION}"
                    ),
                ));
            }
        }
        tx.commit().map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one immediate transaction on the blocking pool, committing when it succeeds.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic in another operation left its transaction rolled back when it unwound, so
            // the connection is still consistent and the poison can be ignored.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| backend(op, e))?;
            let out = f(&tx)?;
            tx.commit().map_err(|e| backend(op, e))?;
            Ok(out)
        })
        .await
        .map_err(|e| backend(op, e))?
    }
}

/// Column list of a `SELECT` of whole records.
fn columns() -> String {
    FIELDS.join(", ")
}

fn sql_value(op: &str, field: &str, v: Option<Value<'_>>) -> StoreResult<SqlValue> {
    Ok(match v {
        None => SqlValue::Null,
        Some(Value::Text(s)) => SqlValue::Text(s.to_owned()),
        Some(Value::Int(n)) => SqlValue::Integer(n),
        Some(Value::UInt(n)) => SqlValue::Integer(
            i64::try_from(n)
                .map_err(|_| backend(op, format_args!("{field} {n} is too large for SQLite")))?,
        ),
        Some(Value::Real(x)) => SqlValue::Real(x),
    })
}

struct SqlRow<'a, 'b>(&'a Row<'b>);

impl SqlRow<'_, '_> {
    fn get(&self, field: &'static str) -> Result<ValueRef<'_>, String> {
        self.0.get_ref(field).map_err(|e| e.to_string())
    }
}

impl Fields for SqlRow<'_, '_> {
    fn text(&self, field: &'static str) -> Result<Option<String>, String> {
        match self.get(field)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(t) => String::from_utf8(t.to_vec())
                .map(Some)
                .map_err(|_| "not valid UTF-8".to_owned()),
            other => Err(format!("expected text, found {}", other.data_type())),
        }
    }

    fn integer(&self, field: &'static str) -> Result<Option<i128>, String> {
        match self.get(field)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(n) => Ok(Some(n.into())),
            other => Err(format!("expected an integer, found {}", other.data_type())),
        }
    }

    fn real(&self, field: &'static str) -> Result<Option<f64>, String> {
        match self.get(field)? {
            ValueRef::Null => Ok(None),
            ValueRef::Real(x) => Ok(Some(x)),
            ValueRef::Integer(n) => Ok(Some(n as f64)),
            other => Err(format!("expected a number, found {}", other.data_type())),
        }
    }
}

/// Runs a `SELECT` of whole records and decodes every row.
fn query_sessions(
    op: &str,
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<Session>> {
    let mut stmt = tx.prepare_cached(sql).map_err(|e| backend(op, e))?;
    let mut rows = stmt.query(params).map_err(|e| backend(op, e))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| backend(op, e))? {
        out.push(record::session_from(op, &SqlRow(row))?);
    }
    Ok(out)
}

fn load(op: &str, tx: &Transaction<'_>, id: &SessionId) -> StoreResult<Option<Session>> {
    let sql = format!("SELECT {} FROM sessions WHERE session_id = ?1", columns());
    Ok(query_sessions(op, tx, &sql, [id.as_str()])?.pop())
}

fn load_existing(op: &str, tx: &Transaction<'_>, id: &SessionId) -> StoreResult<Session> {
    load(op, tx, id)?.ok_or_else(|| StoreError::NotFound(id.clone()))
}

/// The claim on `key`: its owner and whether it is still active.
fn claim(
    op: &str,
    tx: &Transaction<'_>,
    key: &ActiveKey,
) -> StoreResult<Option<(SessionId, bool)>> {
    let row: Option<(String, i64)> = tx
        .query_row(
            "SELECT owner, active FROM claims WHERE key = ?1",
            [key.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| backend(op, e))?;
    row.map(|(owner, active)| {
        SessionId::parse(&owner)
            .map(|owner| (owner, active != 0))
            .map_err(|e| backend(op, format_args!("corrupt claim {key}: owner: {e}")))
    })
    .transpose()
}

fn take_claim(
    op: &str,
    tx: &Transaction<'_>,
    key: &ActiveKey,
    owner: &SessionId,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO claims (key, owner, active) VALUES (?1, ?2, 1)
         ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, active = 1",
        params![key.as_str(), owner.as_str()],
    )
    .map_err(|e| backend(op, e))?;
    Ok(())
}

/// Writes `sets` (and clears `clears`) on one session row, then reads the row back.
fn write_fields(
    op: &str,
    tx: &Transaction<'_>,
    id: &SessionId,
    sets: Vec<(&'static str, Value<'_>)>,
    clears: &[&str],
) -> StoreResult<Session> {
    let mut assignments = Vec::new();
    let mut values = Vec::new();
    for (field, v) in sets {
        values.push(sql_value(op, field, Some(v))?);
        assignments.push(format!("{field} = ?{}", values.len()));
    }
    assignments.extend(clears.iter().map(|field| format!("{field} = NULL")));
    values.push(SqlValue::Text(id.as_str().to_owned()));
    let sql = format!(
        "UPDATE sessions SET {} WHERE session_id = ?{}",
        assignments.join(", "),
        values.len()
    );
    tx.execute(&sql, rusqlite::params_from_iter(values))
        .map_err(|e| backend(op, e))?;
    load_existing(op, tx, id)
}

/// A record listing: `WHERE` text and its parameters come from the caller.
fn list_sql(filter: &str, limit: bool) -> String {
    format!(
        "SELECT {} FROM sessions {filter} ORDER BY created_at DESC, session_id ASC{}",
        columns(),
        if limit { " LIMIT ?" } else { "" }
    )
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, session: &Session) -> StoreResult<()> {
        const OP: &str = "create";
        if session.status != Status::Provisioning {
            return Err(StoreError::IllegalTransition {
                id: session.session_id.clone(),
                from: session.status,
                to: Status::Provisioning,
            });
        }
        let session = session.clone();
        self.run(OP, move |tx| {
            let key = session.active_key();
            if let Some((owner, true)) = claim(OP, tx, &key)? {
                return Err(StoreError::ActiveExists {
                    key: key.to_string(),
                    existing: owner,
                });
            }
            if load(OP, tx, &session.session_id)?.is_some() {
                return Err(StoreError::IdTaken(session.session_id.clone()));
            }
            let values = record::record_values(OP, &session)?
                .into_iter()
                .map(|(field, v)| sql_value(OP, field, v))
                .collect::<StoreResult<Vec<_>>>()?;
            let placeholders = (1..=FIELDS.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>();
            let sql = format!(
                "INSERT INTO sessions ({}) VALUES ({})",
                columns(),
                placeholders.join(", ")
            );
            tx.execute(&sql, rusqlite::params_from_iter(values))
                .map_err(|e| backend(OP, e))?;
            take_claim(OP, tx, &key, &session.session_id)
        })
        .await
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        let id = id.clone();
        self.run("get", move |tx| load("get", tx, &id)).await
    }

    async fn transition(
        &self,
        id: &SessionId,
        to: Status,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session> {
        const OP: &str = "transition";
        let id = id.clone();
        self.run(OP, move |tx| {
            let current = load_existing(OP, tx, &id)?;
            if !current.status.can_transition_to(to) {
                return Err(StoreError::IllegalTransition {
                    id,
                    from: current.status,
                    to,
                });
            }
            let mut sets = record::patch_values(OP, &id, &patch)?;
            sets.push(("status", Value::Text(to.as_str())));
            sets.push(("updated_at", Value::Int(now)));
            if to.is_terminal() {
                sets.push((
                    "ttl",
                    Value::Int(now + cca_domain::session::TERMINAL_TTL_SECS),
                ));
                // Only this session's own claim is released: the key may have been taken over
                // (or never claimed, for records older than claims) and then it is not ours.
                tx.execute(
                    "UPDATE claims SET active = 0 WHERE key = ?1 AND owner = ?2",
                    params![current.active_key().as_str(), id.as_str()],
                )
                .map_err(|e| backend(OP, e))?;
            }
            write_fields(OP, tx, &id, sets, &[])
        })
        .await
    }

    async fn update(&self, id: &SessionId, patch: SessionPatch, now: i64) -> StoreResult<Session> {
        const OP: &str = "update";
        let id = id.clone();
        self.run(OP, move |tx| {
            let current = load_existing(OP, tx, &id)?;
            if current.status.is_terminal() {
                return Err(StoreError::IllegalTransition {
                    id,
                    from: current.status,
                    to: current.status,
                });
            }
            let mut sets = record::patch_values(OP, &id, &patch)?;
            sets.push(("updated_at", Value::Int(now)));
            write_fields(OP, tx, &id, sets, &[])
        })
        .await
    }

    async fn relaunch(
        &self,
        id: &SessionId,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session> {
        const OP: &str = "relaunch";
        let id = id.clone();
        self.run(OP, move |tx| {
            let current = load_existing(OP, tx, &id)?;
            if !current.status.is_terminal() {
                return Err(StoreError::IllegalTransition {
                    id,
                    from: current.status,
                    to: Status::Provisioning,
                });
            }
            let key = current.active_key();
            match claim(OP, tx, &key)? {
                Some((owner, true)) if owner != id => {
                    return Err(StoreError::ActiveExists {
                        key: key.to_string(),
                        existing: owner,
                    });
                }
                _ => take_claim(OP, tx, &key, &id)?,
            }
            let mut sets = record::patch_values(OP, &id, &patch)?;
            let clears: Vec<&str> = CLEARED_BY_RELAUNCH
                .into_iter()
                .filter(|field| !sets.iter().any(|(set, _)| set == field))
                .collect();
            sets.push(("status", Value::Text(Status::Provisioning.as_str())));
            sets.push(("updated_at", Value::Int(now)));
            write_fields(OP, tx, &id, sets, &clears)
        })
        .await
    }

    async fn by_active_key(&self, key: &ActiveKey) -> StoreResult<Option<Session>> {
        const OP: &str = "by_active_key";
        let key = key.clone();
        self.run(OP, move |tx| match claim(OP, tx, &key)? {
            Some((owner, _)) => load(OP, tx, &owner),
            None => Ok(None),
        })
        .await
    }

    async fn by_pr(&self, repo: &RepoName, pr_number: u64) -> StoreResult<Vec<Session>> {
        const OP: &str = "by_pr";
        let repo = repo.clone();
        let Ok(pr) = i64::try_from(pr_number) else {
            // No stored PR number can be this large, see `sql_value`.
            return Ok(Vec::new());
        };
        self.run(OP, move |tx| {
            let sql = list_sql("WHERE repo_full_name = ?1 AND pr_number = ?2", false);
            query_sessions(OP, tx, &sql, params![repo.as_str(), pr])
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> StoreResult<Vec<Session>> {
        const OP: &str = "list";
        let filter = filter.clone();
        self.run(OP, move |tx| {
            let mut params: Vec<SqlValue> = filter
                .statuses
                .iter()
                .map(|s| SqlValue::Text(s.as_str().to_owned()))
                .collect();
            let filter_sql = if params.is_empty() {
                String::new()
            } else {
                format!("WHERE status IN ({})", vec!["?"; params.len()].join(", "))
            };
            if let Some(limit) = filter.limit {
                params.push(SqlValue::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            }
            let sql = list_sql(&filter_sql, filter.limit.is_some());
            query_sessions(OP, tx, &sql, rusqlite::params_from_iter(params))
        })
        .await
    }

    async fn record_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<bool> {
        const OP: &str = "record_delivery";
        let delivery_id = delivery_id.to_owned();
        self.run(OP, move |tx| {
            // Expired ids are forgotten first, so one still present was seen within its window.
            tx.execute("DELETE FROM deliveries WHERE expires_at < ?1", [now])
                .map_err(|e| backend(OP, e))?;
            let inserted = tx
                .execute(
                    "INSERT INTO deliveries (id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (id) DO NOTHING",
                    params![delivery_id, now + DELIVERY_LEASE_SECS],
                )
                .map_err(|e| backend(OP, e))?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn finish_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<()> {
        const OP: &str = "finish_delivery";
        let delivery_id = delivery_id.to_owned();
        self.run(OP, move |tx| {
            tx.execute(
                "UPDATE deliveries SET expires_at = ?2 WHERE id = ?1",
                params![delivery_id, now + DELIVERY_TTL_SECS],
            )
            .map_err(|e| backend(OP, e))?;
            Ok(())
        })
        .await
    }

    async fn forget_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        const OP: &str = "forget_delivery";
        let delivery_id = delivery_id.to_owned();
        self.run(OP, move |tx| {
            tx.execute("DELETE FROM deliveries WHERE id = ?1", [delivery_id])
                .map_err(|e| backend(OP, e))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cca_domain::{BranchName, ImageChannel, SessionType, Source};

    fn session(id: &str) -> Session {
        let mut s = Session::new(
            SessionId::parse(id).unwrap(),
            SessionType::Agent,
            Source::Github,
            RepoName::parse("octo/hello").unwrap(),
            BranchName::parse("claude/1").unwrap(),
            ImageChannel::Latest,
            100,
        );
        s.issue_number = Some(1);
        s
    }

    #[tokio::test]
    async fn a_corrupt_row_is_a_backend_error_naming_the_session_and_field() {
        let store = SqliteStore::in_memory().unwrap();
        store.create(&session("abc")).await.unwrap();
        store
            .run("test", |tx| {
                tx.execute("UPDATE sessions SET status = 'SLEEPING'", [])
                    .map_err(|e| backend("t", e))
            })
            .await
            .unwrap();
        let err = store
            .get(&SessionId::parse("abc").unwrap())
            .await
            .unwrap_err();
        let StoreError::Backend(msg) = err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("\"abc\"") && msg.contains("status"), "{msg}");
    }

    #[tokio::test]
    async fn a_file_keeps_its_sessions_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        SqliteStore::open(&path)
            .unwrap()
            .create(&session("abc"))
            .await
            .unwrap();
        let reopened = SqliteStore::open(&path).unwrap();
        let got = reopened
            .get(&SessionId::parse("abc").unwrap())
            .await
            .unwrap();
        assert_eq!(got, Some(session("abc")));
        let conn = Connection::open(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_connections_to_one_file_let_one_create_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        let stores = [
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        ];
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = stores[i % 2].clone();
                let mut s = session(&format!("racer{i}"));
                s.issue_number = Some(7);
                tokio::spawn(async move { store.create(&s).await })
            })
            .collect();
        let mut oks = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => oks += 1,
                Err(StoreError::ActiveExists { .. }) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(oks, 1);
    }

    #[test]
    fn a_file_from_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[tokio::test]
    async fn files_of_versions_2_and_3_gain_the_columns_they_lack_and_keep_their_sessions() {
        // Each older schema is today's without the columns added since.
        let plan_and_runs = (
            "    preview_public    INTEGER,\n    plan_mode         INTEGER,\n    runs              INTEGER,\n    prompt_threads    TEXT\n",
            "    preview_public    INTEGER\n",
        );
        let v3 = SCHEMA.replace(plan_and_runs.0, plan_and_runs.1);
        let v2 = SCHEMA.replace(plan_and_runs.0, "").replace(
            "    ttl               INTEGER,\n",
            "    ttl               INTEGER\n",
        );
        for (version, schema) in [(2, v2), (3, v3)] {
            assert_ne!(schema, SCHEMA);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("sessions.db");
            {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch(&schema).unwrap();
                conn.execute_batch(&format!("PRAGMA user_version = {version}"))
                    .unwrap();
                conn.execute(
                    "INSERT INTO sessions (session_id, session_type, source, repo_full_name, branch_name, status, image_channel, created_at, updated_at) \
                     VALUES ('old1', 'agent', 'github', 'o/r', 'claude/1', 'RUNNING', 'latest', 1, 1)",
                    [],
                )
                .unwrap();
            }
            let store = SqliteStore::open(&path).unwrap();
            let id = SessionId::parse("old1").unwrap();
            let old = store.get(&id).await.unwrap().expect("kept");
            assert!(!old.plan_mode && old.runs.is_none(), "version {version}");
            let patch = SessionPatch {
                plan_mode: Some(true),
                runs: Some(3),
                preview_public: Some(true),
                ..SessionPatch::default()
            };
            let s = store.update(&id, patch, 50).await.unwrap();
            assert!(s.plan_mode && s.preview_public, "version {version}");
            assert_eq!(s.runs, Some(3), "version {version}");
        }
    }

    #[tokio::test]
    async fn a_version_1_file_gains_the_heartbeat_column_and_keeps_its_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        {
            // A file as version 1 wrote it: the schema without `heartbeat_at`.
            let v1 = SCHEMA
                .replace("    heartbeat_at      INTEGER,\n", "")
                .replace(
                    "    ttl               INTEGER,\n    preview_public    INTEGER,\n    plan_mode         INTEGER,\n    runs              INTEGER,\n    prompt_threads    TEXT\n",
                    "    ttl               INTEGER\n",
                );
            assert_ne!(v1, SCHEMA);
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&v1).unwrap();
            conn.execute_batch("PRAGMA user_version = 1").unwrap();
            conn.execute(
                "INSERT INTO sessions (session_id, session_type, source, repo_full_name, branch_name, status, image_channel, created_at, updated_at) \
                 VALUES ('old1', 'agent', 'github', 'o/r', 'claude/1', 'RUNNING', 'latest', 1, 1)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let id = SessionId::parse("old1").unwrap();
        let old = store.get(&id).await.unwrap().expect("kept");
        assert_eq!(old.heartbeat_at, None);
        assert!(!old.preview_public);
        assert!(!old.plan_mode);
        let patch = SessionPatch {
            heartbeat_at: Some(42),
            preview_public: Some(true),
            plan_mode: Some(true),
            runs: Some(2),
            ..SessionPatch::default()
        };
        let s = store.update(&id, patch, 50).await.unwrap();
        assert_eq!(s.runs, Some(2));
        assert_eq!(s.heartbeat_at, Some(42));
        assert!(s.preview_public);
        assert!(s.plan_mode);
        drop(store);
        // Opening again finds the current version and changes nothing.
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(
            again.get(&id).await.unwrap().unwrap().heartbeat_at,
            Some(42)
        );
    }
}
