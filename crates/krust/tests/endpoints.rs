//! The Endpoints and EndpointSlice controllers inside `krust server`, with pods run by hollow
//! nodes and driven with real kubectl: a Service's named target port resolved per pod, a pod
//! that fails its readiness probe moved to `notReadyAddresses` (and `ready: false` in its
//! slice), a deleted pod gone from both promptly, `publishNotReadyAddresses` on a headless
//! Service, 150 pods packed into slices of at most 100, and everything removed with the Service;
//! and the ServiceAccount controller's `default` account in every namespace.

use std::time::Duration;

use krust_testsupport::{KrustServer, NodeProcess};
use serde_json::{Value, json};

const KUBECTL: &str = "1.33";
const DEADLINE: Duration = Duration::from_secs(60);

fn kubectl(server: &KrustServer, args: &[&str]) -> String {
    server.kubectl(KUBECTL).args(args).run().expect("kubectl")
}

fn get(server: &KrustServer, args: &[&str]) -> Value {
    server.get_json(KUBECTL, args).expect("kubectl get")
}

fn addresses(endpoints: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// The pods (by name) the Endpoints list, ready or not.
fn target_pods(endpoints: &Value) -> Vec<String> {
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            let mut all = s["addresses"].as_array().cloned().unwrap_or_default();
            all.extend(s["notReadyAddresses"].as_array().cloned().unwrap_or_default());
            all
        })
        .filter_map(|a| a["targetRef"]["name"].as_str().map(str::to_owned))
        .collect()
}

fn pod_ips(server: &KrustServer) -> Vec<String> {
    let mut ips: Vec<String> = server
        .live_pods(KUBECTL, "app=web")
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips
}

