//! OpenAPI v3, generated from one source of truth: the `schemars` schemas of the k8s-openapi
//! types, laid out by the resource catalog. `GET /openapi/v3` lists one document per
//! group-version (plus the `api`, `apis` and per-group discovery documents), each addressed by
//! a content hash; `GET /openapi/v3/<api/v1 | apis/<group>/<version>>` serves the OpenAPI 3.0
//! document kubectl reads for `apply` (patch merge keys, the `fieldValidation` parameter),
//! `create -f` (server-side field validation) and `explain` (descriptions).
//!
//! Everything is generated once per process, on the first request and off the async threads,
//! so server start does not pay for it; later requests are served from the cached bytes with
//! `ETag`/`If-None-Match` and upstream's cache headers. `GET /openapi/v2` serves the same content
//! as the gnostic protobuf kubectl 1.27/1.28 ask for (v2 JSON is not served).

mod custom;
mod fields;
mod kinds;
mod paths;
mod schemas;
#[cfg(test)]
mod tests;
mod v2;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use krust_api::catalog::Catalog;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;
use tracing::info;

use crate::rest::ApiState;
use crate::status::Status;
use crate::version::VersionInfo;

pub(crate) use self::fields::{FieldSchemas, field_schemas};
use self::schemas::{Library, SchemaSet, reference};

/// The generated documents, serialized once.
#[derive(Debug)]
pub(crate) struct Spec {
    /// `GET /openapi/v3` while no CRD is served.
    root: Bytes,
    /// The root's entries (documents of the built-in group-versions).
    entries: Map<String, Value>,
    root_etag: String,
    /// `api/v1`, `apis/apps/v1`, `apis/apps`, `apis`, `api` → document.
    documents: BTreeMap<String, Document>,
    /// `GET /openapi/v2` as gnostic protobuf: every group-version in one document.
    v2: Document,
}

#[derive(Debug)]
struct Document {
    bytes: Bytes,
    /// Upper-case hex SHA-512 of `bytes`, as upstream names its documents.
    hash: String,
}

impl Spec {
    /// Generates every document of the catalog's group-versions.
    pub(crate) fn generate(catalog: &Catalog) -> Result<Self, serde_json::Error> {
        let library = library();
        let mut documents = BTreeMap::new();
        let mut group_versions = Vec::new();
        let mut add = |key: String, doc: &Value| -> Result<(), serde_json::Error> {
            let bytes = serde_json::to_vec(doc)?;
            let hash = sha512_hex(&bytes);
            documents.insert(key, Document { bytes: Bytes::from(bytes), hash });
            Ok(())
        };
        for (group, versions) in catalog.groups() {
            for version in &versions {
                let (key, prefix) = if group.is_empty() {
                    (format!("api/{version}"), format!("/api/{version}"))
                } else {
                    (format!("apis/{group}/{version}"), format!("/apis/{group}/{version}"))
                };
                let doc = group_version_document(library, catalog, group, version, &prefix);
                add(key, &doc)?;
                group_versions.push(doc);
            }
            if !group.is_empty() {
                let id = format!("get{}APIGroup", paths_group_word(group));
                let doc = discovery_document::<meta::APIGroup>(
                    library,
                    &format!("/apis/{group}/"),
                    &id,
                    group,
                );
                add(format!("apis/{group}"), &doc)?;
            }
        }
        add(
            "api".to_owned(),
            &discovery_document::<meta::APIVersions>(
                library,
                "/api/",
                "getCoreAPIVersions",
                "core",
            ),
        )?;
        add(
            "apis".to_owned(),
            &discovery_document::<meta::APIGroupList>(library, "/apis/", "getAPIVersions", "apis"),
        )?;

        let entries: Map<String, Value> = documents
            .iter()
            .map(|(key, doc)| {
                let url = format!("/openapi/v3/{key}?hash={}", doc.hash);
                (key.clone(), json!({ "serverRelativeURL": url }))
            })
            .collect();
        let root = serde_json::to_vec(&json!({ "paths": &entries }))?;
        let root_etag = format!("\"{}\"", sha512_hex(&root));
        let v2 = v2::encode(&group_versions, "Kubernetes", &VersionInfo::current().git_version);
        let v2 = Document { hash: sha512_hex(&v2), bytes: Bytes::from(v2) };
        Ok(Self { root: Bytes::from(root), entries, root_etag, documents, v2 })
    }

