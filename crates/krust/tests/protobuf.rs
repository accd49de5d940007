//! kubectl 1.32+ sends `create <kind>` bodies as protobuf: real kubectl against the real binary,
//! then each object read back as JSON to check every field arrived. These need the tools from
//! `scripts/clients.sh`: run them with `cargo test -- --include-ignored` (CI does).

use krust_testsupport::KrustServer;
use serde_json::{Value, json};

/// The kubectl releases that send protobuf bodies (1.27–1.31 send JSON).
const PROTOBUF_KUBECTLS: [&str; 3] = ["1.32", "1.33", "1.35"];

fn start() -> KrustServer {
    KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts")
}

fn get_json(server: &KrustServer, version: &str, args: &[&str]) -> Value {
    let out = server
        .kubectl(version)
        .args(["get"])
        .args(args)
        .args(["-o", "json"])
        .run()
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

#[test]
#[ignore = "end-to-end: real kubectl against the real binary"]
fn kubectl_create_generators_send_protobuf_that_arrives_whole() {
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("blob");
    std::fs::write(&binary, [0u8, 1, 2, 255]).expect("write");
    let binary_arg = format!("--from-file=blob={}", binary.display());

    for version in PROTOBUF_KUBECTLS {
        let ns = format!("pb-{}", version.replace('.', "-"));
        let k = |args: &[&str]| {
            server
                .kubectl(version)
                .args(args)
                .run()
                .unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
        };

        // The request really is protobuf (kubectl -v=7 prints its request headers).
        let out = server
            .kubectl(version)
            .args(["create", "namespace", &ns, "-v=7"])
            .output()
            .expect("kubectl runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "kubectl {version}: {stderr}");
        assert!(
            stderr.contains("Content-Type: application/vnd.kubernetes.protobuf"),
            "kubectl {version} did not send protobuf:\n{stderr}"
        );
        let namespace = get_json(&server, version, &["namespace", &ns]);
        assert_eq!(namespace["status"]["phase"], "Active", "kubectl {version}");

        k(&["create", "configmap", "cfg", "-n", &ns, "--from-literal=a=b", &binary_arg]);
        let cm = get_json(&server, version, &["configmap", "cfg", "-n", &ns]);
        assert_eq!(cm["data"], json!({"a": "b"}), "kubectl {version}: {cm}");
        assert_eq!(cm["binaryData"], json!({"blob": "AAEC/w=="}), "kubectl {version}: {cm}");
        assert!(cm["metadata"]["creationTimestamp"].is_string(), "kubectl {version}: {cm}");

        k(&["create", "secret", "generic", "sec", "-n", &ns, "--from-literal=password=s3cr3t"]);
        let secret = get_json(&server, version, &["secret", "sec", "-n", &ns]);
        assert_eq!(secret["data"], json!({"password": "czNjcjN0"}), "kubectl {version}: {secret}");

        k(&[
            "create",
            "deployment",
            "web",
            "-n",
            &ns,
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ]);
        let deploy = get_json(&server, version, &["deployment", "web", "-n", &ns]);
        assert_eq!(deploy["spec"]["replicas"], 2, "kubectl {version}: {deploy}");
        assert_eq!(deploy["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
        let container = &deploy["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "nginx:1.27", "kubectl {version}: {deploy}");
        assert_eq!(container["ports"][0]["containerPort"], 80, "kubectl {version}: {deploy}");

        k(&["create", "service", "clusterip", "web", "-n", &ns, "--tcp=80:8080"]);
        let svc = get_json(&server, version, &["service", "web", "-n", &ns]);
        let port = &svc["spec"]["ports"][0];
        assert_eq!(port["port"], 80, "kubectl {version}: {svc}");
        assert_eq!(port["targetPort"], 8080, "kubectl {version}: {svc}");
        assert_eq!(port["protocol"], "TCP", "kubectl {version}: {svc}");
        assert_eq!(svc["spec"]["type"], "ClusterIP", "kubectl {version}: {svc}");
        assert!(
            svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.")),
            "kubectl {version}: {svc}"
        );

        k(&["create", "job", "hello", "-n", &ns, "--image=busybox:1", "--", "echo", "hi"]);
        let job = get_json(&server, version, &["job", "hello", "-n", &ns]);
        let pod_spec = &job["spec"]["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], "Never", "kubectl {version}: {job}");
        assert_eq!(pod_spec["containers"][0]["image"], "busybox:1", "kubectl {version}: {job}");
        assert_eq!(pod_spec["containers"][0]["command"], json!(["echo", "hi"]));

        // Lists show every object created from a protobuf body.
        let listed =
            k(&["get", "configmaps,secrets,deployments,services,jobs", "-n", &ns, "-o", "name"]);
        for name in
            ["configmap/cfg", "secret/sec", "deployment.apps/web", "service/web", "job.batch/hello"]
        {
            assert!(
                listed.lines().any(|l| l == name),
                "kubectl {version}: {name} missing in\n{listed}"
            );
        }
    }
}

#[test]
#[ignore = "end-to-end: real kubectl against the real binary"]
fn kubectl_create_from_file_still_sends_json() {
    // `create -f` goes through the unstructured client (JSON), also on 1.35: make sure the
    // protobuf work left it alone.
    let server = start();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-file\ndata:\n  k: v\n",
    )
    .expect("write");
    let manifest = manifest.to_str().expect("utf-8 temp path");
    let out = server
        .kubectl("1.35")
        .args(["create", "-f", manifest, "-v=7"])
        .output()
        .expect("kubectl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Content-Type: application/json"), "{stderr}");
    let cm = get_json(&server, "1.35", &["configmap", "from-file"]);
    assert_eq!(cm["data"], json!({"k": "v"}));
}
