//! Server-side field validation (`fieldValidation=Strict|Warn`): which fields of an object its
//! kind's schema does not declare, named as upstream names them
//! (`spec.template.spec.containers[0].imagee`).
//!
//! The OpenAPI schemas are large JSON documents; this keeps only their shape (which properties
//! an object has, what its map values and list items are) in a compact tree, built once per
//! process off the async threads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use super::kinds;
use super::schemas::{Library, REF_PREFIX};
use crate::managed::{Kind, ListType, Schema};
use crate::status::Status;

/// Nesting deeper than this is not checked (upstream refuses such bodies long before).
const MAX_DEPTH: usize = 64;

/// The shape of one schema.
#[derive(Debug)]
enum Shape {
    /// Anything goes: scalars, `x-kubernetes-preserve-unknown-fields`, int-or-string, raw JSON.
    Any,
    /// An object with declared properties (and maybe a schema for undeclared ones).
    Object { properties: HashMap<String, usize>, additional: Option<usize> },
    /// A map: every value has this shape.
    Map(usize),
    /// A list whose items have this shape, merged as its `x-kubernetes-list-type` says.
    List(usize, ListType),
    /// An object replaced as a whole (`x-kubernetes-map-type: atomic`).
    Atomic,
    /// Another (named) shape.
    Alias(usize),
}

/// Every kind's shape.
#[derive(Debug)]
pub(crate) struct FieldSchemas {
    shapes: Vec<Shape>,
    /// `(group, version, kind)` → shape index.
    kinds: HashMap<(&'static str, &'static str, &'static str), usize>,
}

static SCHEMAS: OnceCell<Arc<FieldSchemas>> = OnceCell::const_new();

/// The process's field schemas, built by the first caller.
pub(crate) async fn field_schemas() -> Result<Arc<FieldSchemas>, Status> {
    SCHEMAS
        .get_or_try_init(|| async {
            tokio::task::spawn_blocking(|| Arc::new(FieldSchemas::build(&Library::generate())))
                .await
                .map_err(|e| Status::internal(format!("building the field schemas: {e}")))
        })
        .await
        .cloned()
}

struct Builder<'l> {
    definitions: &'l Map<String, Value>,
    shapes: Vec<Shape>,
    named: HashMap<String, usize>,
}

impl Builder<'_> {
    fn named(&mut self, name: &str) -> usize {
        if let Some(&index) = self.named.get(name) {
            return index;
        }
        // Reserve the slot first: schemas refer to themselves (JSONSchemaProps).
        let index = self.shapes.len();
        self.shapes.push(Shape::Any);
        self.named.insert(name.to_owned(), index);
        let shape = match self.definitions.get(name) {
            Some(schema) => self.shape(schema),
            None => Shape::Any,
        };
        self.shapes[index] = shape;
        index
    }

    fn index(&mut self, schema: &Value) -> usize {
        if let Some(name) = reference_of(schema) {
            return self.named(name);
        }
        let shape = self.shape(schema);
        self.shapes.push(shape);
        self.shapes.len() - 1
    }

    fn shape(&mut self, schema: &Value) -> Shape {
        if let Some(name) = reference_of(schema) {
            return Shape::Alias(self.named(name));
        }
        let Some(schema) = schema.as_object() else { return Shape::Any };
        let flag = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
        if flag("x-kubernetes-preserve-unknown-fields") || flag("x-kubernetes-int-or-string") {
            return Shape::Any;
        }
        if let Some(Value::Array(all)) = schema.get("allOf")
            && let [one] = all.as_slice()
        {
            return self.shape(one);
        }
        if let Some(items) = schema.get("items") {
            let keys = |s: &Map<String, Value>| -> Vec<String> {
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default()
            };
            let list_type = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("set") => ListType::Set,
                Some("map") if !keys(schema).is_empty() => ListType::Map(keys(schema)),
                _ => ListType::Atomic,
            };
            return Shape::List(self.index(items), list_type);
        }
        if schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic") {
            return Shape::Atomic;
        }
        let additional = match schema.get("additionalProperties") {
            Some(Value::Object(_)) => schema.get("additionalProperties").map(|a| self.index(a)),
            _ => None,
        };
        match schema.get("properties").and_then(Value::as_object) {
            Some(properties) => {
                let properties =
                    properties.iter().map(|(name, p)| (name.clone(), self.index(p))).collect();
                Shape::Object { properties, additional }
            }
            None => match additional {
                Some(values) => Shape::Map(values),
                None => Shape::Any,
            },
        }
    }
}

