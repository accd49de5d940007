//! Field selectors, parsed and matched as upstream's `k8s.io/apimachinery/pkg/fields`
//! does, and the fields each built-in kind can be selected by, with their values read from
//! the object's JSON (upstream's per-kind field label conversions and `GetAttrs`).
//!
//! The grammar: comma-separated terms `field=value`, `field==value` or `field!=value`. In a
//! value, `\`, `,` and `=` must be escaped with a backslash; nothing is trimmed. Terms are
//! kept sorted by their text, as upstream sorts them before parsing.

use std::fmt;

use serde_json::Value;

/// Why a field selector was refused. The message is upstream's, word for word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The selector string is not in the grammar, or a value is badly escaped.
    #[error("{0}")]
    Parse(String),
    /// The kind cannot be selected by this field (upstream's field label conversion
    /// refused it). The message names the field and, for most kinds, what is supported.
    #[error("{message}")]
    Unsupported { field: String, message: String },
}

/// How a term relates a field to its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub field: String,
    pub operator: Operator,
    /// The unescaped value.
    pub value: String,
}

impl Requirement {
    /// Whether the term holds for a field whose value is `actual` (absent reads as "").
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            Operator::Equals => actual == self.value,
            Operator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector: every term must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    terms: Vec<Requirement>,
}

impl Selector {
    /// The selector that matches everything (the empty string).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the string form (`fields.ParseSelector`).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let mut parts = split_terms(input);
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, operator, raw)) = split_term(part) else {
                return Err(FieldError::Parse(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            terms.push(Requirement {
                field: field.to_owned(),
                operator,
                value: unescape_value(raw)?,
            });
        }
        Ok(Selector { terms })
    }

    /// The selector with one `field=value` term (`fields.OneTermEqualSelector`).
    pub fn one_term_equal(field: impl Into<String>, value: impl Into<String>) -> Self {
        Selector {
            terms: vec![Requirement {
                field: field.into(),
                operator: Operator::Equals,
                value: value.into(),
            }],
        }
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.terms
    }

    /// True when the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value the selector demands of `field`, when a `=` term names it
    /// (`RequiresExactMatch`): `metadata.name=x` turns a list into a get.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.operator == Operator::Equals)
            .map(|t| t.value.as_str())
    }

    /// Whether every term holds; `get` returns a field's value (`None` compares as "").
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| t.matches(get(&t.field).as_deref()))
    }

    /// Checks every field against what `kind` of `group` supports and rewrites legacy
    /// names (`spec.host` to `spec.nodeName` for pods), as the API server does before it
    /// lists: an unsupported field is an error, not an empty result.
    pub fn for_kind(&self, group: &str, kind: &str) -> Result<Selector, FieldError> {
        let terms = self
            .terms
            .iter()
            .map(|t| {
                Ok(Requirement {
                    field: convert_field_label(group, kind, &t.field)?.to_owned(),
                    operator: t.operator,
                    value: t.value.clone(),
                })
            })
            .collect::<Result<_, FieldError>>()?;
        Ok(Selector { terms })
    }

    /// Whether `object`, of `kind` in `group`, satisfies the selector.
    pub fn matches_object(
        &self,
        group: &str,
        kind: &str,
        object: &Value,
    ) -> Result<bool, FieldError> {
        for t in &self.terms {
            let actual = field_value(group, kind, object, &t.field)?;
            if !t.matches(actual.as_deref()) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Splits at commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(input: &str) -> Vec<&str> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// Splits a term at the first operator; the field part has no escaping.
fn split_term(term: &str) -> Option<(&str, Operator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in
            [("!=", Operator::NotEquals), ("==", Operator::Equals), ("=", Operator::Equals)]
        {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

/// Escapes a value for a field selector: `\` → `\\`, `,` → `\,`, `=` → `\=`.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Undoes [`escape_value`]; any other escape, or an unescaped `,` or `=`, is an error.
pub fn unescape_value(value: &str) -> Result<String, FieldError> {
    if !value.contains(['\\', ',', '=']) {
        return Ok(value.to_owned());
    }
    let mut out = String::with_capacity(value.len());
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldError::Parse(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Go prints the rune with %v, which is its code point number.
            ',' | '=' => {
                return Err(FieldError::Parse(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            _ => out.push(c),
        }
    }
    if escaped {
        return Err(FieldError::Parse(
            "invalid field selector: invalid escape sequence: \\".to_owned(),
        ));
    }
    Ok(out)
}

const META: &[&str] = &["metadata.name", "metadata.namespace"];
const POD: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];
const NODE: &[&str] = &["metadata.name", "spec.unschedulable"];
const REPLICATION_CONTROLLER: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const CORE_EVENT: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const EVENTS_EVENT: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];
const NAMESPACE: &[&str] = &["status.phase", "metadata.name"];
const SECRET: &[&str] = &["type", "metadata.namespace", "metadata.name"];
const SERVICE: &[&str] = &["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"];
const JOB: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];
const CSR: &[&str] = &["metadata.name", "spec.signerName"];

/// How a kind refuses an unknown field: upstream's kinds with their own conversion function
/// each word it their way; all others share the default message.
#[derive(Clone, Copy)]
enum Refusal {
    Default,
    NotSupported,
    Job,
}

fn kind_fields(group: &str, kind: &str) -> (&'static [&'static str], Refusal) {
    match (group, kind) {
        ("", "Pod") => (POD, Refusal::NotSupported),
        ("", "Node") => (NODE, Refusal::NotSupported),
        ("", "ReplicationController") => (REPLICATION_CONTROLLER, Refusal::NotSupported),
        ("", "Event") => (CORE_EVENT, Refusal::NotSupported),
        ("", "Namespace") => (NAMESPACE, Refusal::NotSupported),
        ("", "Secret") => (SECRET, Refusal::NotSupported),
        ("", "Service") => (SERVICE, Refusal::NotSupported),
        ("events.k8s.io", "Event") => (EVENTS_EVENT, Refusal::NotSupported),
        ("certificates.k8s.io", "CertificateSigningRequest") => (CSR, Refusal::NotSupported),
        ("batch", "Job") => (JOB, Refusal::Job),
        _ => (META, Refusal::Default),
    }
}

/// The fields `kind` of `group` can be selected by (upstream's field label conversion).
/// Note that upstream accepts neither `metadata.namespace` for nodes and namespaces nor
/// `status.replicas` for apps/v1 ReplicaSets.
pub fn supported_fields(group: &str, kind: &str) -> &'static [&'static str] {
    kind_fields(group, kind).0
}

/// The canonical name of a field label for `kind`, or upstream's refusal.
pub fn convert_field_label(
    group: &str,
    kind: &str,
    label: &str,
) -> Result<&'static str, FieldError> {
    let (fields, refusal) = kind_fields(group, kind);
    if let Some(f) = fields.iter().find(|f| **f == label) {
        return Ok(f);
    }
    if group.is_empty() && kind == "Pod" && label == "spec.host" {
        // Old v1 clients send spec.host; upstream still maps it.
        return Ok("spec.nodeName");
    }
    let message = match refusal {
        Refusal::Default => format!(
            "\"{label}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ),
        Refusal::NotSupported => format!("field label not supported: {label}"),
        Refusal::Job => format!("field label \"{label}\" not supported for batchv1.Job"),
    };
    Err(FieldError::Unsupported { field: label.to_owned(), message })
}

fn at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key))
}

