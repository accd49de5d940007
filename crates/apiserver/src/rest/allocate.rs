//! Service ClusterIP and NodePort allocation. Each allocated IP is an `IPAddress` object
//! (networking.k8s.io/v1, named by the IP, pointing at its Service) and each node port a claim
//! key; both are written in the same store transaction as the Service, so two concurrent
//! creates can never hold the same IP or port, and deleting the Service releases them.

use std::net::Ipv4Addr;

use bytes::Bytes;
use krust_api::catalog::Catalog;
use serde_json::{Value, json};

use super::object::{self, meta_str, object_at};
use super::{ApiResult, Ctx};
use crate::status::Status;

/// Upstream's default service CIDR and NodePort range.
pub const DEFAULT_SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
const NODE_PORT_PREFIX: &str = "/registry/krust/servicenodeports/";

/// One key the Service's create must claim.
pub struct Claim {
    pub key: String,
    pub value: Bytes,
    /// Chosen by the client (a collision is its error) rather than by us (we pick again).
    pub requested: bool,
    pub what: String,
}

fn is_service(ctx: &Ctx<'_>) -> bool {
    ctx.resource.group.is_empty() && ctx.resource.kind == "Service"
}

fn in_cidr(ip: Ipv4Addr, (base, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
    u32::from(ip) & mask == u32::from(base) & mask
}

fn random_ip((base, prefix): (Ipv4Addr, u8)) -> Ipv4Addr {
    let size = 1u64 << (32 - u32::from(prefix));
    // Skip the network address, the first address (the `kubernetes` Service's) and broadcast.
    let offset = fastrand::u64(2..size.saturating_sub(1).max(3));
    Ipv4Addr::from(u32::from(base).wrapping_add(offset as u32))
}

fn ip_key(ip: &str) -> String {
    match Catalog::builtin_lookup("networking.k8s.io", "v1", "ipaddresses") {
        Some(r) => r.store_key(None, ip),
        None => format!("/registry/networking.k8s.io/ipaddresses/{ip}"),
    }
}

fn ip_claim(ip: &str, namespace: &str, name: &str, requested: bool) -> Claim {
    let address = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {
            "name": ip,
            "uid": object::new_uid(),
            "creationTimestamp": object::now(),
            "labels": {
                "ipaddress.kubernetes.io/ip-family": "IPv4",
                "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
            },
        },
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": namespace, "name": name}},
    });
    Claim {
        key: ip_key(ip),
        value: Bytes::from(address.to_string()),
        requested,
        what: format!("IP {ip}"),
    }
}

fn invalid_ip(ctx: &Ctx<'_>, name: &str, ip: &str, why: &str) -> Status {
    ctx.invalid(
        name,
        &[(
            "spec.clusterIPs".into(),
            format!("Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"),
        )],
    )
}

/// Fills `spec.clusterIP(s)`, IP family fields and node ports of a new Service, returning the
/// claims to write with it. Other kinds claim nothing.
pub fn plan_create(ctx: &Ctx<'_>, object: &mut Value) -> ApiResult<Vec<Claim>> {
    if !is_service(ctx) {
        return Ok(Vec::new());
    }
    let name = meta_str(object, "name").unwrap_or_default().to_owned();
    let namespace = meta_str(object, "namespace").unwrap_or_default().to_owned();
    let Some(spec) = object_at(object, &["spec"]) else { return Ok(Vec::new()) };
    let service_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_owned();
    let mut claims = Vec::new();
    if service_type != "ExternalName" {
        claims.extend(cluster_ip(ctx, spec, &name, &namespace)?);
    }
    if has_node_ports(&service_type) {
        claims.extend(node_ports(ctx, spec, &name, &namespace, &[])?);
    }
    Ok(claims)
}

/// What an update changes in what a Service holds.
#[derive(Default)]
pub struct Reallocation {
    /// Keys to claim with the write.
    pub claims: Vec<Claim>,
    /// Keys to release with the write.
    pub releases: Vec<String>,
}

