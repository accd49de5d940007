//! Metadata-only responses: a client that sends
//! `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` (or
//! `as=PartialObjectMetadataList` for lists) gets each object as a `PartialObjectMetadata` — its
//! `metadata` alone — as upstream's metadata client and informers expect (the garbage collector
//! and namespace controller watch every resource this way). Objects, lists and watch events
//! are all rewritten at the edge; Status and Table documents pass as they are.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use futures_util::StreamExt as _;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::ApiResult;
use crate::status::Status;

/// The `meta.k8s.io` version of metadata-only output the client asked for, if it did.
pub(super) fn wanted(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    accept.split(',').find_map(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        let partial = params.contains(&"as=PartialObjectMetadata")
            || params.contains(&"as=PartialObjectMetadataList");
        if !partial || !params.contains(&"g=meta.k8s.io") {
            return None;
        }
        if params.contains(&"v=v1") {
            Some("meta.k8s.io/v1")
        } else if params.contains(&"v=v1beta1") {
            Some("meta.k8s.io/v1beta1")
        } else {
            None
        }
    })
}

/// Rewrites a handler's answer (one document, or watch lines) into metadata-only form.
pub(super) async fn response(version: &'static str, watch: bool, response: Response) -> ApiResult {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if watch {
        let lines = body.into_data_stream().map(move |chunk| chunk.map(|c| lines(version, &c)));
        return Ok(Response::from_parts(parts, Body::from_stream(lines)));
    }
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| Status::internal(format!("cannot read the response: {e}")))?;
    let rewritten = match serde_json::from_slice::<Value>(&bytes) {
        Ok(value) => {
            serde_json::to_vec(&document(version, value)).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    Ok(Response::from_parts(parts, Body::from(rewritten)))
}

fn partial(version: &str, mut object: Value) -> Value {
    let metadata = object.get_mut("metadata").map(Value::take).unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": version, "metadata": metadata})
}

/// An object or a list, metadata only; Status and Table documents as they are.
fn document(version: &str, mut value: Value) -> Value {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    if matches!(kind.as_str(), "Status" | "Table") {
        return value;
    }
    match value.get_mut("items") {
        Some(Value::Array(items)) if kind.ends_with("List") => {
            let items: Vec<Value> = items.drain(..).map(|item| partial(version, item)).collect();
            let metadata = value.get_mut("metadata").map(Value::take).unwrap_or_else(|| json!({}));
            let mut list = Map::new();
            list.insert("kind".into(), "PartialObjectMetadataList".into());
            list.insert("apiVersion".into(), version.into());
            list.insert("metadata".into(), metadata);
            list.insert("items".into(), Value::Array(items));
            Value::Object(list)
        }
        _ => partial(version, value),
    }
}

/// A watch line, read without building the object: its `metadata` is all that is kept.
#[derive(Deserialize)]
struct WatchLine<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct MetadataOf<'a> {
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// Watch lines (`{"type", "object"}`), each object metadata only (errors as they are). The
/// objects' other fields are skipped, never parsed into values: every metadata watcher of pods
/// pays this per event.
fn lines(version: &str, chunk: &Bytes) -> Bytes {
    let mut out = Vec::with_capacity(chunk.len() / 2);
    for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let parsed = serde_json::from_slice::<WatchLine<'_>>(line).ok().and_then(|event| {
            let metadata = serde_json::from_str::<MetadataOf<'_>>(event.object.get()).ok()?;
            Some((event.event_type, metadata.metadata))
        });
        match parsed {
            Some((event_type, metadata)) if event_type != "ERROR" => {
                out.extend_from_slice(b"{\"type\":");
                out.extend_from_slice(&serde_json::to_vec(&event_type).unwrap_or_default());
                out.extend_from_slice(
                    b",\"object\":{\"kind\":\"PartialObjectMetadata\",\"apiVersion\":\"",
                );
                out.extend_from_slice(version.as_bytes());
                out.extend_from_slice(b"\",\"metadata\":");
                out.extend_from_slice(metadata.map_or("{}", RawValue::get).as_bytes());
                out.extend_from_slice(b"}}");
            }
            _ => out.extend_from_slice(line),
        }
        out.push(b'\n');
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_partial_metadata_media_types_ask_for_it() {
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(wanted(Some(list)), Some("meta.k8s.io/v1"));
        let one =
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1,application/json";
        assert_eq!(wanted(Some(one)), Some("meta.k8s.io/v1beta1"));
        assert_eq!(wanted(Some("application/json;as=Table;g=meta.k8s.io;v=v1")), None);
        assert_eq!(wanted(Some("application/json")), None);
        assert_eq!(wanted(None), None);
    }

    #[test]
    fn objects_lists_and_watch_events_keep_only_metadata() {
        let pod = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a"}, "spec": {}});
        assert_eq!(
            document("meta.k8s.io/v1", pod.clone()),
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "a"}})
        );
        let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": [pod]});
        let out = document("meta.k8s.io/v1", list);
        assert_eq!(out["kind"], "PartialObjectMetadataList");
        assert_eq!(out["metadata"]["resourceVersion"], "7");
        assert_eq!(out["items"][0]["kind"], "PartialObjectMetadata");
        assert!(out["items"][0].get("spec").is_none());
        let status = json!({"kind": "Status", "apiVersion": "v1", "code": 404});
        assert_eq!(document("meta.k8s.io/v1", status.clone()), status);

        let chunk = Bytes::from(
            "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"},\"spec\":{}}}\n",
        );
        let event: Value =
            serde_json::from_slice(&lines("meta.k8s.io/v1", &chunk)).unwrap_or_default();
        assert_eq!(event["type"], "ADDED");
        assert_eq!(event["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(event["object"]["metadata"]["name"], "a");
        assert!(event["object"].get("spec").is_none());
        let error =
            Bytes::from("{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n");
        assert_eq!(lines("meta.k8s.io/v1", &error), error, "errors pass as they are");
    }
}
