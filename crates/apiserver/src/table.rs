//! `meta.k8s.io/v1` Tables: what kubectl prints for `get`. Every resource gets upstream's
//! default columns (Name, Created At → shown as AGE); kind-specific printers add columns.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::crd::PrinterColumn;

/// A client asks for a Table with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
pub fn wants_table(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
    })
}

/// The Table's apiVersion: the version the client asked for (v1 preferred).
pub fn table_version(accept: Option<&str>) -> &'static str {
    match accept {
        Some(a) if !a.contains("v=v1;") && !a.ends_with("v=v1") && a.contains("v=v1beta1") => {
            "meta.k8s.io/v1beta1"
        }
        _ => "meta.k8s.io/v1",
    }
}

/// One printed column: header, OpenAPI type, priority (1 = only with `-o wide`) and how to
/// read its cell from an object.
struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
}

const fn col(
    name: &'static str,
    kind: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
) -> Column {
    Column { name, kind, priority, cell }
}

fn name_cell(o: &Value) -> Value {
    o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)
}

fn age_cell(o: &Value) -> Value {
    let ts = o.pointer("/metadata/creationTimestamp").and_then(Value::as_str);
    Value::String(ts.map_or_else(|| "<unknown>".to_owned(), age))
}

fn str_at(o: &Value, pointer: &str) -> String {
    match o.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int_at(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn none_if_empty(s: String) -> Value {
    Value::String(if s.is_empty() { "<none>".into() } else { s })
}

fn count_of(o: &Value, pointer: &str) -> Value {
    let n = match o.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    json!(n)
}

fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else { return String::new() };
    let labels = selector.get("matchLabels").unwrap_or(selector);
    let mut parts: Vec<String> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "matchExpressions")
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                "In" => parts.push(format!("{key} in ({})", values.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
                "Exists" => parts.push(key.to_owned()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

fn containers_cell(o: &Value, pointer: &str, field: &str) -> Value {
    let names: Vec<&str> = o
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|c| c.get(field).and_then(Value::as_str)).collect())
        .unwrap_or_default();
    Value::String(names.join(","))
}

/// Upstream's pod STATUS column: the phase, refined by container states and deletion.
fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, "/status/phase");
    if let Some(r) = pod.pointer("/status/reason").and_then(Value::as_str) {
        reason = r.to_owned();
    }
    let init_total =
        pod.pointer("/spec/initContainers").and_then(Value::as_array).map_or(0, Vec::len);
    let mut initializing = false;
    if let Some(statuses) = pod.pointer("/status/initContainerStatuses").and_then(Value::as_array) {
        for (i, c) in statuses.iter().enumerate() {
            if let Some(t) = c.pointer("/state/terminated") {
                if t.get("exitCode").and_then(Value::as_i64) == Some(0) {
                    continue;
                }
                reason = match t.get("reason").and_then(Value::as_str) {
                    Some(r) if !r.is_empty() => format!("Init:{r}"),
                    _ => format!("Init:ExitCode:{}", int_at(t, "/exitCode")),
                };
            } else if let Some(r) = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty() && *r != "PodInitializing")
            {
                reason = format!("Init:{r}");
            } else {
                reason = format!("Init:{i}/{init_total}");
            }
            initializing = true;
            break;
        }
    }
    if !initializing {
        let mut has_running = false;
        if let Some(statuses) = pod.pointer("/status/containerStatuses").and_then(Value::as_array) {
            for c in statuses.iter().rev() {
                if let Some(r) = c
                    .pointer("/state/waiting/reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    reason = r.to_owned();
                } else if let Some(t) = c.pointer("/state/terminated") {
                    reason = match t.get("reason").and_then(Value::as_str) {
                        Some(r) if !r.is_empty() => r.to_owned(),
                        _ => match int_at(t, "/signal") {
                            0 => format!("ExitCode:{}", int_at(t, "/exitCode")),
                            sig => format!("Signal:{sig}"),
                        },
                    };
                } else if c.pointer("/state/running").is_some()
                    && c.get("ready").and_then(Value::as_bool) == Some(true)
                {
                    has_running = true;
                }
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if pod.pointer("/status/reason").and_then(Value::as_str) == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn pod_ready(pod: &Value) -> Value {
    let total = pod.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
    let ready = pod.pointer("/status/containerStatuses").and_then(Value::as_array).map_or(0, |s| {
        s.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count()
    });
    Value::String(format!("{ready}/{total}"))
}

fn pod_restarts(pod: &Value) -> Value {
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    let restarts: i64 = statuses.map_or(0, |s| s.iter().map(|c| int_at(c, "/restartCount")).sum());
    let last = statuses.and_then(|s| {
        s.iter()
            .filter_map(|c| c.pointer("/lastState/terminated/finishedAt").and_then(Value::as_str))
            .max()
            .map(str::to_owned)
    });
    match last {
        Some(ts) if restarts > 0 => Value::String(format!("{restarts} ({} ago)", age(&ts))),
        _ => json!(restarts),
    }
}

fn node_status(node: &Value) -> Value {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c.get("type").and_then(Value::as_str) == Some("Ready")));
    let mut status = match ready.and_then(|c| c.get("status").and_then(Value::as_str)) {
        Some("True") => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    Value::String(status)
}

fn node_roles(node: &Value) -> Value {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        Some(role.to_owned())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_owned)
                    } else {
                        None
                    }
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    none_if_empty(roles.join(","))
}

