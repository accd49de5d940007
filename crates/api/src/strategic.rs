//! Strategic merge patch (`application/strategic-merge-patch+json`), as upstream applies it
//! to built-in types: maps merge recursively, `null` deletes, lists of objects with a patch
//! merge key merge element by element, primitive lists with the merge strategy are unions,
//! every other list is replaced; the `$patch` (replace/delete/merge), `$retainKeys`,
//! `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` directives are honoured.
//!
//! Which lists merge, and on which key, comes from [`list_strategy`]: upstream's
//! `patchStrategy`/`patchMergeKey` struct tags of the built-in types, keyed by field name and
//! the enclosing list (the one place where a field name alone is ambiguous is `ports`).

use serde_json::{Map, Value};

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original.
    Replace,
    /// Objects merge by this key.
    MergeByKey(&'static str),
    /// Primitive values: the union of both.
    MergePrimitives,
}

/// Errors of a malformed patch, with upstream's wording where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error(
        "unable to find api field in struct for the patch: a strategic merge patch must be a JSON object"
    )]
    NotAnObject,
    #[error("Unrecognized $patch directive: {0:?}")]
    UnknownDirective(String),
    #[error("invalid $retainKeys: must be a list of strings")]
    InvalidRetainKeys,
    #[error("invalid {0}: must be a list")]
    InvalidDirectiveList(String),
}

/// The strategy of the list field `field`, whose nearest enclosing list field is `parent_list`
/// (e.g. `containers` for a container's `ports`).
pub fn list_strategy(field: &str, parent_list: Option<&str>) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => MergeByKey("name"),
        "ports" => match parent_list {
            Some("containers" | "initContainers" | "ephemeralContainers") => {
                MergeByKey("containerPort")
            }
            _ => MergeByKey("port"),
        },
        "volumeMounts" => MergeByKey("mountPath"),
        "volumeDevices" => MergeByKey("devicePath"),
        "conditions" | "addresses" => MergeByKey("type"),
        "ownerReferences" => MergeByKey("uid"),
        "hostAliases" | "podIPs" | "hostIPs" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "finalizers" | "podCIDRs" => MergePrimitives,
        _ => Replace,
    }
}

/// Applies `patch` to `original` in place.
pub fn apply(original: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else { return Err(PatchError::NotAnObject) };
    if !original.is_object() {
        *original = Value::Object(Map::new());
    }
    merge_map(original, patch, None)
}

fn merge_map(
    original: &mut Value,
    patch: &Map<String, Value>,
    parent_list: Option<&str>,
) -> Result<(), PatchError> {
    match patch.get("$patch").map(|d| d.as_str().unwrap_or_default()) {
        None | Some("merge") => {}
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *original = Value::Object(strip_directives(replaced));
            return Ok(());
        }
        Some("delete") => {
            *original = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(PatchError::UnknownDirective(other.to_owned())),
    }
    if !original.is_object() {
        *original = Value::Object(Map::new());
    }
    let Value::Object(target) = original else { return Ok(()) };

    if let Some(retain) = patch.get("$retainKeys") {
        let keys: Vec<&str> = retain
            .as_array()
            .ok_or(PatchError::InvalidRetainKeys)?
            .iter()
            .map(|k| k.as_str().ok_or(PatchError::InvalidRetainKeys))
            .collect::<Result<_, _>>()?;
        target.retain(|k, _| keys.contains(&k.as_str()));
    }

    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" || key.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let remove =
                value.as_array().ok_or_else(|| PatchError::InvalidDirectiveList(key.clone()))?;
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(child) => {
                let entry = target.entry(key.clone()).or_insert(Value::Null);
                merge_map(entry, child, parent_list)?;
                if entry.is_null() {
                    target.remove(key);
                }
            }
            Value::Array(items) => {
                let strategy = list_strategy(key, parent_list);
                let entry = target.entry(key.clone()).or_insert(Value::Null);
                merge_list(entry, items, strategy, key)?;
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }

    // `$setElementOrder/<field>`: the order the client wants for a merged list.
    for (key, order) in patch {
        let Some(field) = key.strip_prefix("$setElementOrder/") else { continue };
        let order =
            order.as_array().ok_or_else(|| PatchError::InvalidDirectiveList(key.clone()))?;
        if let Some(Value::Array(list)) = target.get_mut(field) {
            let merge_key = match list_strategy(field, parent_list) {
                ListStrategy::MergeByKey(k) => Some(k),
                _ => None,
            };
            reorder(list, order, merge_key);
        }
    }
    Ok(())
}

