//! A container's environment, as upstream's kubelet makes it: `envFrom` (configMaps, secrets,
//! with prefixes), then `env` (values with `$(VAR)` expansion, configMapKeyRef, secretKeyRef,
//! the downward API's fieldRef and resourceFieldRef), then — with `enableServiceLinks` — the
//! variables of the namespace's Services (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT` and
//! the docker-link forms). Values are read when the container starts and never change after
//! (unlike volumes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, ResourceFieldSelector, Secret, Service,
};
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

/// What a pod's fieldRef can read (upstream's list), given the pod's addresses.
pub fn pod_field(pod: &Pod, path: &str, host_ip: &str) -> Result<String, String> {
    pod_field_with_ips(pod, path, host_ip, &[])
}

/// [`pod_field`] with the pod's IPs known to the kubelet (its status may lag).
pub fn pod_field_with_ips(
    pod: &Pod,
    path: &str,
    host_ip: &str,
    pod_ips: &[String],
) -> Result<String, String> {
    let status_ips = || -> Vec<String> {
        if !pod_ips.is_empty() {
            return pod_ips.to_vec();
        }
        pod.status.iter().flat_map(|s| s.pod_ips.iter().flatten()).map(|ip| ip.ip.clone()).collect()
    };
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']")?;
        Some(rest.to_owned())
    };
    let format_map = |map: &BTreeMap<String, String>| {
        map.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
    };
    Ok(match path {
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => pod.namespace().unwrap_or_default(),
        "metadata.uid" => pod.uid().unwrap_or_default(),
        "metadata.labels" => format_map(pod.labels()),
        "metadata.annotations" => format_map(pod.annotations()),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => {
            pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default()
        }
        "status.hostIP" => host_ip.to_owned(),
        "status.hostIPs" => host_ip.to_owned(),
        "status.podIP" => status_ips().first().cloned().unwrap_or_default(),
        "status.podIPs" => status_ips().join(","),
        _ => {
            if let Some(key) = subscript("metadata.labels") {
                pod.labels().get(&key).cloned().unwrap_or_default()
            } else if let Some(key) = subscript("metadata.annotations") {
                pod.annotations().get(&key).cloned().unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

/// A resourceFieldRef: the container's limit or request in `divisor` units, rounded up
/// (limits left unset read as the request; the node's allocatable is not known here and
/// reads as 0).
pub fn resource_field(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    container: Option<&Container>,
) -> Result<String, String> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name),
        None => container,
    }
    .ok_or_else(|| "resourceFieldRef names no container".to_owned())?;
    let (section, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource: {}", selector.resource))?;
    let resources = container.resources.as_ref();
    let pick = |list: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        list.and_then(|l| l.get(resource)).and_then(|q| krust_api::quantity::parse(&q.0).ok())
    };
    let requests = pick(resources.and_then(|r| r.requests.as_ref()));
    let limits = pick(resources.and_then(|r| r.limits.as_ref()));
    let value = match section {
        "limits" => limits.or(requests),
        "requests" => requests.or(if resource == "memory" { None } else { limits }),
        _ => return Err(format!("unsupported resource: {}", selector.resource)),
    };
    let divisor = selector
        .divisor
        .as_ref()
        .and_then(|q| krust_api::quantity::parse(&q.0).ok())
        .filter(|d| !d.is_zero());
    let milli = value.map_or(0, |v| v.milli_exact());
    let divisor_milli = divisor.map_or(1000, |d| d.milli_exact());
    // Round up, as upstream's ExtractResourceValueByContainer does.
    let units = (milli + divisor_milli - 1) / divisor_milli.max(1);
    Ok(units.max(if milli > 0 { 1 } else { 0 }).to_string())
}

/// Expands `$(VAR)` references to variables defined so far; `$$` escapes; unknown
/// references stay as written (upstream's `expansion.Expand`).
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The variables a Service gives the containers of its namespace.
pub fn service_variables(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = &service.spec else { return Vec::new() };
    let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else {
        return Vec::new();
    };
    let name = service.name_any().to_uppercase().replace('-', "_");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let mut vars = vec![(format!("{name}_SERVICE_HOST"), ip.to_owned())];
    let Some(first) = ports.first() else { return vars };
    vars.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
    for p in ports {
        if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((
                format!("{name}_SERVICE_PORT_{}", port_name.to_uppercase().replace('-', "_")),
                p.port.to_string(),
            ));
        }
    }
    let url = |p: &k8s_openapi::api::core::v1::ServicePort| {
        let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
        (proto.clone(), format!("{proto}://{host}:{}", p.port))
    };
    vars.push((format!("{name}_PORT"), url(first).1));
    for p in ports {
        let (proto, address) = url(p);
        let prefix = format!("{name}_PORT_{}_{}", p.port, proto.to_uppercase());
        vars.push((prefix.clone(), address));
        vars.push((format!("{prefix}_PROTO"), proto));
        vars.push((format!("{prefix}_PORT"), p.port.to_string()));
        vars.push((format!("{prefix}_ADDR"), ip.to_owned()));
    }
    vars
}

