//! Serving a legacy version (`extensions/v1beta1` Deployment and Ingress) over objects stored
//! in the current one: request bodies are converted in (`krust_api::convert::to_storage`),
//! everything the handlers answer — objects, lists, watch events — is converted out. The
//! handlers themselves only ever see the storage version.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures_util::StreamExt as _;
use krust_api::catalog::Resource;
use krust_api::convert;
use serde_json::Value;

use super::ApiResult;
use crate::status::Status;

/// Converts a request body of the served version into the storage version. Custom resources
/// convert as upstream's `None` strategy does: only the apiVersion changes.
pub(super) fn body_to_storage(served: &Resource, storage: &Resource, object: Value) -> Value {
    let legacy = served.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        // A body naming another version is left for the type check to refuse.
        Some(v) if !v.is_empty() && v != legacy => object,
        _ => {
            let mut object = convert::to_storage(served.group, served.version, served.kind, object);
            if let Some(map) = object.as_object_mut() {
                map.insert("apiVersion".into(), Value::String(storage.api_version()));
            }
            object
        }
    }
}

/// Converts a stored object into the served version (for patches, which apply in its terms).
pub(super) fn object_to_served(served: &Resource, object: Value) -> Value {
    let mut object = convert::from_storage(served.group, served.version, served.kind, object);
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(served.api_version()));
    }
    object
}

/// Converts what a handler answered for the storage version into the served version.
pub(super) async fn response_to_served(
    served: &Resource,
    storage: &Resource,
    watch: bool,
    response: Response,
) -> ApiResult {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let served = Served { resource: served.clone(), storage_api_version: storage.api_version() };
    if watch {
        let lines = body.into_data_stream().map(move |chunk| chunk.map(|c| served.lines(&c)));
        return Ok(Response::from_parts(parts, Body::from_stream(lines)));
    }
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| Status::internal(format!("cannot read the response: {e}")))?;
    let converted = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => serde_json::to_vec(&served.document(value)).unwrap_or_else(|_| bytes.to_vec()),
        Err(_) => bytes.to_vec(),
    };
    Ok(Response::from_parts(parts, Body::from(converted)))
}

struct Served {
    resource: Resource,
    storage_api_version: String,
}

impl Served {
    fn is_stored(&self, value: &Value, kind: &str) -> bool {
        value.get("kind").and_then(Value::as_str) == Some(kind)
            && value.get("apiVersion").and_then(Value::as_str)
                == Some(self.storage_api_version.as_str())
    }

    /// An object or a list of the storage version, converted; anything else (Status, Table)
    /// as it is.
    fn document(&self, mut value: Value) -> Value {
        let r = &self.resource;
        if self.is_stored(&value, r.kind) {
            return object_to_served(r, value);
        }
        if self.is_stored(&value, &r.list_kind()) {
            if let Some(Value::Array(items)) = value.get_mut("items") {
                for item in items.iter_mut() {
                    *item = object_to_served(r, item.take());
                }
            }
            if let Some(map) = value.as_object_mut() {
                map.insert("apiVersion".into(), Value::String(r.api_version()));
            }
        }
        value
    }

    /// Watch lines (`{"type", "object"}`), each converted.
    fn lines(&self, chunk: &Bytes) -> Bytes {
        super::rewrite_watch_lines(chunk, |event| {
            if let Some(object) = event.get_mut("object") {
                *object = self.document(object.take());
            }
        })
    }
}