fn node_address(node: &Value, kind: &str) -> Value {
    let found = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|a| a.get("type").and_then(Value::as_str) == Some(kind)))
        .and_then(|a| a.get("address"))
        .and_then(Value::as_str);
    none_if_empty(found.unwrap_or_default().to_owned())
}

fn service_ports(svc: &Value) -> Value {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let port = int_at(p, "/port");
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                        _ => format!("{port}/{proto}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    none_if_empty(ports.join(","))
}

fn external_ip(svc: &Value) -> Value {
    let mut ips: Vec<String> = svc
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    match svc.pointer("/spec/type").and_then(Value::as_str) {
        Some("LoadBalancer") => {
            let ingress: Vec<String> = svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| {
                            i.get("ip").or_else(|| i.get("hostname")).and_then(Value::as_str)
                        })
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            ips.extend(ingress);
            Value::String(if ips.is_empty() { "<pending>".into() } else { ips.join(",") })
        }
        Some("ExternalName") => Value::String(str_at(svc, "/spec/externalName")),
        _ => none_if_empty(ips.join(",")),
    }
}

fn event_object(e: &Value) -> Value {
    let kind = str_at(e, "/involvedObject/kind").to_lowercase();
    Value::String(format!("{kind}/{}", str_at(e, "/involvedObject/name")))
}

fn event_last_seen(e: &Value) -> Value {
    let ts = ["/lastTimestamp", "/eventTime", "/metadata/creationTimestamp"].iter().find_map(|p| {
        e.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
    });
    Value::String(ts.map_or_else(|| "<unknown>".to_owned(), |t| age(&t)))
}

/// The `-o wide` columns of every workload with a pod template.
/// Upstream's `formatEndpoints`: `ip:port` of the ready addresses, three at most.
fn endpoints_cell(o: &Value) -> Value {
    let mut list = Vec::new();
    for subset in o.pointer("/subsets").and_then(Value::as_array).into_iter().flatten() {
        let addresses =
            subset.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default();
        let ports = subset.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
        for address in &addresses {
            let ip = address.get("ip").and_then(Value::as_str).unwrap_or_default();
            if ports.is_empty() {
                list.push(ip.to_owned());
            }
            for port in &ports {
                list.push(format!(
                    "{ip}:{}",
                    port.get("port").and_then(Value::as_i64).unwrap_or(0)
                ));
            }
        }
    }
    at_most_three(list, "<none>")
}

fn at_most_three(list: Vec<String>, empty: &str) -> Value {
    let shown = list.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    Value::String(match list.len() {
        0 => empty.to_owned(),
        n if n > 3 => format!("{shown} + {} more...", n - 3),
        _ => shown,
    })
}

fn pod_template_columns() -> [Column; 3] {
    [
        col("Containers", "string", 1, |o| {
            containers_cell(o, "/spec/template/spec/containers", "name")
        }),
        col("Images", "string", 1, |o| {
            containers_cell(o, "/spec/template/spec/containers", "image")
        }),
        col("Selector", "string", 1, |o| {
            none_if_empty(selector_string(o.pointer("/spec/selector")))
        }),
    ]
}