/// The container's environment, in order.
pub async fn resolve(
    client: &kube::Client,
    pod: &Pod,
    container: &Container,
    host_ip: &str,
    pod_ips: &[String],
    service_links: bool,
) -> Result<Vec<(String, String)>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let set =
        |order: &mut Vec<String>, vars: &mut BTreeMap<String, String>, k: String, v: String| {
            if vars.insert(k.clone(), v).is_none() {
                order.push(k);
            }
        };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(cm) = &source.config_map_ref {
            match config_maps.get_opt(&cm.name).await.map_err(|e| e.to_string())? {
                Some(found) => {
                    for (k, v) in found.data.unwrap_or_default() {
                        set(&mut order, &mut vars, format!("{prefix}{k}"), v);
                    }
                }
                None if cm.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", cm.name)),
            }
        }
        if let Some(secret) = &source.secret_ref {
            match secrets.get_opt(&secret.name).await.map_err(|e| e.to_string())? {
                Some(found) => {
                    for (k, v) in found.data.unwrap_or_default() {
                        set(
                            &mut order,
                            &mut vars,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if secret.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", secret.name)),
            }
        }
    }
    // Service variables are visible to `$(VAR)` expansion but defined last.
    let mut services: Vec<(String, String)> = Vec::new();
    if service_links {
        let api: Api<Service> = Api::namespaced(client.clone(), &namespace);
        let mut list = api.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
        if namespace != "default" {
            let default: Api<Service> = Api::namespaced(client.clone(), "default");
            if let Ok(Some(kubernetes)) = default.get_opt("kubernetes").await {
                list.push(kubernetes);
            }
        }
        list.sort_by_key(kube::ResourceExt::name_any);
        services = list.iter().flat_map(service_variables).collect();
    }
    let mut scope: BTreeMap<String, String> = services.iter().cloned().collect();
    scope.extend(vars.clone());
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &scope)
        } else if let Some(from) = &e.value_from {
            if let Some(key) = &from.config_map_key_ref {
                match config_maps.get_opt(&key.name).await.map_err(|e| e.to_string())? {
                    Some(cm) => match cm.data.and_then(|d| d.get(&key.key).cloned()) {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                key.key, key.name
                            ));
                        }
                    },
                    None if key.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", key.name)),
                }
            } else if let Some(key) = &from.secret_key_ref {
                match secrets.get_opt(&key.name).await.map_err(|e| e.to_string())? {
                    Some(s) => match s.data.and_then(|d| d.get(&key.key).cloned()) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                key.key, key.name
                            ));
                        }
                    },
                    None if key.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", key.name)),
                }
            } else if let Some(field) = &from.field_ref {
                pod_field_with_ips(pod, &field.field_path, host_ip, pod_ips)?
            } else if let Some(resource) = &from.resource_field_ref {
                resource_field(pod, resource, Some(container))?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        scope.insert(e.name.clone(), value.clone());
        set(&mut order, &mut vars, e.name.clone(), value);
    }
    for (k, v) in services {
        if !vars.contains_key(&k) {
            set(&mut order, &mut vars, k, v);
        }
    }
    Ok(order.into_iter().filter_map(|k| vars.get(&k).map(|v| (k, v.clone()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_upstream() {
        let vars: BTreeMap<String, String> =
            [("A".to_owned(), "x".to_owned()), ("B".to_owned(), "y".to_owned())].into();
        assert_eq!(expand("$(A)-$(B)", &vars), "x-y");
        assert_eq!(expand("$(C) stays", &vars), "$(C) stays");
        assert_eq!(expand("$$(A) escaped", &vars), "$(A) escaped");
        assert_eq!(expand("a $ b $(A", &vars), "a $ b $(A");
    }

    #[test]
    fn services_give_host_port_and_docker_link_variables() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "my-svc", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.10", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }))
        .expect("service");
        let vars: BTreeMap<String, String> = service_variables(&service).into_iter().collect();
        assert_eq!(vars["MY_SVC_SERVICE_HOST"], "10.43.0.10");
        assert_eq!(vars["MY_SVC_SERVICE_PORT"], "80");
        assert_eq!(vars["MY_SVC_SERVICE_PORT_HTTP"], "80");
        assert_eq!(vars["MY_SVC_PORT"], "tcp://10.43.0.10:80");
        assert_eq!(vars["MY_SVC_PORT_53_UDP"], "udp://10.43.0.10:53");
        assert_eq!(vars["MY_SVC_PORT_53_UDP_PROTO"], "udp");
        assert_eq!(vars["MY_SVC_PORT_80_TCP_ADDR"], "10.43.0.10");
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }))
        .expect("service");
        assert!(service_variables(&headless).is_empty());
    }

    #[test]
    fn downward_fields_and_resources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {
                "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1500m"}}}]}
        }))
        .expect("pod");
        let ips = ["10.42.0.5".to_owned()];
        let field = |p: &str| pod_field_with_ips(&pod, p, "192.0.2.1", &ips).expect("field");
        assert_eq!(field("metadata.name"), "p");
        assert_eq!(field("metadata.labels['app']"), "web");
        assert_eq!(field("metadata.labels"), "app=\"web\"");
        assert_eq!(field("status.podIP"), "10.42.0.5");
        assert_eq!(field("status.hostIP"), "192.0.2.1");
        assert_eq!(field("spec.nodeName"), "n1");
        assert!(pod_field(&pod, "spec.bogus", "").is_err());
        let c = pod.spec.as_ref().map(|s| &s.containers[0]);
        let sel = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            resource: resource.into(),
            divisor: divisor
                .map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
            container_name: None,
        };
        assert_eq!(resource_field(&pod, &sel("limits.cpu", None), c).expect("cpu"), "2");
        assert_eq!(resource_field(&pod, &sel("limits.cpu", Some("1m")), c).expect("cpu"), "1500");
        assert_eq!(resource_field(&pod, &sel("requests.cpu", Some("1m")), c).expect("cpu"), "250");
        assert_eq!(
            resource_field(&pod, &sel("requests.memory", Some("1Mi")), c).expect("mem"),
            "64"
        );
    }
}
