//! `x-kubernetes-validations`: CEL rules a CRD's schema attaches to its nodes, evaluated with
//! `self` bound to the node's value (and `oldSelf` to its previous value on updates; rules
//! that use `oldSelf` — transition rules — only run when there is one), as upstream's
//! apiextensions-apiserver does. CEL itself is the `cel` crate.

use std::collections::BTreeMap;

use cel::{Context, Program};
use krust_api::validation::FieldError;
use serde_json::Value;

/// Deeper schemas than this carry no rules here (the structural schema refuses them anyway).
const MAX_DEPTH: usize = 64;

/// The rules of one CRD version's schema, where they apply.
#[derive(Debug, Default)]
pub struct Rules {
    root: Node,
}

#[derive(Default)]
struct Node {
    /// The schema's `type` (how a failing value is named: `Invalid value: "object"`).
    kind: String,
    rules: Vec<Rule>,
    properties: BTreeMap<String, Node>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("rules", &self.rules.len()).finish_non_exhaustive()
    }
}

struct Rule {
    source: String,
    program: Program,
    message: Option<String>,
    reason: String,
    field_path: Option<String>,
    transition: bool,
    optional_old_self: bool,
}

impl Rules {
    /// Compiles every rule of `schema`; a rule that does not compile is an error naming its
    /// place (`properties[spec].x-kubernetes-validations[0].rule`).
    pub fn compile(schema: &Value) -> Result<Rules, Vec<FieldError>> {
        let mut errors = Vec::new();
        let root = Node::compile(schema, "", 0, &mut errors);
        if errors.is_empty() { Ok(Rules { root }) } else { Err(errors) }
    }

    /// Whether any node has a rule.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// The rules `object` breaks; `old` is the object before an update.
    pub fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errors = Vec::new();
        self.root.validate(object, old, "", 0, &mut errors);
        errors
    }
}

