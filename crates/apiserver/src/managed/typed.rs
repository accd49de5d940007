//! Objects seen through their schema: which paths a value sets, which of them changed between
//! two values, the structured merge of an applied configuration into a live object, and the
//! removal of paths.
//!
//! Lists are merged by their `x-kubernetes-list-type`: `map` item by item on the
//! `x-kubernetes-list-map-keys`, `set` by value, `atomic` (and any list without a type) as a
//! whole. Objects the schema does not describe are maps of untyped values.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};

/// How a list is merged and how its items are named in paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// What the schema says about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'s> {
    /// A struct (declared properties) or a map (every key allowed): merged key by key.
    Object,
    /// A map or struct replaced as a whole (`x-kubernetes-map-type: atomic`).
    AtomicObject,
    List(&'s ListType),
    /// A scalar, or anything the schema does not constrain.
    Untyped,
}

/// The type information the merge needs; `None` nodes are untyped.
pub trait Schema {
    type Node: Copy;
    fn kind(&self, node: Self::Node) -> Kind<'_>;
    /// The schema of `key` inside the object `node`, and whether `key` is a declared struct
    /// field (false for the keys of a map).
    fn field(&self, node: Self::Node, key: &str) -> (Option<Self::Node>, bool);
    /// The schema of the items of the list `node`.
    fn item(&self, node: Self::Node) -> Option<Self::Node>;
}

fn kind_of<S: Schema>(schema: &S, node: Option<S::Node>) -> Kind<'_> {
    node.map_or(Kind::Untyped, |n| schema.kind(n))
}

fn field_of<S: Schema>(schema: &S, node: Option<S::Node>, key: &str) -> (Option<S::Node>, bool) {
    node.map_or((None, false), |n| schema.field(n, key))
}

/// The path element naming `item` in a list of `list_type`; None when a keyed item lacks its
/// keys (it is then named by position).
pub fn item_element(list_type: &ListType, index: usize, item: &Value) -> PathElement {
    match list_type {
        ListType::Set => PathElement::Value(item.to_string()),
        ListType::Map(keys) => {
            let mut fields = Map::new();
            for key in keys {
                if let Some(v) = item.get(key) {
                    fields.insert(key.clone(), v.clone());
                }
            }
            if fields.is_empty() {
                PathElement::Index(index)
            } else {
                PathElement::Key(Value::Object(fields).to_string())
            }
        }
        ListType::Atomic => PathElement::Index(index),
    }
}

/// Every path `value` sets. Scalars, atomic lists and maps, empty objects, list items and map
/// entries are members; a struct is represented by its fields only.
pub fn fields_of<S: Schema>(schema: &S, node: Option<S::Node>, value: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    walk_fields(schema, node, value, &mut set, 0);
    set
}

const MAX_DEPTH: usize = 96;

fn walk_fields<S: Schema>(
    schema: &S,
    node: Option<S::Node>,
    value: &Value,
    set: &mut FieldSet,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        set.mark();
        return;
    }
    match (kind_of(schema, node), value) {
        (Kind::Object | Kind::Untyped, Value::Object(map)) if !map.is_empty() => {
            for (key, child) in map {
                let (child_node, declared) = field_of(schema, node, key);
                let sub = set.child_mut(PathElement::Field(key.clone()));
                walk_fields(schema, child_node, child, sub, depth + 1);
                if !declared {
                    sub.mark();
                }
            }
        }
        (Kind::List(list_type), Value::Array(items))
            if *list_type != ListType::Atomic && !items.is_empty() =>
        {
            let item_node = node.and_then(|n| schema.item(n));
            for (i, item) in items.iter().enumerate() {
                let sub = set.child_mut(item_element(list_type, i, item));
                if matches!(list_type, ListType::Map(_)) {
                    walk_fields(schema, item_node, item, sub, depth + 1);
                }
                sub.mark();
            }
        }
        _ => set.mark(),
    }
}

/// The value one path element leads to.
pub fn descend<'v>(value: &'v Value, element: &PathElement) -> Option<&'v Value> {
    match (element, value) {
        (PathElement::Field(name), Value::Object(map)) => map.get(name),
        (PathElement::Index(i), Value::Array(items)) => items.get(*i),
        (PathElement::Value(json), Value::Array(items)) => {
            let wanted: Value = serde_json::from_str(json).ok()?;
            items.iter().find(|item| **item == wanted)
        }
        (PathElement::Key(json), Value::Array(items)) => {
            let keys: Map<String, Value> = serde_json::from_str(json).ok()?;
            items.iter().find(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)))
        }
        _ => None,
    }
}

