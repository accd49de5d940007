//! The type meta of embedded resources (`x-kubernetes-embedded-resource`), as upstream's
//! `schema/objectmeta` validation checks it after the schema: `apiVersion` and `kind` required
//! strings, a parseable group/version, a kind that is a DNS-1035 label in any case. Their
//! `metadata` is the generic object-meta machinery's.

use serde_json::{Map, Value};

use super::golang::{quote, shown};
use super::{Node, is_type_or_object_meta};
use crate::names::is_dns1035_label;
use crate::validation::FieldError;

/// `field.Path` rendering: `a.b`, `a[key]`, `a[0]`.
pub(super) fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

pub(super) fn validate(root: &Node, object: &Value, errors: &mut Vec<FieldError>) {
    walk(root, object, "", errors);
}

fn walk(schema: &Node, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Object(map) => {
            if schema.embedded {
                type_meta(map, path, errors);
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                if path.is_empty() && is_type_or_object_meta(key) {
                    continue;
                }
                let Some(v) = map.get(key) else { continue };
                if let Some(property) = schema.properties.get(key) {
                    walk(property, v, &child(path, key), errors);
                } else if let Some(additional) = schema.additional_schema() {
                    walk(additional, v, &format!("{path}[{key}]"), errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.items.as_deref() {
                for (i, v) in items.iter().enumerate() {
                    walk(item, v, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn invalid(field: String, value: String, detail: &str) -> FieldError {
    FieldError {
        field,
        reason: "FieldValueInvalid",
        detail: format!("Invalid value: {value}: {detail}"),
    }
}

fn type_meta(map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for key in ["apiVersion", "kind"] {
        if !map.contains_key(key) {
            errors.push(FieldError {
                field: child(path, key),
                reason: "FieldValueRequired",
                detail: "Required value".to_owned(),
            });
        }
    }
    match map.get("apiVersion") {
        None => {}
        Some(Value::String(api_version)) if api_version.is_empty() => {
            errors.push(invalid(child(path, "apiVersion"), quote(api_version), "must not be empty"))
        }
        Some(Value::String(api_version)) if api_version.matches('/').count() > 1 => {
            errors.push(invalid(
                child(path, "apiVersion"),
                quote(api_version),
                &format!("unexpected GroupVersion string: {api_version}"),
            ));
        }
        Some(Value::String(_)) => {}
        Some(other) => {
            errors.push(invalid(child(path, "apiVersion"), shown(other), "must be a string"));
        }
    }
    match map.get("kind") {
        None => {}
        Some(Value::String(kind)) if kind.is_empty() => {
            errors.push(invalid(child(path, "kind"), quote(kind), "must not be empty"));
        }
        Some(Value::String(kind)) => {
            let problems = is_dns1035_label(&kind.to_lowercase());
            if !problems.is_empty() {
                errors.push(invalid(
                    child(path, "kind"),
                    quote(kind),
                    &format!(
                        "may have mixed case, but should otherwise match: {}",
                        problems.join(",")
                    ),
                ));
            }
        }
        Some(other) => errors.push(invalid(child(path, "kind"), shown(other), "must be a string")),
    }
}
