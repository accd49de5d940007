//! One CustomResourceDefinition read from its JSON: the names, versions and schemas it
//! declares, upstream's defaults and validation of it, and the status the naming and
//! establishing controllers give it.

use krust_api::catalog::{self, ALL_VERBS, Resource};
use krust_api::schema::Schema;
use krust_api::validation::FieldError;
use serde_json::{Map, Value, json};

use super::{CustomVersion, PrinterColumn, ScalePaths};

/// Held by a CRD being deleted until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// What a CRD declares, as far as serving it goes.
#[derive(Debug)]
pub struct Definition {
    pub name: String,
    group: String,
    plural: String,
    singular: String,
    kind: String,
    list_kind: String,
    short_names: Vec<String>,
    categories: Vec<String>,
    namespaced: bool,
    versions: Vec<Version>,
    /// Deleted, waiting for its custom resources to go.
    pub terminating: bool,
}

#[derive(Debug)]
struct Version {
    name: String,
    served: bool,
    storage: bool,
    schema: Option<Value>,
    status: bool,
    scale: Option<ScalePaths>,
    columns: Vec<PrinterColumn>,
}

/// Why a CRD's names were not accepted: (condition reason, message).
pub type Conflict = (&'static str, String);

fn str_at(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn strings_at(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Definition {
    /// None for a CRD too broken to serve (validation keeps those out of the store).
    pub fn parse(crd: &Value) -> Option<Self> {
        let name = str_at(crd, "/metadata/name");
        let group = str_at(crd, "/spec/group");
        let plural = str_at(crd, "/spec/names/plural");
        let kind = str_at(crd, "/spec/names/kind");
        if name.is_empty() || group.is_empty() || plural.is_empty() || kind.is_empty() {
            return None;
        }
        let singular = match str_at(crd, "/spec/names/singular") {
            s if s.is_empty() => kind.to_ascii_lowercase(),
            s => s,
        };
        let list_kind = match str_at(crd, "/spec/names/listKind") {
            s if s.is_empty() => format!("{kind}List"),
            s => s,
        };
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|versions| versions.iter().filter_map(Version::parse).collect())
            .unwrap_or_default();
        Some(Self {
            name,
            group,
            plural,
            singular,
            kind,
            list_kind,
            short_names: strings_at(crd, "/spec/names/shortNames"),
            categories: strings_at(crd, "/spec/names/categories"),
            namespaced: str_at(crd, "/spec/scope") != "Cluster",
            versions,
            terminating: crd.pointer("/metadata/deletionTimestamp").is_some(),
        })
    }

    /// `/registry/<group>/<plural>/`: where its custom resources are stored.
    pub fn store_prefix(&self) -> String {
        format!("/registry/{}/{}/", self.group, self.plural)
    }

    fn storage_version(&self) -> Option<&str> {
        self.versions.iter().find(|v| v.storage).map(|v| v.name.as_str())
    }

    /// The names this CRD takes in its group, for [`Definition::conflict`].
    pub fn claims(&self) -> Vec<(String, String)> {
        let mut claims = vec![
            (self.group.clone(), format!("resource:{}", self.plural)),
            (self.group.clone(), format!("resource:{}", self.singular)),
            (self.group.clone(), format!("kind:{}", self.kind)),
            (self.group.clone(), format!("kind:{}", self.list_kind)),
        ];
        claims
            .extend(self.short_names.iter().map(|s| (self.group.clone(), format!("resource:{s}"))));
        claims
    }

    /// A name an older CRD of the same group (or a built-in resource of it) already uses.
    pub fn conflict(&self, claimed: &[(String, String)]) -> Option<Conflict> {
        let taken = |what: String| claimed.contains(&(self.group.clone(), what));
        let builtin_plural = catalog::Catalog::builtin_resources()
            .iter()
            .any(|r| r.group == self.group && (r.plural == self.plural || r.kind == self.kind));
        if builtin_plural || taken(format!("resource:{}", self.plural)) {
            return Some(("PluralConflict", format!("\"{}\" is already in use", self.plural)));
        }
        if taken(format!("resource:{}", self.singular)) {
            return Some(("SingularConflict", format!("\"{}\" is already in use", self.singular)));
        }
        if let Some(short) = self.short_names.iter().find(|s| taken(format!("resource:{s}"))) {
            return Some(("ShortNamesConflict", format!("\"{short}\" is already in use")));
        }
        if taken(format!("kind:{}", self.kind)) {
            return Some(("KindConflict", format!("\"{}\" is already in use", self.kind)));
        }
        if taken(format!("kind:{}", self.list_kind)) {
            return Some(("ListKindConflict", format!("\"{}\" is already in use", self.list_kind)));
        }
        None
    }

    /// The catalog entry and serving facts of each served version.
    pub fn served(&self) -> Vec<(Resource, CustomVersion)> {
        let Some(storage) = self.storage_version() else { return Vec::new() };
        let group = catalog::intern(&self.group);
        let storage = catalog::intern(storage);
        self.versions
            .iter()
            .filter(|v| v.served)
            .map(|v| {
                let resource = Resource {
                    group,
                    version: catalog::intern(&v.name),
                    kind: catalog::intern(&self.kind),
                    plural: catalog::intern(&self.plural),
                    singular: catalog::intern(&self.singular),
                    namespaced: self.namespaced,
                    verbs: ALL_VERBS,
                    short_names: catalog::intern_list(&self.short_names),
                    categories: catalog::intern_list(&self.categories),
                    subresources: catalog::custom_subresources(v.status, v.scale.is_some()),
                    storage: (!v.storage).then_some((group, storage)),
                };
                let version = CustomVersion {
                    crd: self.name.clone(),
                    schema: v.schema.as_ref().and_then(|s| Schema::new(s).ok()),
                    rules: v
                        .schema
                        .as_ref()
                        .and_then(|s| super::cel::Rules::compile(s).ok())
                        .filter(|r| !r.is_empty()),
                    fields: v
                        .schema
                        .as_ref()
                        .map(|s| std::sync::Arc::new(crate::openapi::FieldSchemas::custom(s))),
                    openapi: v.schema.clone(),
                    columns: v.columns.clone(),
                    scale: v.scale.clone(),
                    terminating: self.terminating,
                    storage_api_version: format!("{group}/{storage}"),
                };
                (resource, version)
            })
            .collect()
    }

    /// The status upstream's controllers give this CRD: accepted names, `NamesAccepted`,
    /// `Established` (and `Terminating` while it is deleted), stored versions. Transition
    /// times of conditions that keep their status are kept.
    pub fn status(&self, crd: &Value, conflict: Option<&Conflict>) -> Value {
        let old = crd.get("status").cloned().unwrap_or_else(|| json!({}));
        let accepted = match conflict {
            None => {
                let mut names = Map::new();
                names.insert("plural".into(), json!(self.plural));
                names.insert("singular".into(), json!(self.singular));
                if !self.short_names.is_empty() {
                    names.insert("shortNames".into(), json!(self.short_names));
                }
                names.insert("kind".into(), json!(self.kind));
                names.insert("listKind".into(), json!(self.list_kind));
                if !self.categories.is_empty() {
                    names.insert("categories".into(), json!(self.categories));
                }
                Value::Object(names)
            }
            // The names accepted earlier stay; a new CRD has none.
            Some(_) => old
                .get("acceptedNames")
                .cloned()
                .unwrap_or_else(|| json!({"plural": "", "kind": ""})),
        };
        let mut conditions = vec![match conflict {
            None => condition("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
            Some((reason, message)) => condition("NamesAccepted", "False", reason, message),
        }];
        conditions.push(match conflict {
            None => condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
            Some(_) => {
                condition("Established", "False", "NotAccepted", "not all names are accepted")
            }
        });
        if self.terminating {
            conditions.push(condition(
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ));
        }
        let old_conditions = old.get("conditions").and_then(Value::as_array);
        for c in &mut conditions {
            let same = old_conditions.and_then(|old| {
                old.iter()
                    .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"))
            });
            let time = match same.and_then(|o| o.get("lastTransitionTime")) {
                Some(time) => time.clone(),
                None => json!(crate::rest::now()),
            };
            if let Some(map) = c.as_object_mut() {
                map.insert("lastTransitionTime".into(), time);
            }
        }
        let mut stored = strings_at(&old, "/storedVersions");
        if let Some(storage) = self.storage_version()
            && !stored.iter().any(|s| s == storage)
        {
            stored.push(storage.to_owned());
        }
        json!({"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored})
    }
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message})
}

impl Version {
    fn parse(v: &Value) -> Option<Self> {
        let name = v.get("name").and_then(Value::as_str)?.to_owned();
        let columns = match v.get("additionalPrinterColumns").and_then(Value::as_array) {
            Some(columns) => columns.iter().filter_map(PrinterColumn::parse).collect(),
            // Without columns of its own a custom resource shows its age, as upstream's.
            None => vec![PrinterColumn::age()],
        };
        let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
            spec_replicas: str_at(s, "/specReplicasPath"),
            status_replicas: str_at(s, "/statusReplicasPath"),
            label_selector: s.get("labelSelectorPath").and_then(Value::as_str).map(str::to_owned),
        });
        Some(Self {
            name,
            served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
            storage: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
            schema: v.pointer("/schema/openAPIV3Schema").cloned(),
            status: v.pointer("/subresources/status").is_some(),
            scale,
            columns,
        })
    }
}

/// Upstream's ordering of Kubernetes versions, highest priority first when sorted descending:
/// GA before beta before alpha, higher numbers first; other names after them, alphabetically.
pub fn version_priority(version: &str) -> (u8, u64, u64, std::cmp::Reverse<String>) {
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        match &rest[digits..] {
            "" => Some((3, major, 0)),
            tail => {
                let (rank, minor) = if let Some(n) = tail.strip_prefix("beta") {
                    (2, n)
                } else if let Some(n) = tail.strip_prefix("alpha") {
                    (1, n)
                } else {
                    return None;
                };
                Some((rank, major, minor.parse().ok()?))
            }
        }
    });
    match parsed {
        Some((rank, major, minor)) => (rank, major, minor, std::cmp::Reverse(String::new())),
        None => (0, 0, 0, std::cmp::Reverse(version.to_owned())),
    }
}

