//! get and list, with label and field selectors, pagination and resourceVersion semantics.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use krust_store::{RangeRequest, Revision, prefix_end};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::object::decode;
use super::{ApiResult, Ctx, json_response, store_error};
use crate::status::Status;
use crate::table;
use crate::watch_cache::{Attrs, CachedObject};

/// How long a list waits for the watch cache to load or catch up before reading the store.
const CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Objects are read from the store in pages of this many while filtering.
const PAGE: u64 = 500;

pub async fn get(ctx: &Ctx<'_>) -> ApiResult {
    let object = get_object(ctx, ctx.name()).await?;
    if ctx.wants_table() {
        let version = table::table_version(ctx.accept.as_deref());
        let meta = list_meta(meta_rv(&object));
        return Ok(json_response(StatusCode::OK, &ctx.table(version, &[object], meta)));
    }
    Ok(json_response(StatusCode::OK, &object))
}

pub async fn get_object(ctx: &Ctx<'_>, name: &str) -> ApiResult<Value> {
    let resp = ctx.store().range(RangeRequest::key(ctx.key(name))).await.map_err(store_error)?;
    match resp.kvs.first() {
        Some(kv) => decode(kv),
        None => Err(ctx.not_found(name)),
    }
}

fn meta_rv(object: &Value) -> String {
    super::object::meta_str(object, "resourceVersion").unwrap_or_default().to_owned()
}

fn list_meta(resource_version: String) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::String(resource_version));
    meta
}

/// Label and field selectors of a list or watch.
pub struct Filter {
    labels: Option<krust_api::labels::Selector>,
    fields: Option<krust_api::fields::Selector>,
    group: &'static str,
    kind: &'static str,
}

impl Filter {
    pub fn from_ctx(ctx: &Ctx<'_>) -> ApiResult<Self> {
        let labels = match ctx.params.label_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => {
                Some(krust_api::labels::Selector::parse(s).map_err(|e| {
                    Status::bad_request(format!("unable to parse requirement: {e}"))
                })?)
            }
            _ => None,
        };
        let fields = match ctx.params.field_selector.as_deref() {
            Some(s) if !s.trim().is_empty() => {
                // Unknown fields are refused up front, with upstream's message.
                let selector = krust_api::fields::Selector::parse(s)
                    .and_then(|sel| sel.for_kind(ctx.resource.group, ctx.resource.kind))
                    .map_err(|e| Status::bad_request(e.to_string()))?;
                Some(selector)
            }
            _ => None,
        };
        Ok(Self { labels, fields, group: ctx.resource.group, kind: ctx.resource.kind })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// Whether a cached object's attributes satisfy both selectors.
    pub fn matches_cached(&self, attrs: &Attrs) -> bool {
        if let Some(labels) = &self.labels
            && !labels.matches(&attrs.labels)
        {
            return false;
        }
        self.fields.as_ref().is_none_or(|fields| fields.matches(|f| attrs.field(f)))
    }

    pub fn matches(&self, object: &Value) -> bool {
        if let Some(labels) = &self.labels
            && !labels.matches_object(object)
        {
            return false;
        }
        if let Some(fields) = &self.fields {
            return fields.matches_object(self.group, self.kind, object).unwrap_or(false);
        }
        true
    }
}

/// The `continue` token, in upstream's shape (base64 of a small JSON document).
#[derive(Debug, Serialize, Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    let token = ContinueToken { v: "meta.k8s.io/v1".into(), rv, start: start.to_owned() };
    let json = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE.encode(json)
}

fn decode_continue(token: &str) -> Result<ContinueToken, Status> {
    let invalid = || {
        Status::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| invalid())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if token.v != "meta.k8s.io/v1" || token.rv <= 0 {
        return Err(invalid());
    }
    Ok(token)
}

/// Parses a client's resourceVersion.
pub fn parse_rv(value: &str) -> ApiResult<Revision> {
    value
        .parse::<Revision>()
        .ok()
        .filter(|rv| *rv >= 0)
        .ok_or_else(|| Status::bad_request(format!("invalid resource version: {value:?}")))
}

