//! Real clients against the real binary. These need the tools from `scripts/clients.sh`, so
//! they are end-to-end tests: run them with `cargo test -- --include-ignored` (CI does).

use krust_testsupport::{KrustServer, tool};

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
    let out = std::process::Command::new(tool("python-k8s"))
        .args(["-c", script])
        .arg(server.kubeconfig())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("1 35 v1.35.0+krust."), "{stdout}");
}