/// Upstream's defaults for a CRD's spec (`SetDefaults_CustomResourceDefinitionSpec`), applied on
/// create and update.
pub fn default_spec(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
        if names.get("singular").and_then(Value::as_str).is_none_or(str::is_empty) {
            names.insert("singular".into(), json!(kind.to_ascii_lowercase()));
        }
        if !kind.is_empty()
            && names.get("listKind").and_then(Value::as_str).is_none_or(str::is_empty)
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
}

/// A new CRD's status: nothing accepted yet, the storage version recorded.
pub fn prepare_for_create(crd: &mut Value) {
    default_spec(crd);
    let storage: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .filter_map(|v| v.get("name").cloned())
        .take(1)
        .collect();
    if let Some(map) = crd.as_object_mut() {
        map.insert(
            "status".into(),
            json!({"acceptedNames": {"plural": "", "kind": ""}, "storedVersions": storage}),
        );
    }
}

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: "FieldValueInvalid", detail: detail.into() }
}

fn required(field: impl Into<String>, detail: &str) -> FieldError {
    let detail = if detail.is_empty() {
        "Required value".to_owned()
    } else {
        format!("Required value: {detail}")
    };
    FieldError { field: field.into(), reason: "FieldValueRequired", detail }
}

/// Upstream's validation of a CRD, the rules a user meets first: the name, group, names,
/// scope, one storage version, schemas that compile.
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = str_at(crd, "/metadata/name");
    let group = str_at(crd, "/spec/group");
    let plural = str_at(crd, "/spec/names/plural");
    if name != format!("{plural}.{group}") {
        errors.push(invalid(
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if group.is_empty() {
        errors.push(required("spec.group", ""));
    } else if !group.contains('.') {
        errors.push(invalid(
            "spec.group",
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    for (field, value) in [("plural", &plural), ("kind", &str_at(crd, "/spec/names/kind"))] {
        if value.is_empty() {
            errors.push(required(format!("spec.names.{field}"), ""));
        }
    }
    match str_at(crd, "/spec/scope").as_str() {
        "Cluster" | "Namespaced" => {}
        "" => errors.push(required("spec.scope", "")),
        other => errors.push(FieldError {
            field: "spec.scope".into(),
            reason: "FieldValueNotSupported",
            detail: format!(
                "Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        }),
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    let versions = versions.map(Vec::as_slice).unwrap_or_default();
    if versions.is_empty() {
        errors.push(required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count()
        != 1
    {
        errors.push(invalid(
            "spec.versions",
            "Invalid value: \"...\": must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let field = format!("spec.versions[{i}]");
        if v.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.push(required(format!("{field}.name"), ""));
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None => errors
                .push(required(format!("{field}.schema.openAPIV3Schema"), "schemas are required")),
            Some(schema) => {
                let schema_errors = Schema::new(schema).err().into_iter().flatten();
                let rule_errors = super::cel::Rules::compile(schema).err().into_iter().flatten();
                errors.extend(schema_errors.chain(rule_errors).map(|e| FieldError {
                    field: format!("{field}.schema.openAPIV3Schema.{}", e.field),
                    ..e
                }));
            }
        }
    }
    errors
}
