use std::time::Instant;

use krust_api::catalog::Catalog;
use serde_json::{Value, json};

use super::{Spec, kinds};

fn spec() -> Spec {
    Spec::generate(&Catalog::builtin()).expect("generate")
}

fn document(spec: &Spec, key: &str) -> Value {
    serde_json::from_slice(spec.document(key).expect(key)).expect("json")
}

#[test]
fn every_catalog_kind_has_a_schema() {
    // metrics-server's kinds have no k8s-openapi type (upstream documents them in its own
    // aggregated server); their paths are listed without schemas.
    for r in Catalog::builtin().resources().iter().filter(|r| r.group != "metrics.k8s.io") {
        assert!(
            kinds::lookup(r.group, r.version, r.kind).is_some(),
            "{}/{} {}",
            r.group,
            r.version,
            r.kind
        );
        for sub in r.subresources {
            if sub.kind.ends_with("Options") || sub.name == "log" {
                continue;
            }
            let (g, v) = (sub.group.unwrap_or(r.group), sub.version.unwrap_or(r.version));
            assert!(kinds::lookup(g, v, sub.kind).is_some(), "{g}/{v} {}", sub.kind);
        }
    }
}

#[test]
fn root_lists_every_group_version_with_its_hash() {
    let spec = spec();
    let root: Value = serde_json::from_slice(spec.root()).expect("json");
    let catalog = Catalog::builtin();
    for (group, versions) in catalog.groups() {
        for version in versions {
            let key = if group.is_empty() {
                format!("api/{version}")
            } else {
                format!("apis/{group}/{version}")
            };
            let url = root["paths"][&key]["serverRelativeURL"].as_str().expect(&key);
            let hash = url.split_once("?hash=").expect("hash").1;
            assert_eq!(hash.len(), 128, "{url}");
            assert_eq!(hash, super::sha512_hex(spec.document(&key).expect("doc")));
        }
    }
    assert!(root["paths"]["api"].is_object());
    assert!(root["paths"]["apis"].is_object());
    assert!(root["paths"]["apis/extensions/v1beta1"].is_object());
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(spec().root(), spec().root());
}

#[test]
fn deployment_patch_has_field_validation_and_a_single_gvk() {
    let doc = document(&spec(), "apis/apps/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    let params: Vec<&str> = patch["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    let content = patch["requestBody"]["content"].as_object().expect("content");
    for media in super::paths::PATCH_TYPES {
        assert!(content.contains_key(media), "{media}");
    }
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    // Every PATCH of a kind must carry fieldValidation: kubectl checks the first it finds.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if let Some(patch) = item.get("patch").filter(|p| p["x-kubernetes-action"] == "patch") {
            let has = patch["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "fieldValidation");
            assert!(has, "{path}");
        }
    }
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["group"], "autoscaling");
    assert!(doc["paths"]["/apis/apps/v1/deployments"]["get"].is_object());
    assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"].is_object());
    assert!(
        doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["get"]
            .is_object()
    );
}

#[test]
fn deployment_schema_has_the_array_gvk_descriptions_and_refs() {
    let doc = document(&spec(), "apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        deployment["properties"]["spec"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Number of desired pods"))
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "DeploymentList", "version": "v1"}])
    );
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    assert!(deployment.get("required").is_none(), "upstream requires no field of a Deployment");
    assert!(
        schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"].is_array()
    );
    // Every $ref resolves inside the document.
    let text = serde_json::to_string(&doc).expect("json");
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap_or_default();
        assert!(schemas.get(name).is_some(), "dangling $ref {name}");
    }
}

