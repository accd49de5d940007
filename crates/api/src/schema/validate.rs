//! Value validation as kube-openapi's `validate.SchemaValidator` does it for custom resources, and
//! its results turned into field errors as apiextensions-apiserver's
//! `kubeOpenAPIResultToFieldErrors` turns them.
//!
//! kube-openapi runs, for each value, the type, junctor (allOf/anyOf/oneOf/not), string, format,
//! number, array, enum and object validators in that order, each only for the kinds of value it
//! applies to, and keeps the first of identical messages. Which alternative's errors an `anyOf` or
//! `oneOf` reports depends on how many checks passed in each, so those counts are kept as it
//! keeps them. Object fields are visited in sorted order (upstream's order is Go's random map
//! order).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::golang::{self, GoNumber, quote};
use super::{Additional, MAX_DEPTH, Node, formats, is_type_or_object_meta};
use crate::validation::FieldError;

/// What kube-openapi reports, before conversion to a field error.
struct Problem {
    /// The path of a `*errors.Validation` (`None` for its other errors, which upstream reports
    /// at the `<nil>` path).
    name: Option<String>,
    code: Code,
    /// The value upstream puts after `Invalid value: ` (`None`: Go's nil).
    value: Option<Value>,
    message: String,
}

/// The codes `kubeOpenAPIResultToFieldErrors` tells apart.
enum Code {
    Required,
    Enum(Vec<Value>),
    TooLong(i64),
    TooMany { actual: i64, max: i64 },
    InvalidType,
    Invalid,
}

impl Problem {
    fn at(path: &str, code: Code, value: Option<Value>, message: String) -> Problem {
        Problem { name: Some(path.to_owned()), code, value, message }
    }

    /// An error that is not a `*errors.Validation` (junctor and range messages).
    fn plain(message: String) -> Problem {
        Problem { name: None, code: Code::Invalid, value: None, message }
    }

    fn into_field_error(self) -> FieldError {
        let Some(name) = self.name else {
            return field_error(
                "<nil>",
                "FieldValueInvalid",
                format!("Invalid value: \"\": {}", self.message),
            );
        };
        let field = if name.is_empty() || name == "." {
            "<nil>".to_owned()
        } else {
            name.strip_prefix('.').unwrap_or(&name).to_owned()
        };
        // Upstream replaces a nil value by "" for these two.
        let shown = || self.value.as_ref().map_or_else(|| "\"\"".to_owned(), golang::shown);
        match self.code {
            Code::Required => field_error(&field, "FieldValueRequired", "Required value".into()),
            Code::Enum(allowed) => {
                let mut detail = format!(
                    "Unsupported value: {}",
                    self.value.as_ref().map_or_else(|| "null".to_owned(), golang::shown)
                );
                if !allowed.is_empty() {
                    let quoted: Vec<String> = allowed
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => quote(s),
                            other => quote(&golang::json(other)),
                        })
                        .collect();
                    detail.push_str(&format!(": supported values: {}", quoted.join(", ")));
                }
                field_error(&field, "FieldValueNotSupported", detail)
            }
            Code::TooLong(max) => {
                let detail = match max {
                    1 => "Too long: may not be more than 1 byte".to_owned(),
                    max if max >= 0 => format!("Too long: may not be more than {max} bytes"),
                    _ => "Too long: value is too long".to_owned(),
                };
                field_error(&field, "FieldValueTooLong", detail)
            }
            Code::TooMany { actual, max } => {
                let limit = match max {
                    1 => "must have at most 1 item".to_owned(),
                    max if max >= 0 => format!("must have at most {max} items"),
                    _ => "has too many items".to_owned(),
                };
                field_error(&field, "FieldValueTooMany", format!("Too many: {actual}: {limit}"))
            }
            Code::InvalidType => field_error(
                &field,
                "FieldValueTypeInvalid",
                format!("Invalid value: {}: {}", shown(), self.message),
            ),
            Code::Invalid => field_error(
                &field,
                "FieldValueInvalid",
                format!("Invalid value: {}: {}", shown(), self.message),
            ),
        }
    }
}

