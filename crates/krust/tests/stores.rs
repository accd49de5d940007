//! The server on each store backend: state survives a crash (sqlite) and lives in etcd.

use krust_testsupport::KrustServer;

fn create_cm(server: &KrustServer, name: &str) {
    let out =
        server.kubectl("1.30").args(["create", "configmap", name, "--from-literal=k=v"]).run();
    assert_eq!(out.expect("create").trim(), format!("configmap/{name} created"));
}

fn cm_names(server: &KrustServer) -> Vec<String> {
    let out = server.kubectl("1.30").args(["get", "cm", "-o", "name"]).run().expect("get");
    out.lines().map(str::to_owned).collect()
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn acknowledged_writes_survive_kill_9_of_the_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_krust");
    let first = KrustServer::start_in(bin, data.path(), &[]).expect("start");
    for i in 0..5 {
        create_cm(&first, &format!("c{i}"));
    }
    // Drop kills with SIGKILL: no shutdown path runs.
    drop(first);
    let second = KrustServer::start_in(bin, data.path(), &[]).expect("restart");
    let names = cm_names(&second);
    for i in 0..5 {
        assert!(names.contains(&format!("configmap/c{i}")), "c{i} lost after kill -9: {names:?}");
    }
}

#[test]
#[ignore = "end-to-end: needs etcd-server (scripts/deps.sh) and scripts/clients.sh; run with --include-ignored"]
fn server_on_etcd() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = runtime
        .block_on(krust_store::etcd::spawn_local_etcd(
            &dir.path().join("etcd"),
            &krust_store::etcd::LocalEtcdOptions::default(),
        ))
        .expect("etcd starts");
    let url = etcd.client_url().to_owned();
    let args = ["--store", "etcd", "--etcd-servers", &url, "--etcd-prefix", "/krust-test"];
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &args).expect("server on etcd");
    create_cm(&server, "in-etcd");
    assert!(cm_names(&server).contains(&"configmap/in-etcd".to_owned()));
    // A second server on the same etcd and prefix sees the same state.
    let other = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &args).expect("second server");
    assert!(cm_names(&other).contains(&"configmap/in-etcd".to_owned()));
}
