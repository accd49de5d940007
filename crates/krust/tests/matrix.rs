//! One script of kubectl commands — every command `kubectl-wire.md` lists that needs no running
//! container — run by each kubectl release the API server promises (1.27, 1.30, 1.33, 1.35)
//! against one real server. Each release works in its own namespace and on its own node object,
//! so the runs cannot lean on each other. End-to-end: needs `scripts/clients.sh`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use krust_testsupport::{KrustServer, tool};
use serde_json::Value;

const RELEASES: [&str; 4] = ["1.27", "1.30", "1.33", "1.35"];

/// A child process killed when the test ends, passing or not.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines a spawned process prints, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// One kubectl release against the server, with helpers that show the whole output on failure.
struct Client<'a> {
    server: &'a KrustServer,
    release: &'static str,
    namespace: String,
    dir: &'a Path,
}

impl Client<'_> {
    fn command(&self) -> Command {
        let mut command = Command::new(tool(&format!("kubectl-{}", self.release)));
        command.env("KUBECONFIG", self.server.kubeconfig()).stdin(Stdio::null());
        command
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("kubectl runs")
    }

    /// Runs kubectl, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {} {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
            self.release,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs kubectl in this release's namespace.
    fn ns(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["-n", &self.namespace]);
        self.ok(&all)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ns(&all)).expect("kubectl -o json prints JSON")
    }

    fn file(&self, name: &str, content: &str) -> String {
        let path = self.dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        path.to_str().expect("utf-8 path").to_owned()
    }
}

fn config_map(name: &str, namespace: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app: matrix\ndata:\n{data}"
    )
}

#[test]
#[ignore = "end-to-end: needs scripts/clients.sh and curl; run with --include-ignored"]
fn every_kubectl_release_runs_the_command_script() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    for release in RELEASES {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = Client {
            server: &server,
            release,
            namespace: format!("r{}", release.replace('.', "-")),
            dir: dir.path(),
        };
        script(&client);
    }
}

