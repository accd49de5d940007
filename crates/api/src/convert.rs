//! Conversion between the legacy versions krust still serves and the versions objects are
//! stored in: `extensions/v1beta1` Deployment ⇄ `apps/v1` and `extensions/v1beta1` Ingress ⇄
//! `networking.k8s.io/v1` (upstream removed both in 1.16/1.22; older manifests, the seeds'
//! included, still use them). Objects are always stored in the current version, so every client
//! sees one object whichever version it asks for.

use serde_json::{Map, Value, json};

/// The largest int32, upstream's "unlimited" for the v1beta1 Deployment defaults.
const MAX_INT32: i64 = 2_147_483_647;

/// Converts an object of the legacy `group/version` `kind` into its storage version. Objects
/// of other kinds are returned unchanged.
pub fn to_storage(group: &str, version: &str, kind: &str, mut object: Value) -> Value {
    match (group, version, kind) {
        ("extensions", "v1beta1", "Deployment") => {
            set_api_version(&mut object, "apps/v1");
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                deployment_v1beta1_defaults(spec);
            }
            object
        }
        ("extensions", "v1beta1", "Ingress") => {
            set_api_version(&mut object, "networking.k8s.io/v1");
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                if let Some(backend) = spec.remove("backend") {
                    spec.insert("defaultBackend".into(), backend_to_v1(backend));
                }
                for path in ingress_paths(spec) {
                    if let Some(backend) = path.remove("backend") {
                        path.insert("backend".into(), backend_to_v1(backend));
                    }
                    if path.get("pathType").is_none_or(Value::is_null) {
                        path.insert("pathType".into(), json!("ImplementationSpecific"));
                    }
                }
            }
            object
        }
        _ => object,
    }
}

/// Converts a stored object into the legacy `group/version` `kind` a client asked for.
pub fn from_storage(group: &str, version: &str, kind: &str, mut object: Value) -> Value {
    match (group, version, kind) {
        ("extensions", "v1beta1", "Deployment") => {
            set_api_version(&mut object, "extensions/v1beta1");
            object
        }
        ("extensions", "v1beta1", "Ingress") => {
            set_api_version(&mut object, "extensions/v1beta1");
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                if let Some(backend) = spec.remove("defaultBackend") {
                    spec.insert("backend".into(), backend_to_v1beta1(backend));
                }
                for path in ingress_paths(spec) {
                    if let Some(backend) = path.remove("backend") {
                        path.insert("backend".into(), backend_to_v1beta1(backend));
                    }
                }
            }
            object
        }
        _ => object,
    }
}

fn set_api_version(object: &mut Value, api_version: &str) {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(api_version));
    }
}

/// What decoding a v1beta1 Deployment fills in upstream: the selector from the template's
/// labels, rolling updates of one pod at a time, unlimited history and progress deadline.
/// `rollbackTo` has no place in apps/v1 and is dropped.
fn deployment_v1beta1_defaults(spec: &mut Map<String, Value>) {
    spec.remove("rollbackTo");
    if spec.get("selector").is_none_or(Value::is_null)
        && let Some(labels) = template_labels(spec)
    {
        spec.insert("selector".into(), json!({ "matchLabels": labels }));
    }
    let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
    if let Some(strategy) = strategy.as_object_mut() {
        let kind = strategy.entry("type").or_insert_with(|| json!("RollingUpdate"));
        if kind == "RollingUpdate" {
            let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(rolling) = rolling.as_object_mut() {
                rolling.entry("maxUnavailable").or_insert_with(|| json!(1));
                rolling.entry("maxSurge").or_insert_with(|| json!(1));
            }
        }
    }
    spec.entry("revisionHistoryLimit").or_insert_with(|| json!(MAX_INT32));
    spec.entry("progressDeadlineSeconds").or_insert_with(|| json!(MAX_INT32));
}

fn template_labels(spec: &Map<String, Value>) -> Option<Value> {
    spec.get("template")?.pointer("/metadata/labels").filter(|l| l.is_object()).cloned()
}

