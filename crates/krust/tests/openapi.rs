//! OpenAPI v3 against real kubectl: what `apply -f`, `create -f` (with default validation) and
//! `explain` need from `/openapi/v3`. These need the tools from `scripts/clients.sh`, so they
//! are end-to-end tests: run them with `cargo test -- --include-ignored` (CI does).

use std::path::{Path, PathBuf};

use krust_testsupport::KrustServer;

/// The kubectl releases that read OpenAPI v3 (1.29+), oldest to newest.
const VERSIONS: [&str; 3] = ["1.30", "1.33", "1.35"];

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

fn write(dir: &Path, name: &str, manifest: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, manifest).expect("manifest written");
    path
}

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: demo\ndata:\n  greeting: {value}\n"
    )
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: web
        image: {image}
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox:1.36
"
    )
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn openapi_v3_root_documents_and_caching() {
    let server = start();
    let root = server.get("/openapi/v3").expect("root");
    assert_eq!(root.status, 200, "{}", root.body);
    assert_eq!(root.content_type.as_deref(), Some("application/json"));
    let root = root.json().expect("json");
    let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().expect("apps/v1 url");
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    assert!(root["paths"]["api/v1"].is_object(), "{root}");

    let doc = server.get(url).expect("apps/v1").json().expect("json");
    assert_eq!(doc["openapi"], "3.0.0");
    assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object());

    let stale = server.get("/openapi/v3/apis/apps/v1?hash=0").expect("stale hash");
    assert_eq!(stale.status, 301);
    assert_eq!(server.get("/openapi/v3/apis/no.such/v1").expect("unknown").status, 404);

    let v2 = server.get("/openapi/v2").expect("v2");
    assert_eq!(v2.status, 406, "{}", v2.body);
    assert_eq!(v2.json().expect("status")["reason"], "NotAcceptable");
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_apply_config_map_creates_configures_and_leaves_unchanged() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    for version in VERSIONS {
        let name = format!("applied-{}", version.replace('.', "-"));
        let first = write(dir.path(), "first.yaml", &config_map(&name, "hello"));
        let second = write(dir.path(), "second.yaml", &config_map(&name, "goodbye"));
        let kubectl = || server.kubectl(version);

        let out = kubectl().args(["apply", "-f"]).arg_path(&first).run().expect("apply create");
        assert!(out.contains(&format!("configmap/{name} created")), "kubectl {version}: {out}");
        let out = kubectl().args(["apply", "-f"]).arg_path(&second).run().expect("apply change");
        assert!(out.contains(&format!("configmap/{name} configured")), "kubectl {version}: {out}");
        let out = kubectl().args(["apply", "-f"]).arg_path(&second).run().expect("apply again");
        assert!(out.contains(&format!("configmap/{name} unchanged")), "kubectl {version}: {out}");

        let value = kubectl()
            .args(["get", "configmap", &name, "-o", "jsonpath={.data.greeting}"])
            .run()
            .expect("get");
        assert_eq!(value, "goodbye", "kubectl {version}");
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_create_from_file_with_default_validation() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    for version in VERSIONS {
        let name = format!("created-{}", version.replace('.', "-"));
        let manifest = write(dir.path(), "cm.yaml", &config_map(&name, "hi"));
        let out = server
            .kubectl(version)
            .args(["create", "-f"])
            .arg_path(&manifest)
            .run()
            .expect("create -f");
        assert!(out.contains(&format!("configmap/{name} created")), "kubectl {version}: {out}");
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_explain_prints_field_descriptions() {
    let server = start();
    for version in VERSIONS {
        let out =
            server.kubectl(version).args(["explain", "configmap.data"]).run().expect("explain");
        assert!(out.contains("FIELD: data"), "kubectl {version}: {out}");
        assert!(out.contains("Data contains the configuration data"), "kubectl {version}: {out}");

        let out = server
            .kubectl(version)
            .args(["explain", "deployment.spec.replicas"])
            .run()
            .expect("explain");
        assert!(out.contains("replicas"), "kubectl {version}: {out}");
        assert!(out.contains("Number of desired pods"), "kubectl {version}: {out}");
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_apply_deployment_then_change_the_image() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    for version in VERSIONS {
        let name = format!("web-{}", version.replace('.', "-"));
        let first = write(dir.path(), "v1.yaml", &deployment(&name, "nginx:1.25"));
        let second = write(dir.path(), "v2.yaml", &deployment(&name, "nginx:1.27"));
        let kubectl = || server.kubectl(version);

        let out = kubectl().args(["apply", "-f"]).arg_path(&first).run().expect("apply create");
        assert!(
            out.contains(&format!("deployment.apps/{name} created")),
            "kubectl {version}: {out}"
        );
        let out = kubectl().args(["apply", "-f"]).arg_path(&second).run().expect("apply image");
        assert!(
            out.contains(&format!("deployment.apps/{name} configured")),
            "kubectl {version}: {out}"
        );

        let images = kubectl()
            .args([
                "get",
                "deployment",
                &name,
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image}",
            ])
            .run()
            .expect("get");
        assert_eq!(images, "nginx:1.27 busybox:1.36", "kubectl {version}");
        let port = kubectl()
            .args([
                "get",
                "deployment",
                &name,
                "-o",
                "jsonpath={.spec.template.spec.containers[0].ports[0].containerPort}",
            ])
            .run()
            .expect("get");
        assert_eq!(port, "80", "kubectl {version}");
    }
}

/// kubectl 1.27 and 1.28 read OpenAPI v2, and only as gnostic protobuf: validation, client-side
/// apply's strategic merge patch and `explain` all come from it.
#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn kubectl_before_1_29_uses_the_v2_protobuf() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    for version in ["1.27", "1.28"] {
        let kubectl = || server.kubectl(version);
        let name = format!("old-{}", version.replace('.', "-"));
        let first = write(dir.path(), "first.yaml", &config_map(&name, "hello"));
        let second = write(dir.path(), "second.yaml", &config_map(&name, "goodbye"));
        let out = kubectl().args(["apply", "-f"]).arg_path(&first).run().expect("apply create");
        assert!(out.contains(&format!("configmap/{name} created")), "kubectl {version}: {out}");
        let out = kubectl().args(["apply", "-f"]).arg_path(&second).run().expect("apply change");
        assert!(out.contains(&format!("configmap/{name} configured")), "kubectl {version}: {out}");

        let created = write(dir.path(), "created.yaml", &config_map(&format!("{name}-c"), "x"));
        let out = kubectl().args(["create", "-f"]).arg_path(&created).run().expect("create -f");
        assert!(out.contains("created"), "kubectl {version}: {out}");

        let out = kubectl().args(["explain", "deployment.spec.replicas"]).run().expect("explain");
        assert!(out.contains("Number of desired pods"), "kubectl {version}: {out}");

        let deploy = format!("web-{name}");
        let v1 = write(dir.path(), "v1.yaml", &deployment(&deploy, "nginx:1.25"));
        let v2 = write(dir.path(), "v2.yaml", &deployment(&deploy, "nginx:1.27"));
        kubectl().args(["apply", "-f"]).arg_path(&v1).run().expect("apply deployment");
        let out = kubectl().args(["apply", "-f"]).arg_path(&v2).run().expect("apply image");
        assert!(out.contains("configured"), "kubectl {version}: {out}");
        let images = kubectl()
            .args([
                "get",
                "deployment",
                &deploy,
                "-o",
                "jsonpath={.spec.template.spec.containers[*].image}",
            ])
            .run()
            .expect("get");
        assert_eq!(images, "nginx:1.27 busybox:1.36", "kubectl {version}");
    }
}