fn field_error(field: &str, reason: &'static str, detail: String) -> FieldError {
    FieldError { field: field.to_owned(), reason, detail }
}

/// kube-openapi's `Result`: errors (first of each message kept) and how many checks passed.
#[derive(Default)]
struct Outcome {
    problems: Vec<Problem>,
    seen: HashSet<String>,
    matches: usize,
}

impl Outcome {
    fn failed(problem: Problem) -> Outcome {
        let mut outcome = Outcome::default();
        outcome.add(problem);
        outcome
    }

    fn passed() -> Outcome {
        Outcome { matches: 1, ..Outcome::default() }
    }

    fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    fn add(&mut self, problem: Problem) {
        if self.seen.insert(problem.message.clone()) {
            self.problems.push(problem);
        }
    }

    fn merge(&mut self, other: Outcome) {
        for problem in other.problems {
            self.add(problem);
        }
        self.matches += other.matches;
    }
}

pub(super) fn validate(root: &Node, object: &Value) -> Vec<FieldError> {
    check(root, object, "", 0).problems.into_iter().map(Problem::into_field_error).collect()
}

/// One `SchemaValidator.Validate`. `path` is kube-openapi's (`spec.items[0].name`, map keys
/// joined with dots); the root's (`""`) type and object meta are not checked here.
fn check(node: &Node, value: &Value, path: &str, depth: usize) -> Outcome {
    if depth > MAX_DEPTH {
        return Outcome::failed(Problem::plain(format!("{} is nested too deeply", quote(path))));
    }
    let mut out = Outcome::default();
    if value.is_null() {
        out.merge(check_type(node, value, path));
        out.merge(check_enum(node, value, path));
        return out;
    }
    let mut applied = 0;
    if !node.types.is_empty() || node.format.is_some() {
        out.merge(check_type(node, value, path));
        applied += 1;
    }
    out.merge(check_junctors(node, value, path, depth));
    applied += 1;
    if let Value::String(s) = value {
        out.merge(check_string(node, s, path));
        applied += 1;
        if let Some(format) = node.format.as_deref().filter(|f| formats::known(f)) {
            if !formats::validates(format, s) {
                out.merge(Outcome::failed(invalid_type(path, format, s)));
            }
            applied += 1;
        }
    }
    if let Value::Number(n) = value {
        out.merge(check_number(node, GoNumber::of(n), path));
        applied += 1;
    }
    if let Value::Array(items) = value {
        out.merge(check_array(node, items, path, depth));
        applied += 1;
    }
    out.merge(check_enum(node, value, path));
    applied += 1;
    if let Value::Object(map) = value {
        out.merge(check_object(node, map, path, depth));
        applied += 1;
    }
    out.matches += applied + 1;
    out
}

/// `%s in body must be of type %s: %q`.
fn invalid_type(path: &str, type_name: &str, value: &str) -> Problem {
    Problem::at(
        path,
        Code::InvalidType,
        Some(Value::String(value.to_owned())),
        format!("{path} in body must be of type {type_name}: {}", quote(value)),
    )
}