fn merge_list(
    original: &mut Value,
    patch: &[Value],
    strategy: ListStrategy,
    field: &str,
) -> Result<(), PatchError> {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    let replace = patch.iter().any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"));
    if replace || strategy == ListStrategy::Replace || !original.is_array() {
        let items = patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .cloned()
            .map(|v| match v {
                Value::Object(m) => Value::Object(strip_directives(m)),
                other => other,
            })
            .collect();
        *original = Value::Array(items);
        return Ok(());
    }
    let Value::Array(list) = original else { return Ok(()) };
    match strategy {
        ListStrategy::MergePrimitives => {
            for item in patch {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
        }
        ListStrategy::MergeByKey(merge_key) => {
            for item in patch {
                let Some(patch_map) = item.as_object() else {
                    // Not an object: nothing to merge on; keep upstream's lenience and append.
                    list.push(item.clone());
                    continue;
                };
                let key_value = patch_map.get(merge_key);
                let position =
                    key_value.and_then(|kv| list.iter().position(|o| o.get(merge_key) == Some(kv)));
                let delete = patch_map.get("$patch").and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        list.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => merge_map(&mut list[i], patch_map, Some(field))?,
                    (None, false) => {
                        let mut fresh = Value::Object(Map::new());
                        merge_map(&mut fresh, patch_map, Some(field))?;
                        list.push(fresh);
                    }
                }
            }
        }
        ListStrategy::Replace => {}
    }
    Ok(())
}

