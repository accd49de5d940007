//! Legacy discovery (`/api`, `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`),
//! generated from the catalog. kubectl 1.27–1.35 and the Python client all work from it alone;
//! the aggregated form is optional for them.

use krust_api::catalog::{Catalog, Resource};
use serde_json::{Value, json};

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn api_group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> = catalog
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_json(g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(catalog: &Catalog, group: &str) -> Option<Value> {
    let (_, versions) = catalog.groups().into_iter().find(|(g, _)| *g == group && !g.is_empty())?;
    let mut value = group_json(group, &versions);
    if let Value::Object(map) = &mut value {
        map.insert("kind".into(), "APIGroup".into());
        map.insert("apiVersion".into(), "v1".into());
    }
    Some(value)
}

pub fn api_resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let resources = catalog.group_version(group, version);
    if resources.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in resources {
        out.push(resource_json(r));
        for sub in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": if sub.kind.is_empty() { r.kind } else { sub.kind },
                "verbs": sub.verbs,
            });
            if let Value::Object(map) = &mut entry {
                if let Some(g) = sub.group {
                    map.insert("group".into(), g.into());
                }
                if let Some(v) = sub.version {
                    map.insert("version".into(), v.into());
                }
            }
            out.push(entry);
        }
    }
    let group_version =
        if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": out,
    }))
}

fn resource_json(r: &Resource) -> Value {
    let mut entry = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if let Value::Object(map) = &mut entry {
        insert_names(map, r);
    }
    entry
}

/// The aggregated discovery media types, newest first (kubectl 1.30+ asks for v2, then v2beta1).
const AGGREGATED: &[(&str, &str)] = &[
    ("v2", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
    ("v2beta1", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
];

/// The aggregated discovery version an `Accept` header asks for, with the exact Content-Type
/// to answer with (kubectl rejects the same body served as plain `application/json`).
pub fn aggregated_version(accept: Option<&str>) -> Option<(&'static str, &'static str)> {
    let accept = accept?;
    for media in accept.split(',') {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        if params.first() != Some(&"application/json")
            || !params.contains(&"g=apidiscovery.k8s.io")
            || !params.contains(&"as=APIGroupDiscoveryList")
        {
            continue;
        }
        if let Some(found) =
            AGGREGATED.iter().find(|(v, _)| params.contains(&format!("v={v}").as_str()))
        {
            return Some(*found);
        }
    }
    None
}

/// `APIGroupDiscoveryList` for `/api` (the core group) or `/apis` (every other group).
pub fn aggregated(catalog: &Catalog, legacy: bool, version: &str) -> Value {
    let items: Vec<Value> = catalog
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = catalog
                        .group_version(group, v)
                        .into_iter()
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            json!({
                "subresource": s.name,
                "responseKind": {
                    "group": s.group.unwrap_or(r.group),
                    "version": s.version.unwrap_or(r.version),
                    "kind": if s.kind.is_empty() { r.kind } else { s.kind },
                },
                "verbs": s.verbs,
            })
        })
        .collect();
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if let Value::Object(map) = &mut entry {
        insert_names(map, r);
        if !subresources.is_empty() {
            map.insert("subresources".into(), Value::Array(subresources));
        }
    }
    entry
}

/// Short names and categories, present only when there are some (as upstream serves them).
fn insert_names(map: &mut serde_json::Map<String, Value>, r: &Resource) {
    if !r.short_names.is_empty() {
        map.insert("shortNames".into(), json!(r.short_names));
    }
    if !r.categories.is_empty() {
        map.insert("categories".into(), json!(r.categories));
    }
}
