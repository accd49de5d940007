//! The table-driven walker: protobuf bytes of a message → the JSON value upstream's Go types
//! would marshal the decoded object to. No per-kind code: every rule here comes from the
//! table (`schema.rs`) or from one of the special upstream types.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Number, Value};

use super::Error;
use super::schema::{INLINE, MAP, Message, OMIT_EMPTY, REPEATED, Special, Ty, message_at};
use super::wire::{Fields, WireValue, varint};

/// Deepest JSON nesting a body may produce. The stored object is parsed again with
/// serde_json, which stops at 128 levels; this keeps every accepted body readable.
pub(super) const MAX_DEPTH: usize = 100;

/// The JSON value of the message at table index `index`; `depth` is the nesting of the
/// value being produced.
pub(super) fn message_value(index: usize, bytes: &[u8], depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Depth);
    }
    let message = lookup(index)?;
    match message.special {
        Special::Plain => {
            let mut object = Map::new();
            fill_object(message, bytes, depth, &mut object)?;
            Ok(Value::Object(object))
        }
        Special::Time => time(bytes, false),
        Special::MicroTime => time(bytes, true),
        Special::Duration => {
            let mut nanos = 0i64;
            for item in Fields::new(bytes) {
                if let (1, WireValue::Varint(v)) = item? {
                    nanos = v as i64;
                }
            }
            Ok(Value::String(go_duration(nanos)))
        }
        Special::Quantity => {
            let mut quantity = Value::String("0".into());
            for item in Fields::new(bytes) {
                if let (1, WireValue::Len(s)) = item? {
                    quantity = Value::String(String::from_utf8_lossy(s).into_owned());
                }
            }
            Ok(quantity)
        }
        Special::IntOrString => int_or_string(bytes),
        Special::RawJson => {
            let mut raw: &[u8] = &[];
            for item in Fields::new(bytes) {
                if let (1, WireValue::Len(b)) = item? {
                    raw = b;
                }
            }
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(raw)
                .map_err(|e| Error::RawJson { message: message.name, error: e })
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            schema_or(message, bytes, depth)
        }
        Special::List => {
            let mut items = Vec::new();
            for item in Fields::new(bytes) {
                let (tag, value) = item?;
                if let Some(field) = message.field(tag) {
                    push_repeated(message, field.json, field.ty, value, depth + 1, &mut items)?;
                }
            }
            // Go decodes an empty list type to nil, which marshals to null.
            Ok(if items.is_empty() { Value::Null } else { Value::Array(items) })
        }
    }
}

fn lookup(index: usize) -> Result<&'static Message, Error> {
    message_at(index).ok_or(Error::Table(index))
}

/// Adds the fields of `bytes` (a `message`) to `object`. Inline fields add their message's
/// fields here too; a message field seen twice merges, as protobuf says.
fn fill_object(
    message: &'static Message,
    bytes: &[u8],
    depth: usize,
    object: &mut Map<String, Value>,
) -> Result<(), Error> {
    for item in Fields::new(bytes) {
        let (tag, value) = item?;
        // Unknown tags are fields of a newer release: skipped, as upstream does.
        let Some(field) = message.field(tag) else { continue };
        let name = field.json;
        if field.has(INLINE) {
            let (Ty::Msg(index), WireValue::Len(inner)) = (field.ty, value) else {
                return Err(wire_type(message, name, tag, value));
            };
            if depth + 1 > MAX_DEPTH {
                return Err(Error::Depth);
            }
            fill_object(lookup(index)?, inner, depth + 1, object)?;
        } else if field.has(MAP) {
            let WireValue::Len(entry) = value else {
                return Err(wire_type(message, name, tag, value));
            };
            // The map object, then its value: two levels of JSON.
            let (key, value) = map_entry(message, name, field.ty, entry, depth + 2)?;
            let slot = object.entry(name).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                map.insert(key, value);
            }
        } else if field.has(REPEATED) {
            let slot = object.entry(name).or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            if let Value::Array(items) = slot {
                // The array, then its element: two levels of JSON.
                push_repeated(message, name, field.ty, value, depth + 2, items)?;
            }
        } else if let (Ty::Msg(index), WireValue::Len(inner), Some(Value::Object(existing))) =
            (field.ty, value, object.get_mut(name))
            && lookup(index)?.special == Special::Plain
        {
            if depth + 1 > MAX_DEPTH {
                return Err(Error::Depth);
            }
            fill_object(lookup(index)?, inner, depth + 1, existing)?;
        } else {
            let value = single(message, name, tag, field.ty, value, depth + 1)?;
            if field.has(OMIT_EMPTY) && is_zero(&value) {
                object.remove(name);
            } else {
                object.insert(name.to_owned(), value);
            }
        }
    }
    Ok(())
}

