//! Helm 4 (from `scripts/clients.sh`) against `krust server` on hollow nodes, as a Helm user sees
//! it: `helm create`, `install --wait`, `upgrade --set`, `history`, `rollback`, `uninstall` (the
//! garbage collector then removes the Deployment's ReplicaSets and pods), and `helm template`
//! piped into kubectl 1.35. Releases live in `helm.sh/release.v1` Secrets, and Helm 4 writes its
//! objects with server-side apply under the field manager `helm`.
//!
//! Helm runs with every one of its homes (and `HOME`) inside the server's data dir, so the test
//! neither reads the user's Helm configuration nor leaves anything behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use krust_testsupport::{KrustServer, NodeProcess, tool};
use serde_json::Value;

const KUBECTL: &str = "1.35";
const DEADLINE: Duration = Duration::from_secs(60);
/// Helm's own readiness wait, as a user would pass it.
const WAIT: [&str; 3] = ["--wait", "--timeout", "120s"];
/// The labels `helm create`'s chart puts on everything of release `demo`, pods included.
const DEMO_SELECTOR: &str = "app.kubernetes.io/instance=demo";

/// The last lines of the server's log, for failure messages that stay readable.
fn log_tail(server: &KrustServer) -> String {
    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}

/// The `helm` binary pointed at one server, with its state kept in the server's data dir.
struct Helm<'a> {
    server: &'a KrustServer,
    home: PathBuf,
    /// Where `helm create` puts charts and where chart paths like `./demo` resolve.
    workdir: PathBuf,
}

impl<'a> Helm<'a> {
    fn new(server: &'a KrustServer) -> Self {
        let home = server.data_dir().join("helm-home");
        let workdir = server.data_dir().join("charts");
        std::fs::create_dir_all(&home).expect("helm home");
        std::fs::create_dir_all(&workdir).expect("chart dir");
        Self { server, home, workdir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(tool("helm"));
        // A developer's HELM_NAMESPACE, HELM_DRIVER or HELM_KUBECONTEXT would change what the
        // test sees.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HELM_") {
                command.env_remove(key);
            }
        }
        command
            .args(args)
            .current_dir(&self.workdir)
            .env("KUBECONFIG", self.server.kubeconfig())
            .env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env_remove("KUBERNETES_MASTER")
            .stdin(Stdio::null());
        command
    }

    /// Runs `helm <args>` and returns stdout; fails the test with both streams and the server's
    /// log when Helm exits non-zero.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("helm runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "`helm {}` failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log (tail):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            log_tail(self.server),
        );
        stdout
    }

    /// `helm <args> -o json`, parsed.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(&[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm {args:?}: {e}\n{out}"))
    }

    /// `helm <verb> demo ... --wait --timeout 120s`
    fn run_waiting(&self, args: &[&str]) -> String {
        self.run(&[args, &WAIT].concat())
    }
}

fn get(server: &KrustServer, args: &[&str]) -> Value {
    server.get_json(KUBECTL, args).expect("kubectl get")
}

/// Whether `kubectl get <kind> <name>` finds the object (NotFound is the only other answer).
fn exists(server: &KrustServer, kind: &str, name: &str) -> bool {
    let out = server.kubectl(KUBECTL).args(["get", kind, name]).output().expect("kubectl get");
    if out.status.success() {
        return true;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NotFound"), "kubectl get {kind} {name}: {stderr}");
    false
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn ready_nodes(server: &KrustServer) -> usize {
    items(&get(server, &["get", "nodes"]))
        .iter()
        .filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .count()
}

fn release<'v>(list: &'v Value, name: &str) -> &'v Value {
    list.as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no release {name} in {list}"))
}

