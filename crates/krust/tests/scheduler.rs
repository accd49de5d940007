//! The scheduler inside `krust server`, driven with kubectl: Node objects created through the
//! API, taints, cordon and labels steering placement, and upstream's FailedScheduling event and
//! `PodScheduled` condition for pods that fit nowhere. Every wait polls with a deadline.

use std::time::Duration;

use krust_testsupport::KrustServer;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);
const KUBECTL: &str = "1.33";

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

/// Polls `check` until it returns `Some`, failing with `what` (and the server log) at the deadline.
fn wait_for<T>(server: &KrustServer, what: &str, check: impl FnMut() -> Option<T>) -> T {
    server.wait_for(DEADLINE, what, check)
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

fn lease(server: &KrustServer, namespace: &str, name: &str) -> Option<Value> {
    let out = server
        .kubectl(KUBECTL)
        .args(["get", "lease", "-n", namespace, name, "-o", "json"])
        .output()
        .expect("kubectl get lease");
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

fn micro_time(value: &Value) -> k8s_openapi::jiff::Timestamp {
    let text = value.as_str().expect("a MicroTime string");
    // MicroTime: RFC 3339 with exactly six fractional digits.
    assert_eq!(text.len(), "2026-01-02T03:04:05.123456Z".len(), "{text}");
    text.parse().expect("RFC 3339")
}

#[test]
#[ignore = "end-to-end: real krust server"]
fn the_scheduler_holds_and_renews_its_lease() {
    let server = start();
    let first = wait_for(&server, "the kube-scheduler lease", || {
        lease(&server, "kube-system", "kube-scheduler")
            .filter(|l| l["spec"]["holderIdentity"].as_str().is_some_and(|h| !h.is_empty()))
    });
    let spec = &first["spec"];
    let holder = spec["holderIdentity"].as_str().expect("holder").to_owned();
    assert!(holder.contains('_'), "<hostname>_<uuid>: {holder}");
    assert_eq!(spec["leaseDurationSeconds"], 15);
    let renewed = micro_time(&spec["renewTime"]);
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(renewed);
    assert!(age.as_secs() < 15, "renewTime is {age:?} old");
    micro_time(&spec["acquireTime"]);

    let later = wait_for(&server, "the lease to be renewed", || {
        lease(&server, "kube-system", "kube-scheduler")
            .filter(|l| micro_time(&l["spec"]["renewTime"]) > renewed)
    });
    assert_eq!(later["spec"]["holderIdentity"], holder.as_str());
    assert_eq!(later["spec"]["acquireTime"], spec["acquireTime"], "a renewal keeps acquireTime");

    // And it schedules while it leads.
    create_node(&server, "n1", "4", "8Gi", json!({}));
    create_pod(&server, "led", json!({}), json!({}));
    assert_eq!(wait_bound(&server, "led"), "n1");
}

mod election {
    use std::time::Duration;

    use krust_scheduler::leader::{LeaderElectionConfig, LeaderElector};
    use tokio::sync::watch;
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;

    /// One candidate: its identity, its leadership channel and the task that campaigns.
    pub struct Candidate {
        pub identity: String,
        pub leading: watch::Receiver<bool>,
        stop: CancellationToken,
        task: JoinHandle<()>,
    }

    impl Candidate {
        pub fn start(client: &kube::Client, release_on_cancel: bool) -> Self {
            let config = LeaderElectionConfig {
                lease_duration: Duration::from_secs(3),
                renew_deadline: Duration::from_secs(2),
                retry_period: Duration::from_millis(500),
                release_on_cancel,
                ..LeaderElectionConfig::new("default", "e2e-election")
            };
            let identity = config.lock.identity.clone();
            let elector = LeaderElector::new(client.clone(), config).expect("valid config");
            let (tx, leading) = watch::channel(false);
            let stop = CancellationToken::new();
            let task = tokio::spawn(elector.run(stop.clone(), tx));
            Self { identity, leading, stop, task }
        }

        pub fn leads(&self) -> bool {
            *self.leading.borrow()
        }

        pub async fn wait_leading(&mut self, within: Duration) {
            tokio::time::timeout(within, self.leading.wait_for(|l| *l))
                .await
                .unwrap_or_else(|_| panic!("{} did not lead within {within:?}", self.identity))
                .expect("the elector is running");
        }

        /// Cancels the campaign and waits until it has ended (and released, if configured).
        pub async fn stop(self) -> bool {
            self.stop.cancel();
            self.task.await.expect("the elector does not panic");
            *self.leading.borrow()
        }
    }
}

#[test]
#[ignore = "end-to-end: real krust server"]
fn two_electors_one_leader_and_takeover() {
    use election::Candidate;

    let server = start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let holder = || {
        lease(&server, "default", "e2e-election")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    runtime.block_on(async {
        let kubeconfig =
            kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("client config");
        let client = kube::Client::try_from(config).expect("client");

        // A leads first and will not release: B must wait for the lease to expire.
        let mut a = Candidate::start(&client, false);
        a.wait_leading(Duration::from_secs(10)).await;
        let mut b = Candidate::start(&client, true);
        let watch_until = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < watch_until {
            assert!(a.leads() && !b.leads(), "exactly one leader: a={} b={}", a.leads(), b.leads());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(holder().as_deref(), Some(a.identity.as_str()));

        let a_identity = a.identity.clone();
        assert!(!a.stop().await, "a cancelled elector reports it no longer leads");
        assert_eq!(holder().as_deref(), Some(a_identity.as_str()), "a did not release");
        let cancelled = tokio::time::Instant::now();
        b.wait_leading(Duration::from_secs(10)).await;
        assert!(
            cancelled.elapsed() > Duration::from_secs(2),
            "b took over before a's lease could have expired"
        );
        assert_eq!(holder().as_deref(), Some(b.identity.as_str()));
        let transitions =
            lease(&server, "default", "e2e-election").expect("lease")["spec"]["leaseTransitions"]
                .as_i64();
        assert_eq!(transitions, Some(1));

        // B releases on cancel: C takes over without waiting for the 3 s lease to expire.
        let mut c = Candidate::start(&client, false);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(b.leads() && !c.leads());
        b.stop().await;
        let released = tokio::time::Instant::now();
        let spec = lease(&server, "default", "e2e-election").expect("lease")["spec"].clone();
        let holder_now = spec["holderIdentity"].as_str().unwrap_or_default().to_owned();
        assert!(holder_now.is_empty() || holder_now == c.identity, "b released the lease: {spec}");
        c.wait_leading(Duration::from_secs(10)).await;
        assert!(released.elapsed() < Duration::from_secs(3), "c waited {:?}", released.elapsed());
        assert_eq!(holder().as_deref(), Some(c.identity.as_str()));
        c.stop().await;
    });
}
