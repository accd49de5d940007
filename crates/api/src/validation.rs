//! Kind-specific validation (upstream's `pkg/apis/*/validation`), for the rules clients meet
//! most: a pod spec's containers, restart and DNS policies and ports (in pods and in every pod
//! template), a workload's selector against its template, replicas, and a Service's ports and
//! type. Messages are upstream's field errors, word for word.

use std::collections::HashSet;

use serde_json::Value;

use crate::labels::Selector;

/// One field error, as upstream's `field.Error` renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, `FieldValueDuplicate`,
    /// `FieldValueForbidden`.
    pub reason: &'static str,
    /// Everything after `<field>: `.
    pub detail: String,
}

impl FieldError {
    fn required(field: impl Into<String>) -> Self {
        Self { field: field.into(), reason: "FieldValueRequired", detail: "Required value".into() }
    }

    fn invalid(field: impl Into<String>, value: &str, why: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueInvalid",
            detail: format!("Invalid value: {value}: {why}"),
        }
    }

    fn unsupported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        Self {
            field: field.into(),
            reason: "FieldValueNotSupported",
            detail: format!(
                "Unsupported value: \"{value}\": supported values: {}",
                list.join(", ")
            ),
        }
    }

    fn forbidden(field: impl Into<String>, why: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueForbidden",
            detail: format!("Forbidden: {why}"),
        }
    }

    fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            field: field.into(),
            reason: "FieldValueDuplicate",
            detail: format!("Duplicate value: \"{value}\""),
        }
    }
}

/// The rules an update must follow beside [`validate`]'s (fields that may be set once).
pub fn validate_update(group: &str, kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if (group, kind) == ("", "Node") {
        // A node's pod range is set once (upstream's ValidateNodeUpdate).
        for field in ["podCIDR", "podCIDRs"] {
            let before = old.pointer(&format!("/spec/{field}"));
            let unset = |v: Option<&Value>| {
                v.is_none_or(|v| {
                    v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty)
                })
            };
            if !unset(before) && before != new.pointer(&format!("/spec/{field}")) {
                errors.push(FieldError::forbidden(
                    format!("spec.{field}"),
                    "node updates may not change podCIDR except from \"\" to valid",
                ));
            }
        }
    }
    errors
}

/// The errors of a new or updated object of `group`/`kind` (after defaulting).
pub fn validate(group: &str, kind: &str, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = object.get("spec") {
                pod_spec(spec, "spec", &mut errors);
            } else {
                errors.push(FieldError::required("spec.containers"));
            }
        }
        ("", "PodTemplate") => {
            if let Some(spec) = object.pointer("/template/spec") {
                pod_spec(spec, "template.spec", &mut errors);
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            workload(object, kind != "DaemonSet", &mut errors);
        }
        ("", "ReplicationController") => replication_controller(object, &mut errors),
        ("batch", "Job") => {
            if let Some(spec) = object.pointer("/spec/template/spec") {
                pod_spec(spec, "spec.template.spec", &mut errors);
                let policy = spec.get("restartPolicy").and_then(Value::as_str).unwrap_or_default();
                if !matches!(policy, "OnFailure" | "Never") {
                    errors.push(FieldError::unsupported(
                        "spec.template.spec.restartPolicy",
                        policy,
                        &["OnFailure", "Never"],
                    ));
                }
            }
        }
        ("", "Service") => service(object, &mut errors),
        _ => {}
    }
    errors
}

fn int(value: &Value) -> Option<i64> {
    value.as_i64()
}

