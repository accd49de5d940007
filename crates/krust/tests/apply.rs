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

/// Client-side apply, then server-side: kubectl 1.35 moves the fields to its `kubectl` apply
/// manager, `diff --server-side` shows a change before it is applied, and the server keeps the
/// last-applied annotation in step, so a later client-side apply removes what server-side apply
/// added and the file no longer has.
#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn kubectl_moves_from_client_side_to_server_side_apply() {
    const LATEST: &str = "1.35";
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let file = server.data_dir().join("settings.yaml");
    let write = |data: &str| {
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {{app: web}}\ndata:\n{data}"
        );
        std::fs::write(&file, manifest).expect("manifest");
    };
    let kubectl = |args: &[&str]| {
        server
            .kubectl(LATEST)
            .args(args)
            .args(["-f".as_ref(), file.as_os_str()])
            .output()
            .expect("kubectl")
    };
    let stdout =
        |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).trim().to_owned();

    write("  mode: fast\n");
    assert_eq!(stdout(&kubectl(&["apply"])), "configmap/settings created");
    assert_eq!(
        stdout(&kubectl(&["apply", "--server-side"])),
        "configmap/settings serverside-applied"
    );
    let live = server
        .get_json(LATEST, &["get", "configmap", "settings", "--show-managed-fields"])
        .expect("get");
    let entries = live["metadata"]["managedFields"].as_array().expect("managedFields").clone();
    let owner_of_data: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["fieldsV1"]["f:data"].is_object())
        .map(|e| (e["manager"].as_str().unwrap_or(""), e["operation"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(owner_of_data, [("kubectl", "Apply")], "{entries:?}");

    write("  mode: slow\n  extra: \"yes\"\n");
    let diff = kubectl(&["diff", "--server-side"]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "a difference: {}",
        String::from_utf8_lossy(&diff.stderr)
    );
    let shown = stdout(&diff);
    assert!(shown.contains("-  mode: fast") && shown.contains("+  mode: slow"), "{shown}");
    assert_eq!(
        stdout(&kubectl(&["apply", "--server-side"])),
        "configmap/settings serverside-applied"
    );
    let live = server.get_json(LATEST, &["get", "configmap", "settings"]).expect("get");
    let last = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("the annotation stays");
    let last: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(last["data"]["mode"], "slow", "{last}");
    assert_eq!(last["data"]["extra"], "yes", "{last}");
    // Client-side apply again without `extra`: the record says it was applied, so it goes.
    write("  mode: slow\n");
    assert_eq!(stdout(&kubectl(&["apply"])), "configmap/settings configured");
    let live = server.get_json(LATEST, &["get", "configmap", "settings"]).expect("get");
    assert_eq!(live["data"], serde_json::json!({"mode": "slow"}), "{live}");
}
