//! Garbage collection inside `krust server`, on hollow nodes, with real kubectl: deleting a
//! ReplicaSet deletes its pods (Background), `--cascade=orphan` (and kubectl 1.20's
//! `--cascade=false`, the seeds' command) leaves them without an owner, `--cascade=foreground`
//! keeps the Deployment (marked, with the `foregroundDeletion` finalizer) until its ReplicaSets
//! and pods are gone, and deleting a Deployment takes its ReplicaSets and pods along.

use std::time::Duration;

use krust_testsupport::{KrustServer, NodeProcess};
use serde_json::{Value, json};

const KUBECTL: &str = "1.33";
const DEADLINE: Duration = Duration::from_secs(60);

fn kubectl(server: &KrustServer, args: &[&str]) -> String {
    server.kubectl(KUBECTL).args(args).run().expect("kubectl")
}

fn replica_set(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    })
}

fn owned_pods(server: &KrustServer, app: &str) -> usize {
    server.live_pods(KUBECTL, &format!("app={app}")).len()
}

fn exists(server: &KrustServer, kind: &str, name: &str) -> bool {
    let out =
        server.kubectl(KUBECTL).args(["get", kind, name, "--ignore-not-found", "-o", "name"]).run();
    out.is_ok_and(|o| !o.trim().is_empty())
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn owners_take_their_dependents_along_unless_told_otherwise() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _nodes = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 2).expect("hollow");

    // Background (kubectl's default): the pods follow their ReplicaSet.
    server.create(KUBECTL, &replica_set("bg")).expect("create");
    server.wait_for(DEADLINE, "2 pods", || (owned_pods(&server, "bg") == 2).then_some(()));
    kubectl(&server, &["delete", "rs", "bg"]);
    server.wait_for(DEADLINE, "the pods collected", || {
        (owned_pods(&server, "bg") == 0).then_some(())
    });

    // Orphan: the pods stay, without an owner.
    server.create(KUBECTL, &replica_set("orphans")).expect("create");
    server.wait_for(DEADLINE, "2 pods", || (owned_pods(&server, "orphans") == 2).then_some(()));
    kubectl(&server, &["delete", "rs", "orphans", "--cascade=orphan"]);
    server.wait_for(DEADLINE, "the ReplicaSet gone", || {
        (!exists(&server, "rs", "orphans")).then_some(())
    });
    let pods = server.wait_for(DEADLINE, "the pods released", || {
        let pods = server.live_pods(KUBECTL, "app=orphans");
        pods.iter()
            .all(|p| p["metadata"]["ownerReferences"].as_array().is_none_or(Vec::is_empty))
            .then_some(pods)
    });
    assert_eq!(pods.len(), 2, "orphaned pods are kept");

    // The seeds' kubectl 1.20 `--cascade=false` orphans too.
    server.create(KUBECTL, &replica_set("seeds")).expect("create");
    server.wait_for(DEADLINE, "2 pods", || (owned_pods(&server, "seeds") == 2).then_some(()));
    server
        .kubectl("1.20")
        .args(["delete", "replicaset", "seeds", "--cascade=false"])
        .run()
        .expect("kubectl 1.20");
    server.wait_for(DEADLINE, "the ReplicaSet gone", || {
        (!exists(&server, "rs", "seeds")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(owned_pods(&server, "seeds"), 2, "the seeds' pods survive");

    // Foreground: the Deployment waits for its ReplicaSet and pods.
    kubectl(&server, &["create", "deployment", "fg", "--image=nginx", "--replicas=2"]);
    server.wait_for(DEADLINE, "2 pods", || (owned_pods(&server, "fg") == 2).then_some(()));
    kubectl(&server, &["delete", "deployment", "fg", "--cascade=foreground", "--wait=false"]);
    // The collector runs every 2 s and the pods need their kubelet: the mark is visible.
    let d = server.get_json(KUBECTL, &["get", "deployment", "fg"]).expect("still there");
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(d["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    server.wait_for(DEADLINE, "the Deployment, its ReplicaSet and pods gone", || {
        (!exists(&server, "deployment", "fg") && owned_pods(&server, "fg") == 0).then_some(())
    });
    let left = server.get_json(KUBECTL, &["get", "rs", "-l", "app=fg"]).expect("get rs");
    assert_eq!(left["items"], json!([]));

    // Background through a Deployment: two levels down.
    kubectl(&server, &["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    server.wait_for(DEADLINE, "2 pods", || (owned_pods(&server, "web") == 2).then_some(()));
    kubectl(&server, &["delete", "deployment", "web"]);
    server.wait_for(DEADLINE, "the ReplicaSet and pods collected", || {
        let rs = server.get_json(KUBECTL, &["get", "rs", "-l", "app=web"]).ok()?;
        (rs["items"] == json!([]) && owned_pods(&server, "web") == 0).then_some(())
    });
}

fn uid_of(server: &KrustServer, args: &[&str]) -> String {
    let object = server.get_json(KUBECTL, args).expect("get");
    object["metadata"]["uid"].as_str().expect("a uid").to_owned()
}

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "name": name, "uid": uid})
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn any_resource_owns_and_namespaces_are_emptied_before_they_go() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _nodes = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 1).expect("hollow");

    // Kinds no built-in controller links: a ConfigMap owning a Secret and a ServiceAccount; the
    // account keeps a second, live owner and only loses the dangling reference.
    kubectl(&server, &["create", "configmap", "parent"]);
    kubectl(&server, &["create", "configmap", "other"]);
    let parent = uid_of(&server, &["get", "cm", "parent"]);
    let other = uid_of(&server, &["get", "cm", "other"]);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "child", "namespace": "default",
                     "ownerReferences": [owner("ConfigMap", "parent", &parent)]},
    });
    server.create(KUBECTL, &secret).expect("secret");
    let account = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "shared", "namespace": "default", "ownerReferences": [
            owner("ConfigMap", "parent", &parent), owner("ConfigMap", "other", &other)]},
    });
    server.create(KUBECTL, &account).expect("service account");
    kubectl(&server, &["delete", "cm", "parent"]);
    server.wait_for(DEADLINE, "the Secret collected", || {
        (!exists(&server, "secret", "child")).then_some(())
    });
    let refs = server.wait_for(DEADLINE, "the dangling reference removed", || {
        let sa = server.get_json(KUBECTL, &["get", "sa", "shared"]).ok()?;
        let refs = sa["metadata"]["ownerReferences"].as_array()?.clone();
        (refs.len() == 1).then_some(refs)
    });
    assert_eq!(refs[0]["name"], "other");

    // An owner whose UID no longer matches is gone, even with its name taken again.
    let stale = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "stale", "namespace": "default",
                     "ownerReferences": [owner("ConfigMap", "other", "00000000-0000-0000-0000-000000000000")]},
    });
    server.create(KUBECTL, &stale).expect("secret");
    server.wait_for(DEADLINE, "the Secret of a replaced owner collected", || {
        (!exists(&server, "secret", "stale")).then_some(())
    });
    assert!(exists(&server, "sa", "shared"), "a dependent with a live owner stays");

    // Namespace deletion: everything inside goes (pods gracefully through their kubelet); an
    // object held by a finalizer keeps the namespace Terminating, with upstream's conditions.
    kubectl(&server, &["create", "namespace", "doomed"]);
    kubectl(
        &server,
        &["create", "deployment", "web", "-n", "doomed", "--image=nginx", "--replicas=2"],
    );
    server.wait_for(DEADLINE, "2 pods", || {
        let pods = server.get_json(KUBECTL, &["get", "pods", "-n", "doomed"]).ok()?;
        (pods["items"].as_array()?.len() == 2).then_some(())
    });
    let held = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/keep"]},
    });
    server.create(KUBECTL, &held).expect("configmap");
    kubectl(&server, &["delete", "namespace", "doomed", "--wait=false"]);
    let ns = server.wait_for(DEADLINE, "only the held ConfigMap left", || {
        let ns = server.get_json(KUBECTL, &["get", "ns", "doomed"]).ok()?;
        let conditions = ns["status"]["conditions"].as_array()?;
        let remaining = conditions.iter().find(|c| c["type"] == "NamespaceContentRemaining")?;
        (remaining["message"]
            == "Some resources are remaining: configmaps. has 1 resource instances")
            .then_some(ns)
    });
    assert_eq!(ns["status"]["phase"], "Terminating");
    let conditions = ns["status"]["conditions"].as_array().expect("conditions");
    let condition = |t: &str| conditions.iter().find(|c| c["type"] == t).expect(t).clone();
    assert_eq!(condition("NamespaceDeletionDiscoveryFailure")["reason"], "ResourcesDiscovered");
    assert_eq!(condition("NamespaceDeletionContentFailure")["status"], "False");
    let finalizers = condition("NamespaceFinalizersRemaining");
    assert_eq!(finalizers["status"], "True");
    assert_eq!(finalizers["reason"], "SomeFinalizersRemain");
    assert_eq!(
        finalizers["message"],
        "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
    );
    let listed = kubectl(&server, &["get", "ns", "doomed", "--no-headers"]);
    assert!(listed.contains("Terminating"), "{listed}");
    let left = kubectl(&server, &["get", "deploy,rs,pods,sa", "-n", "doomed", "-o", "name"]);
    assert_eq!(left.trim(), "", "everything else is gone");

    kubectl(
        &server,
        &[
            "patch",
            "cm",
            "held",
            "-n",
            "doomed",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    );
    server.wait_for(DEADLINE, "the namespace gone", || {
        (!exists(&server, "ns", "doomed")).then_some(())
    });
}