fn string_at(object: &Value, path: &[&str]) -> String {
    at(object, path).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn bool_at(object: &Value, path: &[&str]) -> String {
    at(object, path).and_then(Value::as_bool).unwrap_or(false).to_string()
}

fn int_at(object: &Value, path: &[&str]) -> String {
    at(object, path).and_then(Value::as_i64).unwrap_or(0).to_string()
}

/// The value `field` has in `object` (the JSON of `kind` in `group`), as upstream's
/// selectable field set gives it: absent strings are "", absent numbers "0" and absent
/// booleans "false". `Ok(None)` is a field upstream accepts but never sets (a pod's
/// `status.podIPs`), which compares as "". An unsupported field is upstream's error.
pub fn field_value(
    group: &str,
    kind: &str,
    object: &Value,
    field: &str,
) -> Result<Option<String>, FieldError> {
    let field = convert_field_label(group, kind, field)?;
    let value = match (group, kind, field) {
        (_, _, "metadata.name") => string_at(object, &["metadata", "name"]),
        (_, _, "metadata.namespace") => string_at(object, &["metadata", "namespace"]),
        ("", "Pod", "spec.hostNetwork") => bool_at(object, &["spec", "hostNetwork"]),
        ("", "Pod", "status.podIP") => {
            // Upstream reads the first of status.podIPs, which v1's podIP mirrors.
            let first = at(object, &["status", "podIPs"])
                .and_then(|ips| ips.get(0))
                .and_then(|ip| ip.get("ip"))
                .or_else(|| at(object, &["status", "podIP"]));
            first.and_then(Value::as_str).unwrap_or_default().to_owned()
        }
        ("", "Pod", "status.podIPs") => return Ok(None),
        ("", "Node", "spec.unschedulable") => bool_at(object, &["spec", "unschedulable"]),
        ("", "ReplicationController", "status.replicas") => int_at(object, &["status", "replicas"]),
        ("batch", "Job", "status.successful") => int_at(object, &["status", "succeeded"]),
        ("", "Event", "reportingComponent") => string_at(object, &["reportingComponent"]),
        ("", "Event", "source") => {
            let source = string_at(object, &["source", "component"]);
            if source.is_empty() { string_at(object, &["reportingComponent"]) } else { source }
        }
        ("events.k8s.io", "Event", "source") => {
            let source = string_at(object, &["deprecatedSource", "component"]);
            if source.is_empty() { string_at(object, &["reportingController"]) } else { source }
        }
        (_, _, other) => {
            let path: Vec<&str> = other.split('.').collect();
            string_at(object, &path)
        }
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests;
