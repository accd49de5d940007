//! create, update (also of `status`), patch, delete and deletecollection.

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use krust_api::catalog::Catalog;
use krust_store::{
    Compare, CompareOp, KeyValue, RangeRequest, StoreExt, TxnOp, TxnOpResponse, TxnRequest,
    WriteOutcome, prefix_end,
};
use serde_json::{Value, json};

use super::allocate;
use super::field_validation::{self, with_warnings};
use super::managed_fields;
use super::object::{self, decode, encode, meta_str, metadata, metadata_mut};
use super::read::{Filter, list_page};
use super::{ApiResult, Ctx, json_response, store_error};
use crate::status::Status;

/// Retries of an update or patch that lost a race and has no resourceVersion precondition.
const MAX_RETRIES: usize = 16;

const JSON: &str = "application/json";
const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
pub(super) const APPLY_PATCH: &str = "application/apply-patch+yaml";

pub(super) fn content_type(ctx: &Ctx<'_>) -> String {
    ctx.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

const YAML: &str = "application/yaml";
const PROTOBUF: &str = crate::protobuf::CONTENT_TYPE;

/// A create or update body: JSON (a missing Content-Type means JSON, as the Python client
/// sends it), YAML, or protobuf (kubectl 1.32+ and client-go typed clients), which becomes
/// the JSON the same object would have been sent as.
pub(super) fn decode_body(ctx: &Ctx<'_>, body: &Bytes) -> ApiResult<Value> {
    let ct = content_type(ctx);
    let value: Value = match ct.as_str() {
        "" | JSON | "*/*" => serde_json::from_slice(body).map_err(|e| {
            Status::bad_request(format!(
                "the object provided is unrecognized or malformed: couldn't get version/kind; json parse error: {e}"
            ))
        })?,
        YAML => serde_saphyr::from_slice(body).map_err(|e| {
            Status::bad_request(format!(
                "the object provided is unrecognized or malformed: couldn't get version/kind; yaml parse error: {e}"
            ))
        })?,
        PROTOBUF => {
            let url_type = (ctx.resource.api_version(), ctx.resource.kind);
            crate::protobuf::decode_object(body, Some((&url_type.0, url_type.1))).map_err(|e| {
                Status::bad_request(format!(
                    "the object provided is unrecognized or malformed: {e}"
                ))
            })?
        }
        other => return Err(Status::unsupported_media_type(other, &[JSON, YAML, PROTOBUF])),
    };
    if !value.is_object() {
        return Err(Status::bad_request(
            "the object provided is unrecognized or malformed: the body must be an object",
        ));
    }
    Ok(match &ctx.served_as {
        Some(served) => super::legacy::body_to_storage(served, &ctx.resource, value),
        None => value,
    })
}

/// The raw body when it is JSON (duplicate fields are looked for in it).
fn json_body<'b>(ctx: &Ctx<'_>, body: &'b Bytes) -> Option<&'b [u8]> {
    matches!(content_type(ctx).as_str(), "" | JSON).then_some(body.as_ref())
}

/// apiVersion and kind default from the URL; a body that names another type is refused.
pub(super) fn check_type_meta(ctx: &Ctx<'_>, object: &mut Value) -> ApiResult<()> {
    let expected_version = ctx.resource.api_version();
    let expected_kind = ctx.resource.kind;
    let Some(map) = object.as_object_mut() else { return Ok(()) };
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), expected_version.clone().into());
        }
        Some(v) if v == expected_version => {}
        Some(v) => {
            return Err(Status::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected_version})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), expected_kind.into());
        }
        Some(k) if k == expected_kind => {}
        Some(k) => {
            return Err(Status::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({expected_kind})"
            )));
        }
    }
    Ok(())
}