#[test]
fn list_fields_carry_patch_strategies() {
    let spec = spec();
    let core = document(&spec, "api/v1");
    let schemas = &core["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(ports["x-kubernetes-list-map-keys"], json!(["containerPort", "protocol"]));
    let service_ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
    assert_eq!(service_ports["x-kubernetes-patch-merge-key"], "port");
    let finalizers =
        &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
    assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    // Endpoint addresses have no `type`: no merge key is claimed for them.
    let addresses = &schemas["io.k8s.api.core.v1.EndpointSubset"]["properties"]["addresses"];
    assert!(addresses.get("x-kubernetes-patch-merge-key").is_none());
    assert_eq!(
        schemas["io.k8s.api.core.v1.ConfigMap"]["x-kubernetes-group-version-kind"],
        json!([{"group": "", "kind": "ConfigMap", "version": "v1"}])
    );
}

#[test]
fn legacy_extensions_use_current_schemas_with_their_own_gvk() {
    let doc = document(&spec(), "apis/extensions/v1beta1");
    assert_eq!(
        doc["components"]["schemas"]["io.k8s.api.extensions.v1beta1.Deployment"]["x-kubernetes-group-version-kind"],
        json!([{"group": "extensions", "kind": "Deployment", "version": "v1beta1"}])
    );
    let schemas = &doc["components"]["schemas"];
    let spec = &schemas["io.k8s.api.extensions.v1beta1.DeploymentSpec"];
    assert!(spec["properties"]["selector"].is_object());
    assert!(
        !spec["required"].as_array().is_some_and(|r| r.contains(&json!("selector"))),
        "a v1beta1 selector is optional: {spec}"
    );
    let backend = &schemas["io.k8s.api.extensions.v1beta1.IngressBackend"]["properties"];
    assert_eq!(backend["serviceName"]["type"], "string");
    assert!(
        schemas["io.k8s.api.extensions.v1beta1.IngressSpec"]["properties"]["backend"].is_object()
    );
    let patch =
        &doc["paths"]["/apis/extensions/v1beta1/namespaces/{namespace}/ingresses/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["group"], "extensions");
}

#[test]
fn v2_protobuf_has_the_patch_operations_and_definitions_kubectl_reads() {
    use prost::Message;

    use super::v2::{Document, NonBodyOneof, ParameterOneof, ParametersOneof};

    let spec = spec();
    let doc = Document::decode(spec.v2()).expect("decodes");
    assert_eq!(doc.swagger, "2.0");
    let paths = doc.paths.expect("paths").path;
    let item = paths
        .iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .and_then(|p| p.value.clone())
        .expect("deployment path");
    let patch = item.patch.expect("patch");
    let gvk = patch
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .and_then(|e| e.value.clone())
        .expect("gvk");
    let gvk: Value = serde_json::from_str(&gvk.yaml).expect("yaml is json");
    assert_eq!(gvk, json!({"group": "apps", "kind": "Deployment", "version": "v1"}));
    let queries: Vec<String> = patch
        .parameters
        .iter()
        .filter_map(|p| match &p.oneof {
            Some(ParametersOneof::Parameter(p)) => match &p.oneof {
                Some(ParameterOneof::NonBody(n)) => match &n.oneof {
                    Some(NonBodyOneof::Query(q)) => Some(q.name.clone()),
                    _ => None,
                },
                _ => None,
            },
            None => None,
        })
        .collect();
    assert!(queries.iter().any(|q| q == "fieldValidation"), "{queries:?}");
    assert!(patch.consumes.iter().any(|c| c == "application/strategic-merge-patch+json"));

    let definitions = doc.definitions.expect("definitions").additional_properties;
    let deployment = definitions
        .iter()
        .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
        .and_then(|d| d.value.clone())
        .expect("deployment");
    let spec_field = deployment
        .properties
        .clone()
        .expect("properties")
        .additional_properties
        .into_iter()
        .find(|p| p.name == "spec")
        .and_then(|p| p.value)
        .expect("spec");
    assert_eq!(spec_field.r#ref, "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    // Served as apps/v1 here; extensions/v1beta1 has a definition of its own (kubectl 1.20
    // validates the seeds' manifests against it).
    let gvks_of = |schema: &super::v2::Schema| -> Value {
        let gvks = schema
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-group-version-kind")
            .and_then(|e| e.value.clone())
            .expect("gvks");
        serde_json::from_str(&gvks.yaml).expect("json")
    };
    assert_eq!(
        gvks_of(&deployment),
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    let legacy = definitions
        .iter()
        .find(|d| d.name == "io.k8s.api.extensions.v1beta1.Deployment")
        .and_then(|d| d.value.clone())
        .expect("the legacy definition");
    assert_eq!(
        gvks_of(&legacy),
        json!([{"group": "extensions", "kind": "Deployment", "version": "v1beta1"}])
    );
}

/// Not a benchmark: prints what one generation costs, for the record.
#[test]
fn generation_time_and_sizes() {
    let started = Instant::now();
    let spec = spec();
    let elapsed = started.elapsed();
    let total: usize = spec.documents.values().map(|d| d.bytes.len()).sum();
    println!(
        "generated {} documents, {total} bytes (v2 protobuf {} bytes), in {elapsed:?}",
        spec.documents.len(),
        spec.v2().len()
    );
    for key in ["api/v1", "apis/apps/v1"] {
        println!("{key}: {} bytes", spec.document(key).map_or(0, <[u8]>::len));
    }
}

#[tokio::test]
async fn handlers_cache_redirect_and_negotiate() {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

    let store: std::sync::Arc<dyn krust_store::Store> = std::sync::Arc::new(
        krust_store::MemoryStore::new(krust_store::MemoryConfig::default()).expect("store"),
    );
    let api = std::sync::Arc::new(crate::rest::ApiState::new(
        Catalog::builtin(),
        store,
        "127.0.0.1:6443".into(),
    ));
    let state = || State(api.clone());
    let root = super::v3_root(state(), HeaderMap::new()).await;
    assert_eq!(root.status(), StatusCode::OK);
    let etag = root.headers()[header::ETAG].clone();
    let mut conditional = HeaderMap::new();
    conditional.insert(header::IF_NONE_MATCH, etag);
    assert_eq!(super::v3_root(state(), conditional).await.status(), StatusCode::NOT_MODIFIED);

    let apps = || Path("apis/apps/v1".to_owned());
    let stale: Uri = "/openapi/v3/apis/apps/v1?hash=stale".parse().expect("uri");
    let moved = super::v3_document(state(), apps(), stale, HeaderMap::new()).await;
    assert_eq!(moved.status(), StatusCode::MOVED_PERMANENTLY);
    let location = moved.headers()[header::LOCATION].to_str().expect("ascii").to_owned();
    let current: Uri = location.parse().expect("uri");
    let served = super::v3_document(state(), apps(), current, HeaderMap::new()).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()[header::CACHE_CONTROL], "public, immutable");
    assert_eq!(served.headers()[header::CONTENT_TYPE], "application/json");

    let mut protobuf_only = HeaderMap::new();
    protobuf_only.insert(header::ACCEPT, HeaderValue::from_static(super::v2::PROTOBUF));
    let unknown: Uri = "/openapi/v3/apis/apps/v1".parse().expect("uri");
    let refused = super::v3_document(state(), apps(), unknown, protobuf_only.clone()).await;
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE);

    let v2 = super::v2(protobuf_only).await;
    assert_eq!(v2.status(), StatusCode::OK);
    assert_eq!(v2.headers()[header::CONTENT_TYPE], super::v2::PROTOBUF_CONTENT_TYPE);
    assert_eq!(super::v2(HeaderMap::new()).await.status(), StatusCode::NOT_ACCEPTABLE);
}
