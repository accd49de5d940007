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
