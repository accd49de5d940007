//! `components.schemas` of one group-version document: the k8s-openapi schemas of its kinds
//! and everything they reference, plus what upstream's OpenAPI adds that the Rust types don't
//! carry: the `<Kind>List` schemas, the array-form `x-kubernetes-group-version-kind` of
//! top-level kinds, and the patch strategy and list type of list fields.

use std::collections::{BTreeMap, BTreeSet};

use krust_api::strategic::{ListStrategy, list_strategy};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::kinds::{self, KindSchema};

/// Where component schemas live, as `$ref`s name them.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

/// `{"$ref": "#/components/schemas/<name>"}`.
pub(super) fn reference(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// Every schema any document uses, generated (and annotated) once: the group-version documents
/// share most of them (the pod template alone is in five groups).
pub(super) struct Library {
    definitions: Map<String, Value>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("schemas", &self.definitions.len()).finish()
    }
}

impl Library {
    pub(super) fn generate() -> Self {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
        let mut generator = SchemaGenerator::new(SchemaSettings::openapi3());
        for kind in kinds::all() {
            (kind.add)(&mut generator);
        }
        generator.subschema_for::<meta::ObjectMeta>();
        generator.subschema_for::<meta::ListMeta>();
        generator.subschema_for::<meta::DeleteOptions>();
        generator.subschema_for::<meta::Status>();
        generator.subschema_for::<meta::Patch>();
        generator.subschema_for::<meta::APIResourceList>();
        generator.subschema_for::<meta::APIGroup>();
        generator.subschema_for::<meta::APIGroupList>();
        generator.subschema_for::<meta::APIVersions>();
        let mut definitions = generator.take_definitions(true);
        add_legacy(&mut definitions);
        unrequire_metadata(&mut definitions);
        annotate_lists(&mut definitions);
        Self { definitions }
    }

    /// Every schema, by component name.
    pub(super) fn definitions(&self) -> &Map<String, Value> {
        &self.definitions
    }
}

/// The component names of the legacy `extensions/v1beta1` kinds.
pub(super) const LEGACY_DEPLOYMENT: &str = "io.k8s.api.extensions.v1beta1.Deployment";
pub(super) const LEGACY_INGRESS: &str = "io.k8s.api.extensions.v1beta1.Ingress";

/// Schemas of the legacy `extensions/v1beta1` Deployment and Ingress, derived from the current
/// ones with what differed: a Deployment's selector was optional (defaulted from the template's
/// labels), an Ingress backend named `serviceName`/`servicePort` and the default backend was
/// `backend`. kubectl 1.20 validates the seeds' manifests against these.
fn add_legacy(definitions: &mut Map<String, Value>) {
    const APPS: &str = "io.k8s.api.apps.v1.";
    const NET: &str = "io.k8s.api.networking.v1.";
    const EXT: &str = "io.k8s.api.extensions.v1beta1.";
    let copy = |definitions: &Map<String, Value>, from: &str| {
        definitions.get(from).cloned().unwrap_or_else(|| json!({"type": "object"}))
    };
    let point = |schema: &mut Value, property: &str, to: &str| {
        if let Some(p) = schema.pointer_mut(&format!("/properties/{property}")) {
            *p = reference(to);
        }
    };
    let point_items = |schema: &mut Value, property: &str, to: &str| {
        if let Some(p) = schema.pointer_mut(&format!("/properties/{property}/items")) {
            *p = reference(to);
        }
    };
    let unrequire = |schema: &mut Value, field: &str| {
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|f| f != field);
        }
    };

    let mut deployment = copy(definitions, &format!("{APPS}Deployment"));
    point(&mut deployment, "spec", &format!("{EXT}DeploymentSpec"));
    let mut spec = copy(definitions, &format!("{APPS}DeploymentSpec"));
    unrequire(&mut spec, "selector");
    definitions.insert(format!("{EXT}Deployment"), deployment);
    definitions.insert(format!("{EXT}DeploymentSpec"), spec);

    let mut ingress = copy(definitions, &format!("{NET}Ingress"));
    point(&mut ingress, "spec", &format!("{EXT}IngressSpec"));
    let mut spec = copy(definitions, &format!("{NET}IngressSpec"));
    if let Some(Value::Object(properties)) = spec.get_mut("properties") {
        properties.remove("defaultBackend");
        properties.insert("backend".into(), reference(&format!("{EXT}IngressBackend")));
    }
    point_items(&mut spec, "rules", &format!("{EXT}IngressRule"));
    let mut rule = copy(definitions, &format!("{NET}IngressRule"));
    point(&mut rule, "http", &format!("{EXT}HTTPIngressRuleValue"));
    let mut rule_value = copy(definitions, &format!("{NET}HTTPIngressRuleValue"));
    point_items(&mut rule_value, "paths", &format!("{EXT}HTTPIngressPath"));
    let mut path = copy(definitions, &format!("{NET}HTTPIngressPath"));
    point(&mut path, "backend", &format!("{EXT}IngressBackend"));
    unrequire(&mut path, "pathType");
    let backend = json!({
        "description": "IngressBackend describes all endpoints for a given service and port.",
        "type": "object",
        "properties": {
            "serviceName": {"description": "Specifies the name of the referenced service.", "type": "string"},
            "servicePort": {
                "description": "Specifies the port of the referenced service.",
                "allOf": [reference("io.k8s.apimachinery.pkg.util.intstr.IntOrString")],
            },
            "resource": {
                "description": "Resource is an ObjectRef to another Kubernetes resource in the namespace of the Ingress object.",
                "allOf": [reference("io.k8s.api.core.v1.TypedLocalObjectReference")],
            },
        },
    });
    definitions.insert(format!("{EXT}Ingress"), ingress);
    definitions.insert(format!("{EXT}IngressSpec"), spec);
    definitions.insert(format!("{EXT}IngressRule"), rule);
    definitions.insert(format!("{EXT}HTTPIngressRuleValue"), rule_value);
    definitions.insert(format!("{EXT}HTTPIngressPath"), path);
    definitions.insert(format!("{EXT}IngressBackend"), backend);
}