/// The object's namespace must agree with the URL's; cluster-scoped objects carry none.
pub(super) fn check_namespace(ctx: &Ctx<'_>, object: &mut Value) -> ApiResult<()> {
    let url_ns = ctx.namespace().map(str::to_owned);
    let Some(meta) = metadata_mut(object) else { return Ok(()) };
    match (url_ns, meta.get("namespace").and_then(Value::as_str).map(str::to_owned)) {
        (Some(url), None) => {
            meta.insert("namespace".into(), url.into());
        }
        (Some(url), Some(body)) if body.is_empty() => {
            meta.insert("namespace".into(), url.into());
        }
        (Some(url), Some(body)) if url != body => {
            return Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (Some(_), Some(_)) => {}
        (None, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

fn validate_name(ctx: &Ctx<'_>, name: &str) -> ApiResult<()> {
    let errors = krust_api::names::name_rule(ctx.resource.group, ctx.resource.kind).validate(name);
    if errors.is_empty() {
        return Ok(());
    }
    let detail = format!("Invalid value: \"{name}\": {}", errors.join(", "));
    Err(ctx.invalid(name, &[("metadata.name".to_owned(), detail)]))
}

/// The kind's own rules (`krust_api::validation`), as a 422 with upstream's field errors.
/// `old`: the object an update replaces (for custom resources' transition rules).
fn validate_kind(ctx: &Ctx<'_>, name: &str, object: &Value, old: Option<&Value>) -> ApiResult<()> {
    let mut errors = krust_api::validation::validate(ctx.resource.group, ctx.resource.kind, object);
    if ctx.is_crd() {
        errors.extend(crate::crd::validate(object));
    }
    if let Some(custom) = ctx.custom() {
        if let Some(schema) = &custom.schema {
            errors.extend(schema.validate(object));
        }
        if let Some(rules) = &custom.rules {
            errors.extend(rules.validate(object, old));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(ctx.invalid_fields(name, &errors))
}

/// NamespaceLifecycle: no new objects in a namespace that is missing or terminating.
async fn check_namespace_admits(ctx: &Ctx<'_>, name: &str) -> ApiResult<()> {
    let Some(ns) = ctx.namespace() else { return Ok(()) };
    let key = format!("/registry/namespaces/{ns}");
    // As upstream's NamespaceLifecycle admission: the namespaces cache, the store for a
    // namespace the cache does not hold (yet).
    let namespaces = Catalog::builtin_lookup("", "v1", "namespaces");
    let cached = namespaces
        .and_then(|r| ctx.state.caches.existing(r))
        .and_then(|cache| cache.get(&key))
        .map(|object| object.key_value());
    let stored = match cached {
        Some(kv) => vec![kv],
        None => ctx.store().range(RangeRequest::key(key)).await.map_err(store_error)?.kvs,
    };
    let Some(kv) = stored.first() else {
        return Err(Status::failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
        )
        .with_details(ns, "", "namespaces"));
    };
    let namespace = decode(kv)?;
    let terminating = meta_str(&namespace, "deletionTimestamp").is_some()
        || namespace.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating");
    if terminating {
        return Err(Status::forbidden(format!(
            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.resource.qualified_name()
        ))
        .with_details(name, ctx.resource.group, ctx.resource.plural));
    }
    Ok(())
}

fn has_status_subresource(ctx: &Ctx<'_>) -> bool {
    ctx.resource.subresource("status").is_some()
}

/// Nodes are created by their kubelet with status filled in (upstream's node strategy keeps it).
fn keeps_status_on_create(ctx: &Ctx<'_>) -> bool {
    ctx.resource.group.is_empty() && ctx.resource.kind == "Node"
}

/// What upstream's create strategies reset: server-owned metadata, and status where a
/// status subresource owns it.
fn prepare_for_create(ctx: &Ctx<'_>, object: &mut Value) {
    let has_spec = object.get("spec").is_some();
    if let Some(meta) = metadata_mut(object) {
        meta.insert("uid".into(), object::new_uid().into());
        meta.insert("creationTimestamp".into(), object::now().into());
        for server_owned in
            ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]
        {
            meta.remove(server_owned);
        }
        if has_spec {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }
    let is_namespace = ctx.resource.group.is_empty() && ctx.resource.kind == "Namespace";
    if is_namespace {
        // Namespace strategy: the `kubernetes` finalizer lets the namespace controller empty
        // it before it goes; a new namespace is Active and labelled with its name.
        let name = meta_str(object, "name").map(str::to_owned);
        if let Some(spec) = object::object_at(object, &["spec"])
            && spec.get("finalizers").is_none()
        {
            spec.insert("finalizers".into(), json!(["kubernetes"]));
        }
        if let Some(map) = object.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Active"}));
        }
        if let (Some(name), Some(labels)) =
            (name, object::object_at(object, &["metadata", "labels"]))
        {
            labels.insert("kubernetes.io/metadata.name".into(), name.into());
        }
    } else if has_status_subresource(ctx)
        && !keeps_status_on_create(ctx)
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
    super::defaults::apply(ctx.resource.group, ctx.resource.kind, object);
    if ctx.is_crd() {
        crate::crd::prepare_for_create(object);
    }
    custom_defaults(ctx, object);
}

/// A custom resource's schema defaults, on every write (as upstream defaults the request).
fn custom_defaults(ctx: &Ctx<'_>, object: &mut Value) {
    if let Some(schema) = ctx.custom().as_ref().and_then(|c| c.schema.as_ref()) {
        schema.default(object);
    }
}

pub async fn create(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    if ctx.req.name.is_some() {
        return Err(Status::method_not_allowed());
    }
    let mut object = decode_body(ctx, &body)?;
    check_type_meta(ctx, &mut object)?;
    let warnings = field_validation::check(ctx, &mut object, json_body(ctx, &body)).await?;
    check_namespace(ctx, &mut object)?;

    let name = match meta_str(&object, "name").filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => match meta_str(&object, "generateName").filter(|n| !n.is_empty()) {
            Some(prefix) => {
                let name = format!("{prefix}{}", object::name_suffix());
                if let Some(meta) = metadata_mut(&mut object) {
                    meta.insert("name".into(), name.clone().into());
                }
                name
            }
            None => {
                return Err(ctx.invalid(
                    "",
                    &[(
                        "metadata.name".into(),
                        "Required value: name or generateName is required".into(),
                    )],
                ));
            }
        },
    };
    create_object(ctx, object, name, &warnings, true).await
}

/// Creates `object` named `name` (type meta and namespace checked). `track`: record the
/// creator's `Update` in managedFields (an apply has recorded its own entry already).
pub(super) async fn create_object(
    ctx: &Ctx<'_>,
    mut object: Value,
    name: String,
    warnings: &[String],
    track: bool,
) -> ApiResult {
    validate_name(ctx, &name)?;
    if ctx.custom().is_some_and(|c| c.terminating) {
        return Err(Status::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        ));
    }
    check_namespace_admits(ctx, &name).await?;
    prepare_for_create(ctx, &mut object);
    validate_kind(ctx, &name, &object, None)?;
    if track {
        managed_fields::record_update(ctx, None, &mut object).await?;
    }

    let lease = ctx.state.lease_for(&ctx.resource).await.map_err(store_error)?;
    let key = ctx.key(&name);
    for _ in 0..MAX_RETRIES {
        let mut candidate = object.clone();
        let claims = allocate::plan_create(ctx, &mut candidate)?;
        if ctx.params.dry_run {
            return Ok(with_warnings(json_response(StatusCode::CREATED, &candidate), warnings));
        }
        // The object and everything it claims are written together, or not at all.
        let mut compares = vec![Compare::absent(key.clone())];
        let mut puts = vec![TxnOp::put_with_lease(key.clone(), encode(&candidate)?, lease)];
        for claim in &claims {
            compares.push(Compare::absent(claim.key.clone()));
            puts.push(TxnOp::put(claim.key.clone(), claim.value.clone()));
        }
        let mut failure = vec![TxnOp::get(key.clone())];
        failure.extend(claims.iter().map(|c| TxnOp::get(c.key.clone())));
        let resp = ctx
            .store()
            .txn(TxnRequest::new().when(compares).and_then(puts).or_else(failure))
            .await
            .map_err(store_error)?;
        if resp.succeeded {
            object::set_resource_version(&mut candidate, resp.header_revision);
            return Ok(with_warnings(json_response(StatusCode::CREATED, &candidate), warnings));
        }
        let present: Vec<bool> = resp
            .responses
            .iter()
            .map(|r| matches!(r, TxnOpResponse::Range(r) if !r.kvs.is_empty()))
            .collect();
        if present.first().copied().unwrap_or(true) {
            return Err(ctx.already_exists(&name));
        }
        // A claim collided: the client's own choice is its error; ours we pick again.
        for (claim, taken) in claims.iter().zip(present.iter().skip(1)) {
            if *taken && claim.requested {
                return Err(allocate::taken(ctx, &name, claim));
            }
        }
    }
    Err(Status::internal("could not allocate the object's addresses after several attempts"))
}

/// The stored object as the base of a compare-and-swap write. A first attempt takes it from
/// the watch cache when the cache holds it (a cache lags the store by milliseconds at most,
/// and a stale base only makes the compare fail); later attempts read the store.
/// Whatever an attempt on a cached base concludes — an error included — is only a guess:
/// callers retry from the store unless the attempt succeeded.
pub(super) async fn write_base(
    ctx: &Ctx<'_>,
    name: &str,
    attempt: usize,
) -> ApiResult<(KeyValue, bool)> {
    if attempt == 0
        && let Some(cache) = ctx.state.caches.existing(&ctx.resource)
        && let Some(object) = cache.get(&ctx.key(name))
    {
        return Ok((object.key_value(), true));
    }
    Ok((current(ctx, name).await?, false))
}

pub(super) async fn current(ctx: &Ctx<'_>, name: &str) -> ApiResult<KeyValue> {
    let resp = ctx.store().range(RangeRequest::key(ctx.key(name))).await.map_err(store_error)?;
    resp.kvs.into_iter().next().ok_or_else(|| ctx.not_found(name))
}

/// Builds the object to store from the client's `new` and the stored `old`: the server-owned
/// metadata stays, a main-resource write leaves status alone and a status write changes
/// nothing but status; generation moves when spec changes.
fn merge_for_update(ctx: &Ctx<'_>, old: &Value, mut new: Value) -> Value {
    if ctx.req.subresource.as_deref() == Some("finalize") {
        // A namespace's `finalize` write changes nothing but `spec.finalizers`.
        let mut merged = old.clone();
        let finalizers = new.pointer_mut("/spec/finalizers").map(Value::take);
        if let Some(spec) = object::object_at(&mut merged, &["spec"]) {
            match finalizers {
                Some(f) => spec.insert("finalizers".into(), f),
                None => spec.remove("finalizers"),
            };
        }
        return merged;
    }
    if ctx.is_status() {
        let mut merged = old.clone();
        if let Some(map) = merged.as_object_mut() {
            match new.get("status") {
                Some(status) => map.insert("status".into(), status.clone()),
                None => map.remove("status"),
            };
        }
        return merged;
    }
    if let (Some(old_meta), Some(new_meta)) = (metadata(old).cloned(), metadata_mut(&mut new)) {
        for kept in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match old_meta.get(kept) {
                Some(v) => new_meta.insert(kept.into(), v.clone()),
                None => new_meta.remove(kept),
            };
        }
        new_meta.remove("selfLink");
    }
    if has_status_subresource(ctx)
        && let Some(map) = new.as_object_mut()
    {
        match old.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
    if old.get("spec") != new.get("spec")
        && let Some(meta) = metadata_mut(&mut new)
        && let Some(generation) = meta.get("generation").and_then(Value::as_i64)
    {
        meta.insert("generation".into(), json!(generation + 1));
    }
    new
}

fn without_rv(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(meta) = metadata_mut(&mut copy) {
        meta.remove("resourceVersion");
    }
    copy
}

/// Writes `new` over the stored `kv` with compare-and-swap. `Ok(None)` means another writer
/// won the race and the caller may retry.
pub(super) async fn write_update(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    new: Value,
) -> ApiResult<Option<Value>> {
    write_tracked(ctx, kv, new, true).await
}

/// [`write_update`] of an object whose managedFields an apply has already computed.
pub(super) async fn write_applied(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    new: Value,
) -> ApiResult<Option<Value>> {
    write_tracked(ctx, kv, new, false).await
}

async fn write_tracked(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    new: Value,
    track: bool,
) -> ApiResult<Option<Value>> {
    let old = decode(kv)?;
    let mut merged = merge_for_update(ctx, &old, new);
    super::defaults::on_write(ctx.resource.group, ctx.resource.kind, &mut merged);
    custom_defaults(ctx, &mut merged);
    if ctx.req.subresource.is_none() {
        let name = meta_str(&merged, "name").unwrap_or_default().to_owned();
        validate_kind(ctx, &name, &merged, Some(&old))?;
        let errors = krust_api::validation::validate_update(
            ctx.resource.group,
            ctx.resource.kind,
            &old,
            &merged,
        );
        if !errors.is_empty() {
            return Err(ctx.invalid_fields(&name, &errors));
        }
    }
    if track {
        managed_fields::record_update(ctx, Some(&old), &mut merged).await?;
    }
    let plan = allocate::plan_update(ctx, &old, &mut merged)?;
    write_merged(ctx, kv, &old, merged, plan).await
}

/// Writes `object` as given (server-owned fields already in place): for writes that span
/// spec and status, such as a binding.
pub(super) async fn write_whole(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    object: Value,
) -> ApiResult<Option<Value>> {
    let old = decode(kv)?;
    write_merged(ctx, kv, &old, object, allocate::Reallocation::default()).await
}

async fn write_merged(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    old: &Value,
    mut merged: Value,
    plan: allocate::Reallocation,
) -> ApiResult<Option<Value>> {
    let name = meta_str(old, "name").unwrap_or_default().to_owned();

    // A no-op write is not written: the resourceVersion stays, watchers see nothing.
    if without_rv(&merged) == without_rv(old) {
        return Ok(Some(old.clone()));
    }
    // The last finalizer gone from an object being deleted: it goes now.
    let finalizers_empty = metadata(&merged)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let deleting = meta_str(&merged, "deletionTimestamp").is_some();
    if ctx.params.dry_run {
        return Ok(Some(merged));
    }
    if deleting && finalizers_empty && !is_namespace_with_spec_finalizers(ctx, &merged) {
        return match ctx
            .store()
            .delete_if(&ctx.key(&name), kv.mod_revision)
            .await
            .map_err(store_error)?
        {
            WriteOutcome::Applied { revision } => {
                // Stamped with the deletion's revision, as the watch reports it.
                object::set_resource_version(&mut merged, revision);
                Ok(Some(merged))
            }
            WriteOutcome::Conflict { .. } => Ok(None),
        };
    }
    let outcome = if plan.claims.is_empty() && plan.releases.is_empty() {
        ctx.store()
            .update_if(&ctx.key(&name), encode(&merged)?, kv.mod_revision, kv.lease)
            .await
            .map_err(store_error)?
    } else {
        match write_with_claims(ctx, kv, &name, &merged, &plan).await? {
            Some(outcome) => outcome,
            // One of our own picks was taken meanwhile: the caller tries again.
            None => return Ok(None),
        }
    };
    match outcome {
        WriteOutcome::Applied { revision } => {
            object::set_resource_version(&mut merged, revision);
            Ok(Some(merged))
        }
        WriteOutcome::Conflict { current: None } => Err(ctx.not_found(&name)),
        WriteOutcome::Conflict { current: Some(_) } => Ok(None),
    }
}

/// An update that also claims and releases keys (a Service's node ports and IPs), all in one
/// transaction. None when a key we picked ourselves turned out to be taken.
async fn write_with_claims(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    name: &str,
    merged: &Value,
    plan: &allocate::Reallocation,
) -> ApiResult<Option<WriteOutcome>> {
    let key = ctx.key(name);
    let mut compares = vec![Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision)];
    let mut ops = vec![TxnOp::put_with_lease(key.clone(), encode(merged)?, kv.lease)];
    for claim in &plan.claims {
        compares.push(Compare::absent(claim.key.clone()));
        ops.push(TxnOp::put(claim.key.clone(), claim.value.clone()));
    }
    ops.extend(plan.releases.iter().map(|k| TxnOp::delete(k.clone())));
    let mut failure = vec![TxnOp::get(key)];
    failure.extend(plan.claims.iter().map(|c| TxnOp::get(c.key.clone())));
    let resp = ctx
        .store()
        .txn(TxnRequest::new().when(compares).and_then(ops).or_else(failure))
        .await
        .map_err(store_error)?;
    if resp.succeeded {
        return Ok(Some(WriteOutcome::Applied { revision: resp.header_revision }));
    }
    let mut responses = resp.responses.into_iter().map(|r| match r {
        TxnOpResponse::Range(r) => r.kvs.into_iter().next(),
        _ => None,
    });
    let current = responses.next().flatten();
    if current.as_ref().is_none_or(|c| c.mod_revision != kv.mod_revision) {
        return Ok(Some(WriteOutcome::Conflict { current }));
    }
    for (claim, holder) in plan.claims.iter().zip(responses) {
        if holder.is_some() && claim.requested {
            return Err(allocate::taken(ctx, name, claim));
        }
    }
    Ok(None)
}

fn is_namespace_with_spec_finalizers(ctx: &Ctx<'_>, object: &Value) -> bool {
    ctx.resource.group.is_empty()
        && ctx.resource.kind == "Namespace"
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

fn stale(ctx: &Ctx<'_>) -> Status {
    ctx.conflict(
        ctx.name(),
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

pub async fn update(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    let mut new = decode_body(ctx, &body)?;
    check_type_meta(ctx, &mut new)?;
    let warnings = field_validation::check(ctx, &mut new, json_body(ctx, &body)).await?;
    check_namespace(ctx, &mut new)?;
    let name = ctx.name();
    match meta_str(&new, "name") {
        Some(n) if n == name => {}
        Some(n) => {
            return Err(Status::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        None => {
            if let Some(meta) = metadata_mut(&mut new) {
                meta.insert("name".into(), name.into());
            }
        }
    }
    let precondition = match meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty()) {
        Some(rv) => Some(super::read::parse_rv(rv)?),
        None => None,
    };
    for attempt in 0..MAX_RETRIES {
        let (kv, cached) = write_base(ctx, name, attempt).await?;
        if precondition.is_some_and(|rv| rv != kv.mod_revision) {
            if cached {
                continue;
            }
            return Err(stale(ctx));
        }
        match write_update(ctx, &kv, new.clone()).await {
            Ok(Some(object)) if cached && unwritten(&object, &kv) => continue,
            Ok(Some(object)) => {
                return Ok(with_warnings(json_response(StatusCode::OK, &object), &warnings));
            }
            Err(_) if cached => continue,
            Err(status) => return Err(status),
            Ok(None) if cached => continue,
            Ok(None) if precondition.is_some() => return Err(stale(ctx)),
            Ok(None) => {}
        }
    }
    Err(stale(ctx))
}

/// The patch type of a PATCH request and its decoded body.
pub(super) fn read_patch(ctx: &Ctx<'_>, body: &Bytes) -> ApiResult<(&'static str, Value)> {
    let ct = content_type(ctx);
    // Custom resources have no patch strategies: upstream refuses strategic merge for them.
    let scale = ctx.req.subresource.as_deref() == Some("scale");
    if ct == STRATEGIC_MERGE_PATCH && !scale && ctx.custom().is_some() {
        return Err(Status::unsupported_media_type(&ct, &[JSON_PATCH, MERGE_PATCH, APPLY_PATCH]));
    }
    let patch_kind = match ct.as_str() {
        JSON_PATCH => JSON_PATCH,
        MERGE_PATCH => MERGE_PATCH,
        STRATEGIC_MERGE_PATCH => STRATEGIC_MERGE_PATCH,
        _ => {
            return Err(Status::unsupported_media_type(
                &ct,
                &[JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH],
            ));
        }
    };
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
    Ok((patch_kind, patch))
}

/// Applies a decoded patch of `patch_kind` to `target`.
pub(super) fn apply_patch(patch_kind: &str, target: &mut Value, patch: &Value) -> ApiResult<()> {
    let mut patched = std::mem::take(target);
    match patch_kind {
        JSON_PATCH => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut patched, &ops).map_err(|e| {
                Status::failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        STRATEGIC_MERGE_PATCH => {
            krust_api::strategic::apply(&mut patched, patch)
                .map_err(|e| Status::bad_request(e.to_string()))?;
        }
        _ => {
            if !patch.is_object() {
                return Err(Status::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(&mut patched, patch);
        }
    }
    *target = patched;
    Ok(())
}

pub async fn patch(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    if content_type(ctx) == APPLY_PATCH {
        return super::apply::apply(ctx, body).await;
    }
    let (patch_kind, patch) = read_patch(ctx, &body)?;
    let name = ctx.name();
    for attempt in 0..MAX_RETRIES {
        let (kv, cached) = write_base(ctx, name, attempt).await?;
        match patch_once(ctx, &kv, patch_kind, &patch).await {
            // A no-op on a cached base is confirmed against the store.
            Ok(Some((object, _))) if cached && unwritten(&object, &kv) => continue,
            Ok(Some((object, warnings))) => {
                return Ok(with_warnings(json_response(StatusCode::OK, &object), &warnings));
            }
            Err(_) | Ok(None) if cached => continue,
            Err(status) => return Err(status),
            Ok(None) => {}
        }
    }
    Err(stale(ctx))
}

/// Whether a write answered with its base unchanged (a no-op, nothing written).
fn unwritten(object: &Value, base: &KeyValue) -> bool {
    meta_str(object, "resourceVersion") == Some(base.mod_revision.to_string().as_str())
}

/// One attempt at a patch on the base `kv`: the response, or None when another write won the
/// race (the caller tries again).
async fn patch_once(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    patch_kind: &'static str,
    patch: &Value,
) -> ApiResult<Option<(Value, Vec<String>)>> {
    let name = ctx.name();
    let old = decode(kv)?;
    // A patch applies in the terms of the version the client addressed.
    let mut patched = match &ctx.served_as {
        Some(served) => super::legacy::object_to_served(served, old.clone()),
        None => old.clone(),
    };
    apply_patch(patch_kind, &mut patched, patch)?;
    if let Some(served) = &ctx.served_as {
        patched = super::legacy::body_to_storage(served, &ctx.resource, patched);
    }
    let warnings = field_validation::check(ctx, &mut patched, None).await?;
    // A resourceVersion in the patch is a precondition, as upstream treats it.
    let precondition = meta_str(&patched, "resourceVersion").map(str::to_owned);
    if let Some(rv) = precondition.as_deref()
        && rv != kv.mod_revision.to_string()
    {
        return Err(stale(ctx));
    }
    if patched.get("apiVersion") != old.get("apiVersion") || patched.get("kind") != old.get("kind")
    {
        return Err(Status::bad_request("apiVersion and kind cannot be changed by a patch"));
    }
    if meta_str(&patched, "name") != meta_str(&old, "name") {
        return Err(ctx.invalid(
            name,
            &[("metadata.name".into(), "Invalid value: the name cannot be changed".into())],
        ));
    }
    match write_update(ctx, kv, patched).await? {
        Some(object) => Ok(Some((object, warnings))),
        None if precondition.is_some() => Err(stale(ctx)),
        None => Ok(None),
    }
}

/// `DeleteOptions` from the body and the query, as upstream merges them.
struct DeleteOptions {
    propagation: Option<String>,
    precondition_uid: Option<String>,
    precondition_rv: Option<String>,
    grace_period: Option<i64>,
}

fn delete_options(ctx: &Ctx<'_>, body: &Bytes) -> ApiResult<DeleteOptions> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return delete_options_from(ctx, &Value::Null);
    }
    // client-go's typed clients send DeleteOptions as protobuf.
    let value: Value = if crate::protobuf::has_magic(body) {
        crate::protobuf::decode_object(body, Some(("v1", "DeleteOptions")))
            .map_err(|e| Status::bad_request(format!("error decoding DeleteOptions: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| Status::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    delete_options_from(ctx, &value)
}

fn delete_options_from(ctx: &Ctx<'_>, value: &Value) -> ApiResult<DeleteOptions> {
    let mut options = DeleteOptions {
        propagation: ctx.params.propagation_policy.clone(),
        precondition_uid: None,
        precondition_rv: None,
        grace_period: ctx.params.grace_period_seconds,
    };
    if ctx.params.orphan_dependents == Some(true) && options.propagation.is_none() {
        options.propagation = Some("Orphan".into());
    }
    if let Some(grace) = value.get("gracePeriodSeconds").and_then(Value::as_i64) {
        options.grace_period = Some(grace);
    }
    if let Some(p) = value.get("propagationPolicy").and_then(Value::as_str) {
        options.propagation = Some(p.to_owned());
    } else if value.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
        options.propagation = Some("Orphan".into());
    }
    options.precondition_uid =
        value.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_owned);
    options.precondition_rv =
        value.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_owned);
    if value.get("dryRun").and_then(Value::as_array).is_some_and(|d| d.iter().any(|v| v == "All")) {
        // Handled by the caller through ctx.params for query-borne dryRun; body-borne here.
        return Err(Status::bad_request(
            "dryRun in the DeleteOptions body is not supported; use the dryRun=All query parameter",
        ));
    }
    match options.propagation.as_deref() {
        None | Some("Orphan" | "Background" | "Foreground") => Ok(options),
        Some(other) => Err(Status::failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            ),
        )),
    }
}

pub async fn delete(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    let options = delete_options(ctx, &body)?;
    let object = delete_with(ctx, ctx.name(), &options).await?;
    Ok(json_response(StatusCode::OK, &object))
}

/// Deletes `name` with `options` given as a DeleteOptions JSON value (an eviction's).
pub(super) async fn delete_named(ctx: &Ctx<'_>, name: &str, options: &Value) -> ApiResult<Value> {
    let options = delete_options_from(ctx, options)?;
    delete_with(ctx, name, &options).await
}

async fn delete_with(ctx: &Ctx<'_>, name: &str, options: &DeleteOptions) -> ApiResult<Value> {
    for _ in 0..MAX_RETRIES {
        let kv = current(ctx, name).await?;
        if let Some(object) = delete_one(ctx, &kv, options).await? {
            return Ok(object);
        }
    }
    Err(stale(ctx))
}

/// How long a pod bound to a node gets to stop (upstream's pod strategy): the request's
/// grace period, else the pod's `terminationGracePeriodSeconds`, else 30 s. Pods that never
/// reached a node, or already finished, go at once.
fn pod_grace_period(ctx: &Ctx<'_>, pod: &Value, options: &DeleteOptions) -> Option<i64> {
    if !(ctx.resource.group.is_empty() && ctx.resource.kind == "Pod") {
        return None;
    }
    let bound =
        pod.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !bound || finished {
        return None;
    }
    let grace = options
        .grace_period
        .or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30);
    (grace > 0).then_some(grace)
}

/// Deletes one object, or marks it for deletion when finalizers must run first.
/// `Ok(None)`: lost a race; retry.
async fn delete_one(
    ctx: &Ctx<'_>,
    kv: &KeyValue,
    options: &DeleteOptions,
) -> ApiResult<Option<Value>> {
    let mut object = decode(kv)?;
    let name = meta_str(&object, "name").unwrap_or_default().to_owned();
    if let Some(uid) = &options.precondition_uid
        && meta_str(&object, "uid") != Some(uid.as_str())
    {
        return Err(ctx.conflict(
            &name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&object, "uid").unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = &options.precondition_rv
        && *rv != kv.mod_revision.to_string()
    {
        return Err(ctx.conflict(&name, &format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            kv.mod_revision
        )));
    }

    let mut finalizers: Vec<Value> = metadata(&object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wanted = match options.propagation.as_deref() {
        _ if !ctx.state.record_gc_finalizers => None,
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    // A CRD goes once its custom resources are gone (see `crate::crd`).
    if ctx.is_crd() && !finalizers.iter().any(|v| v == crate::crd::CLEANUP_FINALIZER) {
        finalizers.push(crate::crd::CLEANUP_FINALIZER.into());
    }
    // Recorded for the garbage collector, which removes it once dependents are handled.
    if let Some(f) = wanted
        && !finalizers.iter().any(|v| v == f)
    {
        finalizers.push(f.into());
    }
    let namespace_finalizing = is_namespace_with_spec_finalizers(ctx, &object);
    let grace = pod_grace_period(ctx, &object, options);

    if let Some(grace) = grace {
        // Graceful pod deletion: the kubelet stops the containers, then deletes with grace 0.
        let deadline = time::OffsetDateTime::now_utc() + time::Duration::seconds(grace);
        let current_grace = metadata(&object)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64);
        if current_grace.is_some_and(|g| g <= grace) {
            return Ok(Some(object));
        }
        if let Some(meta) = metadata_mut(&mut object) {
            let stamp = deadline
                .replace_nanosecond(0)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(object::now);
            meta.insert("deletionTimestamp".into(), stamp.into());
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), Value::Array(finalizers));
            }
        }
        return write_marked(ctx, kv, object).await;
    }

    if finalizers.is_empty() && !namespace_finalizing {
        if ctx.params.dry_run {
            return Ok(Some(object));
        }
        // The object goes with what it holds (a Service's IP and node ports).
        let mut deletes = vec![TxnOp::delete(kv.key.clone())];
        deletes.extend(allocate::held_keys(ctx, &object).into_iter().map(TxnOp::delete));
        let req = TxnRequest::new()
            .when([Compare::mod_revision(kv.key.clone(), CompareOp::Equal, kv.mod_revision)])
            .and_then(deletes);
        let resp = ctx.store().txn(req).await.map_err(store_error)?;
        if !resp.succeeded {
            return Ok(None);
        }
        if ctx.resource.group.is_empty() && ctx.resource.kind == "Namespace" {
            delete_namespace_contents(ctx, &name).await?;
        }
        return Ok(Some(object));
    }

    // Graceful: mark it; whoever owns the finalizers removes them and the last removal deletes.
    if let Some(meta) = metadata_mut(&mut object) {
        if !meta.contains_key("deletionTimestamp") {
            meta.insert("deletionTimestamp".into(), object::now().into());
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        if !finalizers.is_empty() {
            meta.insert("finalizers".into(), Value::Array(finalizers));
        }
    }
    if namespace_finalizing && let Some(map) = object.as_object_mut() {
        map.insert("status".into(), json!({"phase": "Terminating"}));
    }
    // A terminating namespace is emptied by the namespace controller, which then removes its
    // `kubernetes` finalizer through `namespaces/<name>/finalize`.
    write_marked(ctx, kv, object).await
}

/// Stores an object just marked for deletion (compare-and-swap). `Ok(None)`: lost a race.
async fn write_marked(ctx: &Ctx<'_>, kv: &KeyValue, mut object: Value) -> ApiResult<Option<Value>> {
    if ctx.params.dry_run {
        return Ok(Some(object));
    }
    let outcome = ctx
        .store()
        .update_if(&kv.key, encode(&object)?, kv.mod_revision, kv.lease)
        .await
        .map_err(store_error)?;
    match outcome {
        WriteOutcome::Applied { revision } => {
            object::set_resource_version(&mut object, revision);
            Ok(Some(object))
        }
        WriteOutcome::Conflict { .. } => Ok(None),
    }
}

async fn delete_namespace_contents(ctx: &Ctx<'_>, namespace: &str) -> ApiResult<()> {
    let mut prefixes: Vec<String> = ctx
        .state
        .catalog()
        .resources()
        .iter()
        .filter(|r| r.namespaced)
        .map(|r| r.store_namespace_prefix(Some(namespace)))
        .collect();
    prefixes.sort();
    prefixes.dedup();
    // Services hold IPs and node ports outside the namespace: release them first.
    if let Some(services) = Catalog::builtin_lookup("", "v1", "services") {
        let prefix = services.store_namespace_prefix(Some(namespace));
        let listed = ctx.store().range(RangeRequest::prefix(prefix)).await.map_err(store_error)?;
        let mut svc_ctx = ctx.clone();
        svc_ctx.resource = services.clone();
        for kv in &listed.kvs {
            for key in allocate::held_keys(&svc_ctx, &decode(kv)?) {
                ctx.store().delete(&key).await.map_err(store_error)?;
            }
        }
    }
    for prefix in prefixes {
        ctx.store().delete_range(&prefix, &prefix_end(&prefix)).await.map_err(store_error)?;
    }
    Ok(())
}

pub async fn delete_collection(ctx: &Ctx<'_>, body: Bytes) -> ApiResult {
    let options = delete_options(ctx, &body)?;
    let filter = Filter::from_ctx(ctx)?;
    let page = list_page(ctx, &filter, None).await?;
    let mut deleted = Vec::new();
    for item in page.items {
        let Some(name) = meta_str(&item, "name").map(str::to_owned) else { continue };
        for _ in 0..MAX_RETRIES {
            let kv = match current(ctx, &name).await {
                Ok(kv) => kv,
                Err(status) if status.code() == 404 => break,
                Err(status) => return Err(status),
            };
            if let Some(object) = delete_one(ctx, &kv, &options).await? {
                deleted.push(object);
                break;
            }
        }
    }
    let list = json!({
        "kind": ctx.resource.list_kind(),
        "apiVersion": ctx.resource.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &list))
}