fn pod_spec(spec: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => errors.push(FieldError::required(format!("{path}.containers"))),
        Some(list) if list.is_empty() => {
            errors.push(FieldError::required(format!("{path}.containers")));
        }
        Some(_) => {}
    }
    let mut names = HashSet::new();
    for (list, field) in [("initContainers", "initContainers"), ("containers", "containers")] {
        for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let at = format!("{path}.{field}[{i}]");
            match c.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                None => errors.push(FieldError::required(format!("{at}.name"))),
                Some(name) => {
                    let problems = crate::names::is_dns1123_label(name);
                    if !problems.is_empty() {
                        errors.push(FieldError::invalid(
                            format!("{at}.name"),
                            &format!("\"{name}\""),
                            &problems.join(", "),
                        ));
                    } else if !names.insert(name.to_owned()) {
                        errors.push(FieldError::duplicate(format!("{at}.name"), name));
                    }
                }
            }
            if c.get("image").and_then(Value::as_str).is_none_or(|i| i.trim().is_empty()) {
                errors.push(FieldError::required(format!("{at}.image")));
            }
            for (j, port) in
                c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                let p = port.get("containerPort").and_then(int).unwrap_or(0);
                if !(1..=65535).contains(&p) {
                    errors.push(FieldError::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        &p.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !matches!(policy, "Always" | "OnFailure" | "Never")
    {
        errors.push(FieldError::unsupported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(policy) = spec.get("dnsPolicy").and_then(Value::as_str)
        && !matches!(policy, "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None")
    {
        errors.push(FieldError::unsupported(
            format!("{path}.dnsPolicy"),
            policy,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ));
    }
}

/// Go's `%#v` of a `map[string]string`, as upstream prints template labels.
fn go_map(labels: Option<&serde_json::Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = labels
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("\"{k}\":\"{}\"", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

fn selector_mismatch(labels: Option<&serde_json::Map<String, Value>>) -> FieldError {
    FieldError::invalid(
        "spec.template.metadata.labels",
        &go_map(labels),
        "`selector` does not match template `labels`",
    )
}

fn replicas(object: &Value, errors: &mut Vec<FieldError>) {
    if let Some(n) = object.pointer("/spec/replicas").and_then(int)
        && n < 0
    {
        errors.push(FieldError::invalid(
            "spec.replicas",
            &n.to_string(),
            "must be greater than or equal to 0",
        ));
    }
}

fn workload(object: &Value, has_replicas: bool, errors: &mut Vec<FieldError>) {
    if has_replicas {
        replicas(object, errors);
    }
    let selector = object.pointer("/spec/selector");
    let empty = selector.is_none_or(|s| {
        s.is_null()
            || s.as_object().is_some_and(|m| {
                m.values().all(|v| {
                    v.is_null()
                        || v == &Value::Object(Default::default())
                        || v == &Value::Array(vec![])
                })
            })
    });
    let labels = object.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    if empty {
        errors.push(FieldError::required("spec.selector"));
    }
    match selector.map(Selector::from_label_selector) {
        Some(Ok(s)) if !empty => {
            let matches = labels.is_some_and(|l| s.matches(l));
            if !matches {
                errors.push(selector_mismatch(labels));
            }
        }
        Some(Err(e)) => errors.push(FieldError::invalid("spec.selector", "", &e.to_string())),
        _ => {
            if empty {
                errors.push(selector_mismatch(labels));
            }
        }
    }
    if let Some(spec) = object.pointer("/spec/template/spec") {
        pod_spec(spec, "spec.template.spec", errors);
        let policy = spec.get("restartPolicy").and_then(Value::as_str).unwrap_or("Always");
        if policy != "Always" {
            errors.push(FieldError::unsupported(
                "spec.template.spec.restartPolicy",
                policy,
                &["Always"],
            ));
        }
    }
}

fn replication_controller(object: &Value, errors: &mut Vec<FieldError>) {
    replicas(object, errors);
    let selector = object.pointer("/spec/selector").and_then(Value::as_object);
    let labels = object.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    match selector {
        None => errors.push(FieldError::required("spec.selector")),
        Some(s) if s.is_empty() => errors.push(FieldError::required("spec.selector")),
        Some(s) => {
            if !Selector::from_labels(s).matches(labels.unwrap_or(&serde_json::Map::new())) {
                errors.push(selector_mismatch(labels));
            }
        }
    }
    if let Some(spec) = object.pointer("/spec/template/spec") {
        pod_spec(spec, "spec.template.spec", errors);
    }
}

fn service(object: &Value, errors: &mut Vec<FieldError>) {
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let kind = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP");
    if !matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errors.push(FieldError::unsupported(
            "spec.type",
            kind,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get("ports").and_then(Value::as_array);
    if kind != "ExternalName" && !headless && ports.is_none_or(Vec::is_empty) {
        errors.push(FieldError::required("spec.ports"));
    }
    let many = ports.is_some_and(|p| p.len() > 1);
    let mut names = HashSet::new();
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let at = format!("spec.ports[{i}]");
        let p = port.get("port").and_then(int).unwrap_or(0);
        if !(1..=65535).contains(&p) {
            errors.push(FieldError::invalid(
                format!("{at}.port"),
                &p.to_string(),
                "must be between 1 and 65535, inclusive",
            ));
        }
        let name = port.get("name").and_then(Value::as_str).unwrap_or_default();
        if many && name.is_empty() {
            errors.push(FieldError::required(format!("{at}.name")));
        } else if !name.is_empty() && !names.insert(name.to_owned()) {
            errors.push(FieldError::duplicate(format!("{at}.name"), name));
        }
        if let Some(protocol) = port.get("protocol").and_then(Value::as_str)
            && !matches!(protocol, "TCP" | "UDP" | "SCTP")
        {
            errors.push(FieldError::unsupported(
                format!("{at}.protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(group: &str, kind: &str, object: Value) -> Vec<String> {
        validate(group, kind, &object)
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn pods_need_containers_with_names_and_images() {
        assert_eq!(messages("", "Pod", json!({"spec": {}})), ["spec.containers: Required value"]);
        let pod = json!({"spec": {
            "restartPolicy": "Sometimes",
            "containers": [{"name": "a", "image": "x"}, {"name": "a", "image": ""}, {"image": "y", "ports": [{"containerPort": 0}]}],
        }});
        assert_eq!(
            messages("", "Pod", pod),
            [
                "spec.containers[1].name: Duplicate value: \"a\"",
                "spec.containers[1].image: Required value",
                "spec.containers[2].name: Required value",
                "spec.containers[2].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn workloads_need_a_selector_that_matches_their_template() {
        let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        assert!(
            messages(
                "apps",
                "Deployment",
                json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}})
            )
            .is_empty()
        );
        assert_eq!(
            messages(
                "apps",
                "Deployment",
                json!({"spec": {"replicas": -1, "selector": {"matchLabels": {"app": "api"}}, "template": template}})
            ),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
            ]
        );
        assert_eq!(
            messages("apps", "ReplicaSet", json!({"spec": {"template": template}}))[0],
            "spec.selector: Required value"
        );
    }

    #[test]
    fn services_need_ports_unless_headless_or_external() {
        assert_eq!(messages("", "Service", json!({"spec": {}})), ["spec.ports: Required value"]);
        assert!(messages("", "Service", json!({"spec": {"clusterIP": "None"}})).is_empty());
        assert!(
            messages(
                "",
                "Service",
                json!({"spec": {"type": "ExternalName", "externalName": "x.example"}})
            )
            .is_empty()
        );
        assert_eq!(
            messages(
                "",
                "Service",
                json!({"spec": {"ports": [{"port": 80}, {"port": 70000, "name": "b"}]}})
            ),
            [
                "spec.ports[0].name: Required value",
                "spec.ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
            ]
        );
    }

    #[test]
    fn a_node_pod_range_is_set_once() {
        let node = |cidr: Option<&str>| match cidr {
            Some(c) => serde_json::json!({"spec": {"podCIDR": c, "podCIDRs": [c]}}),
            None => serde_json::json!({"spec": {}}),
        };
        assert!(validate_update("", "Node", &node(None), &node(Some("10.42.0.0/24"))).is_empty());
        assert!(
            validate_update("", "Node", &node(Some("10.42.0.0/24")), &node(Some("10.42.0.0/24")))
                .is_empty()
        );
        let errors =
            validate_update("", "Node", &node(Some("10.42.0.0/24")), &node(Some("10.42.1.0/24")));
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].field, "spec.podCIDR");
        assert_eq!(
            errors[0].detail,
            "Forbidden: node updates may not change podCIDR except from \"\" to valid"
        );
    }
}