/// `(revision, status, description)` of each entry of `helm history -o json`.
fn revisions(history: &Value) -> Vec<(i64, String, String)> {
    history
        .as_array()
        .unwrap_or_else(|| panic!("history is a list: {history}"))
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn image(deployment: &Value) -> &str {
    deployment["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap_or_default()
}

/// Whether `deployment` (fetched with `--show-managed-fields`) has fields Helm applied.
fn applied_by_helm(deployment: &Value) -> bool {
    deployment["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["manager"] == "helm" && m["operation"] == "Apply"))
}

/// The chart's `appVersion` from its Chart.yaml (`appVersion: "1.16.0"`).
fn app_version(chart: &Path) -> String {
    let text = std::fs::read_to_string(chart.join("Chart.yaml")).expect("Chart.yaml");
    text.lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no appVersion in\n{text}"))
}

#[test]
#[ignore = "end-to-end: real krust server, hollow nodes and Helm"]
fn helm_installs_upgrades_rolls_back_uninstalls_and_templates_a_chart() {
    let started = Instant::now();
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _nodes = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 2).expect("hollow");
    server.wait_for(DEADLINE, "2 Ready hollow nodes", || (ready_nodes(&server) == 2).then_some(()));
    let helm = Helm::new(&server);

    // 1. A chart from `helm create`: nginx, 1 replica, a Service and a ServiceAccount.
    let created = helm.run(&["create", "demo"]);
    assert_eq!(created.trim(), "Creating demo");
    let chart = helm.workdir.join("demo");
    let default_image = format!("nginx:{}", app_version(&chart));

    // 2. Install, waiting until the Deployment is ready.
    let installed = helm.run_waiting(&["install", "demo", "./demo"]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let list = helm.json(&["list"]);
    let demo = release(&list, "demo");
    assert_eq!(demo["revision"], "1", "{demo}");
    assert_eq!(demo["status"], "deployed", "{demo}");
    assert_eq!(demo["app_version"], default_image.trim_start_matches("nginx:"), "{demo}");
    let d = get(&server, &["get", "deployment", "demo", "--show-managed-fields"]);
    assert_eq!(
        d["status"]["readyReplicas"], 1,
        "--wait returned before the pod was ready: {}",
        d["status"]
    );
    assert_eq!(image(&d), default_image);
    // 6. Helm 4 applies server-side, as field manager `helm`.
    assert!(applied_by_helm(&d), "{}", d["metadata"]["managedFields"]);
    assert!(exists(&server, "service", "demo"));
    assert!(exists(&server, "serviceaccount", "demo"));
    let stored = get(&server, &["get", "secret", "sh.helm.release.v1.demo.v1"]);
    assert_eq!(stored["type"], "helm.sh/release.v1");
    assert_eq!(stored["metadata"]["labels"]["owner"], "helm", "{}", stored["metadata"]);
    assert_eq!(stored["metadata"]["labels"]["status"], "deployed", "{}", stored["metadata"]);

    // 3. Upgrade: 3 replicas of another image, all ready once Helm returns.
    helm.run_waiting(&[
        "upgrade",
        "demo",
        "./demo",
        "--set",
        "replicaCount=3",
        "--set",
        "image.tag=1.17",
    ]);
    let demo = release(&helm.json(&["list"]), "demo").clone();
    assert_eq!(demo["revision"], "2", "{demo}");
    assert_eq!(demo["status"], "deployed", "{demo}");
    let d = get(&server, &["get", "deployment", "demo", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(image(&d), "nginx:1.17");
    assert_eq!(
        d["status"]["readyReplicas"], 3,
        "--wait returned before 3 pods were ready: {}",
        d["status"]
    );
    assert!(applied_by_helm(&d), "{}", d["metadata"]["managedFields"]);
    assert!(exists(&server, "secret", "sh.helm.release.v1.demo.v2"));

    // 4. History: the install was superseded by the upgrade.
    assert_eq!(
        revisions(&helm.json(&["history", "demo"])),
        [
            (1, "superseded".to_owned(), "Install complete".to_owned()),
            (2, "deployed".to_owned(), "Upgrade complete".to_owned()),
        ]
    );

    // 5. Rollback to revision 1 is revision 3: one replica of the chart's default image.
    helm.run_waiting(&["rollback", "demo", "1"]);
    let history = revisions(&helm.json(&["history", "demo"]));
    assert_eq!(
        history.last(),
        Some(&(3, "deployed".to_owned(), "Rollback to 1".to_owned())),
        "{history:?}"
    );
    assert_eq!(history[1].1, "superseded", "{history:?}");
    let d = get(&server, &["get", "deployment", "demo", "--show-managed-fields"]);
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(image(&d), default_image);
    assert_eq!(d["status"]["readyReplicas"], 1, "{}", d["status"]);
    assert!(applied_by_helm(&d), "{}", d["metadata"]["managedFields"]);
    // The rollback went back to revision 1's ReplicaSet: two in all, only it scaled up.
    let replica_sets = items(&get(&server, &["get", "rs", "-l", DEMO_SELECTOR]));
    assert_eq!(replica_sets.len(), 2, "{replica_sets:?}");
    assert!(!server.live_pods(KUBECTL, DEMO_SELECTOR).is_empty());

    // 7. Uninstall removes the release's Secrets and objects at once; the garbage collector
    // then removes the ReplicaSets and their pods.
    let uninstalled = helm.run(&["uninstall", "demo"]);
    assert_eq!(uninstalled.trim(), "release \"demo\" uninstalled");
    let secrets = items(&get(&server, &["get", "secrets", "-l", "owner=helm,name=demo"]));
    assert!(secrets.is_empty(), "release Secrets left: {secrets:?}");
    for revision in 1..=3 {
        assert!(!exists(&server, "secret", &format!("sh.helm.release.v1.demo.v{revision}")));
    }
    assert!(!exists(&server, "deployment", "demo"));
    assert!(!exists(&server, "service", "demo"));
    assert!(!exists(&server, "serviceaccount", "demo"));
    assert_eq!(helm.json(&["list"]), Value::Array(Vec::new()));
    server.wait_for(
        DEADLINE,
        "the garbage collector to remove demo's ReplicaSets and pods",
        || {
            let rs = items(&get(&server, &["get", "rs", "-l", DEMO_SELECTOR]));
            let pods = items(&get(&server, &["get", "pods", "-l", DEMO_SELECTOR]));
            (rs.is_empty() && pods.is_empty()).then_some(())
        },
    );

    // 8. `helm template | kubectl apply -f -`: plain manifests, no release. The chart's test
    // pod is rendered too (`helm template` only leaves tests out with --skip-tests).
    let mut template = helm
        .command(&["template", "demo2", "./demo"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("helm template runs");
    let manifests = template.stdout.take().expect("piped stdout");
    let applied = Command::new(tool(&format!("kubectl-{KUBECTL}")))
        .args(["apply", "-f", "-"])
        .env("KUBECONFIG", server.kubeconfig())
        .env_remove("KUBERNETES_MASTER")
        .stdin(manifests)
        .output()
        .expect("kubectl apply runs");
    let rendered = template.wait().expect("helm template exits");
    assert!(rendered.success(), "helm template failed ({rendered})");
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success(),
        "kubectl apply failed ({})\nstdout:\n{stdout}\nstderr:\n{}\nserver log (tail):\n{}",
        applied.status,
        String::from_utf8_lossy(&applied.stderr),
        log_tail(&server),
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "serviceaccount/demo2 created",
            "service/demo2 created",
            "deployment.apps/demo2 created",
            "pod/demo2-test-connection created",
        ]
    );
    assert!(exists(&server, "deployment", "demo2"));
    assert!(
        helm.json(&["list"]).as_array().is_some_and(Vec::is_empty),
        "no release for a template"
    );

    eprintln!("helm end-to-end: {:.1?}", started.elapsed());
}
