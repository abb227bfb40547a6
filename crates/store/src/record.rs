//! The session record as named fields, shared by both stores.
//!
//! One list of field names and one decoder mean a DynamoDB item and a SQLite row hold the same
//! fields under the same names, and a corrupt value is reported the same way by either store:
//! as [`StoreError::Backend`] naming the session and the field, never as a panic.

use std::fmt::Display;

use cca_domain::session::SessionPatch;
use cca_domain::{BranchName, JiraKey, RepoName, Session, SessionId};

use crate::{StoreError, StoreResult};

/// Every field of the record, in the order of [`Session`]: the DynamoDB attribute names and the
/// SQLite column names.
pub(crate) const FIELDS: [&str; 30] = [
    "session_id",
    "session_type",
    "source",
    "repo_full_name",
    "issue_number",
    "pr_number",
    "branch_name",
    "jira_issue_key",
    "status",
    "image_channel",
    "installation_id",
    "initial_prompt",
    "task_arn",
    "container_ip",
    "app_port",
    "control_port",
    "uat_url",
    "claude_session_id",
    "cost_usd",
    "turns",
    "error",
    "created_at",
    "updated_at",
    "last_activity",
    "heartbeat_at",
    "ttl",
    "preview_public",
    "plan_mode",
    "runs",
    "prompt_threads",
];

/// The fields `relaunch` clears: what belonged to the previous run's container and ending.
pub(crate) const CLEARED_BY_RELAUNCH: [&str; 7] = [
    "task_arn",
    "container_ip",
    "error",
    "ttl",
    "heartbeat_at",
    // Read again from the default branch by the new run.
    "preview_public",
    // Belong to the prompt of the relaunch that set them.
    "prompt_threads",
];

/// A stored value, before it is written in a backend's own types.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    Int(i64),
    UInt(u64),
    Real(f64),
}

/// A failure of the backend, with the operation it happened in.
pub(crate) fn backend(op: &str, detail: impl Display) -> StoreError {
    StoreError::Backend(format!("{op}: {detail}"))
}

/// Costs are compared and summed by readers; NaN or infinity cannot be stored by DynamoDB and
/// SQLite would silently turn NaN into NULL, so they are refused before anything is written.
fn finite_cost(op: &str, id: &SessionId, cost: Option<f64>) -> StoreResult<Option<f64>> {
    match cost {
        Some(c) if !c.is_finite() => Err(backend(
            op,
            format_args!("session {id}: cost_usd {c} is not a finite number"),
        )),
        other => Ok(other),
    }
}

/// Every field of `s`, `None` where the record has none.
pub(crate) fn record_values<'a>(
    op: &str,
    s: &'a Session,
) -> StoreResult<Vec<(&'static str, Option<Value<'a>>)>> {
    let text = |v: &'a str| Some(Value::Text(v));
    let opt_text = |v: &'a Option<String>| v.as_deref().map(Value::Text);
    let uint = |v: Option<u64>| v.map(Value::UInt);
    let int = |v: Option<i64>| v.map(Value::Int);
    let values = vec![
        ("session_id", text(s.session_id.as_str())),
        ("session_type", text(s.session_type.as_str())),
        ("source", text(s.source.as_str())),
        ("repo_full_name", text(s.repo_full_name.as_str())),
        ("issue_number", uint(s.issue_number)),
        ("pr_number", uint(s.pr_number)),
        ("branch_name", text(s.branch_name.as_str())),
        (
            "jira_issue_key",
            s.jira_issue_key.as_ref().map(|k| Value::Text(k.as_str())),
        ),
        ("status", text(s.status.as_str())),
        ("image_channel", text(s.image_channel.as_str())),
        ("installation_id", uint(s.installation_id)),
        ("initial_prompt", opt_text(&s.initial_prompt)),
        ("task_arn", opt_text(&s.task_arn)),
        ("container_ip", opt_text(&s.container_ip)),
        ("app_port", uint(s.app_port.map(u64::from))),
        ("control_port", uint(s.control_port.map(u64::from))),
        ("uat_url", opt_text(&s.uat_url)),
        ("claude_session_id", opt_text(&s.claude_session_id)),
        (
            "cost_usd",
            finite_cost(op, &s.session_id, s.cost_usd)?.map(Value::Real),
        ),
        ("turns", uint(s.turns.map(u64::from))),
        ("error", opt_text(&s.error)),
        ("created_at", Some(Value::Int(s.created_at))),
        ("updated_at", Some(Value::Int(s.updated_at))),
        ("last_activity", int(s.last_activity)),
        ("heartbeat_at", int(s.heartbeat_at)),
        ("ttl", int(s.ttl)),
        ("preview_public", s.preview_public.then_some(Value::Int(1))),
        ("plan_mode", s.plan_mode.then_some(Value::Int(1))),
        ("runs", uint(s.runs.map(u64::from))),
        ("prompt_threads", opt_text(&s.prompt_threads)),
    ];
    debug_assert!(values.iter().map(|(f, _)| *f).eq(FIELDS));
    Ok(values)
}