fn columns(group: &str, kind: &str) -> Vec<Column> {
    let name = col("Name", "string", 0, name_cell);
    let age = col("Age", "string", 0, age_cell);
    match (group, kind) {
        ("", "Namespace") => vec![
            name,
            col("Status", "string", 0, |o| Value::String(str_at(o, "/status/phase"))),
            age,
        ],
        ("", "ConfigMap") => vec![
            name,
            col("Data", "integer", 0, |o| {
                let n = o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
                    + o.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
                json!(n)
            }),
            age,
        ],
        ("", "Secret") => vec![
            name,
            col("Type", "string", 0, |o| Value::String(str_at(o, "/type"))),
            col("Data", "integer", 0, |o| count_of(o, "/data")),
            age,
        ],
        ("", "ServiceAccount") => {
            vec![name, col("Secrets", "integer", 0, |o| count_of(o, "/secrets")), age]
        }
        ("", "Pod") => vec![
            name,
            col("Ready", "string", 0, pod_ready),
            col("Status", "string", 0, |o| Value::String(pod_status(o))),
            col("Restarts", "string", 0, pod_restarts),
            age,
            col("IP", "string", 1, |o| none_if_empty(str_at(o, "/status/podIP"))),
            col("Node", "string", 1, |o| none_if_empty(str_at(o, "/spec/nodeName"))),
            col("Nominated Node", "string", 1, |o| {
                none_if_empty(str_at(o, "/status/nominatedNodeName"))
            }),
            col("Readiness Gates", "string", 1, |o| {
                let gates =
                    o.pointer("/spec/readinessGates").and_then(Value::as_array).map_or(0, Vec::len);
                if gates == 0 {
                    Value::String("<none>".into())
                } else {
                    Value::String(format!("0/{gates}"))
                }
            }),
        ],
        ("", "Node") => vec![
            name,
            col("Status", "string", 0, node_status),
            col("Roles", "string", 0, node_roles),
            age,
            col("Version", "string", 0, |o| {
                Value::String(str_at(o, "/status/nodeInfo/kubeletVersion"))
            }),
            col("Internal-IP", "string", 1, |o| node_address(o, "InternalIP")),
            col("External-IP", "string", 1, |o| node_address(o, "ExternalIP")),
            col("OS-Image", "string", 1, |o| Value::String(str_at(o, "/status/nodeInfo/osImage"))),
            col("Kernel-Version", "string", 1, |o| {
                Value::String(str_at(o, "/status/nodeInfo/kernelVersion"))
            }),
            col("Container-Runtime", "string", 1, |o| {
                Value::String(str_at(o, "/status/nodeInfo/containerRuntimeVersion"))
            }),
        ],
        ("", "Service") => vec![
            name,
            col("Type", "string", 0, |o| Value::String(str_at(o, "/spec/type"))),
            col("Cluster-IP", "string", 0, |o| none_if_empty(str_at(o, "/spec/clusterIP"))),
            col("External-IP", "string", 0, external_ip),
            col("Port(s)", "string", 0, service_ports),
            age,
            col("Selector", "string", 1, |o| {
                none_if_empty(selector_string(o.pointer("/spec/selector")))
            }),
        ],
        ("", "Endpoints") => vec![name, col("Endpoints", "string", 0, endpoints_cell), age],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            name,
            col("AddressType", "string", 0, |o| Value::String(str_at(o, "/addressType"))),
            col("Ports", "string", 0, |o| {
                let ports: Vec<String> = o
                    .pointer("/ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        p.get("port")
                            .and_then(Value::as_i64)
                            .map_or("<unset>".to_owned(), |n| n.to_string())
                    })
                    .collect();
                at_most_three(ports, "<unset>")
            }),
            col("Endpoints", "string", 0, |o| {
                let addresses: Vec<String> = o
                    .pointer("/endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|e| {
                        e.get("addresses").and_then(Value::as_array).cloned().unwrap_or_default()
                    })
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect();
                at_most_three(addresses, "<none>")
            }),
            age,
        ],
        ("", "ComponentStatus") => {
            // Upstream prints the first condition's state and its message or error.
            fn condition(o: &Value, field: &str) -> String {
                str_at(o, &format!("/conditions/0/{field}"))
            }
            vec![
                name,
                col("Status", "string", 0, |o| {
                    let healthy =
                        condition(o, "type") == "Healthy" && condition(o, "status") == "True";
                    json!(if healthy { "Healthy" } else { "Unhealthy" })
                }),
                col("Message", "string", 0, |o| json!(condition(o, "message"))),
                col("Error", "string", 0, |o| json!(condition(o, "error"))),
            ]
        }
        ("", "Event") => vec![
            col("Last Seen", "string", 0, event_last_seen),
            col("Type", "string", 0, |o| Value::String(str_at(o, "/type"))),
            col("Reason", "string", 0, |o| Value::String(str_at(o, "/reason"))),
            col("Object", "string", 0, event_object),
            col("Message", "string", 0, |o| Value::String(str_at(o, "/message").trim().to_owned())),
        ],
        ("apps" | "extensions", "Deployment") => vec![
            name,
            col("Ready", "string", 0, |o| {
                Value::String(format!(
                    "{}/{}",
                    int_at(o, "/status/readyReplicas"),
                    int_at(o, "/spec/replicas")
                ))
            }),
            col("Up-to-date", "integer", 0, |o| json!(int_at(o, "/status/updatedReplicas"))),
            col("Available", "integer", 0, |o| json!(int_at(o, "/status/availableReplicas"))),
            age,
        ]
        .into_iter()
        .chain(pod_template_columns())
        .collect(),
        ("apps", "ReplicaSet" | "StatefulSet") | ("", "ReplicationController") => vec![
            name,
            col("Desired", "integer", 0, |o| json!(int_at(o, "/spec/replicas"))),
            col("Current", "integer", 0, |o| json!(int_at(o, "/status/replicas"))),
            col("Ready", "integer", 0, |o| json!(int_at(o, "/status/readyReplicas"))),
            age,
        ]
        .into_iter()
        .chain(pod_template_columns())
        .collect(),
        _ => vec![name, age],
    }
}