/// Puts the elements named in `order` first, in that order; the rest keep their places after.
fn reorder(list: &mut Vec<Value>, order: &[Value], merge_key: Option<&str>) {
    let identity = |v: &Value| -> Value {
        match merge_key {
            Some(k) => v.get(k).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut ordered = Vec::with_capacity(list.len());
    let mut rest: Vec<Value> = std::mem::take(list);
    for wanted in order {
        let wanted = match (merge_key, wanted) {
            (Some(k), Value::Object(m)) => m.get(k).cloned().unwrap_or(Value::Null),
            _ => wanted.clone(),
        };
        if let Some(i) = rest.iter().position(|v| identity(v) == wanted) {
            ordered.push(rest.remove(i));
        }
    }
    ordered.extend(rest);
    *list = ordered;
}

fn strip_directives(mut map: Map<String, Value>) -> Map<String, Value> {
    map.retain(|k, _| !k.starts_with('$'));
    for value in map.values_mut() {
        if let Value::Object(child) = value {
            *child = strip_directives(std::mem::take(child));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(original: Value, patch: Value) -> Value {
        let mut out = original;
        apply(&mut out, &patch).expect("patch applies");
        out
    }

    #[test]
    fn containers_merge_by_name() {
        let deploy = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox"}
        ]}}}});
        let out = patched(
            deploy,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
                "containers": [{"name": "web", "image": "nginx:2"}]
            }}}}),
        );
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            containers[0],
            json!({"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]})
        );
        assert_eq!(containers[1]["name"], "side");
    }

    #[test]
    fn delete_directive_and_null() {
        let pod = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let out = patched(
            pod,
            json!({"metadata": {"labels": {"a": null}}, "spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let out = patched(node, json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}));
        assert_eq!(out["spec"]["taints"], json!([{"key": "b", "effect": "NoExecute"}]));
        let out = patched(out, json!({"spec": {"unschedulable": true}}));
        assert_eq!(out["spec"]["unschedulable"], true);
        let out = patched(out, json!({"spec": {"unschedulable": null}}));
        assert!(out["spec"].get("unschedulable").is_none());
    }

    #[test]
    fn primitive_merge_lists_and_delete_from_primitive_list() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = patched(obj, json!({"metadata": {"finalizers": ["c", "a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let out = patched(out, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
    }

    #[test]
    fn replace_directives() {
        let obj = json!({"spec": {"selector": {"a": "1", "b": "2"}, "ports": [{"port": 80}, {"port": 81}]}});
        let out = patched(
            obj,
            json!({"spec": {"selector": {"$patch": "replace", "c": "3"}, "ports": [{"$patch": "replace"}, {"port": 90}]}}),
        );
        assert_eq!(out["spec"]["selector"], json!({"c": "3"}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 90}]));
    }

    #[test]
    fn retain_keys() {
        let obj = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = patched(
            obj,
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn service_and_container_ports_use_their_own_keys() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let out = patched(svc, json!({"spec": {"ports": [{"port": 443, "name": "https"}]}}));
        assert_eq!(out["spec"]["ports"].as_array().map(Vec::len), Some(2));
        let pod =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
        let out = patched(
            pod,
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}),
        );
        assert_eq!(
            out["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn refuses_bad_directives() {
        let mut v = json!({});
        assert!(apply(&mut v, &json!({"$patch": "explode"})).is_err());
        assert!(apply(&mut v, &json!([1])).is_err());
    }

    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        use super::super::apply;

        /// RFC 7386 merge patch, the reference strategic merge patch must agree with wherever
        /// no list is involved.
        fn merge_patch(target: &mut Value, patch: &Value) {
            let Value::Object(patch) = patch else {
                *target = patch.clone();
                return;
            };
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Value::Object(map) = target else { return };
            for (key, value) in patch {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }

        /// Nested maps of scalars (no lists), keys that are never directives.
        fn maps() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
                "[a-z]{0,4}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect()))
            })
        }

        /// Containers with distinct names (the merge key), images from a small set.
        fn containers() -> impl Strategy<Value = BTreeMap<String, String>> {
            prop::collection::btree_map("[a-e]", "img[0-3]", 0..5)
        }

        fn pod(containers: &BTreeMap<String, String>) -> Value {
            let list: Vec<Value> =
                containers.iter().map(|(n, i)| json!({"name": n, "image": i})).collect();
            json!({"spec": {"containers": list}})
        }

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                prop_oneof![
                    Just("delete".to_owned()),
                    Just("replace".to_owned()),
                    Just("merge".to_owned()),
                    "[a-z]{0,3}"
                ]
                .prop_map(Value::from),
            ];
            let key = prop_oneof![
                Just("$patch".to_owned()),
                Just("$retainKeys".to_owned()),
                Just("$setElementOrder/containers".to_owned()),
                Just("$deleteFromPrimitiveList/finalizers".to_owned()),
                Just("containers".to_owned()),
                Just("finalizers".to_owned()),
                Just("name".to_owned()),
                "[a-c]",
            ];
            leaf.prop_recursive(4, 48, 5, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(key.clone(), inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn without_lists_it_is_a_merge_patch(original in maps(), patch in maps()) {
                prop_assume!(original.is_object() && patch.is_object());
                let mut strategic = original.clone();
                apply(&mut strategic, &patch).expect("a plain map patch applies");
                let mut merged = original;
                merge_patch(&mut merged, &patch);
                prop_assert_eq!(strategic, merged);
            }

            #[test]
            fn merge_keyed_lists_keep_the_rest_and_take_the_patch(
                original in containers(),
                patch in containers(),
            ) {
                let mut out = pod(&original);
                let body = pod(&patch);
                apply(&mut out, &body).expect("applies");
                let mut expected = original.clone();
                expected.extend(patch.clone());
                let got: BTreeMap<String, String> = out["spec"]["containers"]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|c| (c["name"].as_str().unwrap_or_default().to_owned(),
                              c["image"].as_str().unwrap_or_default().to_owned()))
                    .collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(
                    out["spec"]["containers"].as_array().map(Vec::len),
                    Some(original.keys().chain(patch.keys()).collect::<std::collections::BTreeSet<_>>().len())
                );
                // Applying the same patch again changes nothing.
                let once = out.clone();
                apply(&mut out, &body).expect("applies again");
                prop_assert_eq!(out, once);
            }

            #[test]
            fn deleted_items_go_and_the_others_stay(
                original in containers(),
                doomed in prop::collection::btree_set("[a-e]", 0..3),
            ) {
                let mut out = pod(&original);
                let list: Vec<Value> =
                    doomed.iter().map(|n| json!({"name": n, "$patch": "delete"})).collect();
                apply(&mut out, &json!({"spec": {"containers": list}})).expect("applies");
                let names: Vec<&str> = out["spec"]["containers"]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .filter_map(|c| c["name"].as_str())
                    .collect();
                let expected: Vec<&str> =
                    original.keys().map(String::as_str).filter(|n| !doomed.contains(*n)).collect();
                prop_assert_eq!(names, expected);
            }

            #[test]
            fn any_patch_on_any_object_is_applied_or_refused(
                original in any_json(),
                patch in any_json(),
            ) {
                let mut out = original;
                let _ = apply(&mut out, &patch);
            }
        }
    }
}