/// One page of a list: the matching objects, the revision it was read at, and the continue
/// token and remaining count when more objects follow.
pub struct Page {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

pub async fn list_page(ctx: &Ctx<'_>, filter: &Filter, limit: Option<u64>) -> ApiResult<Page> {
    let prefix = ctx.resource.store_namespace_prefix(ctx.namespace());
    let end = prefix_end(&prefix);
    let (mut start, mut revision) = match ctx.params.continue_token.as_deref() {
        Some(token) => {
            let token = decode_continue(token)?;
            (format!("{prefix}{}", token.start), token.rv)
        }
        None => (prefix.clone(), requested_list_revision(ctx).await?),
    };

    let mut items = Vec::new();
    let mut continue_token = None;
    let mut remaining = None;
    loop {
        let want = match limit {
            Some(limit) if filter.is_empty() => limit - items.len() as u64,
            _ => PAGE,
        };
        let resp = ctx
            .store()
            .range(RangeRequest::range(start.clone(), end.clone()).at_revision(revision).with_limit(want))
            .await
            .map_err(|e| match e {
                krust_store::Error::Compacted { .. } if ctx.params.continue_token.is_some() => {
                    Status::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
                }
                other => store_error(other),
            })?;
        revision = resp.header_revision;
        let page_len = resp.kvs.len();
        for (i, kv) in resp.kvs.iter().enumerate() {
            let object = decode(kv)?;
            if !filter.matches(&object) {
                continue;
            }
            items.push(object);
            if limit.is_some_and(|l| items.len() as u64 >= l) {
                let more_here = i + 1 < page_len;
                if more_here || resp.more {
                    let next = format!("{}\0", &kv.key[prefix.len()..]);
                    continue_token = Some(encode_continue(revision, &next));
                    if filter.is_empty() {
                        remaining = Some(resp.count.saturating_sub(i as u64 + 1));
                    }
                }
                return Ok(Page { items, revision, continue_token, remaining });
            }
        }
        match resp.kvs.last() {
            Some(last) if resp.more => start = format!("{}\0", last.key),
            _ => break,
        }
    }
    Ok(Page { items, revision, continue_token, remaining })
}

/// The revision a list reads at: the latest for "" and "0" and NotOlderThan, the exact one
/// for `resourceVersionMatch=Exact`.
async fn requested_list_revision(ctx: &Ctx<'_>) -> ApiResult<Revision> {
    let Some(rv) = ctx.params.resource_version.as_deref() else { return Ok(0) };
    let rv = parse_rv(rv)?;
    match ctx.params.resource_version_match.as_deref() {
        Some("Exact") => {
            if rv == 0 {
                return Err(Status::bad_request(
                    "resourceVersionMatch: Exact requires a non-zero resourceVersion",
                ));
            }
            Ok(rv)
        }
        None | Some("NotOlderThan") => {
            let current = ctx.store().current_revision().await.map_err(store_error)?;
            if rv > current {
                return Err(Status::timeout(format!(
                    "Too large resource version: {rv}, current: {current}"
                ))
                .with_retry_after(1));
            }
            Ok(0)
        }
        Some(other) => Err(Status::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}

/// A list from the watch cache, when the cache can answer it: not a continuation (those
/// read the store at the first page's revision) and not an exact revision.
async fn list_from_cache(ctx: &Ctx<'_>, filter: &Filter) -> ApiResult<Option<Response>> {
    if ctx.params.continue_token.is_some()
        || ctx.params.resource_version_match.as_deref() == Some("Exact")
    {
        return Ok(None);
    }
    let Some(cache) = ctx.state.caches.get(&ctx.resource) else { return Ok(None) };
    let target = match ctx.params.resource_version.as_deref() {
        // A consistent read: everything written before the request.
        None => ctx.store().current_revision().await.map_err(store_error)?,
        Some(rv) => {
            let rv = parse_rv(rv)?;
            let current = ctx.store().current_revision().await.map_err(store_error)?;
            if rv > current {
                // The store path answers with upstream's "Too large resource version".
                return Ok(None);
            }
            rv
        }
    };
    if !cache.wait_for(target, CACHE_WAIT).await {
        return Ok(None);
    }
    let prefix = ctx.resource.store_namespace_prefix(ctx.namespace());
    let limit = ctx.params.limit.and_then(|l| usize::try_from(l).ok());
    let mut snapshot =
        cache.snapshot(&prefix, &prefix_end(&prefix), limit, |o| filter.matches_cached(&o.attrs));
    let mut meta = list_meta(snapshot.revision.to_string());
    if let Some(limit) = limit
        && snapshot.objects.len() > limit
    {
        snapshot.objects.truncate(limit);
        if let Some(last) = snapshot.objects.last() {
            let next = format!("{}\0", &last.key[prefix.len()..]);
            meta.insert(
                "continue".into(),
                Value::String(encode_continue(snapshot.revision, &next)),
            );
            if filter.is_empty() {
                let end = prefix_end(&prefix);
                let rest = cache.snapshot(&format!("{}\0", last.key), &end, None, |_| true);
                meta.insert("remainingItemCount".into(), json!(rest.objects.len()));
            }
        }
    }
    if ctx.wants_table() {
        let items: Vec<Value> = snapshot
            .objects
            .iter()
            .map(|o| serde_json::from_slice(&o.bytes).unwrap_or(Value::Null))
            .collect();
        let version = table::table_version(ctx.accept.as_deref());
        return Ok(Some(json_response(StatusCode::OK, &ctx.table(version, &items, meta))));
    }
    let body =
        list_body(&ctx.resource.list_kind(), &ctx.resource.api_version(), &meta, &snapshot.objects);
    Ok(Some(
        (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], body)
            .into_response(),
    ))
}

/// A list document around the cached objects' shared bytes.
fn list_body(
    kind: &str,
    api_version: &str,
    meta: &Map<String, Value>,
    items: &[std::sync::Arc<CachedObject>],
) -> Vec<u8> {
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": meta});
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    // Reopen the object to append the items.
    body.pop();
    let size: usize = items.iter().map(|o| o.bytes.len() + 1).sum();
    body.reserve(size + 16);
    body.extend_from_slice(b",\"items\":[");
    for (i, object) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&object.bytes);
    }
    body.extend_from_slice(b"]}");
    body
}

pub async fn list(ctx: &Ctx<'_>) -> ApiResult<Response> {
    let filter = Filter::from_ctx(ctx)?;
    if let Some(response) = list_from_cache(ctx, &filter).await? {
        return Ok(response);
    }
    let page = list_page(ctx, &filter, ctx.params.limit).await?;
    let mut meta = list_meta(page.revision.to_string());
    if let Some(token) = page.continue_token {
        meta.insert("continue".into(), Value::String(token));
    }
    if let Some(remaining) = page.remaining {
        meta.insert("remainingItemCount".into(), json!(remaining));
    }
    if ctx.wants_table() {
        let version = table::table_version(ctx.accept.as_deref());
        return Ok(json_response(StatusCode::OK, &ctx.table(version, &page.items, meta)));
    }
    let list = json!({
        "kind": ctx.resource.list_kind(),
        "apiVersion": ctx.resource.api_version(),
        "metadata": meta,
        "items": page.items,
    });
    Ok(json_response(StatusCode::OK, &list))
}