/// k8s-openapi requires `metadata` of every kind (its Rust field is no `Option`); upstream
/// requires it of none, and `kubectl explain` would print `-required-` beside it.
fn unrequire_metadata(definitions: &mut Map<String, Value>) {
    for schema in definitions.values_mut() {
        let Value::Object(schema) = schema else { continue };
        let Some(Value::Array(required)) = schema.get_mut("required") else { continue };
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            schema.remove("required");
        }
    }
}

/// Adds the names of the components `value` refers to.
fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix(REF_PREFIX) {
                            out.push(name.to_owned());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// The component schemas of one document, collected while its paths are built.
pub(super) struct SchemaSet<'l> {
    library: &'l Library,
    /// The components the document names; what they reference comes along.
    roots: BTreeSet<String>,
    /// Component name → the group-version-kinds it is served as in this document.
    gvks: BTreeMap<String, Vec<Value>>,
    /// List component name → (item component name, item kind).
    lists: BTreeMap<String, (String, String)>,
}

impl std::fmt::Debug for SchemaSet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaSet").field("gvks", &self.gvks).finish_non_exhaustive()
    }
}

impl<'l> SchemaSet<'l> {
    pub(super) fn new(library: &'l Library) -> Self {
        Self { library, roots: BTreeSet::new(), gvks: BTreeMap::new(), lists: BTreeMap::new() }
    }

    /// Adds a type that is no kind of its own here (`DeleteOptions`, `Patch`, `Status`); the
    /// library must have it.
    pub(super) fn add<T: JsonSchema>(&mut self) -> String {
        let name = T::schema_name().into_owned();
        self.roots.insert(name.clone());
        name
    }

    /// Adds a kind, tagged with the group-version-kind it is served as.
    pub(super) fn add_kind(&mut self, kind: KindSchema) -> String {
        let name = (kind.name)().into_owned();
        self.roots.insert(name.clone());
        self.tag(&name, kind.group, kind.version, kind.kind);
        name
    }

    /// Adds `<Kind>List` for a kind added with [`SchemaSet::add_kind`].
    pub(super) fn add_list(&mut self, item: &str, kind: KindSchema) -> String {
        self.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
        let name = format!("{item}List");
        let list_kind = format!("{}List", kind.kind);
        self.tag(&name, kind.group, kind.version, &list_kind);
        self.lists.insert(name.clone(), (item.to_owned(), kind.kind.to_owned()));
        name
    }

    /// Records that component `name` is served as `group/version, Kind=kind`.
    pub(super) fn tag(&mut self, name: &str, group: &str, version: &str, kind: &str) {
        let gvk = json!({ "group": group, "kind": kind, "version": version });
        let tags = self.gvks.entry(name.to_owned()).or_default();
        if !tags.contains(&gvk) {
            tags.push(gvk);
        }
    }

