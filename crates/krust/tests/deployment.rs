//! The Deployment controller inside `krust server`, on hollow nodes, driven with real kubectl —
//! the seeds' flows: `create deployment`, `scale` 3 → 10, `set image` watched at every step so
//! that maxSurge/maxUnavailable are never exceeded, `rollout status`, `rollout undo` and
//! `--to-revision`, `rollout history`, pause/resume, `rollout restart`, `get rs -w`, and a
//! Recreate Deployment that never runs old and new pods together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use krust_testsupport::{KrustServer, NodeProcess};
use kube::runtime::{reflector, watcher};
use serde_json::Value;

const KUBECTL: &str = "1.33";
const DEADLINE: Duration = Duration::from_secs(60);

fn kubectl(server: &KrustServer, args: &[&str]) -> String {
    server.kubectl(KUBECTL).args(args).run().expect("kubectl")
}

fn get(server: &KrustServer, args: &[&str]) -> Value {
    server.get_json(KUBECTL, args).expect("kubectl get")
}

fn rollout_status(server: &KrustServer, deployment: &str) -> String {
    kubectl(server, &["rollout", "status", &format!("deployment/{deployment}"), "--timeout=60s"])
}

fn image(server: &KrustServer, deployment: &str) -> String {
    get(server, &["get", "deployment", deployment])["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Watches the ReplicaSets and pods of `app` until stopped, recording every moment at which the
/// ReplicaSets ask for more than `max_total` pods or fewer than `min_ready` pods are ready, and
/// the most ReplicaSets seen with replicas at once.
struct Bounds {
    stop: Arc<AtomicBool>,
    violations: Arc<Mutex<Vec<String>>>,
    most_active: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bounds {
    fn watch(server: &KrustServer, app: &str, max_total: i32, min_ready: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let most_active = Arc::new(Mutex::new(0));
        let kubeconfig = server.kubeconfig().to_owned();
        let selector = format!("app={app}");
        let (s, v, m) = (stop.clone(), violations.clone(), most_active.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let file = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
                let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
                    .await
                    .expect("config");
                let client = kube::Client::try_from(config).expect("client");
                let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
                let (pod_store, pod_writer) = reflector::store::<Pod>();
                let cfg = watcher::Config::default().labels(&selector);
                let rs_events = reflector::reflector(
                    rs_writer,
                    watcher::watcher(kube::Api::namespaced(client.clone(), "default"), cfg.clone()),
                );
                let pod_events = reflector::reflector(
                    pod_writer,
                    watcher::watcher(kube::Api::namespaced(client, "default"), cfg),
                );
                let armed = Arc::new(AtomicBool::new(false));
                let (rs, pods, on) = (rs_store.clone(), pod_store.clone(), armed.clone());
                let check = move || {
                    if !on.load(Ordering::Relaxed) {
                        return;
                    }
                    let replicas = |rs: &ReplicaSet| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                    let total: i32 = rs.state().iter().map(|r| replicas(r)).sum();
                    let active = rs.state().iter().filter(|r| replicas(r) > 0).count();
                    let ready_pods = pods
                        .state()
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
                        .count();
                    let mut most = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    *most = (*most).max(active);
                    if total > max_total || ready_pods < min_ready {
                        v.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!(
                            "replicas asked {total} (max {max_total}), ready {ready_pods} (min {min_ready})"
                        ));
                    }
                };
                let events = futures_util::stream::select(rs_events.map(|_| ()), pod_events.map(|_| ()));
                let driver = tokio::spawn(events.for_each(move |()| {
                    check();
                    async {}
                }));
                let _ = rs_store.wait_until_ready().await;
                let _ = pod_store.wait_until_ready().await;
                armed.store(true, Ordering::Relaxed);
                let _ = ready_tx.send(());
                while !s.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                driver.abort();
            });
        });
        ready_rx.recv_timeout(DEADLINE).expect("the watches start");
        Self { stop, violations, most_active, thread: Some(thread) }
    }

    /// Stops watching; returns the violations and the most ReplicaSets active at once.
    fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("watch thread");
        }
        let v = self.violations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let m = *self.most_active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (v, m)
    }
}

