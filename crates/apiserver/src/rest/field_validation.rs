//! `fieldValidation`: what happens to fields the kind does not declare and to fields a JSON
//! body names twice. Unknown fields are always dropped (as upstream's decoding drops them);
//! `Strict` refuses the request naming them, `Warn` (the default) names them in `Warning`
//! headers, `Ignore` says nothing.

use std::collections::HashSet;
use std::fmt;

use axum::http::HeaderValue;
use axum::response::Response;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{ApiResult, Ctx};
use crate::status::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ignore,
    Warn,
    Strict,
}

fn mode(ctx: &Ctx<'_>) -> ApiResult<Mode> {
    match ctx.params.field_validation.as_deref() {
        None | Some("") | Some("Warn") => Ok(Mode::Warn),
        Some("Strict") => Ok(Mode::Strict),
        Some("Ignore") => Ok(Mode::Ignore),
        Some(other) => Err(Status::bad_request(format!(
            "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
        ))),
    }
}

/// Drops the unknown fields of `object` and applies the request's `fieldValidation` to them
/// and to the duplicates in `json_body` (the raw body, when it was JSON). Returns the
/// warnings the response carries.
pub(super) async fn check(
    ctx: &Ctx<'_>,
    object: &mut Value,
    json_body: Option<&[u8]>,
) -> ApiResult<Vec<String>> {
    let mode = mode(ctx)?;
    let schemas = crate::openapi::field_schemas().await?;
    let resource = &ctx.resource;
    let unknown = match ctx.custom() {
        // A custom resource without a schema keeps everything.
        Some(custom) => match &custom.schema {
            Some(schema) => schema.prune(object),
            None => Vec::new(),
        },
        None => {
            match schemas.prune_unknown(resource.group, resource.version, resource.kind, object) {
                Some(unknown) => unknown,
                None => return Ok(Vec::new()),
            }
        }
    };
    if mode == Mode::Ignore {
        return Ok(Vec::new());
    }
    let duplicates = json_body.map(duplicate_fields).unwrap_or_default();
    let problems: Vec<String> = unknown
        .iter()
        .map(|path| format!("unknown field \"{path}\""))
        .chain(duplicates.iter().map(|path| format!("duplicate field \"{path}\"")))
        .collect();
    if mode == Mode::Strict && !problems.is_empty() {
        let version = resource.version;
        let kind = resource.kind;
        return Err(Status::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            problems.join(", ")
        )));
    }
    Ok(problems)
}

/// Adds one `Warning: 299 - "<text>"` header per warning, as upstream sends them.
pub(super) fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

/// The paths of the keys a JSON document names more than once (the last one wins, as
/// serde_json keeps it). A malformed document has none: its parse error is reported elsewhere.
pub(super) fn duplicate_fields(json: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let _ = Duplicates { path: String::new(), found: &mut found, depth: 0 }
        .deserialize(&mut deserializer);
    found
}

/// Deeper documents are not searched (serde_json refuses them at 128 anyway).
const MAX_DEPTH: usize = 100;

struct Duplicates<'a> {
    path: String,
    found: &'a mut Vec<String>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Duplicates<'_> {
    fn child(&mut self, segment: fmt::Arguments<'_>) -> Duplicates<'_> {
        let path = if self.path.is_empty() {
            segment.to_string().trim_start_matches('.').to_owned()
        } else {
            format!("{}{segment}", self.path)
        };
        Duplicates { path, found: self.found, depth: self.depth + 1 }
    }
}

impl<'de> Visitor<'de> for Duplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.depth >= MAX_DEPTH {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let child = self.child(format_args!(".{key}"));
            if !seen.insert(key) {
                child.found.push(child.path.clone());
            }
            map.next_value_seed(child)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            if self.depth >= MAX_DEPTH {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                continue;
            }
            let child = self.child(format_args!("[{i}]"));
            if seq.next_element_seed(child)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::duplicate_fields;

    #[test]
    fn duplicates_are_named_by_path() {
        let body = br#"{"metadata":{"name":"a","name":"b","labels":{"x":"1"}},
            "spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"c","image":"i","image":"j"}]}},"replicas":2}}"#;
        assert_eq!(
            duplicate_fields(body),
            vec![
                "metadata.name".to_owned(),
                "spec.template.spec.containers[0].image".to_owned(),
                "spec.replicas".to_owned(),
            ]
        );
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":{"b":1}}"#).is_empty());
        assert!(duplicate_fields(b"{not json").is_empty(), "parse errors are reported elsewhere");
    }
}
