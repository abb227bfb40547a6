//! DynamoDB items of the sessions table, and the expressions that read and write them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use cca_domain::{ActiveKey, Session, SessionId, Status};

use crate::StoreResult;
use crate::record::{self, Fields, Value, backend};

/// One item, attribute name to value.
pub(super) type Item = HashMap<String, AttributeValue>;

/// The key item of `session_id`.
pub(super) fn key(session_id: String) -> Item {
    HashMap::from([("session_id".to_owned(), AttributeValue::S(session_id))])
}

/// The `session_id` of the pointer of `key`.
pub(super) fn pointer_key(key: &ActiveKey) -> String {
    format!("key#{key}")
}

/// The pointer of `key`, claimed by `owner`.
pub(super) fn pointer_item(key: &ActiveKey, owner: &SessionId) -> Item {
    HashMap::from([
        ("session_id".to_owned(), AttributeValue::S(pointer_key(key))),
        ("owner".to_owned(), AttributeValue::S(owner.to_string())),
        ("active".to_owned(), AttributeValue::Bool(true)),
        ("kind".to_owned(), AttributeValue::S("key".to_owned())),
    ])
}

/// Decodes a pointer item into its owner and whether it is active.
pub(super) fn pointer_from(
    op: &str,
    key: &ActiveKey,
    item: &Item,
) -> StoreResult<(SessionId, bool)> {
    let corrupt =
        |field: &str, why: &str| backend(op, format_args!("corrupt pointer {key}: {field}: {why}"));
    let owner = match item.get("owner") {
        Some(AttributeValue::S(owner)) => {
            SessionId::parse(owner).map_err(|e| corrupt("owner", &e.to_string()))?
        }
        _ => return Err(corrupt("owner", "missing or not a string")),
    };
    match item.get("active") {
        Some(AttributeValue::Bool(active)) => Ok((owner, *active)),
        _ => Err(corrupt("active", "missing or not a boolean")),
    }
}

/// The delivery item of `id`, expiring at `ttl`.
pub(super) fn delivery_item(id: &str, ttl: i64) -> Item {
    HashMap::from([
        (
            "session_id".to_owned(),
            AttributeValue::S(format!("delivery#{id}")),
        ),
        ("kind".to_owned(), AttributeValue::S("delivery".to_owned())),
        ("ttl".to_owned(), AttributeValue::N(ttl.to_string())),
    ])
}

/// The stored form of a value. Numbers are decimal text (`N`), which DynamoDB keeps exactly.
pub(super) fn attribute(v: Value<'_>) -> AttributeValue {
    match v {
        Value::Text(s) => AttributeValue::S(s.to_owned()),
        Value::Int(n) => AttributeValue::N(n.to_string()),
        Value::UInt(n) => AttributeValue::N(n.to_string()),
        // `Display` of `f64` is the shortest text that reads back as the same number.
        Value::Real(x) => AttributeValue::N(x.to_string()),
    }
}

/// The item of a session: its present fields only, so absent ones keep the PR index sparse.
pub(super) fn session_item(op: &str, s: &Session) -> StoreResult<Item> {
    Ok(record::record_values(op, s)?
        .into_iter()
        .filter_map(|(field, v)| v.map(|v| (field.to_owned(), attribute(v))))
        .collect())
}

/// Decodes a session item.
pub(super) fn session_from(op: &str, item: &Item) -> StoreResult<Session> {
    record::session_from(op, &ItemFields(item))
}

struct ItemFields<'a>(&'a Item);

impl ItemFields<'_> {
    /// The attribute, `None` when absent or `NULL` (as another writer may store an empty field).
    fn get(&self, field: &str) -> Option<&AttributeValue> {
        self.0
            .get(field)
            .filter(|v| !matches!(v, AttributeValue::Null(_)))
    }

    fn number(&self, field: &str) -> Result<Option<&str>, String> {
        match self.get(field) {
            None => Ok(None),
            Some(AttributeValue::N(n)) => Ok(Some(n)),
            Some(other) => Err(format!("expected a number, found {}", type_name(other))),
        }
    }
}

impl Fields for ItemFields<'_> {
    fn text(&self, field: &'static str) -> Result<Option<String>, String> {
        match self.get(field) {
            None => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("expected a string, found {}", type_name(other))),
        }
    }

    fn integer(&self, field: &'static str) -> Result<Option<i128>, String> {
        self.number(field)?
            .map(|n| n.parse().map_err(|_| format!("{n:?} is not an integer")))
            .transpose()
    }

    fn real(&self, field: &'static str) -> Result<Option<f64>, String> {
        self.number(field)?
            .map(|n| n.parse().map_err(|_| format!("{n:?} is not a number")))
            .transpose()
    }
}

fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "a string (S)",
        AttributeValue::N(_) => "a number (N)",
        AttributeValue::B(_) => "binary (B)",
        AttributeValue::Bool(_) => "a boolean (BOOL)",
        AttributeValue::Null(_) => "null (NULL)",
        AttributeValue::L(_) => "a list (L)",
        AttributeValue::M(_) => "a map (M)",
        AttributeValue::Ss(_) | AttributeValue::Ns(_) | AttributeValue::Bs(_) => "a set",
        _ => "an unknown type",
    }
}

/// Placeholders of one expression. Every attribute name goes through `#name`, since several of
/// the record's names (`status`, `ttl`, `owner`…) are reserved words in DynamoDB expressions.
#[derive(Debug, Default, Clone)]
pub(super) struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The placeholder of attribute `field`.
    pub(super) fn name(&mut self, field: &str) -> String {
        let placeholder = format!("#{field}");
        self.names.insert(placeholder.clone(), field.to_owned());
        placeholder
    }

    /// The placeholder of a value, `tag` naming it uniquely within the expression.
    pub(super) fn value(&mut self, tag: &str, v: AttributeValue) -> String {
        let placeholder = format!(":{tag}");
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    /// `#status IN (…)`.
    pub(super) fn status_in(&mut self, statuses: &[Status]) -> String {
        let values: Vec<String> = statuses
            .iter()
            .map(|s| {
                self.value(
                    &format!("status_{}", s.as_str()),
                    AttributeValue::S(s.as_str().to_owned()),
                )
            })
            .collect();
        format!("{} IN ({})", self.name("status"), values.join(", "))
    }

    /// `SET #f = :set_f, … REMOVE #g, …`. A field is either set or removed, never both, as
    /// DynamoDB refuses overlapping paths.
    pub(super) fn update(&mut self, sets: &[(&str, Value<'_>)], removes: &[&str]) -> String {
        let sets: Vec<String> = sets
            .iter()
            .map(|(field, v)| {
                format!(
                    "{} = {}",
                    self.name(field),
                    self.value(&format!("set_{field}"), attribute(*v))
                )
            })
            .collect();
        let removes: Vec<String> = removes.iter().map(|field| self.name(field)).collect();
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update = format!("{update} REMOVE {}", removes.join(", "));
        }
        update
    }

    /// The names, or `None` when there are none (DynamoDB refuses an empty map).
    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// The values, or `None` when there are none.
    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}
