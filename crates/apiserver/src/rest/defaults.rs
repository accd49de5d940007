//! Defaulting on create, as upstream's `SetDefaults_*` functions fill the fields clients leave
//! out (only the kinds whose defaults other components rely on; more arrive with validation).

use serde_json::{Map, Value, json};

use super::object::object_at;

/// Fills defaults of a new object of `group`/`kind` in place: [`on_write`], plus what only a
/// create does (a pod's initial status, the admission-time toleration seconds).
pub fn apply(group: &str, kind: &str, object: &mut Value) {
    on_write(group, kind, object);
    if (group, kind) == ("", "Pod") {
        if let Some(spec) = object.get_mut("spec") {
            default_toleration_seconds(spec);
        }
        let qos = qos_class(object.get("spec").unwrap_or(&Value::Null));
        if let Some(map) = object.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Pending", "qosClass": qos}));
        }
    }
}

/// Upstream's `SetDefaults_*`, which run whenever a body is decoded — on creates and updates
/// alike, so a replaced object missing a defaulted field gets it back. Idempotent.
pub fn on_write(group: &str, kind: &str, object: &mut Value) {
    omit_empty_metadata(object);
    normalize(group, kind, object);
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec(spec);
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("", "ReplicationController") => {
            workload(kind, object);
        }
        ("", "Service") => service(object),
        ("", "Secret") => {
            let Some(map) = object.as_object_mut() else { return };
            if map.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        ("", "PodTemplate") => {
            if let Some(spec) = object.pointer_mut("/template/spec") {
                pod_spec(spec);
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = object.pointer_mut("/spec/template/spec") {
                pod_spec(spec);
            }
            let Some(spec) = object_at(object, &["spec"]) else { return };
            default(spec, "parallelism", json!(1));
            default(spec, "backoffLimit", json!(6));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
        }
        _ => {}
    }
}

/// Upstream's ObjectMeta fields are all `omitempty`: an empty label or annotation map and an
/// empty ownerReferences or finalizers list are never stored or served (`[]` left by a garbage
/// collector's orphaning patch reads back as no field at all).
fn omit_empty_metadata(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["labels", "annotations", "ownerReferences", "finalizers"] {
        let empty = match metadata.get(key) {
            Some(Value::Object(map)) => map.is_empty(),
            Some(Value::Array(list)) => list.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            metadata.remove(key);
        }
    }
}

fn default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

/// `map[key]` as an object, made `{}` when absent or not an object.
fn object_entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !map.get(key).is_some_and(Value::is_object) {
        map.insert(key.into(), Value::Object(Map::new()));
    }
    map.get_mut(key).and_then(Value::as_object_mut).expect("an object was just put there")
}

/// An empty or missing `type` becomes `value`.
fn default_type(map: &mut Map<String, Value>, value: &str) {
    if map.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
        map.insert("type".into(), json!(value));
    }
}

/// Upstream's DefaultTolerationSeconds admission plugin: a new pod that does not tolerate the
/// `not-ready` and `unreachable` NoExecute taints tolerates them for 300 s, so that the pods of a
/// node that stops reporting are evicted five minutes later.
fn default_toleration_seconds(spec: &mut Value) {
    const TAINTS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
    let Some(map) = spec.as_object_mut() else { return };
    let tolerations = map.entry("tolerations").or_insert_with(|| json!([]));
    if tolerations.is_null() {
        *tolerations = json!([]);
    }
    let Some(list) = tolerations.as_array_mut() else { return };
    for taint in TAINTS {
        let tolerated = list.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            let exists = t.get("operator").and_then(Value::as_str) == Some("Exists");
            (key == taint || (key.is_empty() && exists))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            list.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }));
        }
    }
}

fn pod_spec(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else { return };
    default(map, "restartPolicy", json!("Always"));
    default(map, "terminationGracePeriodSeconds", json!(30));
    default(map, "dnsPolicy", json!("ClusterFirst"));
    default(map, "securityContext", json!({}));
    default(map, "schedulerName", json!("default-scheduler"));
    default(map, "enableServiceLinks", json!(true));
    if let Some(Value::Array(containers)) = map.get_mut("containers") {
        containers.iter_mut().for_each(container);
    }
    if let Some(Value::Array(containers)) = map.get_mut("initContainers") {
        containers.iter_mut().for_each(container);
    }
}

fn container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(map) = c.as_object_mut() else { return };
    default(map, "terminationMessagePath", json!("/dev/termination-log"));
    default(map, "terminationMessagePolicy", json!("File"));
    // `:latest` or no tag pulls always; a tag or digest pulls if not present.
    let last = image.rsplit('/').next().unwrap_or_default();
    let tagged = last.contains(':') && !last.ends_with(":latest") || image.contains('@');
    default(map, "imagePullPolicy", json!(if tagged { "IfNotPresent" } else { "Always" }));
    default(map, "resources", json!({}));
    if let Some(Value::Array(ports)) = map.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(port, "protocol", json!("TCP"));
        }
    }
}

