//! The OpenAPI v3 documents of custom resources' group-versions: the paths the REST machine
//! serves for them and, as components, each CRD version's `openAPIV3Schema` (with `apiVersion`,
//! `kind` and `metadata` added, tagged with its group-version-kind) and its list — what
//! `kubectl explain` reads and what kubectl's `fieldValidation` check looks for. Regenerated
//! when the CRDs change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{Map, Value, json};

use super::schemas::{Library, SchemaSet, reference};
use super::{Document, info, paths, security_schemes, sha512_hex};
use crate::rest::ApiState;

/// The documents of one generation of custom resources, by key (`apis/<group>/<version>`).
#[derive(Debug, Default)]
pub(super) struct CustomDocuments {
    generation: u64,
    pub(super) documents: BTreeMap<String, Document>,
}

static CACHE: Mutex<Option<Arc<CustomDocuments>>> = Mutex::new(None);

/// The current documents, generated again only when the CRDs changed.
pub(super) fn documents(api: &ApiState, library: &Library) -> Arc<CustomDocuments> {
    let generation = api.crds.generation();
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(docs) = cache.as_ref()
        && docs.generation == generation
    {
        return docs.clone();
    }
    let docs = Arc::new(generate(api, library, generation));
    *cache = Some(docs.clone());
    docs
}

/// `stable.example.com` → `com.example.stable`, as upstream names CRD schemas.
fn reversed(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

fn generate(api: &ApiState, library: &Library, generation: u64) -> CustomDocuments {
    let catalog = api.catalog();
    let mut by_group_version: BTreeMap<(&str, &str), Vec<_>> = BTreeMap::new();
    for resource in catalog.resources() {
        if let Some(custom) = api.crds.get(resource) {
            by_group_version
                .entry((resource.group, resource.version))
                .or_default()
                .push((resource, custom));
        }
    }
    let mut documents = BTreeMap::new();
    for ((group, version), resources) in by_group_version {
        let prefix = format!("/apis/{group}/{version}");
        let mut schemas = SchemaSet::new(library);
        let plain: Vec<_> = resources.iter().map(|(r, _)| *r).collect();
        let mut paths = paths::build(&prefix, &plain, &mut schemas);
        without_strategic_merge(&mut paths);
        let object_meta = schemas.add::<meta::ObjectMeta>();
        let list_meta = schemas.add::<meta::ListMeta>();
        let mut components = schemas.finish();
        for (resource, custom) in &resources {
            let name = format!("{}.{version}.{}", reversed(group), resource.kind);
            let mut schema = custom.openapi.clone().unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
            if let Some(map) = schema.as_object_mut() {
                let properties = map.entry("properties").or_insert_with(|| json!({}));
                if let Some(properties) = properties.as_object_mut() {
                    properties.insert("apiVersion".into(), type_meta("apiVersion"));
                    properties.insert("kind".into(), type_meta("kind"));
                    properties.insert("metadata".into(), reference(&object_meta));
                }
                map.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": group, "kind": resource.kind, "version": version}]),
                );
            }
            let list = json!({
                "description": format!("{}List is a list of {}", resource.kind, resource.kind),
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": type_meta("apiVersion"),
                    "items": {"type": "array", "items": reference(&name), "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", resource.plural)},
                    "kind": type_meta("kind"),
                    "metadata": reference(&list_meta),
                },
                "x-kubernetes-group-version-kind": [{"group": group, "kind": resource.list_kind(), "version": version}],
            });
            components.insert(format!("{name}List"), list);
            components.insert(name, schema);
        }
        let doc = json!({
            "openapi": "3.0.0",
            "info": info(),
            "paths": paths,
            "components": {"schemas": Value::Object(components), "securitySchemes": security_schemes()},
            "security": [{"BearerToken": []}],
        });
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let hash = sha512_hex(&bytes);
        documents.insert(
            format!("apis/{group}/{version}"),
            Document { bytes: Bytes::from(bytes), hash },
        );
    }
    CustomDocuments { generation, documents }
}

/// Custom resources take no strategic merge patch (their scale subresource does): kubectl reads
/// a PATCH's media types to choose between strategic and JSON merge patches for `apply`.
fn without_strategic_merge(paths: &mut Value) {
    let Some(paths) = paths.as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        if path.ends_with("/scale") {
            continue;
        }
        if let Some(content) =
            item.pointer_mut("/patch/requestBody/content").and_then(Value::as_object_mut)
        {
            content.remove("application/strategic-merge-patch+json");
        }
    }
}

fn type_meta(field: &str) -> Value {
    let description = match field {
        "apiVersion" => {
            "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
        }
        _ => {
            "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
        }
    };
    let mut map = Map::new();
    map.insert("description".into(), json!(description));
    map.insert("type".into(), json!("string"));
    Value::Object(map)
}
