//! The ReplicaSet and ReplicationController controllers inside `krust server`, driven with real
//! kubectl: convergence to `replicas`, replacement of deleted pods, adoption of matching
//! orphans, release of pods that stop matching, status counts and events. There are no
//! kubelets here: pods stay unbound (so deletes are immediate), and the test marks pods ready
//! through `pods/status` where readiness matters. Every wait polls with a deadline.

use std::time::Duration;

use krust_testsupport::KrustServer;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);
const KUBECTL: &str = "1.33";

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

fn wait_for<T>(server: &KrustServer, what: &str, check: impl FnMut() -> Option<T>) -> T {
    server.wait_for(DEADLINE, what, check)
}

fn name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

fn controller_uid(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
        .map(str::to_owned)
}

fn replica_set(name: &str, replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    })
}

fn wait_pod_count(server: &KrustServer, selector: &str, n: usize) -> Vec<Value> {
    wait_for(server, &format!("{n} pods matching {selector}"), || {
        let p = server.live_pods(KUBECTL, selector);
        (p.len() == n).then_some(p)
    })
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn replica_set_converges_replaces_adopts_and_releases() {
    let server = start();
    server
        .create(KUBECTL, &replica_set("frontend", 3, json!({"tier": "frontend"})))
        .expect("kubectl create");
    let rs = server.get_json(KUBECTL, &["get", "rs", "frontend"]).expect("kubectl get");
    let uid = rs["metadata"]["uid"].as_str().expect("uid").to_owned();

    let first = wait_pod_count(&server, "tier=frontend", 3);
    for pod in &first {
        assert!(name(pod).starts_with("frontend-"), "pods are named after their owner: {pod}");
        let reference = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(reference["kind"], "ReplicaSet");
        assert_eq!(reference["apiVersion"], "apps/v1");
        assert_eq!(reference["uid"], uid.as_str());
        assert_eq!(reference["controller"], true);
        assert_eq!(reference["blockOwnerDeletion"], true);
    }
    wait_for(&server, "status.replicas 3", || {
        let rs = server.get_json(KUBECTL, &["get", "rs", "frontend"]).expect("kubectl get");
        (rs["status"]["replicas"] == 3 && rs["status"]["fullyLabeledReplicas"] == 3).then_some(())
    });

    // A deleted pod is replaced.
    let victim = name(&first[0]);
    server.kubectl(KUBECTL).args(["delete", "pod", &victim]).run().expect("kubectl");
    let replaced = wait_for(&server, "a replacement pod", || {
        let p = server.live_pods(KUBECTL, "tier=frontend");
        (p.len() == 3 && p.iter().all(|p| name(p) != victim)).then_some(p)
    });
    assert_eq!(replaced.len(), 3);

    // A matching orphan is adopted: made before its ReplicaSet, it is the one pod the
    // ReplicaSet needs.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "stray", "namespace": "default", "labels": {"tier": "adopt"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
            }),
        )
        .expect("kubectl create");
    server.create(KUBECTL, &replica_set("adopter", 1, json!({"tier": "adopt"}))).expect("create");
    let adopter = server.get_json(KUBECTL, &["get", "rs", "adopter"]).expect("kubectl get");
    let adopter_uid = adopter["metadata"]["uid"].as_str().expect("uid").to_owned();
    wait_for(&server, "the orphan adopted", || {
        let p = server.live_pods(KUBECTL, "tier=adopt");
        (p.len() == 1
            && name(&p[0]) == "stray"
            && controller_uid(&p[0]) == Some(adopter_uid.clone()))
        .then_some(())
    });

    server
        .kubectl(KUBECTL)
        .args(["scale", "rs", "frontend", "--replicas", "5"])
        .run()
        .expect("kubectl");
    let scaled = wait_for(&server, "5 owned pods", || {
        let p = server.live_pods(KUBECTL, "tier=frontend");
        let owned = p.iter().filter(|p| controller_uid(p).as_deref() == Some(&uid)).count();
        (p.len() == 5 && owned == 5).then_some(p)
    });

    // A pod whose labels stop matching is released and replaced.
    let released = name(&scaled[0]);
    server
        .kubectl(KUBECTL)
        .args(["label", "pod", &released, "tier=elsewhere", "--overwrite"])
        .run()
        .expect("kubectl");
    wait_for(&server, "the relabelled pod released", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", &released]).expect("kubectl get");
        controller_uid(&pod).is_none().then_some(())
    });
    wait_pod_count(&server, "tier=frontend", 5);

    // Scale down deletes the surplus.
    server
        .kubectl(KUBECTL)
        .args(["scale", "rs", "frontend", "--replicas", "1"])
        .run()
        .expect("kubectl");
    wait_pod_count(&server, "tier=frontend", 1);
    let describe =
        server.kubectl(KUBECTL).args(["describe", "rs", "frontend"]).run().expect("kubectl");
    for expected in
        ["SuccessfulCreate", "SuccessfulDelete", "replicaset-controller", "Created pod: frontend-"]
    {
        assert!(describe.contains(expected), "describe shows {expected}:\n{describe}");
    }

    // Alike events (same reason, other messages) are combined from the tenth on, as upstream's
    // event correlator does: the later creations bump one combined event.
    server
        .kubectl(KUBECTL)
        .args(["scale", "rs", "frontend", "--replicas", "15"])
        .run()
        .expect("scale");
    wait_pod_count(&server, "tier=frontend", 15);
    let combined = wait_for(&server, "a combined SuccessfulCreate event", || {
        let events = server
            .get_json(KUBECTL, &["get", "events", "--field-selector", "reason=SuccessfulCreate"])
            .expect("kubectl get events");
        events["items"]
            .as_array()?
            .iter()
            .find(|e| {
                e["message"].as_str().is_some_and(|m| {
                    m.starts_with("(combined from similar events): Created pod: frontend-")
                }) && e["count"].as_i64().is_some_and(|c| c >= 2)
            })
            .cloned()
    });
    assert_eq!(combined["source"]["component"], "replicaset-controller", "{combined}");
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn ready_and_available_counts_follow_pod_readiness() {
    let server = start();
    let mut rs = replica_set("web", 2, json!({"app": "web"}));
    rs["spec"]["minReadySeconds"] = json!(5);
    server.create(KUBECTL, &rs).expect("kubectl create");
    let created = wait_pod_count(&server, "app=web", 2);
    for pod in &created {
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now()},
        ]}});
        server
            .kubectl(KUBECTL)
            .args([
                "patch",
                "pod",
                &name(pod),
                "--subresource=status",
                "--type=merge",
                "-p",
                &status.to_string(),
            ])
            .run()
            .expect("kubectl");
    }
    // Ready at once; available only once minReadySeconds passed.
    let status = wait_for(&server, "readyReplicas 2", || {
        let rs = server.get_json(KUBECTL, &["get", "rs", "web"]).expect("kubectl get");
        (rs["status"]["readyReplicas"] == 2).then(|| rs["status"].clone())
    });
    assert_ne!(status["availableReplicas"], 2, "not available before minReadySeconds: {status}");
    wait_for(&server, "availableReplicas 2", || {
        let rs = server.get_json(KUBECTL, &["get", "rs", "web"]).expect("kubectl get");
        (rs["status"]["availableReplicas"] == 2).then_some(())
    });
    let table = server.kubectl(KUBECTL).args(["get", "rs", "web"]).run().expect("kubectl");
    let row = table.lines().nth(1).unwrap_or_default();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[..4], ["web", "2", "2", "2"], "DESIRED CURRENT READY:\n{table}");
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn replication_controller_manages_its_pods() {
    let server = start();
    server.create(KUBECTL, &json!({
            "apiVersion": "v1",
            "kind": "ReplicationController",
            "metadata": {"name": "legacy", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "template": {
                    "metadata": {"labels": {"app": "legacy"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
                },
            },
        })).expect("kubectl create");
    let created = wait_pod_count(&server, "app=legacy", 2);
    assert_eq!(created[0]["metadata"]["ownerReferences"][0]["kind"], "ReplicationController");
    assert_eq!(created[0]["metadata"]["ownerReferences"][0]["apiVersion"], "v1");
    server
        .kubectl(KUBECTL)
        .args(["scale", "rc", "legacy", "--replicas", "4"])
        .run()
        .expect("kubectl");
    wait_pod_count(&server, "app=legacy", 4);
    wait_for(&server, "rc status.replicas 4", || {
        let rc = server.get_json(KUBECTL, &["get", "rc", "legacy"]).expect("kubectl get");
        (rc["status"]["replicas"] == 4 && rc["status"]["observedGeneration"] == 2).then_some(())
    });
    // kubectl 1.20 (the seeds' era) sees the same.
    let out = server.kubectl("1.20").args(["get", "rc", "legacy"]).run().expect("kubectl 1.20");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.split_whitespace().take(3).eq(["legacy", "4", "4"])),
        "{out}"
    );
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