fn position(items: &[Value], element: &PathElement) -> Option<usize> {
    match element {
        PathElement::Index(i) => (*i < items.len()).then_some(*i),
        PathElement::Value(json) => {
            let wanted: Value = serde_json::from_str(json).ok()?;
            items.iter().position(|item| *item == wanted)
        }
        PathElement::Key(json) => {
            let keys: Map<String, Value> = serde_json::from_str(json).ok()?;
            items.iter().position(|item| keys.iter().all(|(k, v)| item.get(k) == Some(v)))
        }
        PathElement::Field(_) => None,
    }
}

/// The paths of `set` (the fields of `new`) whose value differs in `old`: leaves whose value
/// changed, and containers (list items, map entries) that are new.
pub fn changed(set: &FieldSet, old: Option<&Value>, new: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    walk_changed(set, old, new, &mut out);
    out
}

fn walk_changed(set: &FieldSet, old: Option<&Value>, new: &Value, out: &mut FieldSet) {
    let leaf = set.children().next().is_none();
    if set.is_member() && (if leaf { old != Some(new) } else { old.is_none() }) {
        out.mark();
    }
    for (element, child) in set.children() {
        let Some(new_child) = descend(new, element) else { continue };
        let old_child = old.and_then(|o| descend(o, element));
        let mut sub = FieldSet::new();
        walk_changed(child, old_child, new_child, &mut sub);
        if !sub.is_empty() {
            out.child_mut(element.clone()).union(&sub);
        }
    }
}

/// Whether the value at the end of `path` differs between `a` and `b`.
pub fn differs(a: &Value, b: &Value, path: &[PathElement]) -> bool {
    let (mut a, mut b) = (Some(a), Some(b));
    for element in path {
        a = a.and_then(|v| descend(v, element));
        b = b.and_then(|v| descend(v, element));
    }
    a != b
}

/// `config` merged into `live`: objects key by key, map lists item by item, set lists as a
/// union, everything else replaced by the configuration's value.
pub fn merge<S: Schema>(schema: &S, node: Option<S::Node>, live: &Value, config: &Value) -> Value {
    merge_at(schema, node, live, config, 0)
}

