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
use crate::request::Verb;
use crate::status::Status;

/// What a metadata-only Accept asks for: the `meta.k8s.io` version and whether it names the
/// list kind (`PartialObjectMetadataList`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    pub version: &'static str,
    pub list: bool,
}

/// The metadata-only output the client asked for, if it did. As in upstream's negotiation, the
/// first media range this server can answer decides (protobuf ranges are skipped: responses are
/// JSON); a plain `application/json` before a metadata range means a full object.
pub(super) fn wanted(accept: Option<&str>) -> Option<Wanted> {
    let accept = accept?;
    let params = accept
        .split(',')
        .map(|media| media.split(';').map(str::trim).collect::<Vec<_>>())
        .find(|params| {
            matches!(
                params.first().copied().unwrap_or_default(),
                "application/json" | "application/yaml" | "*/*" | "application/*" | "text/*"
            )
        })?;
    let list = if params.contains(&"as=PartialObjectMetadataList") {
        true
    } else if params.contains(&"as=PartialObjectMetadata") {
        false
    } else {
        return None;
    };
    if !params.contains(&"g=meta.k8s.io") {
        return None;
    }
    let version = if params.contains(&"v=v1") {
        "meta.k8s.io/v1"
    } else if params.contains(&"v=v1beta1") {
        "meta.k8s.io/v1beta1"
    } else {
        return None;
    };
    Some(Wanted { version, list })
}

/// Upstream's 406 when the metadata kind asked for does not fit the answer: a list kind for one
/// object, or the object kind for a list. `go_type` names the answer as upstream's message does
/// (`*v1.Pod`, `*v1.PodList`). Watches take either (their events are objects).
pub(super) fn mismatch(wanted: Wanted, verb: Verb, go_type: &str) -> Option<Status> {
    let lists = matches!(verb, Verb::List | Verb::DeleteCollection);
    let message = match (verb, wanted.list, lists) {
        (Verb::Watch, _, _) => return None,
        (_, true, false) => format!(
            "you requested PartialObjectMetadataList, but the requested object is not a list ({go_type})"
        ),
        (_, false, true) => format!(
            "you requested PartialObjectMetadata, but the requested object is a list ({go_type}List)"
        ),
        _ => return None,
    };
    Some(Status::failure(axum::http::StatusCode::NOT_ACCEPTABLE, "NotAcceptable", message))
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
        let v1 = |list| Some(Wanted { version: "meta.k8s.io/v1", list });
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(wanted(Some(list)), v1(true));
        let one =
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1,application/json";
        assert_eq!(wanted(Some(one)), Some(Wanted { version: "meta.k8s.io/v1beta1", list: false }));
        // client-go's metadata client: protobuf first (not served), then JSON metadata.
        let client_go = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(wanted(Some(client_go)), v1(false));
        // The first range this server answers decides: a plain JSON first means whole objects.
        let plain_first =
            "application/json,application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(wanted(Some(plain_first)), None);
        assert_eq!(wanted(Some("application/json;as=Table;g=meta.k8s.io;v=v1")), None);
        assert_eq!(wanted(Some("application/json")), None);
        assert_eq!(wanted(None), None);
    }

    #[test]
    fn a_list_kind_for_one_object_or_the_object_kind_for_a_list_is_not_acceptable() {
        let list = Wanted { version: "meta.k8s.io/v1", list: true };
        let one = Wanted { version: "meta.k8s.io/v1", list: false };
        let status = mismatch(list, Verb::Get, "*v1.Pod").expect("406");
        assert_eq!(status.code(), 406);
        let body = serde_json::to_value(&status).expect("json");
        assert_eq!(body["reason"], "NotAcceptable");
        assert_eq!(
            body["message"],
            "you requested PartialObjectMetadataList, but the requested object is not a list (*v1.Pod)"
        );
        let status = mismatch(one, Verb::List, "*v1.Pod").expect("406");
        let body = serde_json::to_value(&status).expect("json");
        assert_eq!(
            body["message"],
            "you requested PartialObjectMetadata, but the requested object is a list (*v1.PodList)"
        );
        assert!(mismatch(one, Verb::Get, "*v1.Pod").is_none());
        assert!(mismatch(list, Verb::List, "*v1.Pod").is_none());
        assert!(mismatch(one, Verb::Watch, "*v1.Pod").is_none());
        assert!(mismatch(list, Verb::Watch, "*v1.Pod").is_none());
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
