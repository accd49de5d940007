//! Subresources beyond `status`: `scale` (autoscaling/v1 Scale over `spec.replicas`),
//! `pods/binding` (and the `bindings` resource) and `pods/eviction`.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use krust_api::catalog::Catalog;
use serde_json::{Value, json};

use super::object::{decode, meta_str, metadata, metadata_mut, object_at};
use super::write::{
    apply_patch, current, decode_body, delete_named, read_patch, write_update, write_whole,
};
use super::{ApiResult, Ctx, json_response};
use crate::request::Verb;
use crate::status::Status;

const MAX_RETRIES: usize = 16;

/// `{"kind":"Status","status":"Success"}` with `code`, as binding and eviction answer.
fn success(code: StatusCode) -> Response {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code.as_u16()}),
    )
}

/// The label selector of a workload as the string form Scale reports.
fn selector_string(object: &Value) -> String {
    let Some(selector) = object.pointer("/spec/selector") else { return String::new() };
    let parsed =
        if selector.get("matchLabels").is_some() || selector.get("matchExpressions").is_some() {
            krust_api::labels::Selector::from_label_selector(selector)
        } else {
            // ReplicationController: a plain map.
            Ok(selector
                .as_object()
                .map(krust_api::labels::Selector::from_labels)
                .unwrap_or_else(krust_api::labels::Selector::everything))
        };
    parsed.map(|s| s.to_string()).unwrap_or_default()
}

/// Where a resource keeps what Scale shows: JSON pointers to the desired and current replica
/// counts and, for custom resources, to the selector string (built-in workloads have
/// `spec.selector`).
struct ScalePointers {
    spec_replicas: String,
    status_replicas: String,
    selector: Option<String>,
}

/// `.spec.replicas` → `/spec/replicas` (custom resources' scale paths are simple field paths).
fn pointer(path: &str) -> String {
    path.split('.').filter(|s| !s.is_empty()).fold(String::new(), |mut out, segment| {
        out.push('/');
        out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        out
    })
}

fn scale_pointers(ctx: &Ctx<'_>) -> ScalePointers {
    match ctx.custom().and_then(|c| c.scale.clone()) {
        Some(paths) => ScalePointers {
            spec_replicas: pointer(&paths.spec_replicas),
            status_replicas: pointer(&paths.status_replicas),
            selector: paths.label_selector.as_deref().map(pointer),
        },
        None => ScalePointers {
            spec_replicas: "/spec/replicas".into(),
            status_replicas: "/status/replicas".into(),
            selector: None,
        },
    }
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_at(object: &mut Value, pointer: &str, value: Value) {
    let mut node = object;
    let segments: Vec<String> =
        pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let Some((last, parents)) = segments.split_last() else { return };
    for segment in parents {
        let Some(map) = node.as_object_mut() else { return };
        let child = map.entry(segment.clone()).or_insert_with(|| json!({}));
        if !child.is_object() {
            *child = json!({});
        }
        node = child;
    }
    if let Some(map) = node.as_object_mut() {
        map.insert(last.clone(), value);
    }
}

fn to_scale(ctx: &Ctx<'_>, object: &Value) -> Value {
    let pointers = scale_pointers(ctx);
    let sub = ctx.resource.subresource("scale");
    let group = sub.and_then(|s| s.group).unwrap_or("autoscaling");
    let version = sub.and_then(|s| s.version).unwrap_or("v1");
    let mut meta = serde_json::Map::new();
    if let Some(m) = metadata(object) {
        for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
            if let Some(v) = m.get(field) {
                meta.insert(field.into(), v.clone());
            }
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": format!("{group}/{version}"),
        "metadata": meta,
        "spec": {"replicas": object.pointer(&pointers.spec_replicas).and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": object.pointer(&pointers.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": match &pointers.selector {
                Some(selector) => object.pointer(selector).and_then(Value::as_str).unwrap_or_default().to_owned(),
                None => selector_string(object),
            },
        },
    })
}