fn column_definitions(columns: &[Column]) -> Value {
    Value::Array(
        columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind,
                    "format": if c.name == "Name" { "name" } else { "" },
                    "description": "",
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

fn row(columns: &[Column], object: &Value) -> Value {
    let metadata = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "cells": columns.iter().map(|c| (c.cell)(object)).collect::<Vec<_>>(),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        },
    })
}

/// A Table of `objects` of one kind with list metadata `list_meta` (resourceVersion,
/// continue, ...), with upstream's columns for that kind, or `Name` and the `custom` columns
/// of a custom resource.
pub fn table(
    group: &str,
    kind: &str,
    custom: Option<&[PrinterColumn]>,
    version: &str,
    objects: &[Value],
    list_meta: Map<String, Value>,
    with_columns: bool,
) -> Value {
    let (rows, definitions) = match custom {
        Some(custom) => {
            let rows = objects.iter().map(|o| custom_row(custom, o)).collect::<Vec<_>>();
            let name = column_definitions(&[col("Name", "string", 0, name_cell)]);
            let definitions = name
                .as_array()
                .into_iter()
                .flatten()
                .cloned()
                .chain(custom.iter().map(PrinterColumn::definition))
                .collect();
            (rows, Value::Array(definitions))
        }
        None => {
            let columns = columns(group, kind);
            let rows = objects.iter().map(|o| row(&columns, o)).collect::<Vec<_>>();
            (rows, column_definitions(&columns))
        }
    };
    let mut out = json!({
        "kind": "Table",
        "apiVersion": version,
        "metadata": list_meta,
        "rows": rows,
    });
    if with_columns && let Value::Object(map) = &mut out {
        map.insert("columnDefinitions".into(), definitions);
    }
    out
}

fn custom_row(custom: &[PrinterColumn], object: &Value) -> Value {
    let cells = std::iter::once(name_cell(object)).chain(custom.iter().map(|c| c.cell(object)));
    let mut row = row(&[], object);
    if let Some(map) = row.as_object_mut() {
        map.insert("cells".into(), Value::Array(cells.collect()));
    }
    row
}

/// Upstream's `HumanDuration`: how kubectl-style ages read (`45s`, `3m12s`, `5h`, `12d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 { format!("{years}y") } else { format!("{years}y{days}d") };
    }
    format!("{}y", hours / 24 / 365)
}

/// Age of an RFC 3339 timestamp relative to now, as `human_duration` prints it.
pub fn age(timestamp: &str) -> String {
    let parsed = OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) => human_duration((OffsetDateTime::now_utc() - t).whole_seconds()),
        Err(_) => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_kubectl_accept_headers() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(wants_table(Some(kubectl)));
        assert_eq!(table_version(Some(kubectl)), "meta.k8s.io/v1");
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(192), "3m12s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(5 * 3600), "5h");
        assert_eq!(human_duration(5 * 3600 + 60 * 7), "5h7m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(40 * 86400), "40d");
        assert_eq!(human_duration(3 * 365 * 86400 + 86400), "3y1d");
    }
}
