//! The real `krust server` process: start-up, health, version, authentication and shutdown.

use std::time::Duration;

use krust_testsupport::KrustServer;

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

#[test]
fn ready_and_serves_version() {
    let server = start();
    let ready = server.get_anonymous("/readyz").expect("readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));
    let verbose = server.get_anonymous("/readyz?verbose").expect("readyz verbose");
    assert!(verbose.body.contains("[+]ping ok"), "{}", verbose.body);
    assert!(verbose.body.ends_with("readyz check passed\n"), "{}", verbose.body);
    assert_eq!(server.get_anonymous("/livez").expect("livez").status, 200);
    assert_eq!(server.get_anonymous("/healthz").expect("healthz").status, 200);

    for path in ["/version", "/version/"] {
        let version = server.get_anonymous(path).expect("version").json().expect("json");
        assert_eq!(version["major"], "1");
        assert_eq!(version["minor"], "35");
        let git = version["gitVersion"].as_str().expect("gitVersion");
        assert!(git.starts_with("v1.35.") && git.contains("krust"), "{git}");
    }
}

#[test]
fn refuses_anonymous_requests_with_a_status() {
    let server = start();
    let resp = server.get_anonymous("/api/v1/namespaces").expect("request");
    assert_eq!(resp.status, 401);
    let status = resp.json().expect("json");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    assert_eq!(status["code"], 401);
}

#[test]
fn unknown_paths_get_a_not_found_status_with_details() {
    let server = start();
    let resp = server.get("/apis/no.such.group/v1/things").expect("request");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.content_type.as_deref(), Some("application/json"));
    let status = resp.json().expect("json");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["message"], "the server could not find the requested resource");
    assert!(status["details"].is_object(), "details must always be present: {status}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = start();
    let status = server.terminate(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "exit status {status}\n{}", server.log());
}

#[test]
fn restart_keeps_the_cluster_ca() {
    let data = tempfile::tempdir().expect("tempdir");
    let ca = || std::fs::read_to_string(data.path().join("pki/ca.crt")).expect("ca.crt");
    let first =
        KrustServer::start_in(env!("CARGO_BIN_EXE_krust"), data.path(), &[]).expect("first");
    let before = ca();
    drop(first);
    let second =
        KrustServer::start_in(env!("CARGO_BIN_EXE_krust"), data.path(), &[]).expect("second");
    assert_eq!(before, ca());
    assert_eq!(second.get("/readyz").expect("readyz").status, 200);
}

#[test]
fn metrics_count_requests_by_verb_resource_and_code() {
    let server = start();
    assert_eq!(server.get("/api/v1/namespaces/default/configmaps").expect("list").status, 200);
    assert_eq!(server.get("/api/v1/namespaces/default/configmaps/nope").expect("get").status, 404);
    let metrics = server.get("/metrics").expect("metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains(r#"apiserver_request_total{code="200",component="apiserver",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"} 1"#), "{}", metrics.body);
    assert!(metrics.body.contains(r#"code="404""#), "{}", metrics.body);
    // The store's latencies, by operation and resource (the watch cache lists every resource).
    assert!(
        metrics
            .body
            .contains(r#"etcd_request_duration_seconds_count{operation="list",type="configmaps"}"#),
        "{}",
        metrics.body
    );
    assert_eq!(server.get_anonymous("/metrics").expect("anonymous").status, 401);
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn disable_controller_manager_runs_no_controller() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &["--disable-controller-manager"])
        .expect("server starts");
    let out = server.kubectl("1.35").args(["create", "deployment", "idle", "--image=busybox"]);
    assert_eq!(out.run().expect("create").trim(), "deployment.apps/idle created");
    // With controllers a ReplicaSet appears within milliseconds; give them ample time to show.
    std::thread::sleep(Duration::from_secs(2));
    let sets = server.get("/apis/apps/v1/namespaces/default/replicasets").expect("list");
    assert_eq!(sets.json().expect("json")["items"], serde_json::json!([]), "{}", sets.body);
    let lease = server
        .get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager");
    assert_eq!(lease.expect("get").status, 404, "no controller manager took the lease");
}

#[test]
#[ignore = "end-to-end: waits for the manifests directory's rescan"]
fn manifests_in_the_data_dir_are_applied() {
    let server = start();
    let dir = server.data_dir().join("manifests");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deployed\n  namespace: default\ndata:\n  k: v\n",
    )
    .expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let map = loop {
        let got = server.get("/api/v1/namespaces/default/configmaps/deployed").expect("get");
        if got.status == 200 {
            break got.json().expect("json");
        }
        assert!(std::time::Instant::now() < deadline, "the manifest was never applied");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(map["data"]["k"], "v");
    assert_eq!(map["metadata"]["managedFields"][0]["manager"], "krust-deploy", "{map}");
}