pub async fn scale(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    let name = ctx.name().to_owned();
    if ctx.req.verb == Verb::Get {
        let kv = current(ctx, &name).await?;
        return Ok(json_response(StatusCode::OK, &to_scale(ctx, &decode(&kv)?)));
    }
    let patch = match ctx.req.verb {
        Verb::Patch => Some(read_patch(ctx, &body)?),
        Verb::Update => None,
        _ => return Err(Status::method_not_allowed()),
    };
    let update = match &patch {
        None => Some(decode_body(ctx, &body)?),
        Some(_) => None,
    };
    for _ in 0..MAX_RETRIES {
        let kv = current(ctx, &name).await?;
        let object = decode(&kv)?;
        let wanted = match (&patch, &update) {
            (Some((kind, patch)), _) => {
                let mut scale = to_scale(ctx, &object);
                apply_patch(kind, &mut scale, patch)?;
                scale
            }
            (None, Some(body)) => body.clone(),
            (None, None) => return Err(Status::bad_request("a Scale object is required")),
        };
        let replicas = match wanted.pointer("/spec/replicas") {
            None => 0,
            Some(v) => {
                v.as_i64().ok_or_else(|| Status::bad_request("spec.replicas must be an integer"))?
            }
        };
        if replicas < 0 {
            return Err(Status::failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
            )
            .with_details(&name, "autoscaling", "Scale"));
        }
        let precondition = meta_str(&wanted, "resourceVersion").filter(|rv| !rv.is_empty());
        if precondition.is_some_and(|rv| rv != kv.mod_revision.to_string()) {
            return Err(ctx.conflict(&name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
        let mut scaled = object.clone();
        set_at(&mut scaled, &scale_pointers(ctx).spec_replicas, json!(replicas));
        if let Some(written) = write_update(ctx, &kv, scaled).await? {
            return Ok(json_response(StatusCode::OK, &to_scale(ctx, &written)));
        }
        if precondition.is_some() {
            return Err(ctx.conflict(&name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
    }
    Err(Status::internal("too many concurrent writes to scale"))
}

/// `pods/binding` and the `bindings` resource: assigns a pod to a node, once.
pub async fn bind(ctx: &Ctx<'_>, pod_name: Option<&str>, body: Bytes) -> ApiResult {
    let binding = decode_body_any(&body)?;
    let name = match pod_name {
        Some(n) => n.to_owned(),
        None => meta_str(&binding, "name").unwrap_or_default().to_owned(),
    };
    if let Some(body_name) = meta_str(&binding, "name")
        && body_name != name
    {
        return Err(Status::bad_request("name in URL does not match name in Binding object"));
    }
    let node =
        binding.pointer("/target/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if node.is_empty() {
        return Err(Status::failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("Binding.core \"{name}\" is invalid: target.name: Required value"),
        ));
    }
    let pods = pods_ctx(ctx);
    for _ in 0..MAX_RETRIES {
        let kv = current(&pods, &name).await?;
        let mut pod = decode(&kv)?;
        if meta_str(&pod, "deletionTimestamp").is_some() {
            return Err(pods.conflict(&name, "pod is being deleted, cannot be assigned to a host"));
        }
        match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
            Some(existing) if !existing.is_empty() => {
                return Err(pods.conflict(
                    &name,
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            _ => {}
        }
        if let Some(spec) = object_at(&mut pod, &["spec"]) {
            spec.insert("nodeName".into(), json!(node));
        }
        if let Some(annotations) =
            binding.pointer("/metadata/annotations").and_then(Value::as_object)
            && let Some(meta) = metadata_mut(&mut pod)
        {
            let target = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(target) = target.as_object_mut() {
                for (k, v) in annotations {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        set_condition(&mut pod, "PodScheduled", "True");
        // Written as a whole object: spec.nodeName and the PodScheduled condition together.
        if write_whole(&pods, &kv, pod).await?.is_some() {
            return Ok(success(StatusCode::CREATED));
        }
    }
    Err(Status::internal("too many concurrent writes to bind"))
}

/// `pods/eviction`: deletes the pod with the eviction's delete options. Disruption budgets are
/// checked once the disruption controller maintains their status.
pub async fn evict(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    let eviction = decode_body_any(&body)?;
    let name = ctx.name().to_owned();
    if let Some(body_name) = meta_str(&eviction, "name")
        && body_name != name
    {
        return Err(Status::bad_request("name in URL does not match name in Eviction object"));
    }
    let options = eviction.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let pods = pods_ctx(ctx);
    delete_named(&pods, &name, &options).await?;
    Ok(success(StatusCode::CREATED))
}

/// A Binding or Eviction body: JSON, or protobuf (client-go's typed clients) recognised by its
/// magic bytes, which JSON never starts with.
fn decode_body_any(body: &Bytes) -> ApiResult<Value> {
    let decoded = if crate::protobuf::has_magic(body) {
        crate::protobuf::decode_object(body, None).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    decoded.map_err(|e| {
        Status::bad_request(format!("the object provided is unrecognized or malformed: {e}"))
    })
}

/// The same request, addressed at the pods resource itself.
fn pods_ctx<'a>(ctx: &Ctx<'a>) -> Ctx<'a> {
    let mut pods = ctx.clone();
    if let Some(resource) = Catalog::builtin_lookup("", "v1", "pods") {
        pods.resource = resource.clone();
    }
    pods.req.resource = "pods".into();
    pods.req.subresource = None;
    pods
}

fn set_condition(object: &mut Value, kind: &str, state: &str) {
    let now = super::object::now();
    let Some(status) = object_at(object, &["status"]) else { return };
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Value::Array(conditions) = conditions else { return };
    match conditions.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(kind)) {
        Some(existing) => {
            if existing.get("status").and_then(Value::as_str) != Some(state)
                && let Some(existing) = existing.as_object_mut()
            {
                existing.insert("status".into(), json!(state));
                existing.insert("lastTransitionTime".into(), json!(now));
            }
        }
        None => conditions.push(
            json!({"type": kind, "status": state, "lastProbeTime": null, "lastTransitionTime": now}),
        ),
    }
}
