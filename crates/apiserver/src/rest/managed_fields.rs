//! `metadata.managedFields` on every write: who the manager is, what part of the object the
//! field manager looks at, and the `Update` record of creates, updates and patches.

use std::sync::Arc;

use axum::http::header;
use serde_json::Value;

use super::object::{self, metadata, metadata_mut};
use super::{ApiResult, Ctx};
use crate::managed::{self, Entry, FieldSet, Sent, Writer, typed};
use crate::openapi::FieldSchemas;

/// Upstream's limit on a manager's name.
const MAX_MANAGER_LEN: usize = 128;

/// `?fieldManager=`, else the User-Agent up to its first `/` (`kubectl/v1.33.0 (...)` →
/// `kubectl`), as upstream defaults it.
pub(super) fn manager(ctx: &Ctx<'_>) -> String {
    if let Some(manager) = ctx.params.field_manager.as_deref().filter(|m| !m.is_empty()) {
        return manager.to_owned();
    }
    let agent =
        ctx.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let prefix = agent.split('/').next().unwrap_or_default();
    prefix.chars().take(MAX_MANAGER_LEN).collect()
}

/// The subresource written, as entries record it.
pub(super) fn subresource<'c>(ctx: &'c Ctx<'_>) -> &'c str {
    ctx.req.subresource.as_deref().unwrap_or_default()
}

/// What the field manager tracks of `object`: no type or server-owned metadata, and only
/// the part of the object the endpoint writes (status on `/status`, the rest elsewhere, when
/// the resource has a status subresource).
pub(super) fn tracked(ctx: &Ctx<'_>, object: &Value) -> Value {
    let mut copy = object.clone();
    let Some(map) = copy.as_object_mut() else { return copy };
    map.remove("apiVersion");
    map.remove("kind");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for owned in [
            "name",
            "namespace",
            "generateName",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            meta.remove(owned);
        }
        if meta.is_empty() {
            map.remove("metadata");
        }
    }
    if ctx.resource.subresource("status").is_some() {
        if ctx.is_status() {
            map.retain(|key, _| key == "status");
        } else {
            map.remove("status");
        }
    }
    copy
}

/// The shapes the resource's objects merge by and the root of its objects (None: untyped):
/// the built-in kinds' from OpenAPI, a custom resource's from its CRD.
pub(super) async fn schemas_for(ctx: &Ctx<'_>) -> ApiResult<(Arc<FieldSchemas>, Option<usize>)> {
    if let Some(fields) = ctx.custom().and_then(|c| c.fields.clone()) {
        return Ok((fields, Some(0)));
    }
    let schemas = crate::openapi::field_schemas().await?;
    let resource = &ctx.resource;
    let root = schemas.root(resource.group, resource.version, resource.kind);
    Ok((schemas, root))
}

/// The entries stored on `object` (an invalid stored list counts as none).
pub(super) fn stored_entries(object: &Value) -> Vec<Entry> {
    match managed::decode(metadata(object)) {
        Ok(Sent::Entries(entries)) => entries,
        Ok(Sent::Keep | Sent::Reset) | Err(_) => Vec::new(),
    }
}

/// Writes `entries` into `object`'s metadata (none: the field goes, as upstream omits it).
pub(super) fn set_entries(object: &mut Value, entries: &[Entry]) {
    if let Some(meta) = metadata_mut(object) {
        match managed::encode(entries) {
            Some(list) => meta.insert("managedFields".into(), list),
            None => meta.remove("managedFields"),
        };
    }
}

/// Records an `Update` by this request's manager on `new` (the object about to be stored)
/// over `old` (None on create). Sent managedFields replace the stored ones, `[{}]` clears
/// them, and invalid ones are refused.
pub(super) async fn record_update(
    ctx: &Ctx<'_>,
    old: Option<&Value>,
    new: &mut Value,
) -> ApiResult<()> {
    let name = object::meta_str(new, "name").unwrap_or_default().to_owned();
    let sent =
        managed::decode(metadata(new)).map_err(|e| ctx.invalid(&name, &[(e.field, e.detail)]))?;
    let stored = old.and_then(|o| metadata(o)).and_then(|m| m.get("managedFields")).cloned();
    let mut entries = match sent {
        Sent::Reset => {
            set_entries(new, &[]);
            return Ok(());
        }
        Sent::Entries(entries) => entries,
        Sent::Keep => old.map(stored_entries).unwrap_or_default(),
    };
    let (schemas, root) = schemas_for(ctx).await?;
    let before = old.map(|o| tracked(ctx, o));
    let after = tracked(ctx, new);
    let fields_after = typed::fields_of(schemas.as_ref(), root, &after);
    let changed = typed::changed(&fields_after, before.as_ref(), &after);
    let mut removed = match &before {
        Some(before) => typed::fields_of(schemas.as_ref(), root, before),
        None => FieldSet::new(),
    };
    removed.difference(&fields_after);
    if changed.is_empty() && removed.is_empty() {
        // Nothing of the object changed: the entries stay byte for byte.
        if let Some(meta) = metadata_mut(new) {
            let unchanged =
                meta.get("managedFields").is_none_or(|sent| Some(sent) == stored.as_ref());
            if unchanged {
                match stored {
                    Some(list) => meta.insert("managedFields".into(), list),
                    None => meta.remove("managedFields"),
                };
                return Ok(());
            }
        }
        set_entries(new, &entries);
        return Ok(());
    }
    let manager = manager(ctx);
    let api_version = ctx.served_as.as_ref().unwrap_or(&ctx.resource).api_version();
    let time = object::now();
    let writer = Writer {
        manager: &manager,
        api_version: &api_version,
        subresource: subresource(ctx),
        time: &time,
    };
    managed::record_update(&mut entries, &writer, &changed, &removed);
    set_entries(new, &entries);
    Ok(())
}