    /// The finished `components.schemas`.
    pub(super) fn finish(self) -> Map<String, Value> {
        let mut schemas = Map::new();
        let mut pending: Vec<String> = self.roots.into_iter().collect();
        while let Some(name) = pending.pop() {
            if schemas.contains_key(&name) {
                continue;
            }
            if let Some(schema) = self.library.definitions.get(&name) {
                collect_refs(schema, &mut pending);
                schemas.insert(name, schema.clone());
            }
        }
        for (name, (item, kind)) in &self.lists {
            let list = list_schema(&schemas, item, kind);
            schemas.insert(name.clone(), list);
        }
        for (name, gvks) in self.gvks {
            if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
                schema.insert("x-kubernetes-group-version-kind".to_owned(), Value::Array(gvks));
            }
        }
        schemas
    }
}

/// Upstream's shape of a list kind; `apiVersion` and `kind` are described as in the item.
fn list_schema(schemas: &Map<String, Value>, item: &str, kind: &str) -> Value {
    let item_property =
        |field: &str| schemas.get(item).and_then(|s| s.pointer(&format!("/properties/{field}")));
    let described =
        |field: &str| item_property(field).cloned().unwrap_or_else(|| json!({ "type": "string" }));
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": described("apiVersion"),
            "items": {
                "description": format!("List of {kind} objects."),
                "type": "array",
                "items": reference(item),
            },
            "kind": described("kind"),
            "metadata": {
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "allOf": [reference("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")],
            },
        },
        "required": ["items"],
    })
}

/// The component a schema points at (`$ref` directly or as the sole `allOf`).
fn referenced(schema: &Value) -> Option<&str> {
    let target = schema
        .get("$ref")
        .or_else(|| schema.get("allOf").and_then(|all| all.get(0)).and_then(|s| s.get("$ref")))?;
    target.as_str()?.strip_prefix(REF_PREFIX)
}

/// Marks every list field with its strategic-merge-patch strategy (from
/// [`krust_api::strategic::list_strategy`], the table the server patches with) and the matching
/// list type, as kubectl reads them to compute client-side apply patches. A merge key is only
/// claimed where the list's items really have that field.
fn annotate_lists(schemas: &mut Map<String, Value>) {
    // The enclosing list of each component that is a list item (Container → containers), which
    // is the context `list_strategy` needs for `ports`.
    let mut enclosing: BTreeMap<String, String> = BTreeMap::new();
    for schema in schemas.values() {
        let Some(Value::Object(properties)) = schema.get("properties") else { continue };
        for (field, property) in properties {
            if let Some(item) = property.get("items").and_then(referenced) {
                enclosing.entry(item.to_owned()).or_insert_with(|| field.clone());
            }
        }
    }

    let mut marks: Vec<(String, String, Map<String, Value>)> = Vec::new();
    for (name, schema) in schemas.iter() {
        let Some(Value::Object(properties)) = schema.get("properties") else { continue };
        for (field, property) in properties {
            if property.get("type").and_then(Value::as_str) != Some("array") {
                continue;
            }
            let items = property.get("items");
            let item_schema = items.and_then(referenced).and_then(|r| schemas.get(r)).or(items);
            let item_has = |key: &str| {
                item_schema.and_then(|s| s.pointer(&format!("/properties/{key}"))).is_some()
            };
            let item_is_scalar = item_schema
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .is_some_and(|t| t != "object" && t != "array");
            let mut mark = Map::new();
            match list_strategy(field, enclosing.get(name).map(String::as_str)) {
                ListStrategy::MergeByKey(key) if item_has(key) => {
                    let mut keys = vec![Value::from(key)];
                    if field == "ports" && item_has("protocol") {
                        keys.push(Value::from("protocol"));
                    }
                    mark.insert("x-kubernetes-patch-merge-key".to_owned(), key.into());
                    mark.insert("x-kubernetes-patch-strategy".to_owned(), "merge".into());
                    mark.insert("x-kubernetes-list-type".to_owned(), "map".into());
                    mark.insert("x-kubernetes-list-map-keys".to_owned(), Value::Array(keys));
                }
                ListStrategy::MergePrimitives if item_is_scalar => {
                    mark.insert("x-kubernetes-patch-strategy".to_owned(), "merge".into());
                    mark.insert("x-kubernetes-list-type".to_owned(), "set".into());
                }
                ListStrategy::MergeByKey(_)
                | ListStrategy::MergePrimitives
                | ListStrategy::Replace => {}
            }
            if !mark.is_empty() {
                marks.push((name.clone(), field.clone(), mark));
            }
        }
    }
    for (name, field, mark) in marks {
        if let Some(Value::Object(property)) =
            schemas.get_mut(&name).and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
        {
            property.extend(mark);
        }
    }
}
