//! `paths` of one group-version document: every REST path of every resource the catalog
//! serves in it, with the operations its verbs allow. Each operation names its single-object
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action`, the query parameters kubectl
//! checks for (`fieldValidation` above all) and, for PATCH, the four patch media types.

use krust_api::catalog::{Resource, Subresource};
use serde_json::{Map, Value, json};

use super::kinds;
use super::schemas::{SchemaSet, reference};

type Meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
type DeleteOptions = k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
type MetaStatus = k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
type Patch = k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch;

/// The media types a PATCH accepts.
pub(super) const PATCH_TYPES: [&str; 4] = [
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// What an operation does, as `x-kubernetes-action` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Get,
    List,
    Post,
    Put,
    Patch,
    Delete,
    DeleteCollection,
    Connect,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::List => "list",
            Action::Post => "post",
            Action::Put => "put",
            Action::Patch => "patch",
            Action::Delete => "delete",
            Action::DeleteCollection => "deletecollection",
            Action::Connect => "connect",
        }
    }
}

/// The group-version-kind an operation acts on.
#[derive(Debug, Clone, Copy)]
struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

/// Builds the paths of a group-version's resources, adding the schemas they use to `schemas`.
pub(super) fn build(prefix: &str, resources: &[&Resource], schemas: &mut SchemaSet<'_>) -> Value {
    let mut paths = Map::new();
    let status = schemas.add::<MetaStatus>();
    schemas.add::<Meta>();
    let patch = schemas.add::<Patch>();
    let delete_options = schemas.add::<DeleteOptions>();
    let mut ctx = Context { schemas, status, patch, delete_options };
    for resource in resources {
        ctx.resource(prefix, resource, &mut paths);
    }
    Value::Object(paths)
}

struct Context<'s, 'l> {
    schemas: &'s mut SchemaSet<'l>,
    status: String,
    patch: String,
    delete_options: String,
}

impl Context<'_, '_> {
    fn resource(&mut self, prefix: &str, r: &Resource, paths: &mut Map<String, Value>) {
        let gvk = Gvk { group: r.group, version: r.version, kind: r.kind };
        let schema = kinds::lookup(r.group, r.version, r.kind);
        let (object, list) = match schema {
            Some(kind) => {
                let object = self.schemas.add_kind(kind);
                let list = self.schemas.add_list(&object, kind);
                (Some(object), Some(list))
            }
            None => (None, None),
        };
        self.schemas.tag(&self.delete_options, r.group, r.version, "DeleteOptions");
        let id = OperationId::new(r);
        let ns = if r.namespaced { "/namespaces/{namespace}" } else { "" };
        let collection = format!("{prefix}{ns}/{}", r.plural);
        let item = format!("{collection}/{{name}}");
        let scope = if r.namespaced { "Namespaced" } else { "" };
        let describe = |what: &str| format!("{what} {}", r.kind);

        let mut ops = Map::new();
        if r.has_verb("list") {
            ops.insert(
                "get".into(),
                self.op(
                    Action::List,
                    id.make("list", scope, ""),
                    describe("list or watch objects of kind"),
                    gvk,
                    list_params(),
                    list.as_deref(),
                ),
            );
        }
        if r.has_verb("create") {
            ops.insert(
                "post".into(),
                self.write_op(
                    Action::Post,
                    id.make("create", scope, ""),
                    describe("create a"),
                    gvk,
                    object.as_deref(),
                ),
            );
        }
        if r.has_verb("deletecollection") {
            let mut params = delete_params();
            params.extend(list_params());
            let mut op = self.op(
                Action::DeleteCollection,
                id.make("delete", "Collection", scope),
                describe("delete collection of"),
                gvk,
                params,
                Some(&self.status),
            );
            self.delete_body(&mut op);
            ops.insert("delete".into(), op);
        }
        insert_path(paths, collection, ops, r.namespaced, false);

        if r.namespaced && r.has_verb("list") {
            let mut ops = Map::new();
            ops.insert(
                "get".into(),
                self.op(
                    Action::List,
                    format!("{}ForAllNamespaces", id.make("list", "", "")),
                    describe("list or watch objects of kind"),
                    gvk,
                    list_params(),
                    list.as_deref(),
                ),
            );
            insert_path(paths, format!("{prefix}/{}", r.plural), ops, false, false);
        }

        let mut ops = Map::new();
        if r.has_verb("get") {
            ops.insert(
                "get".into(),
                self.op(
                    Action::Get,
                    id.make("read", scope, ""),
                    describe("read the specified"),
                    gvk,
                    Vec::new(),
                    object.as_deref(),
                ),
            );
        }
        if r.has_verb("update") {
            ops.insert(
                "put".into(),
                self.write_op(
                    Action::Put,
                    id.make("replace", scope, ""),
                    describe("replace the specified"),
                    gvk,
                    object.as_deref(),
                ),
            );
        }
        if r.has_verb("patch") {
            ops.insert(
                "patch".into(),
                self.write_op(
                    Action::Patch,
                    id.make("patch", scope, ""),
                    describe("partially update the specified"),
                    gvk,
                    object.as_deref(),
                ),
            );
        }
        if r.has_verb("delete") {
            let mut op = self.op(
                Action::Delete,
                id.make("delete", scope, ""),
                describe("delete a"),
                gvk,
                delete_params(),
                Some(&self.status),
            );
            self.delete_body(&mut op);
            ops.insert("delete".into(), op);
        }
        insert_path(paths, item.clone(), ops, r.namespaced, true);

        for sub in r.subresources {
            self.subresource(&item, r, sub, &id, scope, paths);
        }
    }

    fn subresource(
        &mut self,
        item: &str,
        r: &Resource,
        sub: &Subresource,
        id: &OperationId,
        scope: &str,
        paths: &mut Map<String, Value>,
    ) {
        let gvk = Gvk {
            group: sub.group.unwrap_or(r.group),
            version: sub.version.unwrap_or(r.version),
            kind: sub.kind,
        };
        let suffix = capitalize(sub.name);
        let path = format!("{item}/{}", sub.name);
        let mut ops = Map::new();
        // Streaming subresources (exec, attach, portforward, proxy, log) take options, not objects.
        if sub.kind.ends_with("Options") || sub.name == "log" {
            for verb in sub.verbs {
                let (method, word) = match *verb {
                    "get" => ("get", "Get"),
                    "create" => ("post", "Post"),
                    "update" => ("put", "Put"),
                    "patch" => ("patch", "Patch"),
                    "delete" => ("delete", "Delete"),
                    _ => continue,
                };
                let op_id = format!("connect{}{word}{scope}{}{suffix}", id.group_version, r.kind);
                let mut op = self.op(
                    Action::Connect,
                    op_id,
                    format!(
                        "connect {} requests to {} of {}",
                        word.to_uppercase(),
                        sub.name,
                        r.kind
                    ),
                    gvk,
                    Vec::new(),
                    None,
                );
                if let Some(responses) = op.pointer_mut("/responses/200") {
                    *responses = json!({
                        "description": "OK",
                        "content": { "*/*": { "schema": { "type": "string" } } },
                    });
                }
                ops.insert(method.into(), op);
            }
            insert_path(paths, path, ops, r.namespaced, true);
            return;
        }
        let object =
            kinds::lookup(gvk.group, gvk.version, gvk.kind).map(|k| self.schemas.add_kind(k));
        let object = object.as_deref();
        let what = format!("{} of the specified {}", sub.name, r.kind);
        for verb in sub.verbs {
            let (method, op) = match *verb {
                "get" => (
                    "get",
                    self.op(
                        Action::Get,
                        id.make("read", scope, &suffix),
                        format!("read {what}"),
                        gvk,
                        Vec::new(),
                        object,
                    ),
                ),
                "update" => (
                    "put",
                    self.write_op(
                        Action::Put,
                        id.make("replace", scope, &suffix),
                        format!("replace {what}"),
                        gvk,
                        object,
                    ),
                ),
                "patch" => (
                    "patch",
                    self.write_op(
                        Action::Patch,
                        id.make("patch", scope, &suffix),
                        format!("partially update {what}"),
                        gvk,
                        object,
                    ),
                ),
                "create" => (
                    "post",
                    self.write_op(
                        Action::Post,
                        id.make("create", scope, &suffix),
                        format!("create {what}"),
                        gvk,
                        object,
                    ),
                ),
                _ => continue,
            };
            ops.insert(method.into(), op);
        }
        insert_path(paths, path, ops, r.namespaced, true);
    }

    /// POST, PUT and PATCH: the write parameters kubectl verifies, and the request body.
    fn write_op(
        &self,
        action: Action,
        id: String,
        description: String,
        gvk: Gvk<'_>,
        object: Option<&str>,
    ) -> Value {
        let mut params = vec![
            query(
                "dryRun",
                "string",
                "When present, indicates that modifications should not be persisted. Valid value: All.",
            ),
            query(
                "fieldManager",
                "string",
                "A name associated with the actor or entity that is making these changes.",
            ),
            query(
                "fieldValidation",
                "string",
                "How the server handles unknown or duplicate fields: Ignore, Warn or Strict.",
            ),
        ];
        if action == Action::Patch {
            params.push(query("force", "boolean", "Force is going to \"force\" Apply requests; it must be unset for non-apply patch requests."));
        }
        let mut op = self.op(action, id, description, gvk, params, object);
        let body = match action {
            Action::Patch => {
                let content: Map<String, Value> = PATCH_TYPES
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({ "schema": reference(&self.patch) })))
                    .collect();
                json!({ "content": content, "required": true })
            }
            _ => {
                let schema = object.map_or_else(|| json!({ "type": "object" }), reference);
                json!({ "content": { "*/*": { "schema": schema } }, "required": true })
            }
        };
        if let Value::Object(op) = &mut op {
            op.insert("requestBody".into(), body);
            if matches!(action, Action::Post | Action::Put) {
                let created = op.get("responses").and_then(|r| r.get("200")).cloned();
                if let (Some(created), Some(Value::Object(responses))) =
                    (created, op.get_mut("responses"))
                {
                    responses.insert("201".into(), created.clone());
                    if action == Action::Post {
                        responses.insert("202".into(), created);
                    }
                }
            }
        }
        op
    }

    fn delete_body(&self, op: &mut Value) {
        if let Value::Object(op) = op {
            op.insert(
                "requestBody".into(),
                json!({ "content": { "*/*": { "schema": reference(&self.delete_options) } } }),
            );
        }
    }

    fn op(
        &self,
        action: Action,
        id: String,
        description: String,
        gvk: Gvk<'_>,
        params: Vec<Value>,
        response: Option<&str>,
    ) -> Value {
        let schema = response.map_or_else(|| json!({ "type": "object" }), reference);
        let mut op = json!({
            "description": description,
            "operationId": id,
            "tags": [tag(gvk.group, gvk.version)],
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": { "schema": schema.clone() },
                        "application/yaml": { "schema": schema },
                    },
                },
                "401": { "description": "Unauthorized" },
            },
            "x-kubernetes-action": action.name(),
            "x-kubernetes-group-version-kind": {
                "group": gvk.group, "kind": gvk.kind, "version": gvk.version,
            },
        });
        if !params.is_empty()
            && let Value::Object(map) = &mut op
        {
            map.insert("parameters".into(), Value::Array(params));
        }
        op
    }
}

/// Adds a path item with its path-level parameters, unless it has no operations.
fn insert_path(
    paths: &mut Map<String, Value>,
    path: String,
    ops: Map<String, Value>,
    namespaced: bool,
    named: bool,
) {
    if ops.is_empty() {
        return;
    }
    let mut item = ops;
    let mut params = Vec::new();
    if named {
        params.push(path_param("name", "name of the object"));
    }
    if namespaced {
        params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    params.push(query("pretty", "string", "If 'true', then the output is pretty printed."));
    item.insert("parameters".into(), Value::Array(params));
    paths.insert(path, Value::Object(item));
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "path", "required": true, "description": description,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({
        "name": name, "in": "query", "description": description,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "boolean",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
        ),
        query(
            "continue",
            "string",
            "The continue option should be set when retrieving more results from the server.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "limit is a maximum number of responses to return for a list call.",
        ),
        query(
            "resourceVersion",
            "string",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
        ),
        query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        query(
            "watch",
            "boolean",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted. Valid value: All.",
        ),
        query(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "if set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error.",
        ),
        query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy."),
        query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed: Orphan, Background or Foreground.",
        ),
    ]
}

/// Upstream's operation ids: `<verb><Group><Version>[Namespaced]<Kind>[Subresource]`.
struct OperationId {
    group_version: String,
    kind: &'static str,
}

impl OperationId {
    fn new(r: &Resource) -> Self {
        Self {
            group_version: format!("{}{}", group_word(r.group), capitalize(r.version)),
            kind: r.kind,
        }
    }

    fn make(&self, verb: &str, scope: &str, suffix: &str) -> String {
        // `deleteCollection` puts "Collection" between the group-version and the scope.
        if scope == "Collection" {
            return format!("{verb}{}Collection{suffix}{}", self.group_version, self.kind);
        }
        format!("{verb}{}{scope}{}{suffix}", self.group_version, self.kind)
    }
}

/// `Core`, `Apps`, `RbacAuthorization`, `FlowcontrolApiserver`.
fn group_word(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    group.trim_end_matches(".k8s.io").split('.').map(capitalize).collect()
}

/// `core_v1`, `apps_v1`, `rbacAuthorization_v1`.
fn tag(group: &str, version: &str) -> String {
    let word = group_word(group);
    let mut chars = word.chars();
    let lowered: String =
        chars.next().map(|c| c.to_ascii_lowercase()).into_iter().chain(chars).collect();
    format!("{lowered}_{version}")
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect()
}