fn reference_of(schema: &Value) -> Option<&str> {
    schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(REF_PREFIX))
}

impl FieldSchemas {
    fn build(library: &Library) -> Self {
        let mut builder = Builder {
            definitions: library.definitions(),
            shapes: Vec::new(),
            named: HashMap::new(),
        };
        let mut kinds = HashMap::new();
        for kind in kinds::all() {
            // The legacy forms keep fields the current types dropped: not checked.
            if kind.group == "extensions" {
                continue;
            }
            let index = builder.named(&(kind.name)());
            kinds.insert((kind.group, kind.version, kind.kind), index);
        }
        FieldSchemas { shapes: builder.shapes, kinds }
    }

    /// The shapes of a custom resource version: its CRD's `openAPIV3Schema`, with `metadata` as
    /// ObjectMeta. The root is shape 0.
    pub(crate) fn custom(schema: &Value) -> Self {
        let library = super::library();
        let mut builder = Builder {
            definitions: library.definitions(),
            shapes: vec![Shape::Any],
            named: HashMap::new(),
        };
        let mut schema = schema.clone();
        if let Some(properties) = schema
            .as_object_mut()
            .map(|m| m.entry("properties").or_insert_with(|| Value::Object(Map::new())))
            .and_then(Value::as_object_mut)
        {
            let meta = <k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as schemars::JsonSchema>::schema_name();
            properties.insert("metadata".into(), super::schemas::reference(&meta));
        }
        builder.shapes[0] = builder.shape(&schema);
        FieldSchemas { shapes: builder.shapes, kinds: HashMap::new() }
    }

    /// The shape of a kind, the root of its objects' field paths.
    pub(crate) fn root(&self, group: &str, version: &str, kind: &str) -> Option<usize> {
        self.kinds.get(&(group, version, kind)).copied()
    }

    /// Follows aliases (bounded: a cycle of aliases is untyped).
    fn resolve(&self, mut shape: usize) -> Option<&Shape> {
        for _ in 0..MAX_DEPTH {
            match self.shapes.get(shape)? {
                Shape::Alias(target) => shape = *target,
                other => return Some(other),
            }
        }
        None
    }

    /// Removes the fields of `object` its kind does not declare (upstream's decoding drops
    /// them) and returns their paths in document order; None for a kind without a schema.
    pub(crate) fn prune_unknown(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        object: &mut Value,
    ) -> Option<Vec<String>> {
        let &root = self.kinds.get(&(group, version, kind))?;
        let mut unknown = Vec::new();
        let mut path = String::new();
        self.walk(root, object, &mut path, &mut unknown, 0);
        Some(unknown)
    }

    fn walk(
        &self,
        shape: usize,
        value: &mut Value,
        path: &mut String,
        out: &mut Vec<String>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let Some(shape) = self.shapes.get(shape) else { return };
        match (shape, value) {
            (Shape::Alias(target), value) => self.walk(*target, value, path, out, depth + 1),
            (Shape::Object { properties, additional }, Value::Object(map)) => {
                map.retain(|key, child| {
                    let len = path.len();
                    push_key(path, key);
                    let keep = match properties.get(key).or(additional.as_ref()) {
                        Some(&next) => {
                            self.walk(next, child, path, out, depth + 1);
                            true
                        }
                        None => {
                            out.push(path.clone());
                            false
                        }
                    };
                    path.truncate(len);
                    keep
                });
            }
            (Shape::Map(values), Value::Object(map)) => {
                for (key, child) in map.iter_mut() {
                    let len = path.len();
                    push_key(path, key);
                    self.walk(*values, child, path, out, depth + 1);
                    path.truncate(len);
                }
            }
            (Shape::List(items, _), Value::Array(list)) => {
                for (i, child) in list.iter_mut().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    self.walk(*items, child, path, out, depth + 1);
                    path.truncate(len);
                }
            }
            // Wrong types are the validation's to report, not this check's.
            _ => {}
        }
    }
}

