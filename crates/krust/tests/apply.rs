//! Server-side apply with real kubectl 1.33: `apply --server-side` creates, re-applies without a
//! change, conflicts with another manager's field (kubectl's message and exit status), takes it
//! over with `--force-conflicts`, and `get --show-managed-fields` names the managers.

use krust_testsupport::KrustServer;

const KUBECTL: &str = "1.33";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1
";

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn kubectl_server_side_apply_creates_conflicts_and_forces() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let file = server.data_dir().join("web.yaml");
    std::fs::write(&file, DEPLOYMENT).expect("manifest");
    let apply = |extra: &[&str]| {
        server
            .kubectl(KUBECTL)
            .args(["apply".as_ref(), "--server-side".as_ref(), "-f".as_ref(), file.as_os_str()])
            .args(extra)
            .output()
            .expect("kubectl apply")
    };
    let created = apply(&[]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(
        String::from_utf8_lossy(&created.stdout).trim(),
        "deployment.apps/web serverside-applied"
    );
    let rv = |s: &KrustServer| {
        s.get_json(KUBECTL, &["get", "deployment", "web"]).expect("get")["metadata"]["resourceVersion"].clone()
    };
    // The Deployment controller writes status (ReplicaSet counts) for a while after the create:
    // wait until nobody else writes, so that only the apply could move the resourceVersion.
    let mut before = rv(&server);
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let now = rv(&server);
        if now == before {
            break;
        }
        before = now;
    }
    assert!(apply(&[]).status.success());
    assert_eq!(rv(&server), before, "applying the same configuration changes nothing");

    // Another manager takes spec.replicas; our apply now conflicts on it.
    server
        .kubectl(KUBECTL)
        .args(["scale", "deployment", "web", "--replicas=3"])
        .run()
        .expect("scale");
    let conflict = apply(&[]);
    assert!(!conflict.status.success(), "a conflict fails the apply");
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl-1.33\" using apps/v1: .spec.replicas"),
        "{stderr}"
    );
    let forced = apply(&["--force-conflicts"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let d = server
        .get_json(KUBECTL, &["get", "deployment", "web", "--show-managed-fields"])
        .expect("get");
    assert_eq!(d["spec"]["replicas"], 2, "the forced apply owns replicas again");
    let managers: Vec<(String, String)> = d["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(managers.contains(&("kubectl".to_owned(), "Apply".to_owned())), "{managers:?}");
}