/// The fields a patch sets (its `Some` fields); the others stay as they are.
pub(crate) fn patch_values<'a>(
    op: &str,
    id: &SessionId,
    p: &'a SessionPatch,
) -> StoreResult<Vec<(&'static str, Value<'a>)>> {
    let text = |v: &'a Option<String>| v.as_deref().map(Value::Text);
    let candidates = [
        ("pr_number", p.pr_number.map(Value::UInt)),
        ("task_arn", text(&p.task_arn)),
        ("container_ip", text(&p.container_ip)),
        ("app_port", p.app_port.map(|v| Value::UInt(v.into()))),
        (
            "control_port",
            p.control_port.map(|v| Value::UInt(v.into())),
        ),
        ("uat_url", text(&p.uat_url)),
        ("claude_session_id", text(&p.claude_session_id)),
        (
            "cost_usd",
            finite_cost(op, id, p.cost_usd)?.map(Value::Real),
        ),
        ("turns", p.turns.map(|v| Value::UInt(v.into()))),
        ("error", text(&p.error)),
        ("last_activity", p.last_activity.map(Value::Int)),
        ("heartbeat_at", p.heartbeat_at.map(Value::Int)),
        ("initial_prompt", text(&p.initial_prompt)),
        (
            "preview_public",
            p.preview_public.map(|v| Value::Int(i64::from(v))),
        ),
        ("plan_mode", p.plan_mode.map(|v| Value::Int(i64::from(v)))),
        ("runs", p.runs.map(|v| Value::UInt(v.into()))),
        ("prompt_threads", text(&p.prompt_threads)),
    ];
    Ok(candidates
        .into_iter()
        .filter_map(|(f, v)| v.map(|v| (f, v)))
        .collect())
}

/// Read access to one stored record, by field name. Each method answers `Ok(None)` for an absent
/// or null field and `Err(why)` for a value of the wrong type.
pub(crate) trait Fields {
    fn text(&self, field: &'static str) -> Result<Option<String>, String>;
    fn integer(&self, field: &'static str) -> Result<Option<i128>, String>;
    fn real(&self, field: &'static str) -> Result<Option<f64>, String>;
}

/// Decodes a stored record. Any field that is missing where required, of the wrong type, out of
/// range or not a known spelling makes a [`StoreError::Backend`] naming the session and field.
pub(crate) fn session_from(op: &str, fields: &impl Fields) -> StoreResult<Session> {
    let raw_id = fields
        .text("session_id")
        .map_err(|why| {
            backend(
                op,
                format_args!("corrupt session record: session_id: {why}"),
            )
        })?
        .ok_or_else(|| backend(op, "corrupt session record: no session_id"))?;
    let r = Decoder {
        op,
        id: &raw_id,
        fields,
    };
    Ok(Session {
        session_id: r.need("session_id", SessionId::parse(&raw_id).map(Some))?,
        session_type: r.need("session_type", r.parsed("session_type", str::parse))?,
        source: r.need("source", r.parsed("source", str::parse))?,
        repo_full_name: r.need(
            "repo_full_name",
            r.parsed("repo_full_name", RepoName::parse),
        )?,
        issue_number: r.int("issue_number")?,
        pr_number: r.int("pr_number")?,
        branch_name: r.need("branch_name", r.parsed("branch_name", BranchName::parse))?,
        jira_issue_key: r.parsed("jira_issue_key", JiraKey::parse)?,
        status: r.need("status", r.parsed("status", str::parse))?,
        image_channel: r.need("image_channel", r.parsed("image_channel", str::parse))?,
        installation_id: r.int("installation_id")?,
        initial_prompt: r.text("initial_prompt")?,
        task_arn: r.text("task_arn")?,
        container_ip: r.text("container_ip")?,
        app_port: r.int("app_port")?,
        control_port: r.int("control_port")?,
        uat_url: r.text("uat_url")?,
        claude_session_id: r.text("claude_session_id")?,
        cost_usd: r.real("cost_usd")?,
        turns: r.int("turns")?,
        error: r.text("error")?,
        created_at: r.need("created_at", r.int("created_at"))?,
        updated_at: r.need("updated_at", r.int("updated_at"))?,
        last_activity: r.int("last_activity")?,
        heartbeat_at: r.int("heartbeat_at")?,
        ttl: r.int("ttl")?,
        preview_public: r.int::<i64>("preview_public")?.is_some_and(|v| v != 0),
        plan_mode: r.int::<i64>("plan_mode")?.is_some_and(|v| v != 0),
        runs: r.int("runs")?,
        prompt_threads: r.text("prompt_threads")?,
    })
}

struct Decoder<'a, F> {
    op: &'a str,
    id: &'a str,
    fields: &'a F,
}

impl<F: Fields> Decoder<'_, F> {
    fn corrupt(&self, field: &str, why: impl Display) -> StoreError {
        backend(
            self.op,
            format_args!("corrupt session {:?}: field {field}: {why}", self.id),
        )
    }

    fn need<T, E: Display>(&self, field: &str, v: Result<Option<T>, E>) -> StoreResult<T> {
        match v {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(self.corrupt(field, "missing")),
            Err(why) => Err(self.corrupt(field, why)),
        }
    }

    fn text(&self, field: &'static str) -> StoreResult<Option<String>> {
        self.fields
            .text(field)
            .map_err(|why| self.corrupt(field, why))
    }

    fn parsed<T, E: Display>(
        &self,
        field: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> StoreResult<Option<T>> {
        self.text(field)?
            .map(|s| parse(&s).map_err(|why| self.corrupt(field, why)))
            .transpose()
    }

    fn int<T: TryFrom<i128>>(&self, field: &'static str) -> StoreResult<Option<T>> {
        let Some(n) = self
            .fields
            .integer(field)
            .map_err(|why| self.corrupt(field, why))?
        else {
            return Ok(None);
        };
        T::try_from(n)
            .map(Some)
            .map_err(|_| self.corrupt(field, format_args!("{n} is out of range")))
    }

    fn real(&self, field: &'static str) -> StoreResult<Option<f64>> {
        self.fields
            .real(field)
            .map_err(|why| self.corrupt(field, why))
    }
}
