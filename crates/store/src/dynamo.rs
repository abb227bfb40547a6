//! The DynamoDB session store: the deployed system's table.
//!
//! One table keyed by `session_id` holds three kinds of item, told apart by their key (session
//! ids never contain `#`):
//! - sessions, `session_id = <id>`, whose attributes are exactly the record's field names, absent
//!   fields not written so that the GSI `pr-index` (`repo_full_name` + `pr_number`) stays sparse;
//! - active-key pointers, `session_id = "key#<active key>"` with `owner`, `active` and
//!   `kind = "key"`: the last session to claim the key, and whether it still holds it;
//! - webhook deliveries, `session_id = "delivery#<id>"` with `kind = "delivery"` and `ttl`.
//!
//! Every rule is a condition of the write that depends on it; where a session and its pointer
//! change together they do so in one `TransactWriteItems`. Transactions that collide with a
//! concurrent one are cancelled by DynamoDB with `TransactionConflict` (not retried by the SDK)
//! and are tried again here with jittered backoff.

mod item;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, Update,
};
use cca_domain::session::{SessionPatch, TERMINAL_TTL_SECS};
use cca_domain::{ActiveKey, RepoName, Session, SessionId, Status};

use self::item::{Expr, Item};
use crate::record::{self, CLEARED_BY_RELAUNCH, Value, backend};
use crate::{
    DELIVERY_LEASE_SECS, DELIVERY_TTL_SECS, ListFilter, SessionStore, StoreError, StoreResult,
};

/// Name of the global secondary index on `repo_full_name` + `pr_number`.
pub(crate) const PR_INDEX: &str = "pr-index";

/// Attempts at a write that keeps colliding with concurrent transactions on the same items.
/// Each collision means another writer made progress, so ten attempts (about 4 s of backoff at
/// most) outlast any realistic burst, such as a webhook redelivered many times at once.
const MAX_ATTEMPTS: u32 = 10;

/// First backoff ceiling after a collision; doubled each attempt. Transactions settle in tens of
/// milliseconds, so waiting longer at first only adds latency.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);

/// Largest backoff ceiling, so the last attempts still come within the caller's patience.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long [`DynamoStore::create_table`] waits for a new table to become active. DynamoDB
/// usually takes seconds; minutes mean something is wrong with the account.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Sessions in a DynamoDB table (see the module documentation for its layout).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// What a transaction came to when it was not applied: the reasons, one per item in order.
type Cancelled = Vec<CancellationReason>;

/// A conditional update of one session item: the expression placeholders, the update and the
/// condition it depends on.
struct SessionWrite {
    expr: Expr,
    update: String,
    condition: String,
}

