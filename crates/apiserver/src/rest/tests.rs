//! The REST machine over an in-memory store, driven through the router as a client would.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use krust_api::catalog::Catalog;
use krust_store::{MemoryConfig, MemoryStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{ApiState, ensure_namespaces};

struct Api {
    router: Router,
    store: Arc<dyn Store>,
}

async fn api() -> Api {
    api_with(|_| {}).await
}

async fn api_with(configure: impl FnOnce(&mut ApiState)) -> Api {
    let store: Arc<dyn Store> =
        Arc::new(MemoryStore::new(MemoryConfig::default()).expect("memory store"));
    ensure_namespaces(store.as_ref()).await.expect("namespaces");
    let mut state = ApiState::new(Catalog::builtin(), store.clone(), "127.0.0.1:6443".into());
    configure(&mut state);
    let router = super::test_router(Arc::new(state));
    Api { router, store }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let resp =
            self.router.clone().oneshot(req.body(body).expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    async fn call_with_accept(&self, uri: &str, accept: &str) -> (StatusCode, Value) {
        let req = Request::builder().uri(uri).header("accept", accept).body(Body::empty());
        let resp = self.router.clone().oneshot(req.expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", uri, Some("application/json"), Some(body)).await
    }
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn discovery_lists_the_catalog() {
    let api = api().await;
    let (code, v1) = api.get("/api/v1").await;
    assert_eq!(code, StatusCode::OK);
    let cm = v1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "configmaps")
        .expect("configmaps");
    assert_eq!(cm["namespaced"], true);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["shortNames"], json!(["cm"]));
    let (_, versions) = api.get("/api").await;
    assert_eq!(versions["versions"], json!(["v1"]));
    let (code, _) = api.get("/apis/nope/v1").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_get_and_already_exists() {
    let api = api().await;
    let (code, created) = api.post(CMS, cm("one", json!({}))).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert!(meta["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(meta["resourceVersion"].as_str().is_some_and(|rv| rv.parse::<i64>().is_ok()));
    assert!(meta["creationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (code, got) = api.get(&format!("{CMS}/one")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got, created);

    let (code, status) = api.post(CMS, cm("one", json!({}))).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status["reason"], "AlreadyExists");
    assert_eq!(status["message"], "configmaps \"one\" already exists");
    assert_eq!(status["details"], json!({"name": "one", "kind": "configmaps"}));

    let (code, status) = api.get(&format!("{CMS}/missing")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "configmaps \"missing\" not found");
}

#[tokio::test]
async fn create_defaults_type_from_the_url_and_refuses_mismatches() {
    let api = api().await;
    let (code, created) = api.post(CMS, json!({"metadata": {"generateName": "gen-"}})).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["kind"], "ConfigMap");
    assert_eq!(created["apiVersion"], "v1");
    assert!(
        created["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("gen-") && n.len() == 9)
    );

    let (code, status) = api
        .post(CMS, json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");

    let (code, status) =
        api.post(CMS, json!({"metadata": {"name": "x", "namespace": "other"}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        status["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    let (code, status) = api.post(CMS, json!({"metadata": {"name": "Bad_Name"}})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert!(
        status["message"].as_str().is_some_and(|m| m.starts_with(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        )),
        "{status}"
    );

    let (code, status) = api.post("/api/v1/namespaces/nope/configmaps", cm("x", json!({}))).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "namespaces \"nope\" not found");

    let (code, status) = api.call("POST", CMS, Some("application/json"), None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    // A protobuf body without the envelope is malformed; a media type we do not read is 415.
    let (code, status) =
        api.call("POST", CMS, Some("application/vnd.kubernetes.protobuf"), Some(json!({}))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, status) = api.call("POST", CMS, Some("application/cbor"), Some(json!({}))).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{status}");
}

#[tokio::test]
async fn list_selects_and_paginates() {
    let api = api().await;
    for i in 0..5 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        let (code, _) = api.post(CMS, cm(&format!("c{i}"), json!({"tier": tier}))).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    let (_, list) = api.get(&format!("{CMS}?labelSelector=tier%3Dweb")).await;
    assert_eq!(list["kind"], "ConfigMapList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["c0", "c2", "c4"]);

    let (_, list) = api.get(&format!("{CMS}?fieldSelector=metadata.name%3Dc3")).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    let (_, page1) = api.get(&format!("{CMS}?limit=2")).await;
    assert_eq!(page1["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page1["metadata"]["remainingItemCount"], 3);
    let token = page1["metadata"]["continue"].as_str().expect("continue");
    let (_, page2) = api.get(&format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!(page2["items"][0]["metadata"]["name"], "c2");
    assert_eq!(page2["metadata"]["resourceVersion"], page1["metadata"]["resourceVersion"]);
    let token = page2["metadata"]["continue"].as_str().expect("continue");
    let (_, page3) = api.get(&format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!(page3["items"].as_array().map(Vec::len), Some(1));
    assert!(page3["metadata"].get("continue").is_none());

    let (code, status) = api.get(&format!("{CMS}?labelSelector=a%20in%20(")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    let (code, status) = api.get(&format!("{CMS}?fieldSelector=spec.nope%3Dx")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");

    // All namespaces.
    let (_, all) = api.get("/api/v1/configmaps").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn update_is_compare_and_swap() {
    let api = api().await;
    let (_, created) = api.post(CMS, cm("u", json!({}))).await;
    let rv = created["metadata"]["resourceVersion"].clone();

    let mut changed = created.clone();
    changed["data"]["k"] = json!("v2");
    let (code, updated) =
        api.call("PUT", &format!("{CMS}/u"), Some("application/json"), Some(changed.clone())).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_ne!(updated["metadata"]["resourceVersion"], rv);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    // The same stale resourceVersion again: 409 Conflict.
    let (code, status) =
        api.call("PUT", &format!("{CMS}/u"), Some("application/json"), Some(changed)).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on configmaps \"u\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // A no-op update writes nothing.
    let (_, same) =
        api.call("PUT", &format!("{CMS}/u"), Some("application/json"), Some(updated.clone())).await;
    assert_eq!(same["metadata"]["resourceVersion"], updated["metadata"]["resourceVersion"]);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let api = api().await;
    api.post(CMS, cm("p", json!({"a": "1"}))).await;
    let (code, patched) = api
        .call(
            "PATCH",
            &format!("{CMS}/p"),
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"labels": {"b": "2", "a": null}}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["metadata"]["labels"], json!({"b": "2"}));

    let ops = json!([{"op": "replace", "path": "/data/k", "value": "x"}, {"op": "add", "path": "/data/n", "value": "y"}]);
    let (code, patched) = api
        .call("PATCH", &format!("{CMS}/p"), Some("application/json-patch+json"), Some(ops))
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"], json!({"k": "x", "n": "y"}));

    let bad = json!([{"op": "test", "path": "/data/k", "value": "nope"}]);
    let (code, _) = api
        .call("PATCH", &format!("{CMS}/p"), Some("application/json-patch+json"), Some(bad))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    let (code, _) = api
        .call(
            "PATCH",
            &format!("{CMS}/missing"),
            Some("application/merge-patch+json"),
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let api = api().await;
    let template = json!({"metadata": {"labels": {"app": "d"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}});
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}}, "template": template},
        "status": {"replicas": 9}});
    let url = "/apis/apps/v1/namespaces/default/deployments";
    let (code, created) = api.post(url, deploy).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert!(created.get("status").is_none(), "status is reset on create: {created}");
    assert_eq!(created["metadata"]["generation"], 1);

    let (_, with_status) = api
        .call(
            "PATCH",
            &format!("{url}/d/status"),
            Some("application/merge-patch+json"),
            Some(json!({"status": {"replicas": 1}, "spec": {"replicas": 5}})),
        )
        .await;
    assert_eq!(with_status["status"]["replicas"], 1);
    assert_eq!(with_status["spec"]["replicas"], 1, "a status write leaves spec alone");

    let (_, scaled) = api
        .call(
            "PATCH",
            &format!("{url}/d"),
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"replicas": 3}, "status": {"replicas": 7}})),
        )
        .await;
    assert_eq!(scaled["spec"]["replicas"], 3);
    assert_eq!(scaled["status"]["replicas"], 1, "a main write leaves status alone");
    assert_eq!(scaled["metadata"]["generation"], 2);
}

#[tokio::test]
async fn kind_rules_refuse_invalid_objects_with_upstreams_field_errors() {
    let api = api().await;
    let url = "/apis/apps/v1/namespaces/default/deployments";
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
    let (code, status) = api.post(url, deploy).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Deployment.apps \"bad\" is invalid: [spec.selector: Required value, spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`]"
    );
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"})
    );
    // Updates are checked too.
    let pods = "/api/v1/namespaces/default/pods";
    let (code, _) = api.post(pods, json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, status) = api
        .call(
            "PATCH",
            &format!("{pods}/p"),
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"containers": [{"name": "c", "image": ""}]}})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["message"], "Pod \"p\" is invalid: spec.containers[0].image: Required value");
}

#[tokio::test]
async fn delete_honours_finalizers() {
    let api = api().await;
    let (code, _) =
        api.post(CMS, json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, marked) = api.call("DELETE", &format!("{CMS}/f"), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    let (code, _) = api.get(&format!("{CMS}/f")).await;
    assert_eq!(code, StatusCode::OK, "still there while a finalizer holds it");

    let (code, _) = api
        .call(
            "PATCH",
            &format!("{CMS}/f"),
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = api.get(&format!("{CMS}/f")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "the last finalizer's removal deletes it");

    api.post(CMS, cm("plain", json!({}))).await;
    let (code, deleted) = api.call("DELETE", &format!("{CMS}/plain"), Some("application/json"), Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deleted["metadata"]["name"], "plain");
    let (code, _) = api.get(&format!("{CMS}/plain")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_deleted_namespace_terminates_until_its_finalizer_is_removed() {
    let api = api().await;
    let (code, ns) = api.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    api.post("/api/v1/namespaces/team/configmaps", cm("c", json!({}))).await;
    let (code, _) = api.call("DELETE", "/api/v1/namespaces/team", None, None).await;
    assert_eq!(code, StatusCode::OK);
    // The namespace controller empties it; until then it is Terminating and takes nothing new.
    let (code, ns) = api.get("/api/v1/namespaces/team").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    let (code, _) = api.post("/api/v1/namespaces/team/configmaps", cm("late", json!({}))).await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // `finalize` changes nothing but spec.finalizers: the label and status stay.
    let mut body = ns.clone();
    body["spec"]["finalizers"] = json!([]);
    body["metadata"]["labels"]["extra"] = json!("ignored");
    let (code, _) = api
        .call("PUT", "/api/v1/namespaces/team/finalize", Some("application/json"), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = api.get("/api/v1/namespaces/team").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "the last finalizer's removal deletes it");

    // On a live namespace, finalize only rewrites the list.
    api.post("/api/v1/namespaces", json!({"metadata": {"name": "live"}})).await;
    let body = json!({"metadata": {"name": "live", "labels": {"x": "y"}}, "spec": {"finalizers": ["example.com/mine"]}});
    let (code, ns) = api
        .call("PUT", "/api/v1/namespaces/live/finalize", Some("application/json"), Some(body))
        .await;
    assert_eq!(code, StatusCode::OK, "{ns}");
    assert_eq!(ns["spec"]["finalizers"], json!(["example.com/mine"]));
    assert!(ns["metadata"]["labels"].get("x").is_none(), "{ns}");
    let (code, _) = api
        .call(
            "PUT",
            "/api/v1/namespaces/live/status/finalize",
            Some("application/json"),
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metadata_only_responses_for_metadata_clients() {
    let api = api().await;
    api.post(CMS, cm("m1", json!({"app": "x"}))).await;
    let one = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let (code, object) = api.call_with_accept(&format!("{CMS}/m1"), one).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(object["kind"], "PartialObjectMetadata");
    assert_eq!(object["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(object["metadata"]["labels"]["app"], "x");
    assert!(object.get("data").is_none(), "{object}");

    let many = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let (code, list) = api.call_with_accept(CMS, many).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert!(list["metadata"]["resourceVersion"].is_string(), "{list}");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "m1");

    let (code, missing) = api.call_with_accept(&format!("{CMS}/nope"), one).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(missing["kind"], "Status");

    // The list kind for one object, or the object kind for a list: 406 as upstream.
    let (code, status) = api.call_with_accept(&format!("{CMS}/m1"), many).await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE, "{status}");
    assert_eq!(status["reason"], "NotAcceptable");
    assert_eq!(
        status["message"],
        "you requested PartialObjectMetadataList, but the requested object is not a list (*v1.ConfigMap)"
    );
    let (code, status) = api.call_with_accept(CMS, one).await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE, "{status}");
    assert_eq!(
        status["message"],
        "you requested PartialObjectMetadata, but the requested object is a list (*v1.ConfigMapList)"
    );
    // Plain JSON offered first wins over a metadata range after it.
    let (code, whole) =
        api.call_with_accept(&format!("{CMS}/m1"), &format!("application/json,{many}")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(whole["kind"], "ConfigMap");

    let req = Request::builder()
        .uri(format!("{CMS}?watch=1"))
        .header("accept", one)
        .body(Body::empty())
        .expect("request");
    let mut body = api.router.clone().oneshot(req).await.expect("response").into_body();
    let event = read_line(&mut body).await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(event["object"]["metadata"]["name"], "m1");
    assert!(event["object"].get("data").is_none(), "{event}");
}

#[tokio::test]
async fn tables_for_kubectl() {
    let api = api().await;
    api.post(CMS, cm("t", json!({}))).await;
    let req = Request::builder()
        .uri(format!("{CMS}?limit=500"))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
        .body(Body::empty())
        .expect("request");
    let resp = api.router.clone().oneshot(req).await.expect("response");
    let table: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][0]["name"], "Name");
    assert_eq!(table["rows"][0]["cells"][0], "t");
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "t");
}

async fn read_line(body: &mut Body) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("an event in time")
        .expect("a frame")
        .expect("no error");
    let bytes = frame.into_data().expect("data");
    serde_json::from_slice(&bytes).expect("one JSON event per chunk")
}

#[tokio::test]
async fn watch_streams_changes_from_a_resource_version() {
    let api = api().await;
    let (_, first) = api.post(CMS, cm("w1", json!({"app": "x"}))).await;
    let rv = first["metadata"]["resourceVersion"].as_str().expect("rv").to_owned();
    let req = Request::builder()
        .uri(format!("{CMS}?watch=true&resourceVersion={rv}&labelSelector=app%3Dx"))
        .body(Body::empty())
        .expect("request");
    let resp = api.router.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();

    api.post(CMS, cm("w2", json!({"app": "x"}))).await;
    api.post(CMS, cm("other", json!({"app": "y"}))).await;
    api.call(
        "PATCH",
        &format!("{CMS}/w2"),
        Some("application/merge-patch+json"),
        Some(json!({"metadata": {"labels": {"app": "gone"}}})),
    )
    .await;
    api.call("DELETE", &format!("{CMS}/w1"), None, None).await;

    let added = read_line(&mut body).await;
    assert_eq!(
        (added["type"].as_str(), added["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w2"))
    );
    let left = read_line(&mut body).await;
    assert_eq!(
        (left["type"].as_str(), left["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("w2")),
        "leaving the selector reads as DELETED"
    );
    let deleted = read_line(&mut body).await;
    assert_eq!(
        (deleted["type"].as_str(), deleted["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("w1"))
    );
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_the_current_state() {
    let api = api().await;
    api.post(CMS, cm("a", json!({}))).await;
    let req =
        Request::builder().uri(format!("{CMS}?watch=1")).body(Body::empty()).expect("request");
    let mut body = api.router.clone().oneshot(req).await.expect("response").into_body();
    let event = read_line(&mut body).await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "a");
}

#[tokio::test]
async fn a_watcher_behind_the_cache_ring_continues_from_the_store() {
    let api = api_with(|state| {
        state.caches = crate::watch_cache::WatchCaches::with_capacity(state.store.clone(), 2);
    })
    .await;
    let (_, list) = api.get(CMS).await;
    let rv = list["metadata"]["resourceVersion"].as_str().expect("rv").to_owned();
    let req = Request::builder()
        .uri(format!("{CMS}?watch=true&resourceVersion={rv}"))
        .body(Body::empty())
        .expect("request");
    let mut body = api.router.clone().oneshot(req).await.expect("response").into_body();
    // The watcher reads nothing while ten writes go by a ring that keeps two.
    for i in 0..10 {
        let (code, _) = api.post(CMS, cm(&format!("late{i}"), json!({}))).await;
        assert_eq!(code, StatusCode::CREATED);
    }
    for i in 0..10 {
        let event = read_line(&mut body).await;
        assert_eq!(event["type"], "ADDED");
        assert_eq!(event["object"]["metadata"]["name"], format!("late{i}"), "in order, none lost");
    }
    // And from the ring again: an old resourceVersion is served by the store.
    let req = Request::builder()
        .uri(format!("{CMS}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dlate9"))
        .body(Body::empty())
        .expect("request");
    let mut body = api.router.clone().oneshot(req).await.expect("response").into_body();
    let event = read_line(&mut body).await;
    assert_eq!(
        (event["type"].as_str(), event["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("late9"))
    );
}

#[tokio::test]
async fn lists_are_consistent_with_the_writes_before_them() {
    let api = api().await;
    // Warm the cache, then write and list at once: the list must see every acknowledged write.
    api.get(CMS).await;
    for i in 0..20 {
        api.post(CMS, cm(&format!("c{i}"), json!({}))).await;
        let (_, list) = api.get(CMS).await;
        assert_eq!(list["items"].as_array().map(Vec::len), Some(i + 1));
        let (_, table) =
            api.call_with_accept(CMS, "application/json;as=Table;v=v1;g=meta.k8s.io").await;
        assert_eq!(table["rows"].as_array().map(Vec::len), Some(i + 1), "{table}");
    }
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_expired() {
    let api = api().await;
    api.post(CMS, cm("a", json!({}))).await;
    api.post(CMS, cm("b", json!({}))).await;
    let current = api.store.current_revision().await.expect("revision");
    api.store.compact(current).await.expect("compact");
    let req = Request::builder()
        .uri(format!("{CMS}?watch=true&resourceVersion=1"))
        .body(Body::empty())
        .expect("request");
    let mut body = api.router.clone().oneshot(req).await.expect("response").into_body();
    let event = read_line(&mut body).await;
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
}

#[tokio::test]
async fn unknown_resources_and_verbs() {
    let api = api().await;
    let (code, _) = api.get("/api/v1/namespaces/default/widgets").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, status) = api
        .call("POST", "/api/v1/componentstatuses", Some("application/json"), Some(json!({})))
        .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{status}");
    let (code, _) = api.get("/api/v1/pods/x").await;
    assert_eq!(
        code,
        StatusCode::NOT_FOUND,
        "a namespaced resource is not addressed by name without a namespace"
    );
}

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn deployment(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let api = api().await;
    let (code, created) = api.post(DEPLOYS, deployment("web")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["strategy"]["type"], "RollingUpdate", "defaults applied");

    let (code, scale) = api.get(&format!("{DEPLOYS}/web/scale")).await;
    assert_eq!(code, StatusCode::OK, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 2);
    assert_eq!(scale["status"]["selector"], "app=web");

    // kubectl scale: a merge patch on the Scale.
    let (code, scaled) = api
        .call(
            "PATCH",
            &format!("{DEPLOYS}/web/scale"),
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"replicas": 5}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{scaled}");
    assert_eq!(scaled["spec"]["replicas"], 5);
    let (_, deploy) = api.get(&format!("{DEPLOYS}/web")).await;
    assert_eq!(deploy["spec"]["replicas"], 5);
    assert_eq!(deploy["metadata"]["generation"], 2);

    let (code, status) = api.call("PUT", &format!("{DEPLOYS}/web/scale"), Some("application/json"), Some(json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web"}, "spec": {"replicas": -1}}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    let (code, _) = api.get(&format!("{CMS}/x/scale")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "configmaps have no scale");
}

fn pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

#[tokio::test]
async fn binding_assigns_a_pod_once() {
    let api = api().await;
    let (code, created) = api.post(PODS, pod("p")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"]["phase"], "Pending");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, status) = api.post(&format!("{PODS}/p/binding"), binding.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{status}");
    assert_eq!(status["status"], "Success");
    let (_, bound) = api.get(&format!("{PODS}/p")).await;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned();
    assert_eq!(scheduled.map(|c| c["status"].clone()), Some(json!("True")));

    let (code, status) = api.post(&format!("{PODS}/p/binding"), binding).await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("is already assigned to node \"n1\"")),
        "{status}"
    );

    // The `bindings` resource does the same, naming the pod in the body.
    api.post(PODS, pod("q")).await;
    let (code, _) = api
        .post(
            "/api/v1/namespaces/default/bindings",
            json!({"metadata": {"name": "q"}, "target": {"kind": "Node", "name": "n2"}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (_, q) = api.get(&format!("{PODS}/q")).await;
    assert_eq!(q["spec"]["nodeName"], "n2");
}

#[tokio::test]
async fn pods_on_a_node_are_deleted_gracefully() {
    let api = api().await;
    // Not on a node: gone at once.
    api.post(PODS, pod("unbound")).await;
    let (code, _) = api.call("DELETE", &format!("{PODS}/unbound"), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(api.get(&format!("{PODS}/unbound")).await.0, StatusCode::NOT_FOUND);

    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("n1");
    api.post(PODS, bound).await;
    let (code, marked) = api.call("DELETE", &format!("{PODS}/bound"), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(api.get(&format!("{PODS}/bound")).await.0, StatusCode::OK, "waits for the kubelet");

    // The kubelet (or --grace-period=0 --force) finishes it.
    let (code, _) =
        api.call("DELETE", &format!("{PODS}/bound?gracePeriodSeconds=0"), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(api.get(&format!("{PODS}/bound")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn eviction_deletes_the_pod() {
    let api = api().await;
    api.post(PODS, pod("e")).await;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "e", "namespace": "default"}});
    let (code, status) = api.post(&format!("{PODS}/e/eviction"), eviction).await;
    assert_eq!(code, StatusCode::CREATED, "{status}");
    assert_eq!(api.get(&format!("{PODS}/e")).await.0, StatusCode::NOT_FOUND);
    let (code, _) = api
        .post(&format!("{PODS}/missing/eviction"), json!({"metadata": {"name": "missing"}}))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn strategic_merge_patch_merges_containers_by_name() {
    let api = api().await;
    api.post(DEPLOYS, deployment("smp")).await;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    let (code, patched) = api
        .call(
            "PATCH",
            &format!("{DEPLOYS}/smp"),
            Some("application/strategic-merge-patch+json"),
            Some(patch),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    let c = &patched["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:2");
    assert_eq!(
        c["terminationMessagePath"], "/dev/termination-log",
        "other fields of the container stay"
    );
}

#[tokio::test]
async fn propagation_policies_record_finalizers_for_the_garbage_collector() {
    let api = api_with(|s| s.record_gc_finalizers = true).await;
    api.post(DEPLOYS, deployment("fg")).await;
    let (code, marked) = api
        .call(
            "DELETE",
            &format!("{DEPLOYS}/fg"),
            Some("application/json"),
            Some(json!({"propagationPolicy": "Foreground"})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(marked["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    api.post(DEPLOYS, deployment("or")).await;
    let (_, marked) =
        api.call("DELETE", &format!("{DEPLOYS}/or?propagationPolicy=Orphan"), None, None).await;
    assert_eq!(marked["metadata"]["finalizers"], json!(["orphan"]));

    // Without a garbage collector the same deletes complete at once.
    let plain = api_with(|_| {}).await;
    plain.post(DEPLOYS, deployment("or")).await;
    let (code, _) =
        plain.call("DELETE", &format!("{DEPLOYS}/or?propagationPolicy=Orphan"), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(plain.get(&format!("{DEPLOYS}/or")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn yaml_bodies_are_accepted() {
    let api = api().await;
    let req = Request::builder()
        .method("POST")
        .uri(CMS)
        .header("content-type", "application/yaml")
        .body(Body::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: \"1\"\n",
        ))
        .expect("request");
    let resp = api.router.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let (_, got) = api.get(&format!("{CMS}/from-yaml")).await;
    assert_eq!(got["data"]["a"], "1");

    let req = Request::builder()
        .method("POST")
        .uri(CMS)
        .header("content-type", "application/yaml")
        .body(Body::from("metadata: [unclosed"))
        .expect("request");
    let resp = api.router.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

const SVCS: &str = "/api/v1/namespaces/default/services";

fn service(name: &str, spec: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports_that_are_never_shared() {
    let api = api().await;
    let (code, svc) = api
        .post(SVCS, service("a", json!({"selector": {"app": "a"}, "ports": [{"port": 80}]})))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{svc}");
    let ip = svc["spec"]["clusterIP"].as_str().expect("clusterIP").to_owned();
    assert!(ip.starts_with("10."), "{ip}");
    assert_eq!(svc["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    let (code, address) = api.get(&format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}")).await;
    assert_eq!(code, StatusCode::OK, "the IP is held by an IPAddress object");
    assert_eq!(address["spec"]["parentRef"]["name"], "a");

    // The same IP asked for again is refused.
    let (code, status) =
        api.post(SVCS, service("b", json!({"clusterIP": ip, "ports": [{"port": 80}]}))).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert!(
        status["message"].as_str().is_some_and(|m| m.contains("provided IP is already allocated")),
        "{status}"
    );
    let (code, status) = api
        .post(SVCS, service("c", json!({"clusterIP": "192.168.0.1", "ports": [{"port": 80}]})))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");

    // Headless and NodePort.
    let (_, headless) =
        api.post(SVCS, service("h", json!({"clusterIP": "None", "ports": [{"port": 80}]}))).await;
    assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
    let (code, np) =
        api.post(SVCS, service("np", json!({"type": "NodePort", "ports": [{"port": 80}]}))).await;
    assert_eq!(code, StatusCode::CREATED, "{np}");
    let port = np["spec"]["ports"][0]["nodePort"].as_u64().expect("nodePort");
    assert!((30000..=32767).contains(&port));
    let (code, _) = api
        .post(
            SVCS,
            service("np2", json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": port}]})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "node port {port} is taken");

    // Deleting releases the IP: it can be asked for again.
    let (code, _) = api.call("DELETE", &format!("{SVCS}/a"), None, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        api.get(&format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (code, again) =
        api.post(SVCS, service("b", json!({"clusterIP": ip, "ports": [{"port": 80}]}))).await;
    assert_eq!(code, StatusCode::CREATED, "{again}");
}

#[tokio::test]
async fn concurrent_service_creates_get_distinct_ips() {
    let api =
        Arc::new(api_with(|s| s.service_cidr = (std::net::Ipv4Addr::new(10, 0, 0, 0), 26)).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let api = api.clone();
        tasks.spawn(async move {
            api.post(SVCS, service(&format!("s{i}"), json!({"ports": [{"port": 80}]}))).await
        });
    }
    let mut ips = std::collections::BTreeSet::new();
    while let Some(done) = tasks.join_next().await {
        let (code, svc) = done.expect("task");
        assert_eq!(code, StatusCode::CREATED, "{svc}");
        assert!(
            ips.insert(svc["spec"]["clusterIP"].as_str().expect("ip").to_owned()),
            "duplicate IP"
        );
    }
    assert_eq!(ips.len(), 40);
}

#[tokio::test]
async fn the_kubernetes_service_points_at_the_api_server() {
    let api = api().await;
    super::ensure_kubernetes_service(
        api.store.as_ref(),
        super::DEFAULT_SERVICE_CIDR,
        "127.0.0.1".parse().expect("ip"),
        6443,
    )
    .await
    .expect("bootstrap");
    let (code, svc) = api.get(&format!("{SVCS}/kubernetes")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    let (_, ep) = api.get("/api/v1/namespaces/default/endpoints/kubernetes").await;
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 6443);
}

#[tokio::test]
async fn aggregated_discovery_with_the_exact_content_type() {
    let api = api().await;
    for (accept, version) in [
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2",
        ),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "v2beta1",
        ),
    ] {
        let req = Request::builder()
            .uri("/apis")
            .header("accept", accept)
            .body(Body::empty())
            .expect("request");
        let resp = api.router.clone().oneshot(req).await.expect("response");
        let ct =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(
            ct.as_deref(),
            Some(
                format!(
                    "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
                )
                .as_str()
            )
        );
        let list: Value =
            serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
                .expect("json");
        assert_eq!(list["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
        let apps = list["items"]
            .as_array()
            .and_then(|i| i.iter().find(|g| g["metadata"]["name"] == "apps"))
            .expect("apps");
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["resource"] == "deployments"))
            .expect("deployments");
        assert_eq!(deploy["scope"], "Namespaced");
        let scale = deploy["subresources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["subresource"] == "scale"))
            .expect("scale");
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
    }
    let req = Request::builder()
        .uri("/api")
        .header("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        .body(Body::empty())
        .expect("request");
    let resp = api.router.clone().oneshot(req).await.expect("response");
    let list: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["metadata"]["name"], "");
    assert!(
        list["items"][0]["versions"][0]["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["resource"] == "pods"))
    );
    // A plain Accept still gets the legacy form.
    let (_, legacy) = api.get("/apis").await;
    assert_eq!(legacy["kind"], "APIGroupList");
}

#[tokio::test]
async fn field_validation_strict_warn_and_ignore() {
    let api = api().await;
    let body = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "bogus": 1},
               "data": {"k": "v"}, "dataa": {}})
    };
    let send = |uri: String, raw: String| {
        let req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(raw))
            .expect("request");
        api.router.clone().oneshot(req)
    };

    let resp = send(format!("{CMS}?fieldValidation=Strict"), body("s").to_string())
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let status: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("status");
    assert_eq!(
        status["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"dataa\", unknown field \"metadata.bogus\""
    );
    assert_eq!(api.get(&format!("{CMS}/s")).await.0, StatusCode::NOT_FOUND, "nothing written");

    // Warn is the default: written without the unknown fields, one header per field.
    let resp = send(CMS.to_owned(), body("w").to_string()).await.expect("response");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let warnings: Vec<&str> =
        resp.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(
        warnings,
        ["299 - \"unknown field \\\"dataa\\\"\"", "299 - \"unknown field \\\"metadata.bogus\\\"\""]
    );
    let (_, stored) = api.get(&format!("{CMS}/w")).await;
    assert!(stored.get("dataa").is_none() && stored["metadata"].get("bogus").is_none());
    assert_eq!(stored["data"]["k"], "v");

    let resp = send(format!("{CMS}?fieldValidation=Ignore"), body("i").to_string())
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(resp.headers().get("warning").is_none());

    // Duplicates in a JSON body.
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","name":"d"}}"#;
    let resp =
        send(format!("{CMS}?fieldValidation=Strict"), dup.to_owned()).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let text = resp.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&text).contains(r#"duplicate field \"metadata.name\""#));

    // A patch that adds an unknown field.
    let (code, status) = api
        .call(
            "PATCH",
            &format!("{CMS}/w?fieldValidation=Strict"),
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"x": 1}})),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    assert!(status["message"].as_str().is_some_and(|m| m.contains("unknown field \"spec\"")));

    let resp = send(format!("{CMS}?fieldValidation=Loose"), body("l").to_string())
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn new_pods_tolerate_unready_and_unreachable_nodes_for_five_minutes() {
    let api = api().await;
    let uri = "/api/v1/namespaces/default/pods";
    let container = json!([{"name": "c", "image": "x"}]);
    let (code, pod) =
        api.post(uri, json!({"metadata": {"name": "a"}, "spec": {"containers": container}})).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    let expected = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([
            expected("node.kubernetes.io/not-ready"),
            expected("node.kubernetes.io/unreachable")
        ])
    );
    // A pod's own toleration of either taint is kept as it is.
    let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
    let (_, pod) = api
        .post(uri, json!({"metadata": {"name": "b"}, "spec": {"containers": container, "tolerations": [own]}}))
        .await;
    assert_eq!(pod["spec"]["tolerations"], json!([own, expected("node.kubernetes.io/not-ready")]));
    // Tolerating every taint covers both.
    let all = json!({"operator": "Exists"});
    let (_, pod) = api
        .post(uri, json!({"metadata": {"name": "c"}, "spec": {"containers": container, "tolerations": [all]}}))
        .await;
    assert_eq!(pod["spec"]["tolerations"], json!([all]));
}

#[tokio::test]
async fn secrets_default_to_opaque() {
    let api = api().await;
    let uri = "/api/v1/namespaces/default/secrets";
    let (code, created) = api
        .post(uri, json!({"metadata": {"name": "s"}, "type": "", "stringData": {"a": "b"}}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["type"], "Opaque");
    assert_eq!(created["data"]["a"], "Yg==", "stringData is merged into data");
    assert!(created.get("stringData").is_none());
    let (code, updated) = api
        .call(
            "PATCH",
            &format!("{uri}/s"),
            Some("application/merge-patch+json"),
            Some(json!({"stringData": {"c": "d"}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["data"], json!({"a": "Yg==", "c": "ZA=="}));
    let (_, tls) =
        api.post(uri, json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls"})).await;
    assert_eq!(tls["type"], "kubernetes.io/tls");
}

#[tokio::test]
async fn service_updates_keep_allocations_and_follow_type_changes() {
    let api = api().await;
    let svcs = "/api/v1/namespaces/default/services";
    let merge = |body: Value| (Some("application/merge-patch+json"), Some(body));
    let (code, created) = api
        .post(svcs, service("web", json!({"ports": [{"port": 80}], "selector": {"a": "b"}})))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let ip = created["spec"]["clusterIP"].as_str().expect("ip").to_owned();

    // ClusterIP → NodePort allocates a node port and keeps the IP.
    let (ct, body) = merge(json!({"spec": {"type": "NodePort"}}));
    let (code, node) = api.call("PATCH", &format!("{svcs}/web"), ct, body).await;
    assert_eq!(code, StatusCode::OK, "{node}");
    let node_port = node["spec"]["ports"][0]["nodePort"].as_u64().expect("a node port");
    assert_eq!(node["spec"]["clusterIP"], ip.as_str());
    assert_eq!(node["spec"]["externalTrafficPolicy"], "Cluster");

    // A replace that leaves out the allocated fields keeps them.
    let mut replacement = node.clone();
    replacement["spec"].as_object_mut().expect("spec").remove("clusterIP");
    replacement["spec"].as_object_mut().expect("spec").remove("clusterIPs");
    replacement["spec"]["ports"][0].as_object_mut().expect("port").remove("nodePort");
    let (code, replaced) =
        api.call("PUT", &format!("{svcs}/web"), Some("application/json"), Some(replacement)).await;
    assert_eq!(code, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["spec"]["clusterIP"], ip.as_str());
    assert_eq!(replaced["spec"]["ports"][0]["nodePort"], node_port);

    // The node port is held: another Service cannot have it.
    let (code, _) = api
        .post(
            svcs,
            service(
                "other",
                json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": node_port}]}),
            ),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);

    // The cluster IP cannot change.
    let (ct, body) =
        merge(json!({"spec": {"clusterIP": "10.96.0.77", "clusterIPs": ["10.96.0.77"]}}));
    let (code, status) = api.call("PATCH", &format!("{svcs}/web"), ct, body).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");

    // Back to ClusterIP: the node port goes and is free again.
    let (ct, body) = merge(json!({"spec": {"type": "ClusterIP", "externalTrafficPolicy": null}}));
    let (code, back) = api.call("PATCH", &format!("{svcs}/web"), ct, body).await;
    assert_eq!(code, StatusCode::OK, "{back}");
    assert!(back["spec"]["ports"][0].get("nodePort").is_none(), "{back}");
    let (code, other) = api
        .post(
            svcs,
            service(
                "other",
                json!({"type": "NodePort", "ports": [{"port": 81, "nodePort": node_port}]}),
            ),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{other}");

    // To ExternalName: the IP is released.
    let (ct, body) =
        merge(json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}));
    let (code, external) = api.call("PATCH", &format!("{svcs}/web"), ct, body).await;
    assert_eq!(code, StatusCode::OK, "{external}");
    assert!(external["spec"].get("clusterIP").is_none(), "{external}");
    let (code, reuse) =
        api.post(svcs, service("reuse", json!({"clusterIP": ip, "ports": [{"port": 80}]}))).await;
    assert_eq!(code, StatusCode::CREATED, "the released IP can be requested again: {reuse}");
}

#[tokio::test]
async fn legacy_extensions_versions_are_the_same_objects_as_the_current_ones() {
    let api = api().await;
    let legacy = "/apis/extensions/v1beta1/namespaces/default/deployments";
    let current = "/apis/apps/v1/namespaces/default/deployments";
    let (code, created) = api
        .post(
            legacy,
            json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment",
                   "metadata": {"name": "old"},
                   "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "old"}},
                            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["apiVersion"], "extensions/v1beta1");
    // One object, seen through both versions.
    let (_, modern) = api.get(&format!("{current}/old")).await;
    assert_eq!(modern["apiVersion"], "apps/v1");
    assert_eq!(modern["spec"]["selector"], json!({"matchLabels": {"app": "old"}}));
    let (_, list) = api.get(legacy).await;
    assert_eq!(list["apiVersion"], "extensions/v1beta1");
    assert_eq!(list["items"][0]["apiVersion"], "extensions/v1beta1");
    let (code, patched) = api
        .call(
            "PATCH",
            &format!("{legacy}/old"),
            Some("application/strategic-merge-patch+json"),
            Some(json!({"spec": {"replicas": 5}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(api.get(&format!("{current}/old")).await.1["spec"]["replicas"], 5);

    // Ingress: serviceName/servicePort in, service.name/port out.
    let (code, ing) = api
        .post(
            "/apis/extensions/v1beta1/namespaces/default/ingresses",
            json!({"metadata": {"name": "ing"}, "spec": {"rules": [{"host": "a.example.com",
                   "http": {"paths": [{"path": "/", "backend": {"serviceName": "web", "servicePort": 80}}]}}]}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{ing}");
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["serviceName"], "web");
    let (_, v1) = api.get("/apis/networking.k8s.io/v1/namespaces/default/ingresses/ing").await;
    assert_eq!(
        v1["spec"]["rules"][0]["http"]["paths"][0]["backend"],
        json!({"service": {"name": "web", "port": {"number": 80}}})
    );

    // A watch of the legacy version sees legacy objects.
    let req = Request::builder()
        .uri(format!("{legacy}?watch=true"))
        .body(Body::empty())
        .expect("request");
    let mut body = api.router.clone().oneshot(req).await.expect("response").into_body();
    let event = read_line(&mut body).await;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["apiVersion"], "extensions/v1beta1");
}

#[tokio::test]
async fn component_statuses_report_the_store_and_leased_components() {
    let api = api().await;
    let req = Request::builder().uri("/api/v1/componentstatuses").body(Body::empty());
    let resp = api.router.clone().oneshot(req.expect("request")).await.expect("response");
    assert_eq!(
        resp.headers().get("warning").and_then(|v| v.to_str().ok()),
        Some("299 - \"v1 ComponentStatus is deprecated in v1.19+\"")
    );
    let (code, list) = api.get("/api/v1/componentstatuses").await;
    assert_eq!(code, StatusCode::OK);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["scheduler", "controller-manager", "etcd-0"]);
    assert_eq!(list["items"][2]["conditions"][0]["status"], "True");
    assert_eq!(list["items"][0]["conditions"][0]["status"], "False", "no scheduler lease yet");

    // A scheduler that holds and renews its lease is healthy.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let (code, lease) = api
        .post(
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            json!({"metadata": {"name": "kube-scheduler"},
                   "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15, "renewTime": now}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{lease}");
    let (_, scheduler) = api.get("/api/v1/componentstatuses/scheduler").await;
    assert_eq!(
        scheduler["conditions"][0],
        json!({"type": "Healthy", "status": "True", "message": "ok"})
    );
    let (code, _) = api.get("/api/v1/componentstatuses/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (_, table) = api
        .call_with_accept(
            "/api/v1/componentstatuses",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
        )
        .await;
    assert_eq!(table["rows"][0]["cells"], json!(["scheduler", "Healthy", "ok", ""]));
}

const APPLY: &str = "application/apply-patch+yaml";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

impl Api {
    async fn call_as(
        &self,
        method: &str,
        uri: &str,
        agent: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .header("user-agent", agent)
            .body(Body::from(body))
            .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn managers(object: &Value) -> Vec<(String, String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_owned(),
                        e["operation"].as_str().unwrap_or_default().to_owned(),
                        e["subresource"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry<'v>(object: &'v Value, manager: &str) -> &'v Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|list| list.iter().find(|e| e["manager"] == manager))
        .unwrap_or(&Value::Null)
}

fn web(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]},
            },
        },
    })
}

#[tokio::test]
async fn writes_record_managed_fields() {
    let api = api().await;
    let (code, created) = api
        .call_as(
            "POST",
            &format!("{CMS}?fieldManager=kubectl-create"),
            "kubectl/v1.33.0 (linux/amd64) kubernetes/abc",
            "application/json",
            cm("owned", json!({"a": "1"})).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(managers(&created), vec![("kubectl-create".into(), "Update".into(), "".into())]);
    let first = entry(&created, "kubectl-create");
    assert_eq!(first["apiVersion"], "v1");
    assert_eq!(first["fieldsType"], "FieldsV1");
    assert!(first["time"].is_string());
    assert_eq!(
        first["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
    );

    // Another client (named by its User-Agent) changes a value: it takes that field.
    let mut changed = created.clone();
    changed["data"]["k"] = json!("w");
    changed["data"]["new"] = json!("x");
    let (code, updated) = api
        .call_as(
            "PUT",
            &format!("{CMS}/owned"),
            "OpenAPI-Generator/31.0.0/python",
            "application/json",
            changed.to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(
        entry(&updated, "OpenAPI-Generator")["fieldsV1"],
        json!({"f:data": {"f:k": {}, "f:new": {}}})
    );
    assert_eq!(
        entry(&updated, "kubectl-create")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:a": {}}}})
    );

    // A write that changes nothing changes no managed fields (and no resourceVersion).
    let (_, again) = api
        .call_as("PUT", &format!("{CMS}/owned"), "other/1", "application/json", updated.to_string())
        .await;
    assert_eq!(again["metadata"]["resourceVersion"], updated["metadata"]["resourceVersion"]);
    assert_eq!(again["metadata"]["managedFields"], updated["metadata"]["managedFields"]);

    // `[{}]` clears them; an unknown operation is invalid.
    let (code, cleared) = api
        .call(
            "PATCH",
            &format!("{CMS}/owned"),
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"managedFields": [{}]}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{cleared}");
    assert!(cleared["metadata"].get("managedFields").is_none(), "{cleared}");
    let (code, invalid) = api
        .call(
            "PATCH",
            &format!("{CMS}/owned"),
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"managedFields": [{"manager": "x", "operation": "Merge",
                "fieldsType": "FieldsV1", "fieldsV1": {}}]}})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
    assert!(invalid["message"].as_str().is_some_and(|m| m.contains("managedFields[0].operation")));
}

#[tokio::test]
async fn status_writes_record_the_subresource() {
    let api = api().await;
    let (code, _) = api
        .call_as(
            "POST",
            DEPLOYMENTS,
            "kubectl/v1.33.0",
            "application/json",
            web(1, "nginx").to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, written) = api
        .call_as(
            "PATCH",
            &format!("{DEPLOYMENTS}/web/status"),
            "kube-controller-manager/v1.35.0",
            "application/merge-patch+json",
            json!({"status": {"replicas": 1}}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{written}");
    assert_eq!(
        managers(&written),
        vec![
            ("kubectl".into(), "Update".into(), "".into()),
            ("kube-controller-manager".into(), "Update".into(), "status".into()),
        ]
    );
    assert_eq!(
        entry(&written, "kube-controller-manager")["fieldsV1"],
        json!({"f:status": {"f:replicas": {}}})
    );
    assert!(entry(&written, "kubectl")["fieldsV1"].get("f:status").is_none());
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_conflicts() {
    let api = api().await;
    let url = format!("{DEPLOYMENTS}/web");
    let apply = |manager: &str, force: bool, body: String| {
        let uri = format!("{url}?fieldManager={manager}&force={force}");
        let api = &api;
        async move { api.call_as("PATCH", &uri, "kubectl/v1.33.0", APPLY, body).await }
    };

    let (code, missing) =
        api.call_as("PATCH", &url, "kubectl/v1.33.0", APPLY, web(1, "a").to_string()).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{missing}");
    assert!(
        missing["message"].as_str().is_some_and(|m| m.contains("fieldManager: Required value"))
    );

    let (code, created) = apply("kubectl", false, web(1, "nginx").to_string()).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(managers(&created), vec![("kubectl".into(), "Apply".into(), "".into())]);
    let fields = &entry(&created, "kubectl")["fieldsV1"];
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}})
    );
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert!(
        fields["f:spec"].get("f:progressDeadlineSeconds").is_none(),
        "defaults are not applied"
    );

    // The same configuration again is a no-op.
    let (code, again) = apply("kubectl", false, web(1, "nginx").to_string()).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);

    // YAML works too, and a change moves the value.
    let yaml = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    app: web\n\
        spec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n\
        \x20     labels:\n        app: web\n    spec:\n      containers:\n      - name: nginx\n        image: nginx\n";
    let (code, scaled) = apply("kubectl", false, yaml.to_owned()).await;
    assert_eq!(code, StatusCode::OK, "{scaled}");
    assert_eq!(scaled["spec"]["replicas"], 2);
    assert_eq!(scaled["metadata"]["generation"], 2);

    // Another manager applying another value conflicts, as upstream words it.
    let (code, conflict) = apply("other", false, web(5, "nginx").to_string()).await;
    assert_eq!(code, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(conflict["reason"], "Conflict");
    assert_eq!(
        conflict["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
    );
    assert_eq!(conflict["details"]["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(conflict["details"]["causes"][0]["field"], ".spec.replicas");

    // Forced, it takes the field; the shared ones (same values) stay shared.
    let (code, forced) = apply("other", true, web(5, "nginx").to_string()).await;
    assert_eq!(code, StatusCode::OK, "{forced}");
    assert_eq!(forced["spec"]["replicas"], 5);
    assert!(entry(&forced, "kubectl")["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert!(entry(&forced, "kubectl")["fieldsV1"]["f:spec"].get("f:selector").is_some());

    // An Update by a third client then conflicts with no apply of the same value.
    let (code, _) = api
        .call_as(
            "PATCH",
            &format!("{url}?fieldManager=kubectl-edit"),
            "kubectl/v1.33.0",
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"extra": "1"}}}).to_string(),
        )
        .await;
    assert_eq!(code, StatusCode::OK);

    // `other` stops applying the container's image... nobody else dropped it, `kubectl`
    // still applies it: it stays. A label only `other` applied goes when dropped.
    let mut with_label = web(5, "nginx");
    with_label["metadata"]["labels"]["tier"] = json!("front");
    let (code, labelled) = apply("other", false, with_label.to_string()).await;
    assert_eq!(code, StatusCode::OK, "{labelled}");
    assert_eq!(labelled["metadata"]["labels"]["tier"], "front");
    let (code, dropped) = apply("other", false, web(5, "nginx").to_string()).await;
    assert_eq!(code, StatusCode::OK, "{dropped}");
    assert!(dropped["metadata"]["labels"].get("tier").is_none(), "{dropped}");
    assert_eq!(dropped["metadata"]["labels"]["extra"], "1");
    assert_eq!(dropped["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");

    // A conflict with an Update manager names its apiVersion.
    let mut relabel = web(5, "nginx");
    relabel["metadata"]["labels"]["extra"] = json!("2");
    let (code, conflict) = apply("other", false, relabel.to_string()).await;
    assert_eq!(code, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(
        conflict["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .metadata.labels.extra"
    );
}
