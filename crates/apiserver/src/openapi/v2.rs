//! OpenAPI v2 as the gnostic protobuf (`openapi.v2.Document`) that kubectl 1.27 and 1.28 ask
//! for (they never ask for v2 JSON): converted from the v3 documents, so both versions say the
//! same thing. Only the messages and fields kubectl reads are modelled; their tags are
//! gnostic's `OpenAPIv2.proto`. Vendor extensions travel as gnostic does, as YAML text (JSON
//! is YAML).

use std::borrow::Cow;
use std::collections::BTreeMap;

use prost::Message;
use serde_json::{Map, Value};

use super::schemas::REF_PREFIX;

/// The media type kubectl asks for.
pub(super) const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The same, as upstream answers it: Go's MIME parser refuses the `@` in [`PROTOBUF`].
pub(super) const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Serializes the union of the group-version documents as one v2 protobuf document.
pub(super) fn encode(documents: &[Value], title: &str, version: &str) -> Vec<u8> {
    let mut definitions: BTreeMap<&str, Cow<'_, Value>> = BTreeMap::new();
    let mut paths: BTreeMap<&str, &Value> = BTreeMap::new();
    for doc in documents {
        if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
            for (name, schema) in schemas {
                match definitions.get_mut(name.as_str()) {
                    Some(existing) => merge_gvks(existing, schema),
                    None => {
                        definitions.insert(name, Cow::Borrowed(schema));
                    }
                }
            }
        }
        if let Some(Value::Object(items)) = doc.get("paths") {
            for (path, item) in items {
                paths.entry(path).or_insert(item);
            }
        }
    }
    let document = Document {
        swagger: "2.0".to_owned(),
        info: Some(Info { title: title.to_owned(), version: version.to_owned() }),
        paths: Some(Paths {
            path: paths
                .iter()
                .map(|(name, item)| NamedPathItem {
                    name: (*name).to_owned(),
                    value: Some(path_item(item)),
                })
                .collect(),
        }),
        definitions: Some(Definitions {
            additional_properties: definitions
                .iter()
                .map(|(name, s)| NamedSchema { name: (*name).to_owned(), value: Some(schema(s)) })
                .collect(),
        }),
    };
    document.encode_to_vec()
}

/// A schema served in several group-versions lists all their group-version-kinds.
fn merge_gvks(existing: &mut Cow<'_, Value>, other: &Value) {
    const GVK: &str = "x-kubernetes-group-version-kind";
    let Some(Value::Array(more)) = other.get(GVK) else { return };
    let known = existing.get(GVK).and_then(Value::as_array);
    if known.is_none_or(|gvks| more.iter().all(|gvk| gvks.contains(gvk))) {
        return;
    }
    if let Some(Value::Array(gvks)) = existing.to_mut().get_mut(GVK) {
        for gvk in more {
            if !gvks.contains(gvk) {
                gvks.push(gvk.clone());
            }
        }
    }
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn v2_ref(reference: &str) -> String {
    match reference.strip_prefix(REF_PREFIX) {
        Some(name) => format!("#/definitions/{name}"),
        None => reference.to_owned(),
    }
}

fn extensions(object: &Map<String, Value>) -> Vec<NamedAny> {
    object
        .iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(name, value)| NamedAny {
            name: name.clone(),
            value: Some(Any { yaml: value.to_string() }),
        })
        .collect()
}

fn schema(value: &Value) -> Schema {
    let Some(object) = value.as_object() else { return Schema::default() };
    let mut out = Schema {
        description: text(value, "description"),
        format: text(value, "format"),
        vendor_extension: extensions(object),
        ..Schema::default()
    };
    let all_of =
        object.get("allOf").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    match (object.get("$ref").and_then(Value::as_str), all_of) {
        (Some(reference), _) => out.r#ref = v2_ref(reference),
        // v3 wraps a described `$ref` in `allOf`; v2 puts the description beside it.
        (None, [single]) if single.get("$ref").is_some() => {
            out.r#ref = v2_ref(&text(single, "$ref"))
        }
        (None, all) => out.all_of = all.iter().map(schema).collect(),
    }
    if let Some(ty) = object.get("type").and_then(Value::as_str) {
        out.r#type = Some(TypeItem { value: vec![ty.to_owned()] });
    }
    if let Some(Value::Array(required)) = object.get("required") {
        out.required = required.iter().filter_map(Value::as_str).map(str::to_owned).collect();
    }
    if let Some(items) = object.get("items").filter(|i| i.is_object()) {
        out.items = Some(ItemsItem { schema: vec![schema(items)] });
    }
    if let Some(Value::Object(properties)) = object.get("properties") {
        out.properties = Some(Properties {
            additional_properties: properties
                .iter()
                .map(|(name, s)| NamedSchema { name: name.clone(), value: Some(schema(s)) })
                .collect(),
        });
    }
    out.additional_properties = match object.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            Some(Box::new(AdditionalPropertiesItem { oneof: Some(AdditionalOneof::Boolean(*b)) }))
        }
        Some(s @ Value::Object(_)) => Some(Box::new(AdditionalPropertiesItem {
            oneof: Some(AdditionalOneof::Schema(Box::new(schema(s)))),
        })),
        _ => None,
    };
    out
}