/// Carries a Service's allocations over an update as upstream does: a cluster IP or node port
/// the new object leaves out is kept, a changed cluster IP is refused, a change of type
/// allocates (to NodePort/LoadBalancer, from ExternalName) or releases (to ClusterIP, to
/// ExternalName) what the new type needs.
pub fn plan_update(ctx: &Ctx<'_>, old: &Value, new: &mut Value) -> ApiResult<Reallocation> {
    let mut plan = Reallocation::default();
    if !is_service(ctx) || ctx.is_status() {
        return Ok(plan);
    }
    let name = meta_str(new, "name").unwrap_or_default().to_owned();
    let namespace = meta_str(new, "namespace").unwrap_or_default().to_owned();
    let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
    let type_of = |spec: &Value| -> String {
        spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_owned()
    };
    let old_type = type_of(&old_spec);
    let old_ips: Vec<String> = old_spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| ips.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let old_ports: Vec<(u64, String, u64)> = old_spec
        .get("ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    let node_port = p.get("nodePort").and_then(Value::as_u64)?;
                    Some((port_number(p), protocol(p), node_port))
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(spec) = object_at(new, &["spec"]) else { return Ok(plan) };
    let new_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_owned();

    // Cluster IPs.
    let requested = requested_ip(spec);
    if new_type == "ExternalName" {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        plan.releases.extend(old_ips.iter().filter(|ip| *ip != "None").map(|ip| ip_key(ip)));
    } else if old_ips.is_empty() {
        plan.claims.extend(cluster_ip(ctx, spec, &name, &namespace)?);
    } else {
        match requested.as_deref() {
            None => {
                spec.insert("clusterIP".into(), json!(old_ips[0]));
                spec.insert("clusterIPs".into(), json!(old_ips));
            }
            Some(ip) if ip == old_ips[0] => {
                spec.insert("clusterIPs".into(), json!(old_ips));
            }
            Some(ip) => {
                return Err(ctx.invalid(
                    &name,
                    &[(
                        "spec.clusterIPs[0]".into(),
                        format!("Invalid value: \"{ip}\": may not change once set"),
                    )],
                ));
            }
        }
    }

    // Node ports.
    let held: Vec<u64> = old_ports.iter().map(|(_, _, n)| *n).collect();
    if has_node_ports(&new_type) {
        // A port the client leaves without a node port keeps the one it had.
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for port in ports.iter_mut() {
                let unset = port.get("nodePort").and_then(Value::as_u64).is_none_or(|n| n == 0);
                let previous = old_ports.iter().find(|(number, proto, _)| {
                    *number == port_number(port) && *proto == protocol(port)
                });
                if let (true, Some((_, _, node_port)), Some(map)) =
                    (unset, previous, port.as_object_mut())
                {
                    map.insert("nodePort".into(), json!(node_port));
                }
            }
        }
        plan.claims.extend(node_ports(ctx, spec, &name, &namespace, &held)?);
    } else if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
    let kept: Vec<u64> = spec
        .get("ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports.iter().filter_map(|p| p.get("nodePort").and_then(Value::as_u64)).collect()
        })
        .unwrap_or_default();
    plan.releases.extend(
        held.iter().filter(|n| !kept.contains(n)).map(|n| format!("{NODE_PORT_PREFIX}{n}")),
    );
    if !has_node_ports(&new_type) && has_node_ports(&old_type) {
        spec.remove("externalTrafficPolicy");
    }
    Ok(plan)
}

fn has_node_ports(service_type: &str) -> bool {
    matches!(service_type, "NodePort" | "LoadBalancer")
}

fn port_number(port: &Value) -> u64 {
    port.get("port").and_then(Value::as_u64).unwrap_or(0)
}

fn protocol(port: &Value) -> String {
    port.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_owned()
}

fn requested_ip(spec: &serde_json::Map<String, Value>) -> Option<String> {
    spec.get("clusterIP")
        .and_then(Value::as_str)
        .or_else(|| spec.get("clusterIPs").and_then(|c| c.get(0)).and_then(Value::as_str))
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned)
}