impl DynamoStore {
    /// A store on an existing `table` (made by [`DynamoStore::create_table`] or infrastructure
    /// code with the same key, index and TTL attribute).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates `table` on demand billing with the key `session_id`, the GSI `pr-index`
    /// (projecting every attribute) and TTL on `ttl`, and waits until it is active.
    pub async fn create_table(client: &Client, table: &str) -> StoreResult<()> {
        const OP: &str = "create_table";
        let attr = |name: &str, t| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(|e| backend(OP, e))
        };
        let key = |name: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(|e| backend(OP, e))
        };
        let pr_index = GlobalSecondaryIndex::builder()
            .index_name(PR_INDEX)
            .key_schema(key("repo_full_name", KeyType::Hash)?)
            .key_schema(key("pr_number", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| backend(OP, e))?;
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("session_id", KeyType::Hash)?)
            .attribute_definitions(attr("session_id", ScalarAttributeType::S)?)
            .attribute_definitions(attr("repo_full_name", ScalarAttributeType::S)?)
            .attribute_definitions(attr("pr_number", ScalarAttributeType::N)?)
            .global_secondary_indexes(pr_index)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        client
            .wait_until_table_exists()
            .table_name(table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map_err(|e| backend(OP, DisplayErrorContext(e)))?;
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("ttl")
            .build()
            .map_err(|e| backend(OP, e))?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }

    async fn get_item(&self, op: &str, key: String) -> StoreResult<Option<Item>> {
        let out = retry_conflicts(op, || {
            self.client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(item::key(key.clone())))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| sdk_error(op, e))?;
        Ok(out.item)
    }

    async fn load(&self, op: &str, id: &SessionId) -> StoreResult<Option<Session>> {
        self.get_item(op, id.to_string())
            .await?
            .map(|i| item::session_from(op, &i))
            .transpose()
    }

    async fn load_existing(&self, op: &str, id: &SessionId) -> StoreResult<Session> {
        self.load(op, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.clone()))
    }

    /// The pointer of `key`: its owner and whether it is active.
    async fn pointer(&self, op: &str, key: &ActiveKey) -> StoreResult<Option<(SessionId, bool)>> {
        self.get_item(op, item::pointer_key(key))
            .await?
            .map(|i| item::pointer_from(op, key, &i))
            .transpose()
    }

    /// The error for a session write whose condition failed: `old` is the item as it was when
    /// the condition was checked, when DynamoDB returned it.
    async fn refused(
        &self,
        op: &str,
        id: &SessionId,
        to: Option<Status>,
        old: Option<&Item>,
    ) -> StoreError {
        let current = match old {
            Some(old) => item::session_from(op, old).map(Some),
            None => self.load(op, id).await,
        };
        match current {
            Ok(Some(s)) => StoreError::IllegalTransition {
                id: id.clone(),
                from: s.status,
                to: to.unwrap_or(s.status),
            },
            Ok(None) => StoreError::NotFound(id.clone()),
            Err(e) => e,
        }
    }

    /// The error for a pointer whose claim failed, or `None` when the claim has been released
    /// since and the write should be tried again.
    async fn claim_refused(
        &self,
        op: &str,
        key: &ActiveKey,
        old: Option<&Item>,
    ) -> StoreResult<Option<StoreError>> {
        let pointer = match old {
            Some(old) => Some(item::pointer_from(op, key, old)?),
            None => self.pointer(op, key).await?,
        };
        Ok(match pointer {
            Some((owner, true)) => Some(StoreError::ActiveExists {
                key: key.to_string(),
                existing: owner,
            }),
            _ => None,
        })
    }

    /// Applies `items` as one transaction. `Ok(Err(reasons))` when a condition failed; collisions
    /// with concurrent transactions are retried.
    async fn transact(
        &self,
        op: &str,
        items: Vec<TransactWriteItem>,
    ) -> StoreResult<Result<(), Cancelled>> {
        let mut backoff = Backoff::default();
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    e.cancellation_reasons().to_vec()
                }
                _ if is_conflict(&err) && backoff.wait(op).await => continue,
                _ => return Err(sdk_error(op, err)),
            };
            let codes: Vec<&str> = reasons.iter().filter_map(|r| r.code()).collect();
            if codes.contains(&"ConditionalCheckFailed") {
                return Ok(Err(reasons));
            }
            let retryable = codes.iter().all(|c| {
                matches!(
                    *c,
                    "None"
                        | "TransactionConflict"
                        | "ThrottlingError"
                        | "ProvisionedThroughputExceeded"
                )
            });
            if !(retryable && backoff.wait(op).await) {
                return Err(backend(
                    op,
                    format_args!("transaction cancelled: {codes:?}"),
                ));
            }
        }
    }

    /// `write` as an item of a transaction.
    fn session_update(&self, op: &str, id: &SessionId, write: SessionWrite) -> StoreResult<Update> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(item::key(id.to_string())))
            .update_expression(write.update)
            .condition_expression(write.condition)
            .set_expression_attribute_names(write.expr.names())
            .set_expression_attribute_values(write.expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| backend(op, e))
    }

    /// A plain conditional `UpdateItem` of one session, returning the record as written.
    async fn update_session(
        &self,
        op: &str,
        id: &SessionId,
        refused_to: Option<Status>,
        write: SessionWrite,
    ) -> StoreResult<Session> {
        let SessionWrite {
            expr,
            update,
            condition,
        } = write;
        let result = retry_conflicts(op, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(item::key(id.to_string())))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
        })
        .await;
        match result {
            Ok(out) => match out.attributes {
                Some(attributes) => item::session_from(op, &attributes),
                None => self.load_existing(op, id).await,
            },
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    Err(self.refused(op, id, refused_to, e.item.as_ref()).await)
                }
                _ => Err(sdk_error(op, err)),
            },
        }
    }

    /// All items of a paginated `Query` on the PR index or `Scan`, as sessions.
    async fn collect_sessions<F, Fut>(&self, op: &str, mut page: F) -> StoreResult<Vec<Session>>
    where
        F: FnMut(Option<Item>) -> Fut,
        Fut: Future<Output = StoreResult<(Vec<Item>, Option<Item>)>>,
    {
        let mut sessions = Vec::new();
        let mut start = None;
        loop {
            let (items, next) = page(start).await?;
            for i in &items {
                sessions.push(item::session_from(op, i)?);
            }
            match next {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => break,
            }
        }
        newest_first(&mut sessions);
        Ok(sessions)
    }
}

