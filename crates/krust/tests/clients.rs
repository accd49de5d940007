//! Real clients against the real binary. These need the tools from `scripts/clients.sh`, so
//! they are end-to-end tests: run them with `cargo test -- --include-ignored` (CI does).

use krust_testsupport::{KrustServer, tool};

fn run_python(server: &KrustServer, script: &str) -> String {
    server.python(script)
}

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_version_across_releases() {
    let server = start();
    for version in ["1.27", "1.30", "1.33", "1.35"] {
        let out =
            server.kubectl(version).args(["version", "-o", "json"]).run().expect("kubectl version");
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        let server_version = &json["serverVersion"];
        assert_eq!(server_version["minor"], "35", "kubectl {version}: {out}");
        assert!(
            server_version["gitVersion"].as_str().is_some_and(|v| v.contains("krust")),
            "kubectl {version}: {out}"
        );
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_raw_readyz_with_the_admin_kubeconfig() {
    let server = start();
    let out = server.kubectl("1.35").args(["get", "--raw", "/readyz"]).run().expect("get --raw");
    assert_eq!(out.trim(), "ok");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_shows_server_errors_as_upstream_does() {
    let server = start();
    let out = server
        .kubectl("1.33")
        .args(["get", "--raw", "/apis/no.such.group/v1/things"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Error from server (NotFound): the server could not find the requested resource"
        ),
        "{stderr}"
    );
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn python_client_reads_the_version() {
    let server = start();
    let script = "import sys\n\
                  from kubernetes import client, config\n\
                  config.load_kube_config(config_file=sys.argv[1])\n\
                  v = client.VersionApi().get_code()\n\
                  print(v.major, v.minor, v.git_version)\n";
    let stdout = run_python(&server, script);
    assert!(stdout.starts_with("1 35 v1.35.0+krust."), "{stdout}");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_crud_on_configmaps_and_namespaces() {
    let server = start();
    for version in ["1.27", "1.30"] {
        let k = |args: &[&str]| server.kubectl(version).args(args).run().expect("kubectl");
        let ns = format!("team-{}", version.replace('.', "-"));
        assert_eq!(k(&["create", "namespace", &ns]).trim(), format!("namespace/{ns} created"));
        let out = k(&["create", "configmap", "cfg", "--from-literal=a=b", "-n", &ns]);
        assert_eq!(out.trim(), "configmap/cfg created");

        let table = k(&["get", "configmaps", "-n", &ns]);
        let mut lines = table.lines();
        let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
        assert_eq!(header, ["NAME", "DATA", "AGE"], "{table}");
        let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
        assert_eq!(&row[..2], ["cfg", "1"], "{table}");

        let json: serde_json::Value =
            serde_json::from_str(&k(&["get", "cm", "cfg", "-n", &ns, "-o", "json"])).expect("json");
        assert_eq!(json["data"]["a"], "b");

        assert_eq!(
            k(&["label", "cm", "cfg", "tier=web", "-n", &ns]).trim(),
            "configmap/cfg labeled"
        );
        // kubectl 1.27 itself prints "annotate" (its own message; 1.28 fixed it).
        let annotated =
            if version == "1.27" { "configmap/cfg annotate" } else { "configmap/cfg annotated" };
        assert_eq!(k(&["annotate", "cm", "cfg", "note=x", "-n", &ns]).trim(), annotated);
        assert_eq!(
            k(&["get", "cm", "-l", "tier=web", "-n", &ns, "-o", "name"]).trim(),
            "configmap/cfg"
        );
        assert_eq!(k(&["get", "cm", "-l", "tier=db", "-n", &ns, "-o", "name"]).trim(), "");
        let out = k(&["get", "cm", "-A", "--field-selector", "metadata.name=cfg", "-o", "name"]);
        assert!(out.lines().any(|l| l == "configmap/cfg"), "{out}");

        let missing =
            server.kubectl(version).args(["get", "cm", "nope", "-n", &ns]).output().expect("runs");
        assert!(!missing.status.success());
        let stderr = String::from_utf8_lossy(&missing.stderr);
        assert!(
            stderr.contains("Error from server (NotFound): configmaps \"nope\" not found"),
            "{stderr}"
        );

        assert_eq!(k(&["delete", "cm", "cfg", "-n", &ns]).trim(), "configmap \"cfg\" deleted");
        assert_eq!(k(&["delete", "namespace", &ns]).trim(), format!("namespace \"{ns}\" deleted"));
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_discovery_and_namespaces() {
    let server = start();
    for version in ["1.27", "1.33", "1.35"] {
        let resources =
            server.kubectl(version).args(["api-resources"]).run().expect("api-resources");
        let cm =
            resources.lines().find(|l| l.starts_with("configmaps ")).expect("configmaps listed");
        let cols: Vec<&str> = cm.split_whitespace().collect();
        assert_eq!(cols, ["configmaps", "cm", "v1", "true", "ConfigMap"], "kubectl {version}");
        assert!(resources.lines().any(|l| l.starts_with("deployments ") && l.contains("apps/v1")));

        let cluster = server
            .kubectl(version)
            .args(["api-resources", "--namespaced=false", "-o", "name"])
            .run()
            .expect("api-resources");
        assert!(cluster.lines().any(|l| l == "namespaces"), "{cluster}");
        assert!(!cluster.lines().any(|l| l == "configmaps"), "{cluster}");

        let ns = server.kubectl(version).args(["get", "namespaces"]).run().expect("get ns");
        let default: Vec<&str> = ns
            .lines()
            .find(|l| l.starts_with("default "))
            .expect("default")
            .split_whitespace()
            .collect();
        assert_eq!(&default[..2], ["default", "Active"], "{ns}");
        for name in ["kube-system", "kube-public", "kube-node-lease"] {
            assert!(ns.lines().any(|l| l.starts_with(name)), "{name} missing: {ns}");
        }
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_get_watch_sees_new_objects() {
    use std::io::{BufRead, BufReader};
    let server = start();
    let mut watch = std::process::Command::new(tool("kubectl-1.33"))
        .env("KUBECONFIG", server.kubeconfig())
        .args(["get", "configmaps", "-w", "--request-timeout=30s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // kubectl prints the (empty) list first; then a create must show up as a new row.
    let mut created = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    let found = loop {
        if !created {
            std::thread::sleep(std::time::Duration::from_millis(300));
            server.kubectl("1.30").args(["create", "configmap", "watched"]).run().expect("create");
            created = true;
        }
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) if line.starts_with("watched ") => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(found, "kubectl get -w never showed the new configmap; saw {seen:?}");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn python_client_crud_and_watch() {
    let server = start();
    let script = r#"
import sys, threading
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}), data={"k": "v"})
created = v1.create_namespaced_config_map("default", body)
assert created.metadata.resource_version
got = v1.read_namespaced_config_map("py", "default")
assert got.data == {"k": "v"}, got.data
patched = v1.patch_namespaced_config_map("py", "default", {"data": {"k": "v2"}})
assert patched.data["k"] == "v2"
items = v1.list_namespaced_config_map("default", label_selector="app=py").items
assert [i.metadata.name for i in items] == ["py"], items
try:
    v1.create_namespaced_config_map("default", body)
    raise SystemExit("expected a conflict")
except client.exceptions.ApiException as e:
    assert e.status == 409, e.status
w = watch.Watch()
rv = v1.list_namespaced_config_map("default").metadata.resource_version
threading.Timer(0.5, lambda: v1.delete_namespaced_config_map("py", "default")).start()
for event in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10):
    if event["type"] == "DELETED" and event["object"].metadata.name == "py":
        w.stop()
        print("ok")
        break
"#;
    let stdout = run_python(&server, script);
    assert_eq!(stdout.trim(), "ok");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_scale_and_set_image_on_deployments() {
    let server = start();
    let k = |args: &[&str]| server.kubectl("1.30").args(args).run().expect("kubectl");
    assert_eq!(
        k(&["create", "deployment", "web", "--image=busybox:1"]).trim(),
        "deployment.apps/web created"
    );
    assert_eq!(
        k(&["scale", "deployment", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(k(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    let out = k(&["set", "image", "deployment/web", "busybox=busybox:2"]);
    assert_eq!(out.trim(), "deployment.apps/web image updated");
    assert_eq!(
        k(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
        "busybox:2"
    );
    let wide = k(&["get", "deploy", "web", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        "{wide}"
    );
    assert!(wide.contains("app=web"), "{wide}");
    let out = k(&["delete", "deployment", "web", "--cascade=orphan"]);
    assert_eq!(out.trim(), "deployment.apps \"web\" deleted");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_cordon_taint_and_drain_a_registered_node() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node.json");
    std::fs::write(&node, r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#).expect("write");
    let pod = dir.path().join("pod.json");
    std::fs::write(&pod, r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]}}"#).expect("write");
    let k = |args: &[&str]| server.kubectl("1.33").args(args).run().expect("kubectl");
    let node_path = node.to_str().expect("path");
    assert_eq!(k(&["create", "-f", node_path, "--validate=false"]).trim(), "node/n1 created");
    assert_eq!(k(&["cordon", "n1"]).trim(), "node/n1 cordoned");
    let nodes = k(&["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    assert_eq!(k(&["taint", "nodes", "n1", "dedicated=db:NoSchedule"]).trim(), "node/n1 tainted");
    assert_eq!(k(&["get", "node", "n1", "-o", "jsonpath={.spec.taints[0].key}"]), "dedicated");
    assert_eq!(k(&["uncordon", "n1"]).trim(), "node/n1 uncordoned");

    // drain: cordon, list the node's pods, evict them, wait until they are gone. A pod on a
    // node is deleted gracefully (its kubelet finishes it), so drain is told not to wait.
    k(&["create", "-f", pod.to_str().expect("path"), "--validate=false"]);
    let out = server
        .kubectl("1.33")
        .args(["drain", "n1", "--force", "--grace-period=0", "--timeout=20s"])
        .output()
        .expect("drain");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("pod/p1 evicted"), "{stdout}\n{stderr}");
    assert!(stdout.contains("node/n1 drained"), "{stdout}\n{stderr}");

    // --grace-period=0 --force deletes a pod on a node at once.
    k(&["create", "-f", pod.to_str().expect("path"), "--validate=false"]);
    let out = k(&["delete", "pod", "p1", "--grace-period=0", "--force"]);
    assert!(out.contains("pod \"p1\" force deleted"), "{out}");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn services_get_cluster_ips_and_kubernetes_service_exists() {
    let server = start();
    let k = |args: &[&str]| server.kubectl("1.30").args(args).run().expect("kubectl");
    assert_eq!(k(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]), "10.96.0.1");
    assert_eq!(
        k(&["create", "service", "clusterip", "web", "--tcp=80:8080"]).trim(),
        "service/web created"
    );
    let table = k(&["get", "svc", "web"]);
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{table}");
    let row: Vec<&str> = table.lines().nth(1).expect("row").split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[3], row[4]),
        ("web", "ClusterIP", "<none>", "80/TCP"),
        "{table}"
    );
    assert!(row[2].starts_with("10."), "{table}");
    let out = k(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    assert_eq!(out.trim(), "service/np created");
    let port = k(&["get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    assert!(port.parse::<u16>().is_ok_and(|p| (30000..=32767).contains(&p)), "{port}");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_cluster_info_describe_diff_and_edit() {
    let server = start();
    let k = |args: &[&str]| server.kubectl("1.33").args(args).run().expect("kubectl");
    let info = k(&["cluster-info"]);
    assert!(
        info.contains(&format!("Kubernetes control plane is running at {}", server.base_url())),
        "{info}"
    );

    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web.yaml");
    k(&["apply", "-f", manifest]);
    let described = k(&["describe", "deployment", "web"]);
    assert!(described.contains("Replicas:               2 desired"), "{described}");
    assert!(
        described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{described}"
    );

    // diff: the server dry-runs the apply; nothing changed → exit 0 and no output.
    let out = server.kubectl("1.33").args(["diff", "-f", manifest]).output().expect("diff");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));

    // edit with an EDITOR script.
    let dir = tempfile::tempdir().expect("tempdir");
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/hello from krust/edited/' \"$1\"\n")
        .expect("write");
    std::process::Command::new("chmod").arg("+x").arg(&editor).status().expect("chmod");
    let out = std::process::Command::new(tool("kubectl-1.33"))
        .env("KUBECONFIG", server.kubeconfig())
        .env("EDITOR", &editor)
        .args(["edit", "configmap", "web-config"])
        .output()
        .expect("edit");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "configmap/web-config edited");
    assert_eq!(k(&["get", "cm", "web-config", "-o", "jsonpath={.data.index\\.html}"]), "edited\n");
}

/// The seeds' manifests: a Deployment and an Ingress in their `extensions/v1beta1` forms.
const LEGACY_MANIFESTS: &str = "apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: seed-web
spec:
  replicas: 2
  template:
    metadata:
      labels:
        app: seed-web
    spec:
      containers:
      - name: web
        image: nginx:1.7.9
        ports:
        - containerPort: 80
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata:
  name: seed-ing
spec:
  rules:
  - host: foo.bar.com
    http:
      paths:
      - path: /
        backend:
          serviceName: seed-web
          servicePort: 80
";

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn legacy_extensions_manifests_apply_and_read_back_in_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("legacy.yaml");
    std::fs::write(&file, LEGACY_MANIFESTS).expect("manifest");
    for version in ["1.20", "1.27", "1.35"] {
        let server = start();
        let kubectl = || server.kubectl(version);
        let out = kubectl()
            .args(["apply", "-f"])
            .args([&file])
            .run()
            .unwrap_or_else(|e| panic!("kubectl {version} apply: {e}"));
        assert!(out.contains("seed-web") && out.contains("seed-ing"), "{version}: {out}");
        // The same objects in the current versions.
        let deployment = kubectl()
            .args(["get", "deployments.v1.apps", "seed-web", "-o", "json"])
            .run()
            .expect("get deployment");
        let deployment: serde_json::Value = serde_json::from_str(&deployment).expect("json");
        assert_eq!(deployment["apiVersion"], "apps/v1", "{version}");
        assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "seed-web");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let ingress = kubectl()
            .args(["get", "ingresses.v1.networking.k8s.io", "seed-ing", "-o", "json"])
            .run()
            .expect("get ingress");
        let ingress: serde_json::Value = serde_json::from_str(&ingress).expect("json");
        assert_eq!(
            ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"],
            serde_json::json!({"service": {"name": "seed-web", "port": {"number": 80}}}),
            "{version}"
        );
        // Applying again is a no-op through the legacy version too.
        let again = kubectl().args(["apply", "-f"]).args([&file]).run().expect("apply again");
        assert!(again.contains("unchanged"), "{version}: {again}");
        let legacy = kubectl()
            .args(["get", "ingresses.v1beta1.extensions", "seed-ing", "-o", "json"])
            .run()
            .expect("get legacy ingress");
        assert!(legacy.contains("\"serviceName\": \"seed-web\""), "{version}: {legacy}");
    }
}

const RC_MANIFEST: &str = "apiVersion: v1
kind: ReplicationController
metadata:
  name: nginx
spec:
  replicas: 2
  selector:
    app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
";

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_1_20_replication_controller_commands() {
    // kubectl 1.20 has no `rolling-update` (removed in 1.18); these are its RC commands.
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rc.yaml");
    std::fs::write(&file, RC_MANIFEST).expect("manifest");
    let k = |args: &[&str]| server.kubectl("1.20").args(args).run().expect("kubectl 1.20");
    let created =
        server.kubectl("1.20").args(["create", "-f"]).args([&file]).run().expect("create");
    assert_eq!(created.trim(), "replicationcontroller/nginx created");
    let table = k(&["get", "rc"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"], "{table}");
    assert!(table.lines().nth(1).is_some_and(|l| l.starts_with("nginx ")), "{table}");
    assert_eq!(
        k(&["scale", "rc", "nginx", "--replicas=3"]).trim(),
        "replicationcontroller/nginx scaled"
    );
    assert_eq!(k(&["get", "rc", "nginx", "-o", "jsonpath={.spec.replicas}"]), "3");
    // The replication controller creates the pods (they wait: no node runs them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let described = loop {
        let described = k(&["describe", "rc", "nginx"]);
        if described.contains("Replicas:     3 current / 3 desired")
            || std::time::Instant::now() > deadline
        {
            break described;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(described.contains("Selector:     app=nginx"), "{described}");
    assert!(described.contains("Replicas:     3 current / 3 desired"), "{described}");
    assert!(described.contains("0 Running / 3 Waiting / 0 Succeeded / 0 Failed"), "{described}");
    assert!(described.contains("SuccessfulCreate"), "{described}");
    k(&["label", "rc", "nginx", "tier=web"]);
    assert_eq!(
        k(&["get", "rc", "-l", "tier=web", "-o", "name"]).trim(),
        "replicationcontroller/nginx"
    );
    assert_eq!(k(&["delete", "rc", "nginx"]).trim(), "replicationcontroller \"nginx\" deleted");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_describe_shows_the_objects_events() {
    let server = start();
    let k = |args: &[&str]| server.kubectl("1.33").args(args).run().expect("kubectl");
    k(&["create", "configmap", "watched", "--from-literal=a=b"]);
    let uid = k(&["get", "configmap", "watched", "-o", "jsonpath={.metadata.uid}"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("event.yaml");
    let event = format!(
        "apiVersion: v1
kind: Event
metadata:
  name: watched.1
involvedObject:
  apiVersion: v1
  kind: ConfigMap
  name: watched
  namespace: default
  uid: {uid}
reason: Checked
message: the config map was looked at
type: Normal
source:
  component: e2e-test
count: 1
firstTimestamp: \"2026-01-01T00:00:00Z\"
lastTimestamp: \"2026-01-01T00:00:00Z\"
"
    );
    std::fs::write(&file, event).expect("event");
    server.kubectl("1.33").args(["create", "-f"]).args([&file]).run().expect("create event");
    let described = k(&["describe", "configmap", "watched"]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    let row = events.lines().find(|l| l.contains("Checked")).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells.first(), Some(&"Normal"), "{described}");
    assert!(
        row.contains("e2e-test") && row.contains("the config map was looked at"),
        "{described}"
    );
    let table = k(&["get", "events"]);
    assert!(table.contains("configmap/watched") && table.contains("Checked"), "{table}");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_get_componentstatuses() {
    let server = start();
    for version in ["1.20", "1.33"] {
        let out = server.kubectl(version).args(["get", "cs"]).output().expect("get cs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{version}: {stderr}");
        assert!(stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"), "{stderr}");
        let header: Vec<&str> =
            stdout.lines().next().unwrap_or_default().split_whitespace().collect();
        assert_eq!(header, ["NAME", "STATUS", "MESSAGE", "ERROR"], "{version}: {stdout}");
        let etcd = stdout.lines().find(|l| l.starts_with("etcd-0")).unwrap_or_default();
        assert!(
            etcd.contains("Healthy") && etcd.contains(r#"{"health":"true","reason":""}"#),
            "{stdout}"
        );
        assert!(stdout.lines().any(|l| l.starts_with("scheduler ")), "{stdout}");
        assert!(stdout.lines().any(|l| l.starts_with("controller-manager ")), "{stdout}");
    }
}