/// Every `rules[].http.paths[]` entry of an Ingress spec.
fn ingress_paths(spec: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    spec.get_mut("rules")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.pointer_mut("/http/paths").and_then(Value::as_array_mut))
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `{serviceName, servicePort}` → `{service: {name, port: {number | name}}}`.
fn backend_to_v1(backend: Value) -> Value {
    let Value::Object(mut backend) = backend else { return backend };
    let name = backend.remove("serviceName");
    let port = backend.remove("servicePort");
    if name.is_some() || port.is_some() {
        let port = match port {
            Some(Value::Number(n)) => json!({ "number": n }),
            Some(Value::String(s)) => match s.parse::<i64>() {
                Ok(n) => json!({ "number": n }),
                Err(_) => json!({ "name": s }),
            },
            _ => json!({}),
        };
        backend
            .insert("service".into(), json!({ "name": name.unwrap_or(json!("")), "port": port }));
    }
    Value::Object(backend)
}

/// `{service: {name, port: {number | name}}}` → `{serviceName, servicePort}`.
fn backend_to_v1beta1(backend: Value) -> Value {
    let Value::Object(mut backend) = backend else { return backend };
    if let Some(Value::Object(service)) = backend.remove("service") {
        if let Some(name) = service.get("name") {
            backend.insert("serviceName".into(), name.clone());
        }
        let port = service.get("port");
        if let Some(number) = port.and_then(|p| p.get("number")) {
            backend.insert("servicePort".into(), number.clone());
        } else if let Some(name) = port.and_then(|p| p.get("name")) {
            backend.insert("servicePort".into(), name.clone());
        }
    }
    Value::Object(backend)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn v1beta1_deployments_get_upstreams_decoding_defaults() {
        let legacy = json!({
            "apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "rollbackTo": {"revision": 1},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        });
        let stored = to_storage("extensions", "v1beta1", "Deployment", legacy);
        assert_eq!(stored["apiVersion"], "apps/v1");
        assert_eq!(stored["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
        assert_eq!(
            stored["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}})
        );
        assert_eq!(stored["spec"]["revisionHistoryLimit"], MAX_INT32);
        assert!(stored["spec"].get("rollbackTo").is_none());
        let served = from_storage("extensions", "v1beta1", "Deployment", stored.clone());
        assert_eq!(served["apiVersion"], "extensions/v1beta1");
        assert_eq!(served["spec"]["replicas"], 3);
    }

    #[test]
    fn ingress_backends_round_trip() {
        let legacy = json!({
            "apiVersion": "extensions/v1beta1", "kind": "Ingress",
            "metadata": {"name": "ing"},
            "spec": {
                "backend": {"serviceName": "default", "servicePort": 80},
                "rules": [{"host": "a.example.com", "http": {"paths": [
                    {"path": "/", "backend": {"serviceName": "web", "servicePort": "http"}},
                    {"path": "/api", "pathType": "Prefix", "backend": {"serviceName": "api", "servicePort": 8080}},
                ]}}],
            },
        });
        let stored = to_storage("extensions", "v1beta1", "Ingress", legacy.clone());
        assert_eq!(stored["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(
            stored["spec"]["defaultBackend"],
            json!({"service": {"name": "default", "port": {"number": 80}}})
        );
        let paths = &stored["spec"]["rules"][0]["http"]["paths"];
        assert_eq!(
            paths[0]["backend"],
            json!({"service": {"name": "web", "port": {"name": "http"}}})
        );
        assert_eq!(paths[0]["pathType"], "ImplementationSpecific");
        assert_eq!(paths[1]["backend"]["service"]["port"], json!({"number": 8080}));
        assert_eq!(paths[1]["pathType"], "Prefix");

        let served = from_storage("extensions", "v1beta1", "Ingress", stored);
        assert_eq!(served["spec"]["backend"], legacy["spec"]["backend"]);
        let paths = &served["spec"]["rules"][0]["http"]["paths"];
        assert_eq!(paths[0]["backend"], json!({"serviceName": "web", "servicePort": "http"}));
        assert_eq!(paths[1]["backend"], json!({"serviceName": "api", "servicePort": 8080}));
    }

    #[test]
    fn other_kinds_pass_through() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(to_storage("", "v1", "ConfigMap", cm.clone()), cm);
        assert_eq!(from_storage("", "v1", "ConfigMap", cm.clone()), cm);
    }
}