/// Passes a path argument to kubectl.
trait ArgPath {
    fn arg_path(self, path: &Path) -> Self;
}

impl ArgPath for krust_testsupport::Kubectl {
    fn arg_path(self, path: &Path) -> Self {
        self.args([path])
    }
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh; run with --include-ignored"]
fn server_side_field_validation_refuses_or_warns_about_unknown_fields() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let typo =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndata:\n  a: b\ndatta:\n  c: d\n";
    let file = write(dir.path(), "typo.yaml", typo);
    for version in VERSIONS {
        // kubectl's default is --validate=strict, which the server enforces.
        let out =
            server.kubectl(version).args(["apply", "-f"]).arg_path(&file).output().expect("ran");
        assert!(!out.status.success(), "kubectl {version} applied an unknown field");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"datta\""
            ),
            "kubectl {version}: {stderr}"
        );
    }
    let out = server
        .kubectl("1.35")
        .args(["create", "--validate=warn", "-f"])
        .arg_path(&file)
        .output()
        .expect("ran");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Warning: unknown field \"datta\""), "{stderr}");
    let stored =
        server.kubectl("1.35").args(["get", "configmap", "typo", "-o", "json"]).run().expect("get");
    assert!(!stored.contains("datta"), "unknown fields are dropped: {stored}");
    assert!(stored.contains("\"a\": \"b\""), "{stored}");
}
