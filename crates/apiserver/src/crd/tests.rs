//! CRDs through the REST machine over an in-memory store, with the CRD task running.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use krust_api::catalog::Catalog;
use krust_store::{MemoryConfig, MemoryStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::rest::{ApiState, ensure_namespaces};

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const CRONTABS: &str = "/apis/stable.example.com/v1/namespaces/default/crontabs";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

struct Api {
    router: Router,
    shutdown: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn api() -> Api {
    let store: Arc<dyn Store> =
        Arc::new(MemoryStore::new(MemoryConfig::default()).expect("memory store"));
    ensure_namespaces(store.as_ref()).await.expect("namespaces");
    let state = Arc::new(ApiState::new(Catalog::builtin(), store, "127.0.0.1:6443".into()));
    let shutdown = CancellationToken::new();
    tokio::spawn(super::run(state.clone(), shutdown.clone()));
    let router = crate::rest::test_router(state);
    Api { router, shutdown }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let resp =
            self.router.clone().oneshot(req.body(body).expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, &[], None).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", uri, &[("content-type", "application/json")], Some(body)).await
    }

    /// Polls `uri` until it answers `code` (5 s at most); returns the last answer.
    async fn wait_for(&self, uri: &str, code: StatusCode) -> (StatusCode, Value) {
        let mut last = self.get(uri).await;
        for _ in 0..100 {
            if last.0 == code {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            last = self.get(uri).await;
        }
        last
    }
}

fn crontab_crd(name: &str, plural: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {
                    "name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["cronSpec"],
                                "properties": {
                                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                                    "image": {"type": "string"},
                                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                                },
                            },
                            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                        },
                    }},
                },
                {
                    "name": "v1beta1", "served": true, "storage": false,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                },
            ],
        },
    })
}

