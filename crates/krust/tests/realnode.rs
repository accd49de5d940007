//! A real node: `krust agent` running pods on containerd + runc with the CNI bridge, in a
//! network namespace of the test's own, driven with real kubectl. A Deployment of busybox
//! httpd behind a Service: pods Running with addresses from the node's pod range, reached
//! from the node, listed in the Service's endpoints once their readiness probe passes; init
//! containers in order; a failing liveness probe restarts its container; `kill -9` of a
//! container's process restarts it; `hostPort` published on the node; deleting pods stops
//! their processes. Runs as root (CI does).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use krust_testsupport::KrustServer;
use krust_testsupport::node::{NetNs, RealNode};
use serde_json::{Value, json};

const KUBECTL: &str = "1.33";
const DEADLINE: Duration = Duration::from_secs(90);

fn kubectl(server: &KrustServer, args: &[&str]) -> String {
    server.kubectl(KUBECTL).args(args).run().expect("kubectl")
}

/// One HTTP/1.0 GET from the node; the response body.
fn http_get(address: &str) -> std::io::Result<String> {
    let mut stream =
        TcpStream::connect_timeout(&address.parse().expect("address"), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
}

/// `kubectl <args>` with `input` on its stdin; its stdout.
fn kubectl_stdin(server: &KrustServer, version: &str, args: &[&str], input: &str) -> String {
    use std::io::Write as _;
    let mut child =
        std::process::Command::new(krust_testsupport::tool(&format!("kubectl-{version}")))
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl logs -f pod` until a line equal to `until` arrives; everything read.
fn follow_logs(server: &KrustServer, pod: &str, until: &str, timeout: Duration) -> String {
    stream_lines(server, &["logs", "-f", pod], until, timeout)
}

/// Runs `kubectl <args>` until a line starting with `until` arrives (or `timeout`), then
/// stops it; everything it printed.
fn stream_lines(server: &KrustServer, args: &[&str], until: &str, timeout: Duration) -> String {
    use std::io::BufRead as _;
    let mut child =
        std::process::Command::new(krust_testsupport::tool(&format!("kubectl-{KUBECTL}")))
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + timeout;
    let mut seen = String::new();
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(until) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn web_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "httpd",
                        "image": "busybox",
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                        "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}
                    }],
                    "volumes": [{"name": "www", "configMap": {"name": "web-content"}}]
                }
            }
        }
    })
}

/// A pod whose one container sleeps `seconds`.
fn sleeper(name: &str, container: &str, seconds: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": container, "image": "busybox", "command": ["sleep", seconds]}]}
    })
}

fn config_map(greeting: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "web-content", "namespace": "default"},
        "data": {"index.html": format!("{greeting}\n"), "greeting": greeting}
    })
}

#[test]
#[ignore = "end-to-end: real containerd, runc and CNI as root"]
fn pods_run_for_real_on_containerd() {
    let _ns = NetNs::enter().expect("network namespace (root needed)");
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let node = RealNode::start(env!("CARGO_BIN_EXE_krust"), &server, "node-1").expect("agent");
    let node_ready = server.wait_for(DEADLINE, "node-1 Ready with a pod CIDR", || {
        let n = server.get_json(KUBECTL, &["get", "node", "node-1"]).ok()?;
        let ready = n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && n["spec"]["podCIDR"].is_string()).then_some(n)
    });
    assert!(
        node_ready["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("containerd://")),
        "{node_ready}\n{}",
        node.log()
    );
    let cidr = node_ready["spec"]["podCIDR"].as_str().expect("podCIDR").to_owned();
    server.wait_for(DEADLINE, "the node's images in its status", || {
        let n = server.get_json(KUBECTL, &["get", "node", "node-1"]).ok()?;
        n["status"]["images"]
            .as_array()?
            .iter()
            .any(|i| {
                i["sizeBytes"].as_u64().is_some_and(|s| s > 0)
                    && i["names"].as_array().is_some_and(|names| {
                        names.iter().any(|n| n == "docker.io/library/busybox:latest")
                    })
            })
            .then_some(())
    });
    let prefix = cidr.rsplit_once('.').expect("ipv4 cidr").0.to_owned();

    // A Deployment of two web servers behind a Service, serving a configMap volume.
    server.create(KUBECTL, &config_map("hello")).expect("configmap");
    server.create(KUBECTL, &web_deployment()).expect("deployment");
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}
            }),
        )
        .expect("service");
    let pods = server.wait_for(DEADLINE, "two web pods Running and Ready", || {
        let pods = server.live_pods(KUBECTL, "app=web");
        let ready = pods
            .iter()
            .filter(|p| {
                p["status"]["phase"] == "Running"
                    && container_status(p, "httpd")["ready"] == true
                    && p["status"]["podIP"].is_string()
            })
            .count();
        (ready == 2).then_some(pods)
    });
    for pod in &pods {
        let ip = pod["status"]["podIP"].as_str().expect("podIP");
        assert!(ip.starts_with(&format!("{prefix}.")), "{ip} not in {cidr}");
        let status = container_status(pod, "httpd");
        assert!(status["containerID"].as_str().is_some_and(|id| id.starts_with("containerd://")));
        assert!(status["imageID"].as_str().is_some_and(|id| id.starts_with("sha256:")), "{status}");
        // The node reaches the pod at its address.
        let body = http_get(&format!("{ip}:8080")).expect("the node reaches the pod");
        assert_eq!(body.trim(), "hello");
    }
    let mut ips: Vec<String> =
        pods.iter().filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned)).collect();
    ips.sort();
    server.wait_for(DEADLINE, "the Service's endpoints list both pods", || {
        let ep = server.get_json(KUBECTL, &["get", "endpoints", "web"]).ok()?;
        let mut listed: Vec<String> = ep["subsets"][0]["addresses"]
            .as_array()?
            .iter()
            .filter_map(|a| a["ip"].as_str().map(str::to_owned))
            .collect();
        listed.sort();
        (listed == ips && ep["subsets"][0]["ports"][0]["port"] == 8080).then_some(())
    });

    // An update of the configMap reaches the running pods' volume.
    let update = server.data_dir().join("web-content.json");
    std::fs::write(&update, config_map("updated").to_string()).expect("write");
    kubectl(&server, &["replace", "-f", update.to_str().expect("utf8")]);
    server.wait_for(DEADLINE, "the configMap update in the pods' volume", || {
        ips.iter()
            .all(|ip| http_get(&format!("{ip}:8080")).is_ok_and(|b| b.trim() == "updated"))
            .then_some(())
    });

    // The environment: configMapKeyRef, the downward API, $(VAR) expansion, Service links;
    // and /etc/hosts names the pod.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "envy", "namespace": "default"},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "c",
                        "image": "busybox",
                        "command": ["sh", "-c",
                            "mkdir /w && echo \"$MESSAGE|$WEB_SERVICE_HOST|$WEB_SERVICE_PORT|$(grep -c envy /etc/hosts)\" > /w/index.html && exec httpd -f -p 8082 -h /w"],
                        "env": [
                            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "web-content", "key": "greeting"}}},
                            {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "MESSAGE", "value": "$(GREETING) from $(MY_NAME)"}
                        ]
                    }]
                }
            }),
        )
        .expect("pod");
    let envy = server.wait_for(DEADLINE, "envy Running with an IP", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "envy"]).ok()?;
        (pod["status"]["phase"] == "Running").then_some(pod)
    });
    let service = server.get_json(KUBECTL, &["get", "service", "web"]).expect("service");
    let cluster_ip = service["spec"]["clusterIP"].as_str().expect("clusterIP");
    let envy_ip = envy["status"]["podIP"].as_str().expect("podIP").to_owned();
    let page =
        server.wait_for(DEADLINE, "envy's page", || http_get(&format!("{envy_ip}:8082")).ok());
    assert_eq!(page.trim(), format!("updated from envy|{cluster_ip}|80|1"));

    // Init containers in order, then a container whose liveness probe starts failing, with a
    // hostPort.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "lively", "namespace": "default"},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "initContainers": [
                        {"name": "first", "image": "busybox", "command": ["sleep", "1"]},
                        {"name": "second", "image": "busybox", "command": ["true"]}
                    ],
                    "containers": [{
                        "name": "main",
                        "image": "busybox",
                        "command": ["sh", "-c",
                            "echo started; touch /tmp/healthy; (sleep 4; rm /tmp/healthy) & exec httpd -f -p 8081 -h /tmp"],
                        "ports": [{"containerPort": 8081, "hostPort": 18081}],
                        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]},
                                          "periodSeconds": 1, "failureThreshold": 2}
                    }]
                }
            }),
        )
        .expect("pod");
    let restarted = server.wait_for(DEADLINE, "the liveness probe to restart `main`", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "lively"]).ok()?;
        (container_status(&pod, "main")["restartCount"].as_i64()? >= 1).then_some(pod)
    });
    let inits = restarted["status"]["initContainerStatuses"].as_array().expect("init statuses");
    let finished = |i: usize| inits[i]["state"]["terminated"].clone();
    assert_eq!(finished(0)["exitCode"], 0, "{restarted}");
    assert_eq!(finished(1)["exitCode"], 0, "{restarted}");
    assert!(
        finished(0)["finishedAt"].as_str() <= finished(1)["startedAt"].as_str(),
        "init containers ran out of order: {restarted}"
    );
    let events =
        kubectl(&server, &["get", "events", "--field-selector", "involvedObject.name=lively"]);
    assert!(events.contains("Liveness probe failed"), "{events}");
    // The hostPort answers on the node's address while the container runs.
    server.wait_for(DEADLINE, "hostPort 18081 on the node", || {
        http_get("127.0.0.1:18081").ok().map(|_| ())
    });

    // Logs through the API server from the kubelet: the previous instance, tail, follow,
    // with an old and a new kubectl.
    for version in ["1.27", "1.33"] {
        let previous = server
            .kubectl(version)
            .args(["logs", "lively", "-c", "main", "--previous"])
            .run()
            .expect("kubectl logs --previous");
        assert_eq!(previous, "started\n", "kubectl {version}");
    }
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "talker", "namespace": "default"},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "c", "image": "busybox",
                    "command": ["sh", "-c", "echo line1; echo line2 >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]
                }]}
            }),
        )
        .expect("pod");
    let logs = server.wait_for(DEADLINE, "talker's first ticks", || {
        let out = server.kubectl(KUBECTL).args(["logs", "talker"]).run().ok()?;
        out.contains("tick 2").then_some(out)
    });
    // stdout and stderr are one log; their lines interleave as the runtime wrote them.
    let first: Vec<&str> = logs.lines().take(3).collect();
    for line in ["line1", "line2", "tick 1"] {
        assert!(first.contains(&line), "{logs}");
    }
    let tail = kubectl(&server, &["logs", "talker", "--tail=1"]);
    assert!(tail.starts_with("tick ") && tail.lines().count() == 1, "{tail:?}");
    let stamped = kubectl(&server, &["logs", "talker", "--timestamps", "--tail=1"]);
    assert!(
        stamped.split(' ').next().is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "{stamped:?}"
    );
    let seen = follow_logs(&server, "talker", "tick 6", Duration::from_secs(30));
    assert!(seen.contains("tick 5\ntick 6"), "{seen}");
    let waiting = server.kubectl(KUBECTL).args(["logs", "missing"]).output().expect("kubectl");
    assert!(!waiting.status.success());

    // exec (SPDY for 1.27; 1.33 tries WebSocket first), with stdin; port-forward.
    for version in ["1.27", "1.33"] {
        let out = server
            .kubectl(version)
            .args(["exec", "talker", "--", "sh", "-c", "echo hi; hostname; echo oops >&2"])
            .output()
            .expect("kubectl exec");
        assert!(
            out.status.success(),
            "kubectl {version} exec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\ntalker\n", "kubectl {version}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("oops"), "kubectl {version}");
        let failing = server
            .kubectl(version)
            .args(["exec", "talker", "--", "sh", "-c", "exit 3"])
            .output()
            .expect("kubectl");
        assert_eq!(failing.status.code(), Some(3), "kubectl {version}: the command's exit code");
        let piped = kubectl_stdin(
            &server,
            version,
            &["exec", "-i", "talker", "--", "wc", "-c"],
            "twelve bytes",
        );
        assert_eq!(piped.trim(), "12", "kubectl {version} exec -i");
    }
    // securityContext: the pod's user, the container's read-only root and dropped
    // capabilities.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "secure", "namespace": "default"},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                    "containers": [{
                        "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "securityContext": {"readOnlyRootFilesystem": true,
                                            "allowPrivilegeEscalation": false,
                                            "capabilities": {"drop": ["ALL"]}}
                    }]
                }
            }),
        )
        .expect("pod");
    server.wait_for(DEADLINE, "secure Running", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "secure"]).ok()?;
        (pod["status"]["phase"] == "Running").then_some(())
    });
    let ids = kubectl(
        &server,
        &["exec", "secure", "--", "sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"],
    );
    assert_eq!(ids.lines().take(2).collect::<Vec<_>>(), ["65534", "65534"], "{ids}");
    assert!(ids.contains("CapEff:\t0000000000000000"), "{ids}");
    let write = server
        .kubectl(KUBECTL)
        .args(["exec", "secure", "--", "touch", "/x"])
        .output()
        .expect("kubectl");
    assert!(!write.status.success(), "the root filesystem is writable");

    // The kubelet's summary API through the API server's node proxy.
    let summary = server.wait_for(DEADLINE, "talker in /stats/summary", || {
        let raw = server
            .kubectl(KUBECTL)
            .args(["get", "--raw", "/api/v1/nodes/node-1/proxy/stats/summary"])
            .run()
            .ok()?;
        let summary: Value = serde_json::from_str(&raw).ok()?;
        let pod =
            summary["pods"].as_array()?.iter().find(|p| p["podRef"]["name"] == "talker")?.clone();
        (pod["containers"][0]["cpu"]["usageCoreNanoSeconds"].as_u64()? > 0).then_some(pod)
    });
    assert!(summary["memory"]["workingSetBytes"].as_u64().is_some_and(|b| b > 0), "{summary}");
    assert_eq!(summary["containers"][0]["name"], "c", "{summary}");

    // kubectl top: the metrics API computed from the kubelet's summaries.
    let top = server.kubectl(KUBECTL).args(["top", "node"]).run().expect("kubectl top node");
    let header: Vec<&str> = top.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"], "{top}");
    let row: Vec<&str> = top.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.first(), Some(&"node-1"), "{top}");
    assert!(row.get(3).is_some_and(|m| m.ends_with("Mi")), "{top}");
    let top = server
        .kubectl(KUBECTL)
        .args(["top", "pod", "talker", "--containers"])
        .run()
        .expect("kubectl top pod");
    let row: Vec<&str> = top.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    assert_eq!(row.get(..2), Some(&["talker", "c"][..]), "{top}");
    assert!(row.get(2).is_some_and(|cpu| cpu.ends_with('m')), "{top}");

    // attach: the running container's output, live.
    let attached = stream_lines(&server, &["attach", "talker"], "tick", Duration::from_secs(30));
    assert!(attached.lines().any(|l| l.starts_with("tick ")), "{attached}");
    let web_pod = pods[0]["metadata"]["name"].as_str().expect("name").to_owned();
    let mut forward =
        std::process::Command::new(krust_testsupport::tool(&format!("kubectl-{KUBECTL}")))
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["port-forward", &format!("pod/{web_pod}"), "18090:8080"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl port-forward");
    let forwarded = server.wait_for(DEADLINE, "the web page through kubectl port-forward", || {
        http_get("127.0.0.1:18090").ok()
    });
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(forwarded.trim(), "updated");

    // kill -9 of a container's process: the kubelet restarts it (exit code 137).
    server.create(KUBECTL, &sleeper("victim", "sleeper", "3601")).expect("pod");
    let pid = server.wait_for(DEADLINE, "the sleeper's process", || {
        node.pod_processes().into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == b"sleep\x003601\x00")
        })
    });
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
    let victim = server.wait_for(DEADLINE, "the killed container restarted", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "victim"]).ok()?;
        let status = container_status(&pod, "sleeper");
        (status["restartCount"].as_i64()? >= 1 && status["state"]["running"].is_object())
            .then_some(pod)
    });
    let last = &container_status(&victim, "sleeper")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{victim}");

    // An image that is nowhere: ErrImagePull, then ImagePullBackOff, with upstream's events.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "missing", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/nothing:1"}]}
            }),
        )
        .expect("pod");
    server.wait_for(DEADLINE, "ErrImagePull / ImagePullBackOff", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "missing"]).ok()?;
        let reason = container_status(&pod, "c")["state"]["waiting"]["reason"].as_str()?.to_owned();
        (reason == "ErrImagePull" || reason == "ImagePullBackOff").then_some(())
    });
    let events =
        kubectl(&server, &["get", "events", "--field-selector", "involvedObject.name=missing"]);
    assert!(events.contains("Failed to pull image \"registry.invalid/nothing:1\""), "{events}");

    // imagePullPolicy Never with an image that is not there.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "never", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "busybox:0.0", "imagePullPolicy": "Never"}]}
            }),
        )
        .expect("pod");
    server.wait_for(DEADLINE, "ErrImageNeverPull", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "never"]).ok()?;
        let waiting = &container_status(&pod, "c")["state"]["waiting"];
        (waiting["reason"] == "ErrImageNeverPull"
            && waiting["message"]
                == "Container image \"busybox:0.0\" is not present with pull policy of Never")
            .then_some(())
    });
    kubectl(&server, &["delete", "pod", "never"]);

    // The termination message a container leaves in /dev/termination-log.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "farewell", "namespace": "default"},
                "spec": {"restartPolicy": "Never", "containers": [{
                    "name": "c", "image": "busybox",
                    "command": ["sh", "-c", "echo 'goodbye world' > /dev/termination-log; exit 2"]
                }]}
            }),
        )
        .expect("pod");
    let farewell = server.wait_for(DEADLINE, "farewell Failed", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "farewell"]).ok()?;
        (pod["status"]["phase"] == "Failed").then_some(pod)
    });
    let terminated = &container_status(&farewell, "c")["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 2, "{farewell}");
    assert_eq!(terminated["message"], "goodbye world\n", "{farewell}");
    kubectl(&server, &["delete", "pod", "farewell"]);

    // exec -it: a terminal in the container (kubectl run under `script` for a pty of its own).
    let tty = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --kubeconfig {} exec -it talker -- sh -c 'tty; stty size'",
            krust_testsupport::tool(&format!("kubectl-{KUBECTL}")).display(),
            server.kubeconfig().display()
        ))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let tty_out = String::from_utf8_lossy(&tty.stdout);
    assert!(tty_out.contains("/dev/pts/"), "exec -it has no terminal: {tty_out:?}");

    // The agent dies (SIGKILL) and comes back: it adopts the running containers (same IDs,
    // no restart), and removes the pod deleted meanwhile.
    let before: Vec<(String, Value)> = server
        .live_pods(KUBECTL, "app=web")
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                container_status(p, "httpd").clone(),
            )
        })
        .collect();
    let mut node = node;
    node.kill_agent();
    kubectl(&server, &["delete", "pod", "victim", "--force", "--grace-period=0"]);
    node.restart_agent(env!("CARGO_BIN_EXE_krust")).expect("agent restarts");
    server.wait_for(DEADLINE, "the deleted pod's process gone after the restart", || {
        node.pod_processes()
            .iter()
            .all(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map_or(true, |c| c != b"sleep\x003601\x00")
            })
            .then_some(())
    });
    // A new pod runs too (the restarted agent took over).
    server.create(KUBECTL, &sleeper("after", "c", "3600")).expect("pod");
    server.wait_for(DEADLINE, "a pod started by the restarted agent", || {
        let pod = server.get_json(KUBECTL, &["get", "pod", "after"]).ok()?;
        (pod["status"]["phase"] == "Running").then_some(())
    });
    for (name, status) in &before {
        let pod = server.get_json(KUBECTL, &["get", "pod", name]).expect("web pod kept");
        let now = container_status(&pod, "httpd");
        assert_eq!(
            now["containerID"],
            status["containerID"],
            "{name} was not adopted: {pod}\n{}",
            node.log()
        );
        assert_eq!(now["restartCount"], status["restartCount"], "{pod}");
        assert_eq!(now["ready"], true, "{pod}");
    }
    for ip in &ips {
        assert_eq!(http_get(&format!("{ip}:8080")).expect("still served").trim(), "updated");
    }

    // Lifecycle hooks: postStart after the start, preStop before the stop (both exec), seen
    // through a hostPath volume.
    let host_dir = server.data_dir().join("hooks");
    std::fs::create_dir_all(&host_dir).expect("hook dir");
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "hooked", "namespace": "default"},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
                        "lifecycle": {
                            "postStart": {"exec": {"command": ["sh", "-c", "echo hello > /host/poststart"]}},
                            "preStop": {"exec": {"command": ["sh", "-c", "echo bye > /host/prestop"]}}
                        }
                    }],
                    "volumes": [{"name": "host", "hostPath": {"path": host_dir.to_str().expect("utf8"), "type": "Directory"}}]
                }
            }),
        )
        .expect("pod");
    server.wait_for(DEADLINE, "the postStart hook's file", || {
        std::fs::read_to_string(host_dir.join("poststart")).ok().filter(|c| c == "hello\n")
    });
    kubectl(&server, &["delete", "pod", "hooked", "--wait=false"]);
    server.wait_for(DEADLINE, "the preStop hook's file", || {
        std::fs::read_to_string(host_dir.join("prestop")).ok().filter(|c| c == "bye\n")
    });

    // Deleting the pods stops their processes and frees their addresses.
    kubectl(&server, &["delete", "deployment", "web"]);
    kubectl(
        &server,
        &[
            "delete",
            "pod",
            "lively",
            "envy",
            "missing",
            "after",
            "talker",
            "secure",
            "--wait=false",
        ],
    );
    let mut left = String::new();
    server.wait_for(DEADLINE, "every pod gone from the API", || {
        let list = server.get_json(KUBECTL, &["get", "pods"]).ok()?;
        let names: Vec<&str> = list["items"]
            .as_array()?
            .iter()
            .filter_map(|p| p["metadata"]["name"].as_str())
            .collect();
        if names.join(",") != left {
            left = names.join(",");
            eprintln!("pods left: {left}");
        }
        names.is_empty().then_some(())
    });
    server.wait_for(DEADLINE, "every pod process gone from the node", || {
        node.pod_processes().is_empty().then_some(())
    });
    assert!(http_get(&format!("{}:8080", ips[0])).is_err(), "a deleted pod still answers");
}