fn parameter(value: &Value) -> ParametersItem {
    let ty = value.pointer("/schema/type").and_then(Value::as_str).unwrap_or("string").to_owned();
    let unique_items =
        value.pointer("/schema/uniqueItems").and_then(Value::as_bool).unwrap_or(false);
    let required = value.get("required").and_then(Value::as_bool).unwrap_or(false);
    let non_body = if text(value, "in") == "path" {
        NonBodyOneof::Path(PathParameterSubSchema {
            required,
            r#in: "path".to_owned(),
            description: text(value, "description"),
            name: text(value, "name"),
            r#type: ty,
            unique_items,
        })
    } else {
        NonBodyOneof::Query(QueryParameterSubSchema {
            required,
            r#in: "query".to_owned(),
            description: text(value, "description"),
            name: text(value, "name"),
            r#type: ty,
            unique_items,
        })
    };
    ParametersItem {
        oneof: Some(ParametersOneof::Parameter(Parameter {
            oneof: Some(ParameterOneof::NonBody(NonBodyParameter { oneof: Some(non_body) })),
        })),
    }
}

fn parameters(value: &Value) -> Vec<ParametersItem> {
    value.get("parameters").and_then(Value::as_array).into_iter().flatten().map(parameter).collect()
}

fn operation(value: &Value) -> Operation {
    let mut params = parameters(value);
    let mut consumes = Vec::new();
    if let Some(Value::Object(content)) = value.pointer("/requestBody/content") {
        consumes = content.keys().cloned().collect();
        let body_schema = content.values().next().and_then(|c| c.get("schema"));
        params.insert(
            0,
            ParametersItem {
                oneof: Some(ParametersOneof::Parameter(Parameter {
                    oneof: Some(ParameterOneof::Body(BodyParameter {
                        name: "body".to_owned(),
                        r#in: "body".to_owned(),
                        required: value
                            .pointer("/requestBody/required")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        schema: body_schema.map(schema),
                    })),
                })),
            },
        );
    }
    let responses = value
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(code, response)| NamedResponseValue {
            name: code.clone(),
            value: Some(ResponseValue {
                oneof: Some(ResponseOneof::Response(Response {
                    description: text(response, "description"),
                    schema: response
                        .pointer("/content/application~1json/schema")
                        .or_else(|| response.pointer("/content/*~1*/schema"))
                        .map(|s| SchemaItem { oneof: Some(SchemaItemOneof::Schema(schema(s))) }),
                })),
            }),
        })
        .collect();
    Operation {
        tags: value
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        description: text(value, "description"),
        operation_id: text(value, "operationId"),
        produces: vec!["application/json".to_owned(), "application/yaml".to_owned()],
        consumes,
        parameters: params,
        responses: Some(Responses { response_code: responses }),
        vendor_extension: value.as_object().map(extensions).unwrap_or_default(),
    }
}

fn path_item(value: &Value) -> PathItem {
    let op = |method: &str| value.get(method).map(operation);
    PathItem {
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        patch: op("patch"),
        parameters: parameters(value),
    }
}

// The gnostic messages (package `openapi.v2`), reduced to the fields written here.

#[derive(Clone, PartialEq, Message)]
pub(super) struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Paths {
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ParametersItem {
    #[prost(oneof = "ParametersOneof", tags = "1")]
    pub oneof: Option<ParametersOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum ParametersOneof {
    #[prost(message, tag = "1")]
    Parameter(Parameter),
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Parameter {
    #[prost(oneof = "ParameterOneof", tags = "1, 2")]
    pub oneof: Option<ParameterOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum ParameterOneof {
    #[prost(message, tag = "1")]
    Body(BodyParameter),
    #[prost(message, tag = "2")]
    NonBody(NonBodyParameter),
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct BodyParameter {
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NonBodyParameter {
    #[prost(oneof = "NonBodyOneof", tags = "3, 4")]
    pub oneof: Option<NonBodyOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum NonBodyOneof {
    #[prost(message, tag = "3")]
    Query(QueryParameterSubSchema),
    #[prost(message, tag = "4")]
    Path(PathParameterSubSchema),
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ResponseValue {
    #[prost(oneof = "ResponseOneof", tags = "1")]
    pub oneof: Option<ResponseOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum ResponseOneof {
    #[prost(message, tag = "1")]
    Response(Response),
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct SchemaItem {
    #[prost(oneof = "SchemaItemOneof", tags = "1")]
    pub oneof: Option<SchemaItemOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum SchemaItemOneof {
    #[prost(message, tag = "1")]
    Schema(Schema),
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, optional, boxed, tag = "21")]
    pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct AdditionalPropertiesItem {
    #[prost(oneof = "AdditionalOneof", tags = "1, 2")]
    pub oneof: Option<AdditionalOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum AdditionalOneof {
    #[prost(message, tag = "1", boxed)]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

/// gnostic's `Any`: the protobuf `Any` (field 1) is never used; the YAML text is.
#[derive(Clone, PartialEq, Message)]
pub(super) struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}
