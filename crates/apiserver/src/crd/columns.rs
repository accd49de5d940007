//! `additionalPrinterColumns`: the Table columns of a custom resource, each a JSONPath into the
//! object and a type that decides how its cell reads (upstream's CRD table convertor).

use jsonpath_rust::JsonPath as _;
use serde_json::{Value, json};

/// One column after `Name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub kind: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// Kubernetes JSONPath without braces: `.spec.replicas`.
    pub json_path: String,
}

impl PrinterColumn {
    pub fn parse(column: &Value) -> Option<Self> {
        let text =
            |key: &str| column.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let name = text("name");
        let json_path = text("jsonPath");
        if name.is_empty() || json_path.is_empty() {
            return None;
        }
        Some(Self {
            name,
            kind: text("type"),
            format: text("format"),
            description: text("description"),
            priority: column.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path,
        })
    }

    /// The column a custom resource without columns of its own gets.
    pub fn age() -> Self {
        Self {
            name: "Age".into(),
            kind: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }
    }

    /// The column's definition in a Table.
    pub fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }

    /// The cell of `object`: null where the path finds nothing or the value is not of the
    /// column's type; dates as ages (`5m`); strings as the path prints them.
    pub fn cell(&self, object: &Value) -> Value {
        let path = format!("${}", self.json_path);
        let found = match object.query(&path) {
            Ok(found) => found,
            Err(_) => return Value::Null,
        };
        let Some(value) = found.first() else { return Value::Null };
        match (self.kind.as_str(), value) {
            ("string", Value::String(s)) => json!(s),
            ("string", other) => json!(other.to_string()),
            ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => json!(n),
            ("number", Value::Number(n)) => json!(n),
            ("boolean", Value::Bool(b)) => json!(b),
            ("date", Value::String(s)) => json!(crate::table::age(s)),
            _ => Value::Null,
        }
    }
}
