//! The vocabulary of the generated message table (`table.rs`) and the lookups over it.
//!
//! A message is a list of fields sorted by tag; a field says where its value goes in the JSON
//! object (`json`), what the wire carries (`ty`) and how (`REPEATED`, `MAP`), and two facts
//! from upstream's Go types that protobuf cannot carry: `INLINE` (the message's fields are
//! embedded in the parent object, as `json:",inline"` does for Volume's VolumeSource) and
//! `OMIT_EMPTY` (a non-pointer `omitempty` field: Go always writes it to the wire, but a zero
//! value must not appear in the JSON).

use super::table::{API_VERSIONS, MESSAGES};

/// What a field's wire value is. `Msg` holds the index of the message type in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Str,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Msg(usize),
}

/// Messages whose JSON form is not their protobuf structure (upstream's custom marshallers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Special {
    /// A JSON object with one property per field.
    Plain,
    /// `meta/v1.Time`: RFC 3339 in seconds; an empty message is the zero time, `null`.
    Time,
    /// `meta/v1.MicroTime`: RFC 3339 with 6 fractional digits.
    MicroTime,
    /// `meta/v1.Duration`: Go's duration string (`1h0m0s`).
    Duration,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a JSON number or string by its type field.
    IntOrString,
    /// `RawExtension`, `FieldsV1`, apiextensions `JSON`: raw bytes holding JSON.
    RawJson,
    /// apiextensions `JSONSchemaPropsOrArray`: the array if any, else the schema.
    SchemaOrArray,
    /// apiextensions `JSONSchemaPropsOrBool`: the schema if any, else the bool.
    SchemaOrBool,
    /// apiextensions `JSONSchemaPropsOrStringArray`: the strings if any, else the schema.
    SchemaOrStringArray,
    /// A Go `type X []T` (`ExtraValue`, `Verbs`): the JSON array of its field 1.
    List,
}

pub(super) const REPEATED: u8 = 1;
pub(super) const MAP: u8 = 2;
pub(super) const OMIT_EMPTY: u8 = 4;
pub(super) const INLINE: u8 = 8;

#[derive(Debug)]
pub(super) struct Field {
    pub tag: u32,
    /// The JSON property; empty for inline fields and the fields of special messages.
    pub json: &'static str,
    pub ty: Ty,
    flags: u8,
}

impl Field {
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

pub(super) const fn field(tag: u32, json: &'static str, ty: Ty, flags: u8) -> Field {
    Field { tag, json, ty, flags }
}

#[derive(Debug)]
pub(super) struct Message {
    /// Upstream's full protobuf name (`k8s.io.api.core.v1.ConfigMap`).
    pub name: &'static str,
    pub special: Special,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

pub(super) const fn message(
    name: &'static str,
    special: Special,
    fields: &'static [Field],
) -> Message {
    Message { name, special, fields }
}

impl Message {
    pub(super) fn field(&self, tag: u32) -> Option<&'static Field> {
        let fields: &'static [Field] = self.fields;
        fields.binary_search_by_key(&tag, |f| f.tag).ok().map(|i| &fields[i])
    }
}

/// The message at a table index (indices come from the table itself).
pub(super) fn message_at(index: usize) -> Option<&'static Message> {
    MESSAGES.get(index)
}

/// The message a `typeMeta` names. Besides each group-version's own kinds, every
/// group-version accepts the option kinds of `meta/v1`, as upstream registers them in all.
pub(super) fn kind_message(api_version: &str, kind: &str) -> Option<usize> {
    const SHARED_KINDS: [&str; 5] =
        ["DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions", "GetOptions"];
    let package = API_VERSIONS
        .binary_search_by(|(version, _)| (*version).cmp(api_version))
        .ok()
        .map(|i| API_VERSIONS[i].1)?;
    named(package, kind).or_else(|| {
        SHARED_KINDS.contains(&kind).then(|| named("k8s.io.apimachinery.pkg.apis.meta.v1", kind))?
    })
}

fn named(package: &str, name: &str) -> Option<usize> {
    let full = format!("{package}.{name}");
    MESSAGES.binary_search_by(|m| m.name.cmp(&full)).ok()
}