/// The merge reads list types and declared fields from the same shapes.
impl Schema for FieldSchemas {
    type Node = usize;

    fn kind(&self, node: usize) -> Kind<'_> {
        match self.resolve(node) {
            Some(Shape::Object { .. } | Shape::Map(_)) => Kind::Object,
            Some(Shape::Atomic) => Kind::AtomicObject,
            Some(Shape::List(_, list_type)) => Kind::List(list_type),
            Some(Shape::Any | Shape::Alias(_)) | None => Kind::Untyped,
        }
    }

    fn field(&self, node: usize, key: &str) -> (Option<usize>, bool) {
        match self.resolve(node) {
            Some(Shape::Object { properties, additional }) => match properties.get(key) {
                Some(&child) => (Some(child), true),
                None => (*additional, false),
            },
            Some(Shape::Map(values)) => (Some(*values), false),
            _ => (None, false),
        }
    }

    fn item(&self, node: usize) -> Option<usize> {
        match self.resolve(node) {
            Some(Shape::List(items, _)) => Some(*items),
            _ => None,
        }
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schemas() -> FieldSchemas {
        FieldSchemas::build(&Library::generate())
    }

    #[test]
    fn names_unknown_fields_by_path() {
        let schemas = schemas();
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {"app": "x"}, "bogus": 1},
            "spec": {
                "replicas": 1,
                "replica": 2,
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [
                        {"name": "a", "image": "busybox"},
                        {"name": "b", "imagee": "busybox",
                         "resources": {"limits": {"cpu": "1"}},
                         "ports": [{"containerPort": 80, "protocl": "TCP"}]},
                    ]},
                },
                "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            },
            "status": {"conditions": [{"type": "Available", "status": "True", "extra": true}]},
        });
        let mut pruned = deployment.clone();
        let unknown = schemas.prune_unknown("apps", "v1", "Deployment", &mut pruned);
        assert_eq!(
            unknown,
            Some(vec![
                "metadata.bogus".to_owned(),
                "spec.replica".to_owned(),
                "spec.template.spec.containers[1].imagee".to_owned(),
                "spec.template.spec.containers[1].ports[0].protocl".to_owned(),
                "status.conditions[0].extra".to_owned(),
            ])
        );
        assert!(pruned["spec"].get("replica").is_none(), "unknown fields are dropped");
        assert_eq!(pruned["spec"]["replicas"], 1, "known ones stay");
        assert!(pruned["spec"]["template"]["spec"]["containers"][1].get("imagee").is_none());
        assert_eq!(pruned["metadata"]["labels"]["app"], "x");
    }

    #[test]
    fn maps_quantities_raw_json_and_int_or_string_take_anything() {
        let schemas = schemas();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"memory": "1Gi", "nvidia.com/gpu": 1}},
                "livenessProbe": {"httpGet": {"port": "http", "path": "/"}}}],
                "overhead": {"cpu": "10m"}},
        });
        assert_eq!(schemas.prune_unknown("", "v1", "Pod", &mut pod.clone()), Some(vec![]));
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "things", "kind": "Thing"},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "properties": {"spec": {"type": "object",
                            "properties": {"size": {"type": "integer", "default": 3}},
                            "x-kubernetes-preserve-unknown-fields": true}}}}}]},
        });
        assert_eq!(
            schemas.prune_unknown(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                &mut crd.clone()
            ),
            Some(vec![])
        );
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"k": "v"}, "binaryData": {"b": "AA=="}, "immutable": false, "dataa": {}});
        assert_eq!(
            schemas.prune_unknown("", "v1", "ConfigMap", &mut cm.clone()),
            Some(vec!["dataa".into()])
        );
    }

    #[test]
    fn legacy_forms_are_not_checked() {
        let schemas = schemas();
        let mut ingress = json!({"spec": {"backend": {"serviceName": "s", "servicePort": 80}}});
        assert_eq!(schemas.prune_unknown("extensions", "v1beta1", "Ingress", &mut ingress), None);
    }
}