    /// The serialized document at `key` (`apis/apps/v1`), if any.
    #[cfg(test)]
    pub(crate) fn document(&self, key: &str) -> Option<&[u8]> {
        self.documents.get(key).map(|d| d.bytes.as_ref())
    }

    #[cfg(test)]
    pub(crate) fn root(&self) -> &[u8] {
        &self.root
    }

    #[cfg(test)]
    pub(crate) fn v2(&self) -> &[u8] {
        &self.v2.bytes
    }
}

fn paths_group_word(group: &str) -> String {
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase()).into_iter().chain(c).collect::<String>()
        })
        .collect()
}

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": VersionInfo::current().git_version })
}

/// Bearer tokens and client certificates both authenticate; upstream declares the former.
fn security_schemes() -> Value {
    json!({
        "BearerToken": {
            "type": "apiKey", "description": "Bearer Token authentication",
            "name": "authorization", "in": "header",
        },
    })
}

fn group_version_document(
    library: &Library,
    catalog: &Catalog,
    group: &str,
    version: &str,
    prefix: &str,
) -> Value {
    let resources = catalog.group_version(group, version);
    let mut schemas = SchemaSet::new(library);
    let mut paths = paths::build(prefix, &resources, &mut schemas);
    let resource_list = schemas.add::<meta::APIResourceList>();
    if let Value::Object(paths) = &mut paths {
        let group_word = if group.is_empty() { "Core".to_owned() } else { paths_group_word(group) };
        let version_word = {
            let mut c = version.chars();
            c.next().map(|f| f.to_ascii_uppercase()).into_iter().chain(c).collect::<String>()
        };
        paths.insert(
            format!("{prefix}/"),
            discovery_path(
                &format!("get{group_word}{version_word}APIResources"),
                &resource_list,
                "get available resources",
            ),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": { "schemas": schemas.finish(), "securitySchemes": security_schemes() },
        "security": [{ "BearerToken": [] }],
    })
}

fn discovery_path(id: &str, schema: &str, description: &str) -> Value {
    json!({
        "get": {
            "description": description,
            "operationId": id,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": { "schema": reference(schema) },
                        "application/yaml": { "schema": reference(schema) },
                    },
                },
                "401": { "description": "Unauthorized" },
            },
        },
    })
}

/// The documents of the discovery endpoints (`/api/`, `/apis/`, `/apis/<group>/`).
fn discovery_document<T: JsonSchema>(library: &Library, path: &str, id: &str, tag: &str) -> Value {
    let mut schemas = SchemaSet::new(library);
    let schema = schemas.add::<T>();
    let mut item = discovery_path(id, &schema, "get available API versions");
    if let Some(Value::Object(get)) = item.get_mut("get") {
        get.insert("tags".to_owned(), json!([tag]));
    }
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": { path: item },
        "components": { "schemas": schemas.finish(), "securitySchemes": security_schemes() },
        "security": [{ "BearerToken": [] }],
    })
}

fn sha512_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA512, bytes);
    digest.as_ref().iter().fold(String::with_capacity(128), |mut out, b| {
        let _ = write!(out, "{b:02X}");
        out
    })
}

/// The process's documents, generated by the first request that needs them.
static SPEC: OnceCell<Arc<Spec>> = OnceCell::const_new();

/// Builds the schema library now (it takes a while; call it off the async threads).
pub(crate) fn warm_library() {
    library();
}

/// The schemas every document draws from, generated once (off the async threads, by the first
/// [`Spec::generate`]).
fn library() -> &'static Library {
    static LIBRARY: std::sync::OnceLock<Library> = std::sync::OnceLock::new();
    LIBRARY.get_or_init(Library::generate)
}

async fn spec() -> Result<Arc<Spec>, Status> {
    SPEC.get_or_try_init(|| async {
        let started = Instant::now();
        let spec = tokio::task::spawn_blocking(|| Spec::generate(&Catalog::builtin()))
            .await
            .map_err(|e| Status::internal(format!("generating OpenAPI: {e}")))?
            .map_err(|e| Status::internal(format!("serializing OpenAPI: {e}")))?;
        let bytes: usize = spec.documents.values().map(|d| d.bytes.len()).sum();
        info!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            documents = spec.documents.len(),
            bytes,
            v2_bytes = spec.v2.bytes.len(),
            "OpenAPI generated"
        );
        Ok(Arc::new(spec))
    })
    .await
    .cloned()
}