fn merge_at<S: Schema>(
    schema: &S,
    node: Option<S::Node>,
    live: &Value,
    config: &Value,
    depth: usize,
) -> Value {
    if depth > MAX_DEPTH {
        return config.clone();
    }
    match (kind_of(schema, node), live, config) {
        (Kind::Object | Kind::Untyped, Value::Object(live_map), Value::Object(config_map)) => {
            let mut out = live_map.clone();
            for (key, value) in config_map {
                let merged = match live_map.get(key) {
                    Some(current) => {
                        merge_at(schema, field_of(schema, node, key).0, current, value, depth + 1)
                    }
                    None => value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Kind::List(ListType::Set), Value::Array(live_items), Value::Array(config_items)) => {
            let mut out = live_items.clone();
            for item in config_items {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            Value::Array(out)
        }
        (
            Kind::List(list_type @ ListType::Map(_)),
            Value::Array(live_items),
            Value::Array(config_items),
        ) => {
            let item_node = node.and_then(|n| schema.item(n));
            let mut out = live_items.clone();
            for (i, item) in config_items.iter().enumerate() {
                let element = item_element(list_type, i, item);
                match position(&out, &element).filter(|_| !matches!(element, PathElement::Index(_)))
                {
                    Some(at) => {
                        let merged = merge_at(schema, item_node, &out[at], item, depth + 1);
                        out[at] = merged;
                    }
                    None => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Removes from `value` every path of `set` (a member path goes with everything under it).
pub fn remove(value: &mut Value, set: &FieldSet) {
    let mut gone: Vec<PathElement> = Vec::new();
    for (element, child) in set.children() {
        if child.is_member() {
            gone.push(element.clone());
            continue;
        }
        match (element, &mut *value) {
            (PathElement::Field(name), Value::Object(map)) => {
                if let Some(next) = map.get_mut(name) {
                    remove(next, child);
                }
            }
            (_, Value::Array(items)) => {
                if let Some(at) = position(items, element) {
                    remove(&mut items[at], child);
                }
            }
            _ => {}
        }
    }
    // Positions shift as items go: remove from the back.
    let mut positions = Vec::new();
    for element in &gone {
        match (element, &mut *value) {
            (PathElement::Field(name), Value::Object(map)) => {
                map.remove(name);
            }
            (_, Value::Array(items)) => {
                if let Some(at) = position(items, element) {
                    positions.push(at);
                }
            }
            _ => {}
        }
    }
    positions.sort_unstable();
    positions.dedup();
    if let Value::Array(items) = value {
        for at in positions.into_iter().rev() {
            items.remove(at);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    /// A small schema for tests: nodes are names in a table.
    pub(crate) struct TestSchema {
        pub nodes: HashMap<&'static str, TestNode>,
    }

    pub(crate) enum TestNode {
        Struct(Vec<(&'static str, &'static str)>),
        Map(&'static str),
        List(ListType, &'static str),
        Scalar,
    }

    impl Schema for TestSchema {
        type Node = &'static str;
        fn kind(&self, node: &'static str) -> Kind<'_> {
            match self.nodes.get(node) {
                Some(TestNode::Struct(_) | TestNode::Map(_)) => Kind::Object,
                Some(TestNode::List(t, _)) => Kind::List(t),
                _ => Kind::Untyped,
            }
        }
        fn field(&self, node: &'static str, key: &str) -> (Option<&'static str>, bool) {
            match self.nodes.get(node) {
                Some(TestNode::Struct(fields)) => {
                    match fields.iter().find(|(name, _)| *name == key) {
                        Some((_, t)) => (Some(*t), true),
                        None => (None, false),
                    }
                }
                Some(TestNode::Map(values)) => (Some(*values), false),
                _ => (None, false),
            }
        }
        fn item(&self, node: &'static str) -> Option<&'static str> {
            match self.nodes.get(node) {
                Some(TestNode::List(_, item)) => Some(*item),
                _ => None,
            }
        }
    }

    pub(crate) fn schema() -> TestSchema {
        use TestNode::*;
        let nodes = HashMap::from([
            ("root", Struct(vec![("metadata", "meta"), ("spec", "spec")])),
            ("meta", Struct(vec![("labels", "labels"), ("finalizers", "finalizers")])),
            ("labels", Map("scalar")),
            ("finalizers", List(ListType::Set, "scalar")),
            (
                "spec",
                Struct(vec![
                    ("replicas", "scalar"),
                    ("containers", "containers"),
                    ("args", "args"),
                ]),
            ),
            ("containers", List(ListType::Map(vec!["name".into()]), "container")),
            ("container", Struct(vec![("name", "scalar"), ("image", "scalar")])),
            ("args", List(ListType::Atomic, "scalar")),
            ("scalar", Scalar),
        ]);
        TestSchema { nodes }
    }

    #[test]
    fn fields_of_an_object() {
        let schema = schema();
        let object = json!({
            "metadata": {"labels": {"app": "x"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "args": ["x"], "containers": [{"name": "c", "image": "i"}]},
        });
        let set = fields_of(&schema, Some("root"), &object);
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"a\"": {}}},
                "f:spec": {"f:replicas": {}, "f:args": {},
                    "f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:name": {}, "f:image": {}}}},
            })
        );
    }

    #[test]
    fn merges_by_list_type() {
        let schema = schema();
        let live = json!({"spec": {"replicas": 1, "args": ["a", "b"],
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]},
            "metadata": {"finalizers": ["x"], "labels": {"keep": "1"}}});
        let config = json!({"spec": {"args": ["c"], "containers": [{"name": "b", "image": "3"},
            {"name": "c", "image": "4"}]}, "metadata": {"finalizers": ["y"], "labels": {"new": "2"}}});
        let merged = merge(&schema, Some("root"), &live, &config);
        assert_eq!(
            merged,
            json!({"spec": {"replicas": 1, "args": ["c"],
                "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "3"},
                    {"name": "c", "image": "4"}]},
                "metadata": {"finalizers": ["x", "y"], "labels": {"keep": "1", "new": "2"}}})
        );
    }

    #[test]
    fn changed_and_removed_paths() {
        let schema = schema();
        let old = json!({"spec": {"replicas": 1, "containers": [{"name": "a", "image": "1"}]}});
        let new = json!({"spec": {"replicas": 2, "containers": [{"name": "a", "image": "1"},
            {"name": "b", "image": "2"}]}});
        let set = fields_of(&schema, Some("root"), &new);
        let diff = changed(&set, Some(&old), &new);
        assert_eq!(
            diff.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {},
                "f:containers": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}, "f:image": {}}}}})
        );
        let mut trimmed = new.clone();
        let mut gone = FieldSet::new();
        gone.insert(&[
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(json!({"name": "a"}).to_string()),
        ]);
        gone.insert(&[PathElement::Field("spec".into()), PathElement::Field("replicas".into())]);
        remove(&mut trimmed, &gone);
        assert_eq!(trimmed, json!({"spec": {"containers": [{"name": "b", "image": "2"}]}}));
    }
}