/// Fills the cluster IP (the client's, or a free one) and the IP family fields.
fn cluster_ip(
    ctx: &Ctx<'_>,
    spec: &mut serde_json::Map<String, Value>,
    name: &str,
    namespace: &str,
) -> ApiResult<Option<Claim>> {
    let cidr = ctx.state.service_cidr;
    let claim = match requested_ip(spec).as_deref() {
        Some("None") => {
            spec.insert("clusterIP".into(), json!("None"));
            spec.insert("clusterIPs".into(), json!(["None"]));
            None
        }
        Some(ip) => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                ctx.invalid(name, &[("spec.clusterIPs[0]".into(), format!("Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))])
            })?;
            if !in_cidr(parsed, cidr) {
                let why = format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                    cidr.0, cidr.1
                );
                return Err(invalid_ip(ctx, name, ip, &why));
            }
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
            Some(ip_claim(ip, namespace, name, true))
        }
        None => {
            let ip = random_ip(cidr).to_string();
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
            Some(ip_claim(&ip, namespace, name, false))
        }
    };
    spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
    spec.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
    spec.entry("internalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    Ok(claim)
}

/// Fills every port's node port (the client's, or a free one) and claims those not in `held`.
fn node_ports(
    ctx: &Ctx<'_>,
    spec: &mut serde_json::Map<String, Value>,
    name: &str,
    namespace: &str,
    held: &[u64],
) -> ApiResult<Vec<Claim>> {
    spec.entry("externalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    let mut claims = Vec::new();
    let Some(Value::Array(ports)) = spec.get_mut("ports") else { return Ok(claims) };
    for (i, port) in ports.iter_mut().enumerate() {
        let Some(port) = port.as_object_mut() else { continue };
        let (node_port, requested) = match port.get("nodePort").and_then(Value::as_u64) {
            Some(p) if p > 0 => {
                let p = u16::try_from(p).ok().filter(|p| NODE_PORTS.contains(p)).ok_or_else(|| {
                    ctx.invalid(name, &[(format!("spec.ports[{i}].nodePort"), format!("Invalid value: {p}: provided port is not in the valid range. The range of valid ports is 30000-32767"))])
                })?;
                (p, true)
            }
            _ => (fastrand::u16(NODE_PORTS), false),
        };
        port.insert("nodePort".into(), json!(node_port));
        if held.contains(&u64::from(node_port)) {
            continue;
        }
        claims.push(Claim {
            key: format!("{NODE_PORT_PREFIX}{node_port}"),
            value: Bytes::from(format!("{namespace}/{name}")),
            requested,
            what: format!("port {node_port}"),
        });
    }
    Ok(claims)
}

/// The `kubernetes` Service in `default`: the first IP of the range, port 443 to the API
/// server, and its Endpoints. Created at start if missing (upstream's bootstrap controller).
pub async fn ensure_kubernetes_service(
    store: &dyn krust_store::Store,
    cidr: (Ipv4Addr, u8),
    address: std::net::IpAddr,
    port: u16,
) -> Result<(), krust_store::Error> {
    use krust_store::{Compare, TxnOp, TxnRequest};
    let ip = Ipv4Addr::from(u32::from(cidr.0).wrapping_add(1)).to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": "kubernetes", "namespace": "default", "uid": object::new_uid(),
            "creationTimestamp": object::now(),
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
        "status": {"loadBalancer": {}},
    });
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes", "namespace": "default", "uid": object::new_uid(),
            "creationTimestamp": object::now(),
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [{"addresses": [{"ip": address.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let address_object = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
        "metadata": {"name": ip, "uid": object::new_uid(), "creationTimestamp": object::now(),
            "labels": {"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
        "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}},
    });
    let svc_key = "/registry/services/default/kubernetes".to_owned();
    let ip_key = format!("/registry/networking.k8s.io/ipaddresses/{ip}");
    let ep_key = "/registry/endpoints/default/kubernetes".to_owned();
    let txn = TxnRequest::new()
        .when([Compare::absent(svc_key.clone()), Compare::absent(ip_key.clone())])
        .and_then([
            TxnOp::put(svc_key, Bytes::from(service.to_string())),
            TxnOp::put(ip_key, Bytes::from(address_object.to_string())),
        ]);
    store.txn(txn).await?;
    // The endpoints follow the server's current address on every start.
    store
        .txn(TxnRequest::new().and_then([TxnOp::put(ep_key, Bytes::from(endpoints.to_string()))]))
        .await?;
    Ok(())
}

/// The error for a claim someone else holds.
pub fn taken(ctx: &Ctx<'_>, name: &str, claim: &Claim) -> Status {
    if claim.what.starts_with("IP ") {
        let ip = claim.what.trim_start_matches("IP ");
        invalid_ip(ctx, name, ip, "provided IP is already allocated")
    } else {
        let port = claim.what.trim_start_matches("port ");
        ctx.invalid(
            name,
            &[(
                "spec.ports[0].nodePort".into(),
                format!("Invalid value: {port}: provided port is already allocated"),
            )],
        )
    }
}

/// The keys a Service holds, released with it.
pub fn held_keys(ctx: &Ctx<'_>, object: &Value) -> Vec<String> {
    if !is_service(ctx) {
        return Vec::new();
    }
    let mut keys: Vec<String> = object
        .pointer("/spec/clusterIPs")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter().filter_map(Value::as_str).filter(|ip| *ip != "None").map(ip_key).collect()
        })
        .unwrap_or_default();
    if let Some(ports) = object.pointer("/spec/ports").and_then(Value::as_array) {
        keys.extend(
            ports
                .iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .map(|p| format!("{NODE_PORT_PREFIX}{p}")),
        );
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership_and_random_picks() {
        let cidr = DEFAULT_SERVICE_CIDR;
        assert!(in_cidr(Ipv4Addr::new(10, 96, 0, 1), cidr));
        assert!(in_cidr(Ipv4Addr::new(10, 111, 255, 254), cidr));
        assert!(!in_cidr(Ipv4Addr::new(10, 112, 0, 1), cidr));
        for _ in 0..1000 {
            let ip = random_ip(cidr);
            assert!(in_cidr(ip, cidr));
            assert_ne!(ip, Ipv4Addr::new(10, 96, 0, 0));
            assert_ne!(ip, Ipv4Addr::new(10, 96, 0, 1));
        }
    }
}
