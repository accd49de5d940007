//! Server-side apply: `PATCH` with `application/apply-patch+yaml`. The body is the manager's
//! whole intent for the object (YAML or JSON); it is merged into the live object by the
//! resource's schema (`crate::managed`), creating the object when it is missing.

use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::Value;

use super::field_validation::{self, with_warnings};
use super::managed_fields::{self, manager, schemas_for, set_entries, stored_entries, tracked};
use super::object::{decode, meta_str, metadata, metadata_mut};
use super::write::{check_namespace, check_type_meta, create_object, current, write_applied};
use super::{ApiResult, Ctx, json_response};
use crate::managed::{self, Writer};
use crate::status::Status;

const MAX_RETRIES: usize = 16;

/// Nulls say nothing in an applied configuration.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

pub(super) async fn apply(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    let name = ctx.name().to_owned();
    let manager = manager(ctx);
    if ctx.params.field_manager.as_deref().is_none_or(str::is_empty) {
        return Err(Status::failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        )
        .with_details("", "meta.k8s.io", "PatchOptions")
        .with_causes(vec![serde_json::json!({
            "reason": "FieldValueRequired",
            "message": "Required value: is required for apply patch",
            "field": "fieldManager",
        })]));
    }
    // YAML is a superset of JSON: one parser reads both.
    let mut config: Value = serde_saphyr::from_slice(&body)
        .map_err(|e| Status::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(Status::bad_request(
            "error decoding YAML: the configuration must be an object",
        ));
    }
    drop_nulls(&mut config);
    if let Some(served) = &ctx.served_as {
        config = super::legacy::body_to_storage(served, &ctx.resource, config);
    }
    check_type_meta(ctx, &mut config)?;
    let warnings = field_validation::check(ctx, &mut config, None).await?;
    check_namespace(ctx, &mut config)?;
    match meta_str(&config, "name") {
        Some(n) if n == name => {}
        Some(n) => {
            return Err(Status::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        None => {
            if let Some(meta) = metadata_mut(&mut config) {
                meta.insert("name".into(), name.clone().into());
            }
        }
    }
    if metadata(&config).is_some_and(|m| m.contains_key("managedFields")) {
        return Err(Status::bad_request(
            "metadata.managedFields must be nil in an apply configuration",
        ));
    }

    let (schemas, root) = schemas_for(ctx).await?;
    let intent = tracked(ctx, &config);
    let api_version = ctx.served_as.as_ref().unwrap_or(&ctx.resource).api_version();
    let subresource = managed_fields::subresource(ctx).to_owned();
    for _ in 0..MAX_RETRIES {
        let time = super::object::now();
        let writer = Writer {
            manager: &manager,
            api_version: &api_version,
            subresource: &subresource,
            time: &time,
        };
        let kv = match current(ctx, &name).await {
            Ok(kv) => kv,
            Err(status) if status.code() == 404 && subresource.is_empty() => {
                let applied = managed::apply(
                    schemas.as_ref(),
                    root,
                    &Value::Object(Default::default()),
                    &intent,
                    &[],
                    &writer,
                    ctx.params.force,
                )
                .map_err(|c| conflict(ctx, &name, &c))?;
                let mut object = config.clone();
                set_entries(&mut object, &applied.entries);
                match create_object(ctx, object, name.clone(), &warnings, false).await {
                    Err(status) if status.reason() == "AlreadyExists" => continue,
                    other => return other,
                }
            }
            Err(status) => return Err(status),
        };
        let live = decode(&kv)?;
        let entries = stored_entries(&live);
        let applied = managed::apply(
            schemas.as_ref(),
            root,
            &tracked(ctx, &live),
            &intent,
            &entries,
            &writer,
            ctx.params.force,
        )
        .map_err(|c| conflict(ctx, &name, &c))?;
        let mut object = applied.object;
        // What the field manager does not look at comes back from the live object.
        if let (Some(live_map), Some(map)) = (live.as_object(), object.as_object_mut()) {
            for (key, value) in live_map {
                if key != "metadata" && !map.contains_key(key) && !is_tracked(ctx, key) {
                    map.insert(key.clone(), value.clone());
                }
            }
        }
        if let (Some(live_meta), Some(meta)) = (metadata(&live).cloned(), metadata_mut(&mut object))
        {
            for (key, value) in live_meta {
                if !tracked_metadata(&key) {
                    meta.insert(key, value);
                }
            }
        }
        set_entries(&mut object, &applied.entries);
        if manager == "kubectl" {
            sync_last_applied(&mut object, &config);
        }
        if let Some(written) = write_applied(ctx, &kv, object).await? {
            let code = StatusCode::OK;
            return Ok(with_warnings(json_response(code, &written), &warnings));
        }
    }
    Err(ctx.conflict(
        &name,
        "the object has been modified; please apply your changes to the latest version and try again",
    ))
}

/// kubectl's client-side apply record.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A `kubectl apply --server-side` of an object client-side apply manages also rewrites the
/// last-applied annotation to the applied configuration, as upstream's field manager does, so
/// that a later client-side apply compares against what was really applied.
fn sync_last_applied(object: &mut Value, config: &Value) {
    let has_it = metadata(object)
        .and_then(|m| m.get("annotations"))
        .is_some_and(|a| a.get(LAST_APPLIED).is_some());
    if !has_it {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) =
        applied.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
    }
    let Ok(mut text) = serde_json::to_string(&applied) else { return };
    // Encoded as upstream's encoder writes it: with a newline.
    text.push('\n');
    if let Some(annotations) =
        object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut)
    {
        annotations.insert(LAST_APPLIED.into(), Value::String(text));
    }
}

/// Whether the top-level `key` is one the field manager merges on this endpoint.
fn is_tracked(ctx: &Ctx<'_>, key: &str) -> bool {
    let probe = serde_json::json!({ key: true });
    tracked(ctx, &probe).get(key).is_some()
}

/// Whether a metadata field is one the field manager merges (the rest is the server's).
fn tracked_metadata(key: &str) -> bool {
    !matches!(
        key,
        "name"
            | "namespace"
            | "generateName"
            | "uid"
            | "resourceVersion"
            | "generation"
            | "creationTimestamp"
            | "deletionTimestamp"
            | "deletionGracePeriodSeconds"
            | "selfLink"
            | "managedFields"
    )
}

/// 409 with upstream's apply conflict message and one `FieldManagerConflict` cause each.
fn conflict(ctx: &Ctx<'_>, name: &str, conflicts: &[managed::Conflict]) -> Status {
    let (message, causes) = managed::conflict_message(conflicts);
    Status::failure(StatusCode::CONFLICT, "Conflict", message)
        .with_details(name, ctx.resource.group, ctx.resource.plural)
        .with_causes(causes)
}