/// Upstream's QoS class: BestEffort without requests or limits, Guaranteed when every
/// container limits cpu and memory with requests equal to limits, Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| spec.get(*f).and_then(Value::as_array))
        .flatten()
        .collect();
    let any_set = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c.pointer(&format!("/resources/{k}"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if !any_set {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = c.pointer(&format!("/resources/limits/{r}"));
            let request = c.pointer(&format!("/resources/requests/{r}"));
            limit.is_some() && (request.is_none() || request == limit)
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

fn workload(kind: &str, object: &mut Value) {
    if let Some(spec) = object.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
    let Some(spec) = object_at(object, &["spec"]) else { return };
    default(spec, "replicas", json!(1));
    match kind {
        "Deployment" => {
            // Field by field, as upstream: `strategy: {}` (kubectl 1.27's generator sends it)
            // becomes a full RollingUpdate strategy.
            let strategy = object_entry(spec, "strategy");
            default_type(strategy, "RollingUpdate");
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let rolling = object_entry(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!("25%"));
                default(rolling, "maxSurge", json!("25%"));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
        }
        "StatefulSet" => {
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            let strategy = object_entry(spec, "updateStrategy");
            if strategy.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                strategy.insert("type".into(), json!("RollingUpdate"));
                object_entry(strategy, "rollingUpdate");
            }
            let rolling = strategy.get_mut("rollingUpdate").and_then(Value::as_object_mut);
            if let Some(rolling) = rolling {
                default(rolling, "partition", json!(0));
            }
            let retention = object_entry(spec, "persistentVolumeClaimRetentionPolicy");
            default(retention, "whenDeleted", json!("Retain"));
            default(retention, "whenScaled", json!("Retain"));
            default(spec, "revisionHistoryLimit", json!(10));
        }
        "DaemonSet" => {
            spec.remove("replicas");
            let strategy = object_entry(spec, "updateStrategy");
            default_type(strategy, "RollingUpdate");
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let rolling = object_entry(strategy, "rollingUpdate");
                default(rolling, "maxUnavailable", json!(1));
                default(rolling, "maxSurge", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
        }
        "ReplicationController" => {
            // An RC without a selector selects its template's labels (upstream default).
            let labels = spec.get("template").and_then(|t| t.pointer("/metadata/labels")).cloned();
            if spec.get("selector").is_none_or(|s| s.as_object().is_none_or(Map::is_empty))
                && let Some(labels) = labels
            {
                spec.insert("selector".into(), labels);
            }
        }
        _ => {}
    }
}

fn service(object: &mut Value) {
    let Some(spec) = object_at(object, &["spec"]) else { return };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(port, "protocol", json!("TCP"));
            if let Some(p) = port.get("port").cloned() {
                default(port, "targetPort", p);
            }
        }
    }
}

/// What every write does to an object of `group`/`kind`, create and update alike: a Secret's
/// write-only `stringData` is merged into `data` (base64), as upstream's conversion does.
pub fn normalize(group: &str, kind: &str, object: &mut Value) {
    use base64::Engine as _;
    if (group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
        crate::crd::default_spec(object);
    }
    if (group, kind) != ("", "Secret") {
        return;
    }
    let Some(map) = object.as_object_mut() else { return };
    let Some(Value::Object(strings)) = map.remove("stringData") else { return };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    let Value::Object(data) = data else { return };
    for (key, value) in strings {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_upstream_defaults_and_qos() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox:1.36"}]}});
        apply("", "Pod", &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["schedulerName"], "default-scheduler");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));

        let mut guaranteed = json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        apply("", "Pod", &mut guaranteed);
        assert_eq!(guaranteed["status"]["qosClass"], "Guaranteed");
        let mut burstable = json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}});
        apply("", "Pod", &mut burstable);
        assert_eq!(burstable["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn empty_metadata_collections_are_omitted() {
        let mut cm = json!({"metadata": {"name": "a", "labels": {}, "annotations": {"k": "v"}, "ownerReferences": [], "finalizers": null}});
        on_write("", "ConfigMap", &mut cm);
        assert_eq!(cm["metadata"], json!({"name": "a", "annotations": {"k": "v"}}));
    }

    #[test]
    fn deployments_and_services() {
        let mut d =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        apply("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        // kubectl 1.27's `create deployment` sends `strategy: {}`; a Recreate strategy stays.
        let mut d = json!({"spec": {"strategy": {}}});
        on_write("apps", "Deployment", &mut d);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        on_write("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let mut d = json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}});
        on_write("apps", "Deployment", &mut d);
        assert_eq!(
            d["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 2, "maxUnavailable": "25%"})
        );
        let mut ds = json!({"spec": {"updateStrategy": {"type": ""}}});
        on_write("apps", "DaemonSet", &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        let mut sts = json!({"spec": {"updateStrategy": {"type": "OnDelete"}}});
        on_write("apps", "StatefulSet", &mut sts);
        assert_eq!(sts["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
        assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"], "Retain");
        let mut sts = json!({"spec": {}});
        on_write("apps", "StatefulSet", &mut sts);
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );

        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        apply("", "Service", &mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
    }
}