impl Node {
    fn compile(schema: &Value, path: &str, depth: usize, errors: &mut Vec<FieldError>) -> Node {
        let at = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        let mut node = Node {
            kind: schema.get("type").and_then(Value::as_str).unwrap_or("object").to_owned(),
            ..Node::default()
        };
        if depth > MAX_DEPTH {
            return node;
        }
        if let Some(Value::Array(rules)) = schema.get("x-kubernetes-validations") {
            for (i, rule) in rules.iter().enumerate() {
                let text = |key: &str| rule.get(key).and_then(Value::as_str).map(str::to_owned);
                let Some(source) = text("rule") else { continue };
                match Program::compile(&source) {
                    Ok(program) => node.rules.push(Rule {
                        transition: program.references().has_variable("oldSelf"),
                        program,
                        message: text("message").filter(|m| !m.is_empty()),
                        reason: text("reason").unwrap_or_else(|| "FieldValueInvalid".into()),
                        field_path: text("fieldPath").filter(|p| !p.is_empty()),
                        optional_old_self: rule.get("optionalOldSelf").and_then(Value::as_bool)
                            == Some(true),
                        source,
                    }),
                    Err(e) => errors.push(FieldError {
                        field: at(&format!("x-kubernetes-validations[{i}].rule")),
                        reason: "FieldValueInvalid",
                        detail: format!("Invalid value: {source:?}: compilation failed: {e}"),
                    }),
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, child) in properties {
                let child =
                    Node::compile(child, &at(&format!("properties[{name}]")), depth + 1, errors);
                if !child.is_empty() {
                    node.properties.insert(name.clone(), child);
                }
            }
        }
        if let Some(child @ Value::Object(_)) = schema.get("additionalProperties") {
            let child = Node::compile(child, &at("additionalProperties"), depth + 1, errors);
            if !child.is_empty() {
                node.additional = Some(Box::new(child));
            }
        }
        if let Some(child) = schema.get("items") {
            let child = Node::compile(child, &at("items"), depth + 1, errors);
            if !child.is_empty() {
                node.items = Some(Box::new(child));
            }
        }
        node
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.properties.is_empty()
            && self.additional.is_none()
            && self.items.is_none()
    }

    fn validate(
        &self,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        depth: usize,
        errors: &mut Vec<FieldError>,
    ) {
        if depth > MAX_DEPTH || value.is_null() {
            return;
        }
        for rule in &self.rules {
            if rule.transition && old.is_none() && !rule.optional_old_self {
                continue;
            }
            if let Some(error) = rule.check(value, old, path, &self.kind) {
                errors.push(error);
            }
        }
        let child =
            |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let node = self.properties.get(key).or(self.additional.as_deref());
                    if let Some(node) = node {
                        let old = old.and_then(|o| o.get(key));
                        node.validate(v, old, &child(key), depth + 1, errors);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(node) = &self.items {
                    // Items are not correlated with the old list: no transition rules inside.
                    for (i, v) in items.iter().enumerate() {
                        node.validate(v, None, &format!("{path}[{i}]"), depth + 1, errors);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Rule {
    fn check(
        &self,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        kind: &str,
    ) -> Option<FieldError> {
        let mut context = Context::default();
        if context.add_variable("self", value).is_err() {
            return None;
        }
        if let Some(old) = old {
            let _ = context.add_variable("oldSelf", old);
        }
        let field = match &self.field_path {
            Some(extra) => format!("{path}{extra}").trim_start_matches('.').to_owned(),
            None => path.to_owned(),
        };
        let message = match self.program.execute(&context) {
            Ok(cel::Value::Bool(true)) => return None,
            Ok(cel::Value::Bool(false)) => {
                self.message.clone().unwrap_or_else(|| format!("failed rule: {}", self.source))
            }
            Ok(other) => format!(
                "rule did not evaluate to a boolean ({other:?}) evaluating rule: {}",
                self.source
            ),
            Err(e) => format!("{e} evaluating rule: {}", self.source),
        };
        let (reason, detail) = match self.reason.as_str() {
            "FieldValueForbidden" => ("FieldValueForbidden", format!("Forbidden: {message}")),
            "FieldValueRequired" => ("FieldValueRequired", format!("Required value: {message}")),
            "FieldValueDuplicate" => ("FieldValueDuplicate", format!("Duplicate value: {kind:?}")),
            _ => ("FieldValueInvalid", format!("Invalid value: {kind:?}: {message}")),
        };
        Some(FieldError { field, reason, detail })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Rules;

    fn rules() -> Rules {
        Rules::compile(&json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.replicas <= self.maxReplicas", "message": "replicas must not exceed maxReplicas"},
                    {"rule": "self.name.startsWith('web-')", "reason": "FieldValueForbidden", "fieldPath": ".name", "message": "names start with web-"},
                    {"rule": "self.replicas >= oldSelf.replicas"},
                ],
                "properties": {
                    "replicas": {"type": "integer"},
                    "maxReplicas": {"type": "integer"},
                    "name": {"type": "string"},
                    "ports": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 1024"}]}},
                },
            }},
        }))
        .expect("rules compile")
    }

    fn messages(
        rules: &Rules,
        spec: serde_json::Value,
        old: Option<serde_json::Value>,
    ) -> Vec<String> {
        let old = old.map(|spec| json!({"spec": spec}));
        rules
            .validate(&json!({"spec": spec}), old.as_ref())
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect()
    }

    #[test]
    fn broken_rules_say_which_and_why() {
        assert!(!rules().is_empty());
        let spec = json!({"replicas": 5, "maxReplicas": 3, "name": "db", "ports": [80, 8080]});
        assert_eq!(
            messages(&rules(), spec, None),
            [
                "spec: Invalid value: \"object\": replicas must not exceed maxReplicas",
                "spec.name: Forbidden: names start with web-",
                "spec.ports[0]: Invalid value: \"integer\": failed rule: self > 1024",
            ]
        );
    }

    #[test]
    fn transition_rules_run_on_updates_only() {
        let spec = json!({"replicas": 1, "maxReplicas": 3, "name": "web-a"});
        assert!(messages(&rules(), spec.clone(), None).is_empty());
        let old = json!({"replicas": 2, "maxReplicas": 3, "name": "web-a"});
        assert_eq!(
            messages(&rules(), spec, Some(old)),
            ["spec: Invalid value: \"object\": failed rule: self.replicas >= oldSelf.replicas"]
        );
    }

    #[test]
    fn rules_that_do_not_compile_are_refused() {
        let errors = Rules::compile(
            &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.x <="}]}),
        )
        .expect_err("refused");
        assert_eq!(errors[0].field, "x-kubernetes-validations[0].rule");
        assert!(
            errors[0].detail.starts_with("Invalid value: \"self.x <=\": compilation failed: "),
            "{}",
            errors[0].detail
        );
    }
}