fn crontab(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn a_crd_serves_validates_defaults_and_prints_its_resources() {
    let api = api().await;
    let (code, created) =
        api.post(CRDS, crontab_crd("crontabs.stable.example.com", "crontabs", "CronTab")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["names"]["singular"], "crontab");
    assert_eq!(created["spec"]["names"]["listKind"], "CronTabList");
    assert_eq!(created["status"]["storedVersions"], json!(["v1"]));

    // Served within a second, and the CRD says so.
    let (code, list) = api.wait_for("/apis/stable.example.com/v1", StatusCode::OK).await;
    assert_eq!(code, StatusCode::OK, "{list}");
    let crontabs = list["resources"].as_array().expect("resources");
    let resource = crontabs.iter().find(|r| r["name"] == "crontabs").expect("crontabs");
    assert_eq!(resource["kind"], "CronTab");
    assert_eq!(resource["shortNames"], json!(["ct"]));
    assert_eq!(resource["categories"], json!(["all"]));
    assert!(crontabs.iter().any(|r| r["name"] == "crontabs/status"), "{list}");
    let (_, group) = api.get("/apis/stable.example.com").await;
    assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
    let (_, crd) = api.get(&format!("{CRDS}/crontabs.stable.example.com")).await;
    let conditions = crd["status"]["conditions"].as_array().expect("conditions");
    let condition = |kind: &str| conditions.iter().find(|c| c["type"] == kind).expect(kind).clone();
    assert_eq!(condition("NamesAccepted")["status"], "True");
    assert_eq!(condition("NamesAccepted")["reason"], "NoConflicts");
    assert_eq!(condition("Established")["status"], "True");
    assert_eq!(condition("Established")["reason"], "InitialNamesAccepted");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "CronTab");

    // Created with its schema's defaults; status is the subresource's.
    let mut body = crontab("daily", json!({"cronSpec": "* * * * */5", "image": "cron:1"}));
    body["status"] = json!({"phase": "Done"});
    let (code, created) = api.post(CRONTABS, body).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["replicas"], 1);
    assert!(created.get("status").is_none(), "{created}");

    // Bad values: 422 with the schema's messages.
    let (code, invalid) =
        api.post(CRONTABS, crontab("bad", json!({"cronSpec": "often", "replicas": 20}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    let message = invalid["message"].as_str().expect("message");
    assert!(message.starts_with("CronTab.stable.example.com \"bad\" is invalid: "), "{message}");
    assert!(message.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"), "{message}");
    assert!(
        message.contains(
            "spec.cronSpec: Invalid value: \"often\": spec.cronSpec in body should match"
        ),
        "{message}"
    );
    let (code, missing) = api.post(CRONTABS, crontab("bare", json!({}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{missing}");
    assert!(
        missing["message"].as_str().is_some_and(|m| m.contains("spec.cronSpec: Required value")),
        "{missing}"
    );

    // Unknown fields: pruned, refused under Strict.
    let extra = crontab("extra", json!({"cronSpec": "* * * * *", "color": "red"}));
    let (code, strict) = api
        .call(
            "POST",
            &format!("{CRONTABS}?fieldValidation=Strict"),
            &[("content-type", "application/json")],
            Some(extra.clone()),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{strict}");
    assert!(
        strict["message"].as_str().is_some_and(|m| m.contains("unknown field \"spec.color\"")),
        "{strict}"
    );
    let (code, pruned) = api.post(CRONTABS, extra).await;
    assert_eq!(code, StatusCode::CREATED, "{pruned}");
    assert!(pruned["spec"].get("color").is_none(), "{pruned}");

    // Another served version: the same object, its apiVersion; the schema-less version keeps all.
    let (code, beta) =
        api.get("/apis/stable.example.com/v1beta1/namespaces/default/crontabs/daily").await;
    assert_eq!(code, StatusCode::OK, "{beta}");
    assert_eq!(beta["apiVersion"], "stable.example.com/v1beta1");
    assert_eq!(beta["spec"]["image"], "cron:1");
    let (_, beta_list) =
        api.get("/apis/stable.example.com/v1beta1/namespaces/default/crontabs").await;
    assert_eq!(beta_list["items"][0]["apiVersion"], "stable.example.com/v1beta1", "{beta_list}");
    let mut via_beta = crontab("weekly", json!({"cronSpec": "0 0 * * 0"}));
    via_beta["apiVersion"] = json!("stable.example.com/v1beta1");
    let (code, created) =
        api.post("/apis/stable.example.com/v1beta1/namespaces/default/crontabs", via_beta).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["apiVersion"], "stable.example.com/v1beta1");
    let (_, stored) = api.get(&format!("{CRONTABS}/weekly")).await;
    assert_eq!(stored["apiVersion"], "stable.example.com/v1");

    // The printer columns.
    let (code, table) = api.call("GET", CRONTABS, &[("accept", TABLE)], None).await;
    assert_eq!(code, StatusCode::OK, "{table}");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["Name", "Spec", "Replicas", "Age"]);
    let row = table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["cells"][0] == "daily")
        .expect("daily's row");
    assert_eq!(row["cells"][1], "* * * * */5");
    assert_eq!(row["cells"][2], 1);

    // Patches: merge yes, strategic merge no (custom resources have no patch strategies).
    let merge = [("content-type", "application/merge-patch+json")];
    let (code, patched) = api
        .call("PATCH", &format!("{CRONTABS}/daily"), &merge, Some(json!({"spec": {"replicas": 3}})))
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["spec"]["replicas"], 3);
    let strategic = [("content-type", "application/strategic-merge-patch+json")];
    let (code, refused) = api
        .call(
            "PATCH",
            &format!("{CRONTABS}/daily"),
            &strategic,
            Some(json!({"spec": {"replicas": 4}})),
        )
        .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
    let (code, over) = api
        .call(
            "PATCH",
            &format!("{CRONTABS}/daily"),
            &merge,
            Some(json!({"spec": {"replicas": 11}})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{over}");

    // The status subresource writes status only.
    let (code, status) = api
        .call(
            "PATCH",
            &format!("{CRONTABS}/daily/status"),
            &merge,
            Some(json!({"status": {"phase": "Running"}, "spec": {"replicas": 5}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{status}");
    assert_eq!(status["status"]["phase"], "Running");
    assert_eq!(status["spec"]["replicas"], 3);
}

#[tokio::test]
async fn deleting_a_crd_deletes_its_resources_then_stops_serving_them() {
    let api = api().await;
    let (code, _) =
        api.post(CRDS, crontab_crd("crontabs.stable.example.com", "crontabs", "CronTab")).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(api.wait_for(CRONTABS, StatusCode::OK).await.0, StatusCode::OK);
    for name in ["a", "b"] {
        let (code, created) =
            api.post(CRONTABS, crontab(name, json!({"cronSpec": "* * * * *"}))).await;
        assert_eq!(code, StatusCode::CREATED, "{created}");
    }
    let (code, deleted) =
        api.call("DELETE", &format!("{CRDS}/crontabs.stable.example.com"), &[], None).await;
    assert_eq!(code, StatusCode::OK, "{deleted}");
    assert_eq!(api.wait_for(CRONTABS, StatusCode::NOT_FOUND).await.0, StatusCode::NOT_FOUND);
    let (code, gone) =
        api.wait_for(&format!("{CRDS}/crontabs.stable.example.com"), StatusCode::NOT_FOUND).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{gone}");

    // Created again, it starts empty.
    let (code, _) =
        api.post(CRDS, crontab_crd("crontabs.stable.example.com", "crontabs", "CronTab")).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, list) = api.wait_for(CRONTABS, StatusCode::OK).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["items"], json!([]), "{list}");
}

#[tokio::test]
async fn crds_are_validated_and_conflicting_names_are_not_accepted() {
    let api = api().await;
    let mut wrong = crontab_crd("crontab.stable.example.com", "crontabs", "CronTab");
    wrong["spec"]["versions"][1]["storage"] = json!(true);
    let (code, invalid) = api.post(CRDS, wrong).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    let message = invalid["message"].as_str().expect("message");
    assert!(message.contains("metadata.name: Invalid value: \"crontab.stable.example.com\": must be spec.names.plural+\".\"+spec.group"), "{message}");
    assert!(
        message.contains("must have exactly one version marked as storage version"),
        "{message}"
    );

    let (code, _) =
        api.post(CRDS, crontab_crd("crontabs.stable.example.com", "crontabs", "CronTab")).await;
    assert_eq!(code, StatusCode::CREATED);
    // Same group, same kind: the younger CRD's names are refused and it is not served.
    let mut second = crontab_crd("crontabz.stable.example.com", "crontabz", "CronTab");
    second["spec"]["names"]["shortNames"] = json!(["cz"]);
    second["spec"]["names"]["singular"] = json!("crontabz");
    let (code, _) = api.post(CRDS, second).await;
    assert_eq!(code, StatusCode::CREATED);
    let uri = format!("{CRDS}/crontabz.stable.example.com");
    let mut crd = Value::Null;
    for _ in 0..100 {
        crd = api.get(&uri).await.1;
        if crd["status"]["conditions"].is_array() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let conditions = crd["status"]["conditions"].as_array().expect("conditions");
    let names = conditions.iter().find(|c| c["type"] == "NamesAccepted").expect("NamesAccepted");
    assert_eq!(names["status"], "False", "{crd}");
    assert_eq!(names["reason"], "KindConflict");
    assert_eq!(names["message"], "\"CronTab\" is already in use");
    let established = conditions.iter().find(|c| c["type"] == "Established").expect("Established");
    assert_eq!(established["status"], "False");
    let (code, _) = api.get("/apis/stable.example.com/v1/namespaces/default/crontabz").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn server_side_apply_merges_custom_resources_by_their_list_types() {
    let api = api().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gateways.net.example.com"},
        "spec": {
            "group": "net.example.com",
            "scope": "Namespaced",
            "names": {"plural": "gateways", "kind": "Gateway"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object",
                    "properties": {"listeners": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"}, "port": {"type": "integer"},
                        }},
                    }},
                }}}},
            }],
        },
    });
    let (code, created) = api.post(CRDS, crd).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let gateways = "/apis/net.example.com/v1/namespaces/default/gateways";
    assert_eq!(api.wait_for(gateways, StatusCode::OK).await.0, StatusCode::OK);
    let body = |listener: Value| {
        json!({
            "apiVersion": "net.example.com/v1", "kind": "Gateway",
            "metadata": {"name": "edge"}, "spec": {"listeners": [listener]},
        })
    };
    let apply_type = [("content-type", "application/apply-patch+yaml")];
    let uri = |manager: &str| format!("{gateways}/edge?fieldManager={manager}");
    let web = body(json!({"name": "http", "port": 80}));
    let (code, first) = api.call("PATCH", &uri("web"), &apply_type, Some(web)).await;
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let tls = body(json!({"name": "https", "port": 443}));
    let (code, second) = api.call("PATCH", &uri("tls"), &apply_type, Some(tls)).await;
    assert_eq!(code, StatusCode::OK, "{second}");
    let names: Vec<&str> = second["spec"]["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, ["http", "https"], "each manager's item stays: {second}");
    let owned = second["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .find(|m| m["manager"] == "tls")
        .expect("tls's entry")["fieldsV1"]
        .to_string();
    assert!(owned.contains("k:{\\\"name\\\":\\\"https\\\"}"), "{owned}");
}

#[tokio::test]
async fn a_cluster_scoped_crd_serves_its_resources_outside_namespaces() {
    let api = api().await;
    let mut crd = crontab_crd("clusterjobs.stable.example.com", "clusterjobs", "ClusterJob");
    crd["spec"]["scope"] = json!("Cluster");
    crd["spec"]["names"]["shortNames"] = json!(["cj"]);
    let (code, created) = api.post(CRDS, crd).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let all = "/apis/stable.example.com/v1/clusterjobs";
    assert_eq!(api.wait_for(all, StatusCode::OK).await.0, StatusCode::OK);
    let (_, list) = api.get("/apis/stable.example.com/v1").await;
    let resource = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "clusterjobs")
        .cloned()
        .expect("clusterjobs");
    assert_eq!(resource["namespaced"], false);
    let mut job = crontab("nightly", json!({"cronSpec": "0 0 * * *"}));
    job["kind"] = json!("ClusterJob");
    let (code, made) = api.post(all, job.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{made}");
    assert!(made["metadata"].get("namespace").is_none(), "{made}");
    let (code, _) = api.get(&format!("{all}/nightly")).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) =
        api.post("/apis/stable.example.com/v1/namespaces/default/clusterjobs", job).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "a cluster-scoped resource has no namespaced path");
}
