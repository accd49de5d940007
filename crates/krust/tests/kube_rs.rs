//! kube-rs (the `kube` crate) as its users write it, against the real server: `Api<Pod>`
//! create/get/list/delete, a `watcher` and a reflector store following pods, a CRD derived with
//! `kube::CustomResource` installed and awaited until established, server-side apply
//! (`Patch::Apply`) of a custom resource, its status subresource, and a watcher on it.

use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use krust_testsupport::KrustServer;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt as _, conditions, reflector, wait::await_condition, watcher};
use kube::{Client, CustomResource, CustomResourceExt as _, ResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A custom resource as kube-rs users derive one.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "docs.example.com",
    version = "v1",
    kind = "Document",
    namespaced,
    status = "DocumentStatus",
    shortname = "doc",
    printcolumn = r#"{"name":"Title","type":"string","jsonPath":".spec.title"}"#
)]
struct DocumentSpec {
    title: String,
    #[serde(default)]
    pages: u32,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
struct DocumentStatus {
    views: u64,
}

const LIMIT: Duration = Duration::from_secs(20);

async fn client(server: &KrustServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

#[test]
#[ignore = "end-to-end: real krust server and kube-rs"]
fn kube_rs_typed_apis_watchers_reflectors_and_a_derived_crd() {
    // The harness drives the server synchronously; the client runs on a runtime of its own.
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(typed_apis_watchers_reflectors_and_a_derived_crd(&server));
}

async fn typed_apis_watchers_reflectors_and_a_derived_crd(server: &KrustServer) {
    let client = client(server).await;

    // Pods: a reflector follows them while they are created and deleted.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (reader, writer) = reflector::store();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let follow = reflector(writer, watcher(pods.clone(), watcher::Config::default()))
        .applied_objects()
        .try_for_each(move |pod| {
            let _ = seen_tx.send(pod.name_any());
            std::future::ready(Ok(()))
        });
    let following = tokio::spawn(follow);
    tokio::time::timeout(LIMIT, reader.wait_until_ready()).await.expect("listed").expect("ready");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kube-rs", "labels": {"app": "kube-rs"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .expect("pod");
    let created = pods.create(&PostParams::default(), &pod).await.expect("create pod");
    assert!(created.metadata.uid.is_some());
    let name = tokio::time::timeout(LIMIT, seen.recv()).await.expect("the watcher sees it");
    assert_eq!(name.as_deref(), Some("kube-rs"));
    assert!(reader.get(&reflector::ObjectRef::new("kube-rs").within("default")).is_some());
    let listed = pods.list(&ListParams::default().labels("app=kube-rs")).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        pods.get("kube-rs").await.expect("get").spec.expect("spec").containers[0].image.as_deref(),
        Some("busybox")
    );
    pods.delete("kube-rs", &DeleteParams::default().grace_period(0)).await.expect("delete pod");
    following.abort();

    // The derived CRD, installed and awaited as kube-rs users do.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = Document::crd();
    let name = crd.name_any();
    assert_eq!(name, "documents.docs.example.com");
    crds.create(&PostParams::default(), &crd).await.expect("create the CRD");
    tokio::time::timeout(
        LIMIT,
        await_condition(crds.clone(), &name, conditions::is_crd_established()),
    )
    .await
    .expect("established in time")
    .expect("no watch error");

    // Server-side apply creates it; a watcher on the kind sees it.
    let documents: Api<Document> = Api::namespaced(client.clone(), "default");
    let mut changes =
        Box::pin(watcher(documents.clone(), watcher::Config::default()).applied_objects());
    let apply = PatchParams::apply("kube-rs-test").force();
    let doc = Document::new("guide", DocumentSpec { title: "A guide".into(), pages: 3 });
    let applied = documents.patch("guide", &apply, &Patch::Apply(&doc)).await.expect("apply");
    assert_eq!(applied.spec.title, "A guide");
    assert!(
        applied.managed_fields().iter().any(|m| m.manager.as_deref() == Some("kube-rs-test")
            && m.operation.as_deref() == Some("Apply")),
        "{:?}",
        applied.managed_fields()
    );
    let seen = tokio::time::timeout(LIMIT, changes.next()).await.expect("the watcher sees it");
    assert_eq!(seen.expect("an event").expect("no error").spec.pages, 3);

    // Status through its subresource; the main resource keeps its spec.
    let status = json!({"status": {"views": 42}});
    let patched = documents
        .patch_status("guide", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status");
    assert_eq!(patched.status.expect("status").views, 42);
    let again = documents.get("guide").await.expect("get");
    assert_eq!(again.spec.pages, 3);

    // An applied change, then a refusal from the schema (a required field missing).
    let doc = Document::new("guide", DocumentSpec { title: "A longer guide".into(), pages: 4 });
    let changed = documents.patch("guide", &apply, &Patch::Apply(&doc)).await.expect("apply again");
    assert_eq!((changed.spec.title.as_str(), changed.spec.pages), ("A longer guide", 4));
    let missing = json!({"apiVersion": "docs.example.com/v1", "kind": "Document", "metadata": {"name": "untitled"}, "spec": {"pages": 1}});
    let refused = documents
        .patch("untitled", &apply, &Patch::Apply(&missing))
        .await
        .expect_err("a document without a title is refused");
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(status.message.contains("spec.title: Required value"), "{status:?}");
        }
        other => panic!("unexpected error: {other}"),
    }
    documents.delete("guide", &DeleteParams::default()).await.expect("delete");
    crds.delete(&name, &DeleteParams::default()).await.expect("delete the CRD");
}
