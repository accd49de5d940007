//! The scheduler inside `krust server`, driven with kubectl: Node objects created through the
//! API, taints, cordon and labels steering placement, and upstream's FailedScheduling event and
//! `PodScheduled` condition for pods that fit nowhere. Every wait polls with a deadline.

use std::time::{Duration, Instant};

use krust_testsupport::KrustServer;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);
const KUBECTL: &str = "1.33";

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

/// Polls `check` until it returns `Some`, failing with `what` (and the server log) at the deadline.
fn wait_for<T>(server: &KrustServer, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn apply(server: &KrustServer, object: &Value) {
    let name = object["metadata"]["name"].as_str().unwrap_or("object");
    let path =
        server.data_dir().join(format!("{name}-{}.json", object["kind"].as_str().unwrap_or("x")));
    std::fs::write(&path, object.to_string()).expect("write manifest");
    server
        .kubectl(KUBECTL)
        .args(["create".as_ref(), "-f".as_ref(), path.as_os_str()])
        .run()
        .expect("kubectl create");
}

fn create_node(server: &KrustServer, name: &str, cpu: &str, memory: &str, labels: Value) {
    let resources = json!({"cpu": cpu, "memory": memory, "pods": "110"});
    apply(
        server,
        &json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": {"capacity": resources, "allocatable": resources},
        }),
    );
}

fn create_pod(server: &KrustServer, name: &str, requests: Value, extra_spec: Value) {
    let mut spec = json!({
        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": requests}}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    apply(
        server,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}),
    );
}

fn get_json(server: &KrustServer, args: &[&str]) -> Value {
    let out = server.kubectl(KUBECTL).args(args).args(["-o", "json"]).run().expect("kubectl get");
    serde_json::from_str(&out).expect("json")
}

fn node_of(server: &KrustServer, pod: &str) -> Option<String> {
    let pod = get_json(server, &["get", "pod", pod]);
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(str::to_owned)
}

fn wait_bound(server: &KrustServer, pod: &str) -> String {
    wait_for(server, &format!("pod {pod} to be bound"), || node_of(server, pod))
}

/// The messages of the pod's events with this reason.
fn event_messages(server: &KrustServer, pod: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={pod},reason={reason}");
    let events = get_json(server, &["get", "events", "--field-selector", &selector]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

fn wait_event(server: &KrustServer, pod: &str, reason: &str) -> String {
    wait_for(server, &format!("a {reason} event for {pod}"), || {
        event_messages(server, pod, reason).into_iter().next()
    })
}

fn pod_scheduled_condition(server: &KrustServer, pod: &str) -> Option<Value> {
    let pod = get_json(server, &["get", "pod", pod]);
    pod["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled").cloned()
}

#[test]
#[ignore = "end-to-end: real krust server"]
fn pods_are_bound_to_a_node_that_fits() {
    let server = start();
    create_node(&server, "small", "1", "1Gi", json!({}));
    create_node(&server, "big", "8", "32Gi", json!({}));
    create_pod(&server, "web", json!({"cpu": "2", "memory": "4Gi"}), json!({}));
    assert_eq!(wait_bound(&server, "web"), "big");
    assert_eq!(wait_event(&server, "web", "Scheduled"), "Successfully assigned default/web to big");
    let condition = pod_scheduled_condition(&server, "web").expect("PodScheduled condition");
    assert_eq!(condition["status"], "True");

    // Requests of bound pods count: 5 more cpus fit on big (8 - 2), 2 more then fit nowhere.
    create_pod(&server, "batch", json!({"cpu": "5"}), json!({}));
    assert_eq!(wait_bound(&server, "batch"), "big");
    create_pod(&server, "late", json!({"cpu": "2"}), json!({}));
    let message = wait_event(&server, "late", "FailedScheduling");
    assert_eq!(
        message,
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
         1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    );
}

#[test]
#[ignore = "end-to-end: real krust server"]
fn taints_cordon_and_labels_steer_placement() {
    let server = start();
    create_node(&server, "tainted", "4", "8Gi", json!({"zone": "a"}));
    create_node(&server, "cordoned", "4", "8Gi", json!({"zone": "b"}));
    create_node(&server, "free", "4", "8Gi", json!({"zone": "c"}));
    let kubectl = |args: &[&str]| server.kubectl(KUBECTL).args(args).run().expect("kubectl");
    kubectl(&["taint", "node", "tainted", "dedicated=infra:NoSchedule"]);
    kubectl(&["cordon", "cordoned"]);

    create_pod(&server, "anywhere", json!({"cpu": "100m"}), json!({}));
    assert_eq!(wait_bound(&server, "anywhere"), "free");

    // A toleration and a selector lead to the tainted node.
    let tolerate = json!({
        "nodeSelector": {"zone": "a"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
    });
    create_pod(&server, "infra", json!({"cpu": "100m"}), tolerate);
    assert_eq!(wait_bound(&server, "infra"), "tainted");

    // A selector for the cordoned node's zone: unschedulable until uncordoned.
    create_pod(&server, "zone-b", json!({"cpu": "100m"}), json!({"nodeSelector": {"zone": "b"}}));
    let message = wait_event(&server, "zone-b", "FailedScheduling");
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint(s), 1 node(s) were unschedulable. preemption: \
         0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    kubectl(&["uncordon", "cordoned"]);
    assert_eq!(wait_bound(&server, "zone-b"), "cordoned");

    // Required node affinity with upstream's operators.
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "NotIn", "values": ["a", "b"]},
        ]}],
    }}}});
    create_pod(&server, "not-a-or-b", json!({"cpu": "100m"}), affinity);
    assert_eq!(wait_bound(&server, "not-a-or-b"), "free");
}

