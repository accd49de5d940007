//! Object metadata as the API server owns it: resourceVersion from the store's revision,
//! uid, creationTimestamp, generation, generateName, and what an update may not change.

use bytes::Bytes;
use krust_store::{KeyValue, Store, StoreExt, WriteOutcome};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ApiResult;
use crate::status::Status;

/// The namespaces every cluster has.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Decodes a stored object and stamps its resourceVersion (the store's mod revision; stored
/// bytes never carry one, as upstream's etcd storage does).
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut object: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        Status::internal(format!("stored object {} cannot be decoded: {e}", kv.key))
    })?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = metadata_mut(object) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// The bytes to store: the object without its resourceVersion.
pub fn encode(object: &Value) -> ApiResult<Bytes> {
    let mut object = object.clone();
    if let Some(meta) = metadata_mut(&mut object) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| Status::internal(format!("cannot encode the object: {e}")))
}

pub fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

pub fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = object.as_object_mut()?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
}

/// The map at `path` inside `object`, created (replacing any non-object on the way) when
/// missing. `None` only if `object` itself is not a JSON object.
pub fn object_at<'a>(object: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut current = object.as_object_mut()?;
    for key in path {
        let entry = current.entry(key.to_string()).or_insert_with(|| json!({}));
        if !entry.is_object() {
            *entry = json!({});
        }
        current = entry.as_object_mut()?;
    }
    Some(current)
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)?.get(field)?.as_str()
}

/// RFC 3339 in whole seconds, UTC, as upstream's `metav1.Time`.
pub fn now() -> String {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    now.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Upstream's generateName suffix: five characters from an alphabet without vowels and
/// look-alikes.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

/// Creates the default namespaces if they are missing (at server start).
pub async fn ensure_namespaces(store: &dyn Store) -> Result<(), krust_store::Error> {
    for name in DEFAULT_NAMESPACES {
        let object = json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": new_uid(),
                "creationTimestamp": now(),
                "labels": {"kubernetes.io/metadata.name": name},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        let bytes = Bytes::from(object.to_string());
        match store.create(&format!("/registry/namespaces/{name}"), bytes, 0).await? {
            WriteOutcome::Applied { .. } | WriteOutcome::Conflict { .. } => {}
        }
    }
    Ok(())
}