/// The JSON type and format kube-openapi infers from a Go value.
fn inferred(value: &Value) -> (&'static str, &'static str) {
    match value {
        Value::Null => ("", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) => match GoNumber::of(n) {
            GoNumber::Int(_) => ("integer", "int64"),
            GoNumber::Float(_) => ("number", "float64"),
        },
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

fn check_type(node: &Node, value: &Value, path: &str) -> Outcome {
    let types = &node.types;
    let has = |t: &str| types.iter().any(|x| x == t);
    if value.is_null() {
        if !types.is_empty() && !has("null") && !node.nullable {
            return Outcome::failed(invalid_type(path, &types.join(","), "null"));
        }
        return Outcome::passed();
    }
    let (kind, format) = inferred(value);
    let float_int =
        kind == "number" && value.as_f64().is_some_and(golang::is_json_integer) && has("integer");
    let int_float = kind == "integer" && has("number");
    let wanted_format = node.format.as_deref().unwrap_or_default();
    let textual = value.is_string() || value.is_array();
    let type_ok = has(kind) || float_int || int_float;
    let other_format = !wanted_format.is_empty() && format != wanted_format;
    if !textual && other_format && !type_ok {
        return Outcome::failed(invalid_type(path, wanted_format, format));
    }
    // A string format on a string or array leaves the type to the format check.
    let string_format = !wanted_format.is_empty() && !has("number") && !has("integer");
    if (textual && string_format) || type_ok {
        return Outcome::passed();
    }
    Outcome::failed(invalid_type(path, &types.join(","), kind))
}

fn check_junctors(node: &Node, value: &Value, path: &str, depth: usize) -> Outcome {
    let mut main = Outcome::default();
    if !node.any_of.is_empty() {
        let mut best: Option<Outcome> = None;
        let mut success: Option<Outcome> = None;
        for schema in &node.any_of {
            let result = check(schema, value, path, depth + 1);
            if result.is_valid() {
                best = None;
                success = Some(result);
                break;
            }
            if best.as_ref().is_none_or(|b| result.matches > b.matches) {
                best = Some(result);
            }
        }
        if success.is_none() {
            main.add(Problem::plain(format!(
                "{} must validate at least one schema (anyOf)",
                quote(path)
            )));
        }
        if let Some(chosen) = best.or(success) {
            main.merge(chosen);
        }
    }
    if !node.one_of.is_empty() {
        let mut best: Option<Outcome> = None;
        let mut success: Option<Outcome> = None;
        let mut valid = 0;
        for schema in &node.one_of {
            let result = check(schema, value, path, depth + 1);
            if result.is_valid() {
                valid += 1;
                best = None;
                if success.is_none() {
                    success = Some(result);
                }
                continue;
            }
            if valid == 0 && best.as_ref().is_none_or(|b| result.matches > b.matches) {
                best = Some(result);
            }
        }
        if valid == 1 {
            if let Some(chosen) = success {
                main.merge(chosen);
            }
        } else {
            let found = if valid == 0 {
                "Found none valid".to_owned()
            } else {
                format!("Found {valid} valid alternatives")
            };
            main.add(Problem::plain(format!(
                "{} must validate one and only one schema (oneOf). {found}",
                quote(path)
            )));
            if let Some(chosen) = best {
                main.merge(chosen);
            }
        }
    }
    if !node.all_of.is_empty() {
        let mut valid = 0;
        for schema in &node.all_of {
            let result = check(schema, value, path, depth + 1);
            if result.is_valid() {
                valid += 1;
            }
            main.merge(result);
        }
        if valid != node.all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            main.add(Problem::plain(format!(
                "{} must validate all the schemas (allOf){none}",
                quote(path)
            )));
        }
    }
    if let Some(not) = &node.not
        && check(not, value, path, depth + 1).is_valid()
    {
        main.add(Problem::plain(format!("{} must not validate the schema (not)", quote(path))));
    }
    main.matches += 1;
    main
}

/// maxLength, minLength, pattern: the first that fails is the only error.
fn check_string(node: &Node, s: &str, path: &str) -> Outcome {
    let runes = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    let value = || Some(Value::String(s.to_owned()));
    if let Some(max) = node.max_length
        && runes > max
    {
        return Outcome::failed(Problem::at(
            path,
            Code::TooLong(max),
            value(),
            format!("{path} in body should be at most {max} chars long"),
        ));
    }
    if let Some(min) = node.min_length
        && runes < min
    {
        return Outcome::failed(Problem::at(
            path,
            Code::Invalid,
            value(),
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = &node.pattern
        && !pattern.is_match(s)
    {
        return Outcome::failed(Problem::at(
            path,
            Code::Invalid,
            value(),
            format!("{path} in body should match '{}'", pattern.source),
        ));
    }
    Outcome::default()
}

fn number_value(n: GoNumber) -> Option<Value> {
    match n {
        GoNumber::Int(i) => Some(Value::from(i)),
        GoNumber::Float(f) => {
            Some(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
        }
    }
}

fn shown_number(n: GoNumber) -> String {
    match n {
        GoNumber::Int(i) => i.to_string(),
        GoNumber::Float(f) => golang::float_v(f),
    }
}

/// go-openapi's `IsValueValidAgainstRange`: whether `n` fits the node's numeric type and format.
fn in_range(
    n: GoNumber,
    type_name: &str,
    format: &str,
    prefix: &str,
    path: &str,
) -> Result<(), String> {
    let text = match n {
        GoNumber::Int(i) => i.to_string(),
        GoNumber::Float(f) => golang::float_f(f),
    };
    let fits = match (type_name, format) {
        ("integer", "int32") => text.parse::<i32>().is_ok(),
        ("integer", _) => text.parse::<i64>().is_ok(),
        (_, "float") => text.parse::<f64>().is_ok_and(|f| (f as f32).is_finite()),
        _ => true,
    };
    if fits {
        Ok(())
    } else if format.is_empty() {
        Err(format!("{prefix} value must be of type {type_name} (default format) in {path}"))
    } else {
        Err(format!("{prefix} value must be of type {type_name} with format {format} in {path}"))
    }
}

fn not_multiple(path: &str, factor: String, n: GoNumber) -> Problem {
    Problem::at(
        path,
        Code::Invalid,
        number_value(n),
        format!("{path} in body should be a multiple of {factor}"),
    )
}

fn factor_not_positive(path: &str, factor: GoNumber) -> Problem {
    Problem::at(
        path,
        Code::Invalid,
        number_value(factor),
        format!("factor MultipleOf declared for {path} must be positive: {}", shown_number(factor)),
    )
}

fn multiple_of_float(path: &str, x: f64, factor: f64) -> Option<Problem> {
    if factor <= 0.0 {
        return Some(factor_not_positive(path, GoNumber::Float(factor)));
    }
    let ratio = if factor < 1.0 { 1.0 / factor * x } else { x / factor };
    (!golang::is_json_integer(ratio))
        .then(|| not_multiple(path, golang::float_v(factor), GoNumber::Float(x)))
}

fn multiple_of_native(path: &str, n: GoNumber, factor: f64) -> Option<Problem> {
    match n {
        GoNumber::Int(i) => {
            let factor = golang::to_i64(factor);
            if factor <= 0 {
                return Some(factor_not_positive(path, GoNumber::Int(factor)));
            }
            (i.checked_rem(factor) != Some(0)).then(|| not_multiple(path, factor.to_string(), n))
        }
        GoNumber::Float(x) => multiple_of_float(path, x, factor),
    }
}

/// A maximum (`upper`) or minimum bound broken, worded as kube-openapi words it.
fn out_of_bound(path: &str, upper: bool, exclusive: bool, bound: String, n: GoNumber) -> Problem {
    let relation = match (upper, exclusive) {
        (true, false) => "less than or equal to",
        (true, true) => "less than",
        (false, false) => "greater than or equal to",
        (false, true) => "greater than",
    };
    Problem::at(
        path,
        Code::Invalid,
        number_value(n),
        format!("{path} in body should be {relation} {bound}"),
    )
}

fn bound_float(path: &str, upper: bool, x: f64, bound: f64, exclusive: bool) -> Option<Problem> {
    let broken = match (upper, exclusive) {
        (true, false) => x > bound,
        (true, true) => x >= bound,
        (false, false) => x < bound,
        (false, true) => x <= bound,
    };
    broken.then(|| out_of_bound(path, upper, exclusive, golang::float_v(bound), GoNumber::Float(x)))
}

fn bound_native(
    path: &str,
    upper: bool,
    n: GoNumber,
    bound: f64,
    exclusive: bool,
) -> Option<Problem> {
    match n {
        GoNumber::Int(i) => {
            let bound = golang::to_i64(bound);
            let broken = match (upper, exclusive) {
                (true, false) => i > bound,
                (true, true) => i >= bound,
                (false, false) => i < bound,
                (false, true) => i <= bound,
            };
            broken.then(|| out_of_bound(path, upper, exclusive, bound.to_string(), n))
        }
        GoNumber::Float(x) => bound_float(path, upper, x, bound, exclusive),
    }
}

fn check_number(node: &Node, n: GoNumber, path: &str) -> Outcome {
    // The range checks know the type only when the schema names exactly one.
    let (type_name, format) = match node.types.as_slice() {
        [t] if t == "integer" => {
            ("integer", node.format.as_deref().filter(|f| matches!(*f, "int32" | "int64")))
        }
        [t] if t == "number" => {
            ("number", node.format.as_deref().filter(|f| matches!(*f, "float" | "double")))
        }
        _ => ("", None),
    };
    let format = format.unwrap_or_default();
    let mut out = Outcome::default();
    if let Err(message) = in_range(n, type_name, format, "Checked", path) {
        out.add(Problem::plain(message));
    }
    let mut multiple = Outcome::default();
    if let Some(factor) = node.multiple_of {
        let problem = match in_range(GoNumber::Float(factor), type_name, format, "MultipleOf", path)
        {
            Ok(()) => multiple_of_native(path, n, factor),
            Err(message) => {
                multiple.add(Problem::plain(message));
                multiple_of_float(path, n.as_f64(), factor)
            }
        };
        if let Some(problem) = problem {
            multiple.add(problem);
        }
    }
    let minimum =
        check_bound(n, false, node.minimum, node.exclusive_minimum, (type_name, format), path);
    let maximum =
        check_bound(n, true, node.maximum, node.exclusive_maximum, (type_name, format), path);
    out.merge(multiple);
    out.merge(minimum);
    out.merge(maximum);
    out.matches += 1;
    out
}

/// `minimum` (`upper` false) or `maximum`: natively typed when the bound fits the node's numeric
/// type, else as floats after reporting the misfit.
fn check_bound(
    n: GoNumber,
    upper: bool,
    bound: Option<f64>,
    exclusive: bool,
    (type_name, format): (&str, &str),
    path: &str,
) -> Outcome {
    let mut out = Outcome::default();
    let Some(bound) = bound else { return out };
    let prefix = if upper { "Maximum boundary" } else { "Minimum boundary" };
    let problem = match in_range(GoNumber::Float(bound), type_name, format, prefix, path) {
        Ok(()) => bound_native(path, upper, n, bound, exclusive),
        Err(message) => {
            out.add(Problem::plain(message));
            bound_float(path, upper, n.as_f64(), bound, exclusive)
        }
    };
    if let Some(problem) = problem {
        out.add(problem);
    }
    out
}

fn check_array(node: &Node, items: &[Value], path: &str, depth: usize) -> Outcome {
    let mut out = Outcome::default();
    if let Some(item) = node.items.as_deref() {
        for (i, v) in items.iter().enumerate() {
            out.merge(check(item, v, &format!("{path}[{i}]"), depth + 1));
        }
    }
    count_bounds(&mut out, path, items.len(), (node.min_items, node.max_items), "items");
    if node.unique_items && items.iter().enumerate().any(|(i, a)| items[..i].contains(a)) {
        out.add(Problem::at(
            path,
            Code::Invalid,
            None,
            format!("{path} in body shouldn't contain duplicates"),
        ));
    }
    out.matches += 1;
    out
}

/// Go's `string(rune(i))`.
fn rune_string(i: i64) -> String {
    u32::try_from(i).ok().and_then(char::from_u32).unwrap_or('\u{fffd}').to_string()
}

/// Whether `value` equals `allowed` after Go's conversion of the value to the enum member's type
/// (so an int matches a float member, a float is truncated to an int member, an int is a rune of
/// a string member), nested values compared exactly.
fn enum_matches(value: &Value, allowed: &Value) -> bool {
    match (value, allowed) {
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::Number(v), Value::Number(a)) => match (GoNumber::of(v), GoNumber::of(a)) {
            (GoNumber::Int(v), GoNumber::Int(a)) => v == a,
            (GoNumber::Float(v), GoNumber::Int(a)) => golang::to_i64(v) == a,
            (v, GoNumber::Float(a)) => v.as_f64() == a,
        },
        (Value::Number(v), Value::String(a)) => match GoNumber::of(v) {
            GoNumber::Int(i) => rune_string(i) == *a,
            GoNumber::Float(_) => false,
        },
        (Value::String(v), Value::String(a)) => v == a,
        (Value::Bool(v), Value::Bool(a)) => v == a,
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            value == allowed
        }
        _ => false,
    }
}

fn check_enum(node: &Node, value: &Value, path: &str) -> Outcome {
    if node.allowed.is_empty() || node.allowed.iter().any(|a| enum_matches(value, a)) {
        return Outcome::default();
    }
    let listed: Vec<String> = node.allowed.iter().map(golang::json).collect();
    Outcome::failed(Problem::at(
        path,
        Code::Enum(node.allowed.clone()),
        (!value.is_null()).then(|| value.clone()),
        format!("{path} in body should be one of [{}]", listed.join(" ")),
    ))
}

/// `minItems`/`maxItems` and `minProperties`/`maxProperties`: `len` against `(min, max)`.
fn count_bounds(
    out: &mut Outcome,
    path: &str,
    len: usize,
    (min, max): (Option<i64>, Option<i64>),
    noun: &str,
) {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    if let Some(min) = min
        && len < min
    {
        out.add(Problem::at(
            path,
            Code::Invalid,
            Some(Value::from(len)),
            format!("{path} in body should have at least {min} {noun}"),
        ));
    }
    if let Some(max) = max
        && len > max
    {
        out.add(Problem::at(
            path,
            Code::TooMany { actual: len, max },
            Some(Value::from(len)),
            format!("{path} in body should have at most {max} {noun}"),
        ));
    }
}

fn check_object(node: &Node, map: &Map<String, Value>, path: &str, depth: usize) -> Outcome {
    let mut out = Outcome::default();
    // The root's type and object meta are the generic machinery's to check.
    let checked = |key: &str| !(path.is_empty() && is_type_or_object_meta(key));
    let bounds = (node.min_properties, node.max_properties);
    count_bounds(&mut out, path, map.len(), bounds, "properties");
    let mut keys: Vec<&String> = map.keys().filter(|k| checked(k)).collect();
    keys.sort();
    match &node.additional {
        Some(Additional::Allows(false)) => {
            for key in keys.iter().filter(|k| !node.properties.contains_key(k.as_str())) {
                out.add(Problem::at(
                    path,
                    Code::Invalid,
                    Some(Value::String((*key).clone())),
                    format!("{path}.{key} in body is a forbidden property"),
                ));
            }
        }
        Some(Additional::Schema(schema)) => {
            for key in keys.iter().filter(|k| !node.properties.contains_key(k.as_str())) {
                if let Some(v) = map.get(key.as_str()) {
                    out.merge(check(schema, v, &format!("{path}.{key}"), depth + 1));
                }
            }
        }
        _ => {}
    }
    for (name, schema) in &node.properties {
        if !checked(name) {
            continue;
        }
        if let Some(v) = map.get(name) {
            let child = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
            out.merge(check(schema, v, &child, depth + 1));
        }
    }
    for key in node.required.iter().filter(|k| checked(k)) {
        if !map.contains_key(key) {
            out.add(Problem::at(
                &format!("{path}.{key}"),
                Code::Required,
                None,
                format!("{path}.{key} in body is required"),
            ));
        }
    }
    out
}