fn app_pods(server: &KrustServer, app: &str) -> Vec<Value> {
    server.live_pods(KUBECTL, &format!("app={app}"))
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn rolling_updates_scale_roll_back_and_stay_within_their_bounds() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _nodes = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 3).expect("hollow");
    server.wait_for(DEADLINE, "3 nodes", || {
        (get(&server, &["get", "nodes"])["items"].as_array().map(Vec::len) == Some(3)).then_some(())
    });

    // The seeds' backend: 3 replicas, then 10.
    kubectl(&server, &["create", "deployment", "backend-v2", "--image=nginx:1", "--replicas=3"]);
    assert!(rollout_status(&server, "backend-v2").contains("successfully rolled out"));
    assert_eq!(app_pods(&server, "backend-v2").len(), 3);
    kubectl(&server, &["scale", "deployment", "backend-v2", "--replicas", "10"]);
    rollout_status(&server, "backend-v2");
    let d = get(&server, &["get", "deployment", "backend-v2"]);
    assert_eq!(d["status"]["readyReplicas"], 10, "{}", d["status"]);
    assert!(d["status"].get("unavailableReplicas").is_none(), "zero is omitted: {}", d["status"]);
    let first_rs = get(&server, &["get", "rs", "-l", "app=backend-v2"])["items"][0].clone();
    let hash =
        first_rs["metadata"]["labels"]["pod-template-hash"].as_str().expect("hash").to_owned();
    assert_eq!(first_rs["metadata"]["name"], format!("backend-v2-{hash}"));
    assert_eq!(first_rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");

    // A new image rolls out within 25% surge (3) and 25% unavailable (2), step by step.
    let bounds = Bounds::watch(&server, "backend-v2", 10 + 3, 10 - 2);
    kubectl(&server, &["set", "image", "deployment/backend-v2", "nginx=nginx:2"]);
    let status = rollout_status(&server, "backend-v2");
    assert!(status.contains("successfully rolled out"), "{status}");
    let (violations, most_active) = bounds.finish();
    assert!(violations.is_empty(), "bounds exceeded: {violations:?}");
    assert_eq!(most_active, 2, "old and new ReplicaSets ran side by side");
    let d = get(&server, &["get", "deployment", "backend-v2"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
    let conditions = d["status"]["conditions"].to_string();
    assert!(
        conditions.contains("NewReplicaSetAvailable")
            && conditions.contains("MinimumReplicasAvailable"),
        "{conditions}"
    );
    assert_eq!(d["status"]["updatedReplicas"], 10);

    // Back to revision 1 (as revision 3), then to revision 2 (as 4).
    kubectl(&server, &["rollout", "undo", "deployment/backend-v2"]);
    rollout_status(&server, "backend-v2");
    assert_eq!(image(&server, "backend-v2"), "nginx:1");
    kubectl(&server, &["rollout", "undo", "deployment/backend-v2", "--to-revision=2"]);
    rollout_status(&server, "backend-v2");
    assert_eq!(image(&server, "backend-v2"), "nginx:2");
    let history = kubectl(&server, &["rollout", "history", "deployment/backend-v2"]);
    let revisions: Vec<&str> =
        history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, ["3", "4"], "{history}");

    // Paused: a template change waits; resumed: it rolls out.
    kubectl(&server, &["rollout", "pause", "deployment/backend-v2"]);
    kubectl(&server, &["set", "image", "deployment/backend-v2", "nginx=nginx:3"]);
    let d = server.wait_for(DEADLINE, "the paused condition", || {
        let d = get(&server, &["get", "deployment", "backend-v2"]);
        d["status"]["conditions"].to_string().contains("DeploymentPaused").then_some(d)
    });
    // A zero count is omitted, as upstream writes it.
    assert!(d["status"].get("updatedReplicas").is_none(), "nothing rolls out while paused: {d}");
    kubectl(&server, &["rollout", "resume", "deployment/backend-v2"]);
    rollout_status(&server, "backend-v2");
    assert!(
        app_pods(&server, "backend-v2")
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:3")
    );

    // A restart is a new revision with the same image.
    kubectl(&server, &["rollout", "restart", "deployment/backend-v2"]);
    rollout_status(&server, "backend-v2");
    let d = get(&server, &["get", "deployment", "backend-v2"]);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "6");

    // `get rs -w` streams the ReplicaSets (it ends at the request timeout).
    let watched = server
        .kubectl(KUBECTL)
        .args(["get", "rs", "-w", "--request-timeout=2s"])
        .output()
        .expect("get rs -w");
    let out = String::from_utf8_lossy(&watched.stdout);
    assert!(
        out.lines().next().is_some_and(|l| l.starts_with("NAME") && l.contains("DESIRED")),
        "{out}"
    );
    assert!(out.contains("backend-v2-"), "{out}");
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _nodes = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 2).expect("hollow");
    kubectl(&server, &["create", "deployment", "db", "--image=postgres:15", "--replicas=2"]);
    kubectl(
        &server,
        &[
            "patch",
            "deployment",
            "db",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/strategy","value":{"type":"Recreate"}}]"#,
        ],
    );
    rollout_status(&server, "db");
    // Never more than the replicas, never old and new together.
    let bounds = Bounds::watch(&server, "db", 2, 0);
    kubectl(&server, &["set", "image", "deployment/db", "postgres=postgres:16"]);
    rollout_status(&server, "db");
    let (violations, most_active) = bounds.finish();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(most_active, 1, "one ReplicaSet at a time");
    assert!(
        app_pods(&server, "db")
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "postgres:16")
    );
}