/// One value of a non-repeated field (also one element of a repeated or map field).
fn single(
    message: &'static Message,
    name: &'static str,
    tag: u32,
    ty: Ty,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Value, Error> {
    Ok(match (ty, value) {
        (Ty::Str, WireValue::Len(b)) => Value::String(String::from_utf8_lossy(b).into_owned()),
        (Ty::Bytes, WireValue::Len(b)) => Value::String(BASE64.encode(b)),
        (Ty::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        // int32 travels sign-extended to 64 bits; Go truncates it back, so do we.
        (Ty::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (Ty::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Ty::Double, WireValue::Fixed64(v)) => double(message, name, v)?,
        (Ty::Msg(index), WireValue::Len(b)) => message_value(index, b, depth)?,
        (_, value) => return Err(wire_type(message, name, tag, value)),
    })
}

/// Appends a repeated field's value: one element, or a packed run of numbers.
fn push_repeated(
    message: &'static Message,
    name: &'static str,
    ty: Ty,
    value: WireValue<'_>,
    depth: usize,
    items: &mut Vec<Value>,
) -> Result<(), Error> {
    match (ty, value) {
        (Ty::Bool | Ty::Int32 | Ty::Int64, WireValue::Len(mut packed)) => {
            while !packed.is_empty() {
                let v = varint(&mut packed)?;
                items.push(single(message, name, 0, ty, WireValue::Varint(v), depth)?);
            }
        }
        (Ty::Double, WireValue::Len(packed)) => {
            let chunks = packed.chunks_exact(8);
            if !chunks.remainder().is_empty() {
                return Err(Error::Truncated);
            }
            for chunk in chunks {
                let mut bits = [0u8; 8];
                bits.copy_from_slice(chunk);
                items.push(double(message, name, u64::from_le_bytes(bits))?);
            }
        }
        (ty, value) => items.push(single(message, name, 0, ty, value, depth)?),
    }
    Ok(())
}

/// A map entry: a message with the key in field 1 (always a string in Kubernetes) and the
/// value in field 2. Missing parts are their zero values.
fn map_entry(
    message: &'static Message,
    name: &'static str,
    ty: Ty,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Value), Error> {
    let mut key = String::new();
    let mut value = None;
    for item in Fields::new(entry) {
        match item? {
            (1, WireValue::Len(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (1, other) => return Err(wire_type(message, name, 1, other)),
            (2, v) => value = Some(single(message, name, 2, ty, v, depth)?),
            _ => {}
        }
    }
    let value = match value {
        Some(value) => value,
        None => match ty {
            Ty::Str | Ty::Bytes => Value::String(String::new()),
            Ty::Bool => Value::Bool(false),
            Ty::Int32 | Ty::Int64 => Value::from(0),
            Ty::Double => Value::from(0.0),
            Ty::Msg(index) => message_value(index, &[], depth)?,
        },
    };
    Ok((key, value))
}

fn double(message: &'static Message, name: &'static str, bits: u64) -> Result<Value, Error> {
    Number::from_f64(f64::from_bits(bits))
        .map(Value::Number)
        .ok_or(Error::NonFinite { message: message.name, field: name })
}

fn wire_type(
    message: &'static Message,
    name: &'static str,
    tag: u32,
    value: WireValue<'_>,
) -> Error {
    Error::WireType { message: message.name, field: name, tag, wire: value.wire_type() }
}

/// What Go's `omitempty` leaves out of a scalar.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// `Time` and `MicroTime`: Go decodes the empty message to the zero time (JSON `null`); Time
/// keeps whole seconds, MicroTime microseconds, both printed in UTC.
fn time(bytes: &[u8], micro: bool) -> Result<Value, Error> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for item in Fields::new(bytes) {
        match item? {
            (1, WireValue::Varint(v)) => seconds = v as i64,
            (2, WireValue::Varint(v)) => nanos = v as i32,
            _ => {}
        }
    }
    // Time drops the nanoseconds (upstream's JSON never carried them), MicroTime truncates.
    let nanos = if micro { i128::from(nanos) / 1_000 * 1_000 } else { 0 };
    let total = i128::from(seconds) * 1_000_000_000 + nanos;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(total)
        .map_err(|_| Error::TimeRange(seconds))?;
    // Go's RFC 3339 marshalling refuses years it cannot print in four digits.
    if !(0..=9999).contains(&at.year()) {
        return Err(Error::TimeRange(seconds));
    }
    let date = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    Ok(Value::String(if micro {
        format!("{date}.{:06}Z", at.microsecond())
    } else {
        format!("{date}Z")
    }))
}

/// `IntOrString`: field 1 is the type (0 int, 1 string), 2 the int, 3 the string.
fn int_or_string(bytes: &[u8]) -> Result<Value, Error> {
    let (mut kind, mut int, mut string) = (0i64, 0i32, String::new());
    for item in Fields::new(bytes) {
        match item? {
            (1, WireValue::Varint(v)) => kind = v as i64,
            (2, WireValue::Varint(v)) => int = v as i32,
            (3, WireValue::Len(s)) => string = String::from_utf8_lossy(s).into_owned(),
            _ => {}
        }
    }
    match kind {
        0 => Ok(Value::from(int)),
        1 => Ok(Value::String(string)),
        other => Err(Error::IntOrStringType(other)),
    }
}

/// The apiextensions `JSONSchemaPropsOr*` unions, marshalled as upstream's `marshal.go` does.
fn schema_or(message: &'static Message, bytes: &[u8], depth: usize) -> Result<Value, Error> {
    let (mut schema, mut list, mut allows) = (None, Vec::new(), false);
    for item in Fields::new(bytes) {
        let (tag, value) = item?;
        let Some(field) = message.field(tag) else { continue };
        match (message.special, tag) {
            (Special::SchemaOrBool, 1) => {
                allows =
                    single(message, field.json, tag, field.ty, value, depth)? == Value::Bool(true);
            }
            (Special::SchemaOrBool, 2) | (_, 1) => {
                schema = Some(single(message, field.json, tag, field.ty, value, depth)?);
            }
            _ => push_repeated(message, field.json, field.ty, value, depth + 1, &mut list)?,
        }
    }
    Ok(match (message.special, schema) {
        (Special::SchemaOrBool, Some(schema)) => schema,
        (Special::SchemaOrBool, None) => Value::Bool(allows),
        (_, _) if !list.is_empty() => Value::Array(list),
        (_, Some(schema)) => schema,
        (_, None) => Value::Null,
    })
}

/// Go's `time.Duration.String`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(super) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (precision, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (whole, fraction) = split_fraction(u, precision);
        return format!("{sign}{whole}{fraction}{unit}");
    }
    let (seconds, fraction) = split_fraction(u, 9);
    let mut text = format!("{}{fraction}s", seconds % 60);
    let minutes = seconds / 60;
    if minutes > 0 {
        text = format!("{}m{text}", minutes % 60);
        let hours = minutes / 60;
        if hours > 0 {
            text = format!("{hours}h{text}");
        }
    }
    format!("{sign}{text}")
}

/// `v / 10^precision` as its whole part and `.digits` without trailing zeros (or nothing).
fn split_fraction(v: u64, precision: u32) -> (u64, String) {
    let scale = 10u64.pow(precision);
    let (whole, fraction) = (v / scale, v % scale);
    if fraction == 0 {
        return (whole, String::new());
    }
    let digits = format!("{fraction:0width$}", width = precision as usize);
    (whole, format!(".{}", digits.trim_end_matches('0')))
}