#[test]
#[ignore = "end-to-end: real krust server"]
fn unschedulable_pod_reports_why_and_is_scheduled_once_a_node_fits() {
    let server = start();
    for i in 0..3 {
        create_node(&server, &format!("small-{i}"), "4", "1Gi", json!({}));
    }
    for i in 0..3 {
        create_node(&server, &format!("tainted-{i}"), "4", "64Gi", json!({}));
        server
            .kubectl(KUBECTL)
            .args(["taint", "node", &format!("tainted-{i}"), "key=value:NoSchedule"])
            .run()
            .expect("taint");
    }
    create_pod(&server, "hungry", json!({"memory": "2Gi"}), json!({}));
    // Upstream 1.35's wording: taint keys and values stay out of the message
    // (kubernetes/kubernetes#134740).
    let expected = "0/6 nodes are available: 3 Insufficient memory, 3 node(s) had untolerated taint(s). \
                    preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling.";
    assert_eq!(wait_event(&server, "hungry", "FailedScheduling"), expected);
    let condition = wait_for(&server, "the PodScheduled=False condition", || {
        pod_scheduled_condition(&server, "hungry").filter(|c| c["status"] == "False")
    });
    assert_eq!(condition["reason"], "Unschedulable");
    assert_eq!(condition["message"], expected);
    assert!(node_of(&server, "hungry").is_none());

    // A node that fits appears: the pod is retried and bound.
    create_node(&server, "roomy", "4", "8Gi", json!({}));
    assert_eq!(wait_bound(&server, "hungry"), "roomy");
    let condition = wait_for(&server, "PodScheduled=True", || {
        pod_scheduled_condition(&server, "hungry").filter(|c| c["status"] == "True")
    });
    assert_eq!(condition["type"], "PodScheduled");
}

#[test]
#[ignore = "end-to-end: real krust server"]
fn pods_for_other_schedulers_are_left_alone() {
    let server = start();
    create_node(&server, "n1", "4", "8Gi", json!({}));
    create_pod(&server, "custom", json!({}), json!({"schedulerName": "my-scheduler"}));
    // Pods are taken first in, first out: once the later one is bound, the first was seen.
    create_pod(&server, "default", json!({}), json!({}));
    assert_eq!(wait_bound(&server, "default"), "n1");
    assert!(node_of(&server, "custom").is_none());
    assert!(event_messages(&server, "custom", "FailedScheduling").is_empty());
    assert!(event_messages(&server, "custom", "Scheduled").is_empty());

    // Host ports: a second pod wanting the same port does not fit the only node.
    let port = json!({"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    create_pod(&server, "port-1", json!({}), port.clone());
    assert_eq!(wait_bound(&server, "port-1"), "n1");
    create_pod(&server, "port-2", json!({}), port);
    assert_eq!(
        wait_event(&server, "port-2", "FailedScheduling"),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    // Deleting the first frees the port (a bound pod keeps it through graceful deletion, so
    // without a grace period).
    server
        .kubectl(KUBECTL)
        .args(["delete", "pod", "port-1", "--grace-period=0", "--force", "--ignore-not-found"])
        .run()
        .expect("force delete");
    assert_eq!(wait_bound(&server, "port-2"), "n1");
}