/// Whether the client takes JSON (no `Accept` at all counts as yes).
fn accepts_json(headers: &HeaderMap) -> bool {
    let mut accepts = headers.get_all(header::ACCEPT).iter().peekable();
    if accepts.peek().is_none() {
        return true;
    }
    accepts.filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|media| {
        let media = media.split(';').next().unwrap_or_default().trim();
        matches!(media, "application/json" | "application/*" | "*/*" | "")
    })
}

fn not_acceptable() -> Response {
    Status::not_acceptable(&["application/json"]).into_response()
}

fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        })
}

fn json_response(bytes: Bytes, etag: &str, cache_control: &'static str) -> Response {
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

fn not_modified(etag: &str) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// `GET /openapi/v3`: the list of documents, the custom resources' included.
pub(crate) async fn v3_root(State(api): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let spec = match spec().await {
        Ok(spec) => spec,
        Err(status) => return status.into_response(),
    };
    let custom = custom::documents(&api, library());
    let (root, etag) = if custom.documents.is_empty() {
        (spec.root.clone(), spec.root_etag.clone())
    } else {
        let mut entries = spec.entries.clone();
        for (key, doc) in &custom.documents {
            let url = format!("/openapi/v3/{key}?hash={}", doc.hash);
            entries.insert(key.clone(), json!({ "serverRelativeURL": url }));
        }
        let root = serde_json::to_vec(&json!({ "paths": entries })).unwrap_or_default();
        let etag = format!("\"{}\"", sha512_hex(&root));
        (Bytes::from(root), etag)
    };
    if if_none_match(&headers, &etag) {
        return not_modified(&etag);
    }
    json_response(root, &etag, "no-cache, private")
}

/// `GET /openapi/v3/<path>`: one document. A `hash` that is not the document's current one is
/// redirected to the current URL, as upstream does; a matching one makes the answer immutable.
pub(crate) async fn v3_document(
    State(api): State<Arc<ApiState>>,
    Path(path): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !accepts_json(&headers) {
        return not_acceptable();
    }
    let spec = match spec().await {
        Ok(spec) => spec,
        Err(status) => return status.into_response(),
    };
    let key = path.trim_matches('/');
    let custom = custom::documents(&api, library());
    let Some(doc) = spec.documents.get(key).or_else(|| custom.documents.get(key)) else {
        return Status::path_not_found().into_response();
    };
    let hash = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "hash")
        .map(|(_, v)| v.into_owned());
    let etag = format!("\"{}\"", doc.hash);
    match hash {
        Some(hash) if hash != doc.hash => {
            let location = format!("/openapi/v3/{key}?hash={}", doc.hash);
            let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        _ if if_none_match(&headers, &etag) => not_modified(&etag),
        Some(_) => json_response(doc.bytes.clone(), &etag, "public, immutable"),
        None => json_response(doc.bytes.clone(), &etag, "no-cache, private"),
    }
}

/// `GET /openapi/v2`: the gnostic protobuf kubectl 1.27/1.28 read (1.29+ use v3). v2 JSON is
/// not served: no kubectl asks for it.
pub(crate) async fn v2(headers: HeaderMap) -> Response {
    let accepts_protobuf = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let media = media.split(';').next().unwrap_or_default().trim();
            media == v2::PROTOBUF || media == v2::PROTOBUF_CONTENT_TYPE
        });
    if !accepts_protobuf {
        return Status::not_acceptable(&[v2::PROTOBUF]).into_response();
    }
    let spec = match spec().await {
        Ok(spec) => spec,
        Err(status) => return status.into_response(),
    };
    let etag = format!("\"{}\"", spec.v2.hash);
    if if_none_match(&headers, &etag) {
        return not_modified(&etag);
    }
    let mut response = json_response(spec.v2.bytes.clone(), &etag, "no-cache, private");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(v2::PROTOBUF_CONTENT_TYPE));
    response
}