fn slices(server: &KrustServer, service: &str) -> Vec<Value> {
    get(server, &["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={service}")])
        ["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn services_track_their_pods_readiness_and_deletion() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _nodes = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 2).expect("hollow");
    let probe = json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 1});
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "c", "image": "nginx",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": probe,
                        }]},
                    },
                },
            }),
        )
        .expect("deployment");
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]},
            }),
        )
        .expect("service");

    let ips = server.wait_for(DEADLINE, "3 ready addresses", || {
        let e = get(&server, &["get", "endpoints", "web"]);
        let ready = addresses(&e, "addresses");
        (ready.len() == 3 && ready == pod_ips(&server)).then_some(ready)
    });
    let e = get(&server, &["get", "endpoints", "web"]);
    assert_eq!(
        e["subsets"][0]["ports"][0],
        json!({"name": "web", "port": 8080, "protocol": "TCP"})
    );
    let table = kubectl(&server, &["get", "endpoints", "web"]);
    assert!(table.contains(&format!("{}:8080", ips[0])), "{table}");
    let s = slices(&server, "web");
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(s[0]["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(s[0]["ports"][0]["port"], 8080);
    assert_eq!(s[0]["endpoints"].as_array().map(Vec::len), Some(3));

    // A pod failing its readiness probe is not ready in either.
    let pods = server.live_pods(KUBECTL, "app=web");
    let sick = pods[0]["metadata"]["name"].as_str().expect("name").to_owned();
    let sick_ip = pods[0]["status"]["podIP"].as_str().expect("ip").to_owned();
    kubectl(&server, &["annotate", "pod", &sick, "fake.krust.dev/readiness-c=fail"]);
    server.wait_for(DEADLINE, "the sick pod not ready", || {
        let e = get(&server, &["get", "endpoints", "web"]);
        (addresses(&e, "notReadyAddresses") == [sick_ip.clone()]
            && addresses(&e, "addresses").len() == 2)
            .then_some(())
    });
    server.wait_for(DEADLINE, "the sick pod's slice endpoint", || {
        let s = slices(&server, "web");
        let endpoint = s[0]["endpoints"]
            .as_array()?
            .iter()
            .find(|e| e["addresses"][0] == sick_ip.as_str())?
            .clone();
        (endpoint["conditions"] == json!({"ready": false, "serving": false, "terminating": false}))
            .then_some(())
    });

    // A deleted pod leaves at once (its replacement may reuse its address); the new one joins.
    let gone = pods[1]["metadata"]["name"].as_str().expect("name").to_owned();
    kubectl(&server, &["delete", "pod", &gone, "--wait=false"]);
    server.wait_for(DEADLINE, "the deleted pod gone from the endpoints", || {
        let e = get(&server, &["get", "endpoints", "web"]);
        (!target_pods(&e).contains(&gone)).then_some(())
    });
    server.wait_for(DEADLINE, "a replacement address", || {
        let e = get(&server, &["get", "endpoints", "web"]);
        (addresses(&e, "addresses").len() == 2 && addresses(&e, "notReadyAddresses").len() == 1)
            .then_some(())
    });

    // A headless Service publishing not-ready addresses lists every pod as ready.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web-all", "namespace": "default"},
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "web"},
                    "ports": [{"port": 8080}]},
            }),
        )
        .expect("headless service");
    server.wait_for(DEADLINE, "all addresses ready", || {
        let e = get(&server, &["get", "endpoints", "web-all"]);
        (addresses(&e, "addresses").len() == 3 && addresses(&e, "notReadyAddresses").is_empty())
            .then_some(())
    });

    // 150 pods: two slices, none over 100.
    kubectl(&server, &["scale", "deployment", "web", "--replicas", "150"]);
    server.wait_for(Duration::from_secs(120), "150 endpoints in two slices", || {
        let s = slices(&server, "web");
        let sizes: Vec<usize> =
            s.iter().map(|s| s["endpoints"].as_array().map_or(0, Vec::len)).collect();
        (sizes.iter().sum::<usize>() == 150 && s.len() == 2).then_some(())
    });
    assert!(
        slices(&server, "web").iter().all(|s| s["endpoints"].as_array().map_or(0, Vec::len) <= 100)
    );

    // The Service goes, and its Endpoints and slices with it.
    kubectl(&server, &["delete", "service", "web"]);
    server.wait_for(DEADLINE, "endpoints and slices gone", || {
        let e = server
            .kubectl(KUBECTL)
            .args(["get", "endpoints", "web", "--ignore-not-found"])
            .run()
            .ok()?;
        (e.trim().is_empty() && slices(&server, "web").is_empty()).then_some(())
    });
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn new_namespaces_get_a_default_service_account_back_when_deleted() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    kubectl(&server, &["create", "namespace", "team-a"]);
    let sa = || {
        server
            .kubectl(KUBECTL)
            .args(["get", "serviceaccount", "default", "-n", "team-a", "-o", "name"])
            .run()
            .ok()
    };
    server.wait_for(DEADLINE, "the default ServiceAccount", || {
        sa().filter(|s| s.trim() == "serviceaccount/default")
    });
    kubectl(&server, &["delete", "serviceaccount", "default", "-n", "team-a"]);
    server.wait_for(DEADLINE, "the default ServiceAccount back", || {
        sa().filter(|s| s.trim() == "serviceaccount/default")
    });
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn every_namespace_gets_the_cluster_ca_in_kube_root_ca_crt() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let ca = std::fs::read_to_string(server.data_dir().join("pki/ca.crt")).expect("the cluster CA");
    kubectl(&server, &["create", "namespace", "team-b"]);
    let bundle = |ns: &str| {
        let map =
            server.get_json(KUBECTL, &["get", "configmap", "kube-root-ca.crt", "-n", ns]).ok()?;
        map["data"]["ca.crt"].as_str().map(str::to_owned)
    };
    for ns in ["default", "kube-system", "team-b"] {
        let published = server.wait_for(DEADLINE, "kube-root-ca.crt", || bundle(ns));
        assert_eq!(published, ca, "{ns}");
    }
    // Changed or deleted, it is set right again.
    kubectl(
        &server,
        &[
            "patch",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "team-b",
            "--type",
            "merge",
            "-p",
            r#"{"data":{"ca.crt":"tampered"}}"#,
        ],
    );
    server.wait_for(DEADLINE, "the bundle restored", || bundle("team-b").filter(|b| *b == ca));
    kubectl(&server, &["delete", "configmap", "kube-root-ca.crt", "-n", "team-b"]);
    server.wait_for(DEADLINE, "the ConfigMap back", || bundle("team-b").filter(|b| *b == ca));
    let map = server
        .get_json(KUBECTL, &["get", "configmap", "kube-root-ca.crt", "-n", "team-b"])
        .expect("get");
    assert!(
        map["metadata"]["annotations"]["kubernetes.io/description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Contains a CA bundle")),
        "{map}"
    );
}