/// Newest `created_at` first; ties by id, so both stores list in the same order.
fn newest_first(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
}

fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    op: &str,
    err: SdkError<E, R>,
) -> StoreError {
    backend(op, DisplayErrorContext(err))
}

/// Whether DynamoDB refused a request because a transaction on the same item was in flight.
fn is_conflict<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("TransactionConflictException")
}

/// Sends a request again while it collides with a concurrent transaction.
async fn retry_conflicts<T, E, R, Fut>(
    op: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata,
    Fut: Future<Output = Result<T, SdkError<E, R>>>,
{
    let mut backoff = Backoff::default();
    loop {
        match call().await {
            Err(err) if is_conflict(&err) && backoff.wait(op).await => continue,
            other => return other,
        }
    }
}

/// Exponential backoff with full jitter, so colliding writers spread out instead of colliding
/// again in step.
#[derive(Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// Sleeps before the next attempt; `false` when the attempts are used up.
    async fn wait(&mut self, op: &str) -> bool {
        self.attempt += 1;
        if self.attempt >= MAX_ATTEMPTS {
            return false;
        }
        let ceiling = FIRST_BACKOFF
            .saturating_mul(1 << (self.attempt - 1).min(16))
            .min(MAX_BACKOFF);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let pause = Duration::from_millis(rand::random_range(0..=millis));
        tracing::debug!(
            op,
            attempt = self.attempt,
            ?pause,
            "write collided with a concurrent transaction; retrying"
        );
        tokio::time::sleep(pause).await;
        true
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create(&self, session: &Session) -> StoreResult<()> {
        const OP: &str = "create";
        let id = &session.session_id;
        if session.status != Status::Provisioning {
            return Err(StoreError::IllegalTransition {
                id: id.clone(),
                from: session.status,
                to: Status::Provisioning,
            });
        }
        let key = session.active_key();
        let mut session_expr = Expr::default();
        let session_condition =
            format!("attribute_not_exists({})", session_expr.name("session_id"));
        let put_session = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item::session_item(OP, session)?))
            .condition_expression(session_condition)
            .set_expression_attribute_names(session_expr.names())
            .build()
            .map_err(|e| backend(OP, e))?;
        let mut claim_expr = Expr::default();
        let claim_condition = format!(
            "attribute_not_exists({}) OR {} = {}",
            claim_expr.name("session_id"),
            claim_expr.name("active"),
            claim_expr.value("inactive", AttributeValue::Bool(false)),
        );
        let put_pointer = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item::pointer_item(&key, id)))
            .condition_expression(claim_condition)
            .set_expression_attribute_names(claim_expr.names())
            .set_expression_attribute_values(claim_expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| backend(OP, e))?;
        let items = vec![
            TransactWriteItem::builder().put(put_session).build(),
            TransactWriteItem::builder().put(put_pointer).build(),
        ];
        let mut backoff = Backoff::default();
        loop {
            let Err(reasons) = self.transact(OP, items.clone()).await? else {
                return Ok(());
            };
            // The claim is reported first: it names the session to talk to instead.
            if failed(&reasons, 1) {
                if let Some(err) = self
                    .claim_refused(OP, &key, reasons[1].item.as_ref())
                    .await?
                {
                    return Err(err);
                }
            }
            if failed(&reasons, 0) {
                return Err(StoreError::IdTaken(id.clone()));
            }
            if !backoff.wait(OP).await {
                return Err(backend(
                    OP,
                    format_args!("the claim on {key} kept changing"),
                ));
            }
        }
    }

    async fn get(&self, id: &SessionId) -> StoreResult<Option<Session>> {
        self.load("get", id).await
    }

    async fn transition(
        &self,
        id: &SessionId,
        to: Status,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session> {
        const OP: &str = "transition";
        let predecessors = Status::allowed_predecessors(to);
        if predecessors.is_empty() {
            // Nothing may precede `to` (PROVISIONING is reached by create and relaunch only).
            return Err(self.refused(OP, id, Some(to), None).await);
        }
        let mut sets = record::patch_values(OP, id, &patch)?;
        sets.push(("status", Value::Text(to.as_str())));
        sets.push(("updated_at", Value::Int(now)));
        if to.is_terminal() {
            sets.push(("ttl", Value::Int(now + TERMINAL_TTL_SECS)));
        }
        let build = || {
            let mut expr = Expr::default();
            let update = expr.update(&sets, &[]);
            let condition = format!(
                "attribute_exists({}) AND {}",
                expr.name("session_id"),
                expr.status_in(&predecessors)
            );
            SessionWrite {
                expr,
                update,
                condition,
            }
        };
        if !to.is_terminal() {
            return self.update_session(OP, id, Some(to), build()).await;
        }

        // Ending releases the session's pointer in the same transaction. The pointer's key comes
        // from the stored record, and the pointer is only touched when this session owns it: a
        // record written before pointers existed has none, and creating one here would be wrong.
        let mut backoff = Backoff::default();
        loop {
            let current = self.load_existing(OP, id).await?;
            if !predecessors.contains(&current.status) {
                return Err(StoreError::IllegalTransition {
                    id: id.clone(),
                    from: current.status,
                    to,
                });
            }
            let key = current.active_key();
            let owned = matches!(self.pointer(OP, &key).await?, Some((owner, _)) if &owner == id);
            if !owned {
                return self.update_session(OP, id, Some(to), build()).await;
            }
            let mut release = Expr::default();
            let release_update = format!(
                "SET {} = {}",
                release.name("active"),
                release.value("inactive", AttributeValue::Bool(false))
            );
            let release_condition = format!(
                "{} = {}",
                release.name("owner"),
                release.value("owner", AttributeValue::S(id.to_string()))
            );
            let release = Update::builder()
                .table_name(&self.table)
                .set_key(Some(item::key(item::pointer_key(&key))))
                .update_expression(release_update)
                .condition_expression(release_condition)
                .set_expression_attribute_names(release.names())
                .set_expression_attribute_values(release.values())
                .build()
                .map_err(|e| backend(OP, e))?;
            let items = vec![
                TransactWriteItem::builder()
                    .update(self.session_update(OP, id, build())?)
                    .build(),
                TransactWriteItem::builder().update(release).build(),
            ];
            match self.transact(OP, items).await? {
                Ok(()) => return self.load_existing(OP, id).await,
                Err(reasons) if failed(&reasons, 0) => {
                    return Err(self
                        .refused(OP, id, Some(to), reasons[0].item.as_ref())
                        .await);
                }
                // The pointer changed hands between the read and the write: read again.
                Err(_) if backoff.wait(OP).await => continue,
                Err(_) => {
                    return Err(backend(
                        OP,
                        format_args!("the pointer of {key} kept changing"),
                    ));
                }
            }
        }
    }

    async fn update(&self, id: &SessionId, patch: SessionPatch, now: i64) -> StoreResult<Session> {
        const OP: &str = "update";
        let mut sets = record::patch_values(OP, id, &patch)?;
        sets.push(("updated_at", Value::Int(now)));
        let mut expr = Expr::default();
        let update = expr.update(&sets, &[]);
        let condition = not_ended(&mut expr);
        let write = SessionWrite {
            expr,
            update,
            condition,
        };
        self.update_session(OP, id, None, write).await
    }

    async fn touch(&self, id: &SessionId, now: i64) -> StoreResult<()> {
        const OP: &str = "touch";
        let mut expr = Expr::default();
        let update = expr.update(
            &[
                ("last_activity", Value::Int(now)),
                ("updated_at", Value::Int(now)),
            ],
            &[],
        );
        let condition = not_ended(&mut expr);
        let result = retry_conflicts(OP, || {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(item::key(id.to_string())))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::None)
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                // Nothing came back with the refusal: reading the record says why.
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(self.refused(OP, id, None, None).await)
                }
                _ => Err(sdk_error(OP, err)),
            },
        }
    }

    async fn relaunch(
        &self,
        id: &SessionId,
        patch: SessionPatch,
        now: i64,
    ) -> StoreResult<Session> {
        const OP: &str = "relaunch";
        let mut sets = record::patch_values(OP, id, &patch)?;
        let clears: Vec<&str> = CLEARED_BY_RELAUNCH
            .into_iter()
            .filter(|field| !sets.iter().any(|(set, _)| set == field))
            .collect();
        sets.push(("status", Value::Text(Status::Provisioning.as_str())));
        sets.push(("updated_at", Value::Int(now)));
        let ended: Vec<Status> = Status::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        let mut backoff = Backoff::default();
        loop {
            let current = self.load_existing(OP, id).await?;
            if !current.status.is_terminal() {
                return Err(StoreError::IllegalTransition {
                    id: id.clone(),
                    from: current.status,
                    to: Status::Provisioning,
                });
            }
            let key = current.active_key();
            let mut expr = Expr::default();
            let update = expr.update(&sets, &clears);
            let condition = expr.status_in(&ended);
            let write = SessionWrite {
                expr,
                update,
                condition,
            };
            let mut claim = Expr::default();
            let claim_condition = format!(
                "attribute_not_exists({}) OR {} = {} OR {} = {}",
                claim.name("session_id"),
                claim.name("active"),
                claim.value("inactive", AttributeValue::Bool(false)),
                claim.name("owner"),
                claim.value("owner", AttributeValue::S(id.to_string())),
            );
            let put_pointer = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item::pointer_item(&key, id)))
                .condition_expression(claim_condition)
                .set_expression_attribute_names(claim.names())
                .set_expression_attribute_values(claim.values())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(|e| backend(OP, e))?;
            let items = vec![
                TransactWriteItem::builder()
                    .update(self.session_update(OP, id, write)?)
                    .build(),
                TransactWriteItem::builder().put(put_pointer).build(),
            ];
            let reasons = match self.transact(OP, items).await? {
                Ok(()) => return self.load_existing(OP, id).await,
                Err(reasons) => reasons,
            };
            if failed(&reasons, 0) {
                return Err(self
                    .refused(OP, id, Some(Status::Provisioning), reasons[0].item.as_ref())
                    .await);
            }
            if let Some(err) = self
                .claim_refused(OP, &key, reasons[1].item.as_ref())
                .await?
            {
                return Err(err);
            }
            if !backoff.wait(OP).await {
                return Err(backend(
                    OP,
                    format_args!("the claim on {key} kept changing"),
                ));
            }
        }
    }

    async fn by_active_key(&self, key: &ActiveKey) -> StoreResult<Option<Session>> {
        const OP: &str = "by_active_key";
        match self.pointer(OP, key).await? {
            Some((owner, _)) => self.load(OP, &owner).await,
            None => Ok(None),
        }
    }

    async fn by_pr(&self, repo: &RepoName, pr_number: u64) -> StoreResult<Vec<Session>> {
        const OP: &str = "by_pr";
        let mut expr = Expr::default();
        let condition = format!(
            "{} = {} AND {} = {}",
            expr.name("repo_full_name"),
            expr.value("repo", AttributeValue::S(repo.to_string())),
            expr.name("pr_number"),
            expr.value("pr", AttributeValue::N(pr_number.to_string())),
        );
        self.collect_sessions(OP, |start| {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PR_INDEX)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .set_exclusive_start_key(start);
            async move {
                let out = request.send().await.map_err(|e| sdk_error(OP, e))?;
                Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
            }
        })
        .await
    }

    async fn list(&self, filter: &ListFilter) -> StoreResult<Vec<Session>> {
        const OP: &str = "list";
        let mut expr = Expr::default();
        // Pointers and deliveries carry `kind`; session records never do.
        let mut condition = format!("attribute_not_exists({})", expr.name("kind"));
        if !filter.statuses.is_empty() {
            condition = format!("{condition} AND {}", expr.status_in(&filter.statuses));
        }
        let mut sessions = self
            .collect_sessions(OP, |start| {
                let request = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .filter_expression(&condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .set_exclusive_start_key(start);
                async move {
                    let out = request.send().await.map_err(|e| sdk_error(OP, e))?;
                    Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
                }
            })
            .await?;
        if let Some(limit) = filter.limit {
            sessions.truncate(limit);
        }
        Ok(sessions)
    }

    async fn record_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<bool> {
        const OP: &str = "record_delivery";
        let mut expr = Expr::default();
        // TTL deletion is lazy (up to days late), so an expired item may still be there.
        let condition = format!(
            "attribute_not_exists({}) OR {} < {}",
            expr.name("session_id"),
            expr.name("ttl"),
            expr.value("now", AttributeValue::N(now.to_string())),
        );
        let delivery = item::delivery_item(delivery_id, now + DELIVERY_LEASE_SECS);
        let result = retry_conflicts(OP, || {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(delivery.clone()))
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .send()
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(sdk_error(OP, err)),
        }
    }

    async fn finish_delivery(&self, delivery_id: &str, now: i64) -> StoreResult<()> {
        const OP: &str = "finish_delivery";
        let key = item::delivery_item(delivery_id, 0)
            .into_iter()
            .filter(|(k, _)| k == "session_id")
            .collect();
        let mut expr = Expr::default();
        let update = format!(
            "SET {} = {}",
            expr.name("ttl"),
            expr.value(
                "ttl",
                AttributeValue::N((now + DELIVERY_TTL_SECS).to_string())
            )
        );
        let condition = format!("attribute_exists({})", expr.name("session_id"));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Forgotten meanwhile: it stays forgotten.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(sdk_error(OP, err)),
        }
    }

    async fn forget_delivery(&self, delivery_id: &str) -> StoreResult<()> {
        const OP: &str = "forget_delivery";
        let key = item::delivery_item(delivery_id, 0)
            .into_iter()
            .filter(|(k, _)| k == "session_id")
            .collect();
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(())
    }
}

/// The condition of writes that may not touch an ended record: it exists and its status is not
/// terminal.
fn not_ended(expr: &mut Expr) -> String {
    let ended: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .collect();
    format!(
        "attribute_exists({}) AND NOT ({})",
        expr.name("session_id"),
        expr.status_in(&ended)
    )
}

/// Whether the item at `index` of a cancelled transaction failed its condition.
fn failed(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}