fn script(k: &Client<'_>) {
    let ns = k.namespace.as_str();
    let release = k.release;

    // version, discovery
    let version = k.ok(&["version"]);
    assert!(version.contains("v1.35.0+krust"), "{release}: {version}");
    assert!(version.contains("Server Version"), "{release}: {version}");
    let resources = k.ok(&["api-resources"]);
    let deployments = resources.lines().find(|l| l.starts_with("deployments ")).unwrap_or_default();
    let columns: Vec<&str> = deployments.split_whitespace().collect();
    assert_eq!(columns, ["deployments", "deploy", "apps/v1", "true", "Deployment"], "{release}");
    let cluster = k.ok(&["api-resources", "--namespaced=false"]);
    assert!(cluster.lines().any(|l| l.starts_with("nodes ")), "{release}: {cluster}");
    assert!(!cluster.lines().any(|l| l.starts_with("pods ")), "{release}: {cluster}");
    let versions = k.ok(&["api-versions"]);
    assert!(versions.lines().any(|l| l == "apps/v1"), "{release}: {versions}");
    assert!(versions.lines().any(|l| l == "v1"), "{release}: {versions}");

    // create: generators (JSON before 1.32, protobuf after) and files
    assert_eq!(k.ok(&["create", "namespace", ns]).trim(), format!("namespace/{ns} created"));
    let created = [
        (vec!["create", "configmap", "c1", "--from-literal=a=1"], "configmap/c1 created"),
        (vec!["create", "secret", "generic", "s1", "--from-literal=p=x"], "secret/s1 created"),
        (vec!["create", "deployment", "d1", "--image=busybox"], "deployment.apps/d1 created"),
        (vec!["create", "deployment", "d2", "--image=busybox"], "deployment.apps/d2 created"),
        (vec!["create", "service", "clusterip", "svc1", "--tcp=80:8080"], "service/svc1 created"),
        (vec!["create", "job", "j1", "--image=busybox"], "job.batch/j1 created"),
    ];
    for (args, printed) in created {
        assert_eq!(k.ns(&args).trim(), printed, "{release}");
    }
    assert_eq!(k.json(&["get", "secret", "s1"])["data"]["p"], "eA==", "{release}");
    let file = k.file("f1.yaml", &config_map("f1", ns, "  k: v\n"));
    assert_eq!(k.ok(&["create", "-f", &file]).trim(), "configmap/f1 created", "{release}");

    // apply: created → configured → unchanged; a directory recursively
    let applied = k.file("a1.yaml", &config_map("a1", ns, "  k: one\n"));
    assert_eq!(k.ok(&["apply", "-f", &applied]).trim(), "configmap/a1 created", "{release}");
    k.file("a1.yaml", &config_map("a1", ns, "  k: two\n"));
    assert_eq!(k.ok(&["apply", "-f", &applied]).trim(), "configmap/a1 configured", "{release}");
    assert_eq!(k.ok(&["apply", "-f", &applied]).trim(), "configmap/a1 unchanged", "{release}");
    k.file("tree/r1.yaml", &config_map("r1", ns, "  k: v\n"));
    k.file("tree/sub/r2.yaml", &config_map("r2", ns, "  k: v\n"));
    let tree = k.dir.join("tree");
    let out = k.ok(&["apply", "-R", "-f", tree.to_str().expect("path")]);
    assert!(out.contains("configmap/r1 created"), "{release}: {out}");
    assert!(out.contains("configmap/r2 created"), "{release}: {out}");

    // diff: a changed file differs (exit 1), the applied one does not (exit 0)
    let same = k.output(&["diff", "-f", &applied]);
    assert_eq!(same.status.code(), Some(0), "{release}: {}", String::from_utf8_lossy(&same.stderr));
    let changed = k.file("a1-changed.yaml", &config_map("a1", ns, "  k: three\n"));
    let differs = k.output(&["diff", "-f", &changed]);
    let diff = String::from_utf8_lossy(&differs.stdout);
    assert_eq!(differs.status.code(), Some(1), "{release}: {diff}");
    assert!(diff.contains("+  k: three"), "{release}: {diff}");

    // get: every output form, selectors, all namespaces
    let names = k.ns(&["get", "configmaps", "-o", "name"]);
    for name in ["configmap/c1", "configmap/f1", "configmap/a1", "configmap/r1", "configmap/r2"] {
        assert!(names.lines().any(|l| l == name), "{release}: {names}");
    }
    let table = k.ns(&["get", "configmap", "c1"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{release}: {table}");
    let yaml = k.ns(&["get", "configmap", "c1", "-o", "yaml"]);
    assert!(yaml.contains("  a: \"1\""), "{release}: {yaml}");
    assert_eq!(k.json(&["get", "configmap", "c1"])["data"]["a"], "1", "{release}");
    let wide = k.ns(&["get", "deployment", "d1", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header[header.len() - 3..], ["CONTAINERS", "IMAGES", "SELECTOR"], "{release}");
    let labelled = k.ns(&["get", "configmaps", "-l", "app=matrix", "-o", "name"]);
    let mut labelled: Vec<&str> = labelled.lines().collect();
    labelled.sort_unstable();
    assert_eq!(
        labelled,
        ["configmap/a1", "configmap/f1", "configmap/r1", "configmap/r2"],
        "{release}"
    );
    let everywhere =
        k.ok(&["get", "configmaps", "-A", "--field-selector", &format!("metadata.namespace={ns}")]);
    assert!(everywhere.lines().next().unwrap_or_default().starts_with("NAMESPACE"), "{release}");
    assert!(everywhere.lines().skip(1).all(|l| l.starts_with(ns)), "{release}: {everywhere}");
    assert!(everywhere.lines().any(|l| l.split_whitespace().nth(1) == Some("c1")), "{release}");
    get_watch_sees_a_new_object(k);

    // label, annotate, patch (strategic, merge, JSON), edit
    assert_eq!(k.ns(&["label", "configmap", "c1", "tier=x"]).trim(), "configmap/c1 labeled");
    let annotated = k.ns(&["annotate", "configmap", "c1", "note=y"]);
    // kubectl 1.27 prints `annotate`, later releases `annotated`, for the same server reply.
    assert!(annotated.starts_with("configmap/c1 annotate"), "{release}: {annotated}");
    for (kind, patch) in [
        ("strategic", r#"{"data":{"s":"1"}}"#),
        ("merge", r#"{"data":{"m":"1"}}"#),
        ("json", r#"[{"op":"add","path":"/data/j","value":"1"}]"#),
    ] {
        let out = k.ns(&["patch", "configmap", "c1", "--type", kind, "-p", patch]);
        assert_eq!(out.trim(), "configmap/c1 patched", "{release} {kind}");
    }
    let c1 = k.json(&["get", "configmap", "c1"]);
    assert_eq!(c1["metadata"]["labels"]["tier"], "x", "{release}");
    assert_eq!(c1["metadata"]["annotations"]["note"], "y", "{release}");
    for key in ["a", "s", "m", "j"] {
        assert!(c1["data"][key].is_string(), "{release}: {key} missing in {c1}");
    }
    let editor = k.file("editor.sh", "#!/bin/sh\nsed -i 's/a: \"1\"/a: edited/' \"$1\"\n");
    Command::new("chmod").arg("+x").arg(&editor).status().expect("chmod");
    let out = k
        .command()
        .env("EDITOR", &editor)
        .args(["edit", "configmap", "c1", "-n", ns])
        .output()
        .expect("kubectl edit");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim(),
        "configmap/c1 edited",
        "{release}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(k.json(&["get", "configmap", "c1"])["data"]["a"], "edited", "{release}");

    // scale, set image, explain
    assert_eq!(
        k.ns(&["scale", "deployment", "d1", "--replicas=3"]).trim(),
        "deployment.apps/d1 scaled"
    );
    assert_eq!(k.json(&["get", "deployment", "d1"])["spec"]["replicas"], 3, "{release}");
    let out = k.ns(&["set", "image", "deployment/d1", "busybox=busybox:2"]);
    assert_eq!(out.trim(), "deployment.apps/d1 image updated", "{release}");
    let d1 = k.json(&["get", "deployment", "d1"]);
    assert_eq!(d1["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:2", "{release}");
    let explained = k.ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        explained.contains("FIELD:") && explained.contains("replicas"),
        "{release}: {explained}"
    );
    assert!(explained.contains("<integer>"), "{release}: {explained}");

    // get cs, cluster-info, describe with the controllers' events
    let cs = k.ok(&["get", "componentstatuses"]);
    assert!(
        cs.lines().any(|l| l.starts_with("etcd-0") && l.contains("Healthy")),
        "{release}: {cs}"
    );
    let info = k.ok(&["cluster-info"]);
    // Older releases colour the words: compare without the escape sequences.
    let plain =
        info.replace("\u{1b}[0;32m", "").replace("\u{1b}[0;33m", "").replace("\u{1b}[0m", "");
    let url = k.server.base_url();
    assert!(
        plain.contains(&format!("Kubernetes control plane is running at {url}")),
        "{release}: {info}"
    );
    let described = wait_for(release, "describe shows ScalingReplicaSet", || {
        let out = k.ns(&["describe", "deployment", "d1"]);
        out.contains("ScalingReplicaSet").then_some(out)
    });
    assert!(described.contains("Events:"), "{release}: {described}");
    assert!(described.contains("3 desired"), "{release}: {described}");
    let strategy = described.lines().find(|l| l.starts_with("StrategyType:")).unwrap_or_default();
    assert_eq!(strategy.split_whitespace().nth(1), Some("RollingUpdate"), "{release}: {described}");

    nodes(k);

    // delete: by name, by label, orphan and foreground cascades, forced
    assert!(k.ns(&["delete", "configmap", "f1"]).contains("configmap \"f1\" deleted"), "{release}");
    let out = k.ns(&["delete", "configmaps", "-l", "app=matrix"]);
    for name in ["a1", "r1", "r2"] {
        assert!(out.contains(&format!("configmap \"{name}\" deleted")), "{release}: {out}");
    }
    let sets = wait_for(release, "d1 has a ReplicaSet", || {
        let sets = k.json(&["get", "replicasets", "-l", "app=d1"]);
        (!sets["items"].as_array()?.is_empty()).then_some(sets)
    });
    let set = sets["items"][0]["metadata"]["name"].as_str().expect("name").to_owned();
    let out = k.ns(&["delete", "deployment", "d1", "--cascade=orphan"]);
    assert!(out.contains("deployment.apps \"d1\" deleted"), "{release}: {out}");
    let orphan = k.json(&["get", "replicaset", &set]);
    assert!(orphan["metadata"].get("ownerReferences").is_none(), "{release}: {orphan}");
    let out = k.ns(&["delete", "deployment", "d2", "--cascade=foreground"]);
    assert!(out.contains("deployment.apps \"d2\" deleted"), "{release}: {out}");
    let gone = k.output(&["get", "deployment", "d2", "-n", ns]);
    assert!(!gone.status.success(), "{release}: foreground delete returned before d2 went");
    k.ns(&["delete", "replicaset", &set]);

    proxy_passes_delete_options(k);
}

/// `get -w`: the list, then a created object shows up as a new row.
fn get_watch_sees_a_new_object(k: &Client<'_>) {
    let mut child = k
        .command()
        .args(["get", "configmaps", "-w", "--request-timeout=30s", "-n", &k.namespace])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let rows = lines_of(&mut child);
    let _guard = Spawned(child);
    // The list comes first: once c1's row is printed the watch is open.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut created = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rows.recv_timeout(left) else {
            panic!("{}: get -w never showed w1; saw {seen:?}", k.release);
        };
        if line.starts_with("w1 ") {
            break;
        }
        if line.starts_with("c1 ") && !created {
            k.ns(&["create", "configmap", "w1"]);
            created = true;
        }
        seen.push(line);
    }
}

/// A node object for this release: cordon, taint, uncordon, drain (eviction), forced delete.
fn nodes(k: &Client<'_>) {
    let release = k.release;
    let node = format!("node-{}", k.namespace);
    let file = k.file(
        "node.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{node}","labels":{{"kubernetes.io/hostname":"{node}"}}}},"status":{{"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#
        ),
    );
    let pod = k.file(
        "pod.json",
        &format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p1","namespace":"{}"}},"spec":{{"nodeName":"{node}","containers":[{{"name":"c","image":"busybox"}}]}}}}"#,
            k.namespace
        ),
    );
    assert_eq!(k.ok(&["create", "-f", &file]).trim(), format!("node/{node} created"), "{release}");
    assert_eq!(k.ok(&["cordon", &node]).trim(), format!("node/{node} cordoned"), "{release}");
    let listed = k.ok(&["get", "node", &node]);
    assert!(listed.contains("Ready,SchedulingDisabled"), "{release}: {listed}");
    let out = k.ok(&["taint", "nodes", &node, "dedicated=db:NoSchedule"]);
    assert_eq!(out.trim(), format!("node/{node} tainted"), "{release}");
    let taint = k.ok(&["get", "node", &node, "-o", "jsonpath={.spec.taints[0].key}"]);
    assert_eq!(taint, "dedicated", "{release}");
    assert_eq!(k.ok(&["uncordon", &node]).trim(), format!("node/{node} uncordoned"), "{release}");

    k.ok(&["create", "-f", &pod]);
    let out = k.output(&["drain", &node, "--force", "--grace-period=0", "--timeout=30s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{release}: {stdout}\n{stderr}");
    assert!(stdout.contains("pod/p1 evicted"), "{release}: {stdout}\n{stderr}");
    assert!(stdout.contains(&format!("node/{node} drained")), "{release}: {stdout}\n{stderr}");

    k.ok(&["create", "-f", &pod]);
    let out = k.ns(&["delete", "pod", "p1", "--grace-period=0", "--force"]);
    assert!(out.contains("pod \"p1\" force deleted"), "{release}: {out}");
}

/// `kubectl proxy` and the seeds' `curl -X DELETE` with a DeleteOptions body.
fn proxy_passes_delete_options(k: &Client<'_>) {
    let release = k.release;
    k.ns(&["create", "configmap", "doomed"]);
    let mut child = k
        .command()
        .args(["proxy", "--port=0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl proxy");
    let lines = lines_of(&mut child);
    let _guard = Spawned(child);
    let line = lines.recv_timeout(Duration::from_secs(20)).expect("proxy prints its address");
    let address = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    let out = Command::new("curl")
        .args(["-s", "-X", "DELETE"])
        .arg(format!("http://{address}/api/v1/namespaces/{}/configmaps/doomed", k.namespace))
        .args(["-H", "Content-Type: application/json"])
        .args([
            "-d",
            r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#,
        ])
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&out.stdout).expect("JSON through the proxy");
    assert_eq!(body["metadata"]["name"], "doomed", "{release}: {body}");
    let gone = k.output(&["get", "configmap", "doomed", "-n", &k.namespace]);
    assert!(!gone.status.success(), "{release}");
}

fn wait_for<T>(release: &str, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{release}: timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
