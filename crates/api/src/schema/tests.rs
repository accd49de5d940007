use proptest::prelude::*;
use serde_json::{Value, json};

use super::Schema;

fn schema(value: Value) -> Schema {
    match Schema::new(&value) {
        Ok(schema) => schema,
        Err(errors) => panic!("schema refused: {errors:?}"),
    }
}

/// `<field>: <detail>`, as a 422's causes read.
fn messages(schema: &Schema, object: &Value) -> Vec<String> {
    schema.validate(object).iter().map(|e| format!("{}: {}", e.field, e.detail)).collect()
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"}, "spec": spec})
}

/// A schema of one field `spec.x`.
fn field(x: Value) -> Schema {
    schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": x}}}}),
    )
}

fn errors_of(x: Value, value: Value) -> Vec<String> {
    messages(&field(x), &object(json!({ "x": value })))
}

fn crontab() -> Schema {
    schema(json!({
        "type": "object",
        "required": ["metadata"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["cronSpec"],
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string", "maxLength": 8},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3, "x-kubernetes-list-type": "set"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string"},
                            "number": {"type": "integer", "default": 80},
                        }},
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        },
    }))
}

#[test]
fn a_crontab_goes_through_prune_default_and_validate() {
    let schema = crontab();
    let mut value = object(json!({
        "cronSpec": "*/5 * * * *",
        "image": "cron:1",
        "colour": "red",
        "port": "http",
        "ports": [{"name": "web", "protocol": "TCP"}, {"name": "metrics", "number": 9090}],
        "labels": {"team": "a"},
    }));
    value["status"] = json!({"ready": true, "phase": "Running"});
    value["metadata"]["annotations"] = json!({"a": "b"});

    let unknown = schema.prune(&mut value);
    assert_eq!(unknown, ["spec.colour", "spec.ports[0].protocol", "status.phase"]);
    schema.default(&mut value);
    assert_eq!(
        value,
        json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "x", "annotations": {"a": "b"}},
            "spec": {
                "cronSpec": "*/5 * * * *",
                "image": "cron:1",
                "replicas": 1,
                "mode": "fast",
                "port": "http",
                "ports": [{"name": "web", "number": 80}, {"name": "metrics", "number": 9090}],
                "labels": {"team": "a"},
            },
            "status": {"ready": true},
        })
    );
    assert_eq!(messages(&schema, &value), Vec::<String>::new());
}

#[test]
fn a_bad_crontab_gets_upstream_s_errors_in_upstream_s_order() {
    let schema = crontab();
    let bad = object(json!({
        "cronSpec": "often",
        "image": "a-very-long-image",
        "replicas": 20,
        "mode": "medium",
        "tags": ["a", "b", "a", "a"],
        "ports": [{"name": "a"}, {"name": "a"}, {"number": 1}],
        "labels": {"k": 1},
    }));
    assert_eq!(
        messages(&schema, &bad),
        [
            "spec.cronSpec: Invalid value: \"often\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
            "spec.image: Too long: may not be more than 8 bytes",
            "spec.labels.k: Invalid value: \"integer\": spec.labels.k in body must be of type string: \"integer\"",
            "spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\"",
            "spec.ports[2].name: Required value",
            "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
            "spec.tags: Too many: 4: must have at most 3 items",
            "spec.ports[1]: Duplicate value: {\"name\":\"a\"}",
            "spec.tags[2]: Duplicate value: \"a\"",
        ]
    );
    let reasons: Vec<&str> = schema.validate(&bad).iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [
            "FieldValueInvalid",
            "FieldValueTooLong",
            "FieldValueTypeInvalid",
            "FieldValueNotSupported",
            "FieldValueRequired",
            "FieldValueInvalid",
            "FieldValueTooMany",
            "FieldValueDuplicate",
            "FieldValueDuplicate",
        ]
    );
}

#[test]
fn required_fields_and_types() {
    let schema = crontab();
    assert_eq!(
        messages(&schema, &object(json!({"replicas": "3"}))),
        [
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            "spec.cronSpec: Required value",
        ]
    );
    // The root's metadata is the generic machinery's, even when the schema requires it.
    let no_meta = json!({"apiVersion": "a/v1", "kind": "K", "spec": {"cronSpec": "1 2 3 4 5"}});
    assert_eq!(messages(&schema, &no_meta), Vec::<String>::new());
    assert_eq!(
        errors_of(json!({"type": "boolean"}), json!([true])),
        ["spec.x: Invalid value: \"array\": spec.x in body must be of type boolean: \"array\""]
    );
}

#[test]
fn integers_are_json_integers_and_numbers_take_both() {
    let int = json!({"type": "integer"});
    assert_eq!(errors_of(int.clone(), json!(3)), Vec::<String>::new());
    // Go reads 2.0 as a float64 that is an integer: accepted, as upstream accepts it.
    assert_eq!(errors_of(int.clone(), json!(2.0)), Vec::<String>::new());
    assert_eq!(
        errors_of(int, json!(1.5)),
        [
            "spec.x: Invalid value: \"number\": spec.x in body must be of type integer: \"number\"",
            "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in spec.x",
        ]
    );
    assert_eq!(errors_of(json!({"type": "number"}), json!(3)), Vec::<String>::new());
    assert_eq!(errors_of(json!({"type": "number"}), json!(0.5)), Vec::<String>::new());
    assert_eq!(
        errors_of(json!({"type": "integer", "format": "int32"}), json!(3_000_000_000_i64)),
        [
            "<nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in spec.x"
        ]
    );
}

#[test]
fn nulls_need_nullable() {
    let list = json!({"type": "array", "items": {"type": "string"}});
    assert_eq!(
        errors_of(list, json!(["a", null])),
        ["spec.x[1]: Invalid value: \"null\": spec.x[1] in body must be of type string: \"null\""]
    );
    let nullable = json!({"type": "array", "items": {"type": "string", "nullable": true}});
    assert_eq!(errors_of(nullable, json!(["a", null])), Vec::<String>::new());
    // kube-openapi's enum check never matches a null, nullable or not.
    let nullable_enum =
        json!({"type": "array", "items": {"type": "string", "nullable": true, "enum": ["a"]}});
    assert_eq!(
        errors_of(nullable_enum, json!(["a", null])),
        ["spec.x[1]: Unsupported value: null: supported values: \"a\""]
    );
}

#[test]
fn strings_report_their_first_failure_counting_characters() {
    let name = json!({"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"});
    assert_eq!(errors_of(name.clone(), json!("abc")), Vec::<String>::new());
    // Three characters, six bytes: kube-openapi counts runes.
    assert_eq!(
        errors_of(json!({"type": "string", "maxLength": 3}), json!("ééé")),
        Vec::<String>::new()
    );
    assert_eq!(
        errors_of(name.clone(), json!("ABCD")),
        ["spec.x: Too long: may not be more than 3 bytes"]
    );
    assert_eq!(
        errors_of(name.clone(), json!("A")),
        ["spec.x: Invalid value: \"A\": spec.x in body should be at least 2 chars long"]
    );
    assert_eq!(
        errors_of(name, json!("AB")),
        ["spec.x: Invalid value: \"AB\": spec.x in body should match '^[a-z]+$'"]
    );
    assert_eq!(
        errors_of(json!({"type": "string", "maxLength": 1}), json!("ab")),
        ["spec.x: Too long: may not be more than 1 byte"]
    );
    assert_eq!(
        errors_of(json!({"type": "string", "pattern": "^a"}), json!("b\"\n")),
        ["spec.x: Invalid value: \"b\\\"\\n\": spec.x in body should match '^a'"]
    );
}

#[test]
fn numbers_and_their_bounds() {
    let replicas = json!({"type": "integer", "minimum": 1, "maximum": 10});
    assert_eq!(
        errors_of(replicas.clone(), json!(0)),
        ["spec.x: Invalid value: 0: spec.x in body should be greater than or equal to 1"]
    );
    assert_eq!(
        errors_of(replicas, json!(15)),
        ["spec.x: Invalid value: 15: spec.x in body should be less than or equal to 10"]
    );
    let ratio = json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true});
    assert_eq!(
        errors_of(ratio.clone(), json!(1)),
        ["spec.x: Invalid value: 1: spec.x in body should be less than 1"]
    );
    assert_eq!(
        errors_of(ratio.clone(), json!(0.0)),
        ["spec.x: Invalid value: 0: spec.x in body should be greater than 0"]
    );
    assert_eq!(
        errors_of(ratio, json!(1.5)),
        ["spec.x: Invalid value: 1.5: spec.x in body should be less than 1"]
    );
    // Floats print as Go's %v does.
    assert_eq!(
        errors_of(json!({"type": "number", "maximum": 1000000.5}), json!(2500000.25)),
        [
            "spec.x: Invalid value: 2.50000025e+06: spec.x in body should be less than or equal to 1.0000005e+06"
        ]
    );
    assert_eq!(
        errors_of(json!({"type": "integer", "multipleOf": 5}), json!(7)),
        ["spec.x: Invalid value: 7: spec.x in body should be a multiple of 5"]
    );
    assert_eq!(
        errors_of(json!({"type": "number", "multipleOf": 0.1}), json!(0.3)),
        Vec::<String>::new()
    );
    assert_eq!(
        errors_of(json!({"type": "number", "multipleOf": 0.25}), json!(0.3)),
        ["spec.x: Invalid value: 0.3: spec.x in body should be a multiple of 0.25"]
    );
}

#[test]
fn arrays_and_objects_count_their_members() {
    let list = json!({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3});
    assert_eq!(
        errors_of(list.clone(), json!([1])),
        ["spec.x: Invalid value: 1: spec.x in body should have at least 2 items"]
    );
    assert_eq!(
        errors_of(list, json!([1, "a", 3, 4])),
        [
            "spec.x[1]: Invalid value: \"string\": spec.x[1] in body must be of type integer: \"string\"",
            "spec.x: Too many: 4: must have at most 3 items",
        ]
    );
    let map = json!({"type": "object", "minProperties": 2, "maxProperties": 3, "additionalProperties": {"type": "string"}});
    assert_eq!(
        errors_of(map.clone(), json!({"a": "1"})),
        ["spec.x: Invalid value: 1: spec.x in body should have at least 2 properties"]
    );
    assert_eq!(
        errors_of(map, json!({"a": "1", "b": "2", "c": "3", "d": "4"})),
        ["spec.x: Too many: 4: must have at most 3 items"]
    );
    let closed = json!({"type": "object", "additionalProperties": false});
    let closed = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {"x": closed}}}}),
    );
    let mut value = object(json!({"x": {"b": {"c": 1}}}));
    // Pruning keeps keys that `additionalProperties: false` forbids, for validation to refuse.
    assert_eq!(closed.prune(&mut value), ["spec.x.b.c"]);
    assert_eq!(
        messages(&closed, &value),
        ["spec.x: Invalid value: \"b\": spec.x.b in body is a forbidden property"]
    );
}

#[test]
fn enums_compare_as_go_converts() {
    let numbers = json!({"type": "integer", "enum": [1, 2]});
    assert_eq!(errors_of(numbers.clone(), json!(2)), Vec::<String>::new());
    assert_eq!(
        errors_of(numbers, json!(3)),
        ["spec.x: Unsupported value: 3: supported values: \"1\", \"2\""]
    );
    let objects = json!({"type": "object", "enum": [{"a": "b"}]});
    assert_eq!(errors_of(objects.clone(), json!({"a": "b"})), Vec::<String>::new());
    assert_eq!(
        errors_of(objects, json!({"a": "<c>"})),
        [
            "spec.x: Unsupported value: {\"a\":\"\\u003cc\\u003e\"}: supported values: \"{\\\"a\\\":\\\"b\\\"}\""
        ]
    );
}

#[test]
fn formats_upstream_checks() {
    let ok = |format: &str, value: &str| {
        errors_of(json!({"type": "string", "format": format}), json!(value)).is_empty()
    };
    assert!(ok("date-time", "2024-01-02T03:04:05Z"));
    assert!(ok("date-time", "2024-01-02t03:04:05.123+01:00"));
    assert!(!ok("date-time", "2024-01-02 03:04:05Z"));
    assert!(!ok("date-time", "2024-01-02T24:00:00Z"));
    assert!(ok("date", "2024-02-29"));
    assert!(!ok("date", "2023-02-29"));
    assert!(ok("uuid", "123e4567-e89b-12d3-a456-426614174000"));
    assert!(ok("uuid", "123E4567E89B12D3A456426614174000"));
    assert!(!ok("uuid4", "123e4567-e89b-12d3-a456-426614174000"));
    assert!(ok("byte", "aGVsbG8="));
    assert!(!ok("byte", "aGVsbG8"));
    assert!(ok("ipv4", "010.1.2.3"));
    assert!(!ok("ipv4", "1.2.3.256"));
    assert!(ok("ipv6", "::1"));
    assert!(ok("cidr", "10.0.0.0/8"));
    assert!(!ok("cidr", "10.0.0.0/33"));
    assert!(ok("mac", "01:23:45:67:89:ab"));
    assert!(ok("hostname", "example.com"));
    assert!(!ok("hostname", "-x.com"));
    assert!(ok("duration", "1h30m"));
    assert!(ok("duration", "3 days"));
    assert!(!ok("duration", "soon"));
    assert!(ok("email", "Jo <jo@example.com>"));
    assert!(!ok("email", "jo"));
    assert!(ok("uri", "https://example.com/a?b"));
    assert!(!ok("uri", "relative/path"));
    assert!(ok("k8s-short-name", "my-name"));
    assert!(!ok("k8s-short-name", "My-Name"));
    // Formats upstream does not know pass.
    assert!(ok("colour", "anything"));
    assert_eq!(
        errors_of(json!({"type": "string", "format": "date-time"}), json!("yesterday")),
        [
            "spec.x: Invalid value: \"yesterday\": spec.x in body must be of type date-time: \"yesterday\""
        ]
    );
    let reasons: Vec<&str> = field(json!({"type": "string", "format": "uuid"}))
        .validate(&object(json!({"x": "no"})))
        .iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["FieldValueTypeInvalid"]);
}

#[test]
fn int_or_string_takes_either() {
    let port = json!({"x-kubernetes-int-or-string": true});
    assert_eq!(errors_of(port.clone(), json!(80)), Vec::<String>::new());
    assert_eq!(errors_of(port.clone(), json!("http")), Vec::<String>::new());
    assert_eq!(
        errors_of(port, json!({"a": 1})),
        [
            "spec.x: Invalid value: \"object\": spec.x in body must be of type integer,string: \"object\""
        ]
    );
    // As controller-gen writes it: anyOf's message names the first alternative that fared best.
    let generated = json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]});
    assert_eq!(
        errors_of(generated, json!(true)),
        [
            "spec.x: Invalid value: \"boolean\": spec.x in body must be of type integer,string: \"boolean\"",
            "<nil>: Invalid value: \"\": \"spec.x\" must validate at least one schema (anyOf)",
            "spec.x: Invalid value: \"boolean\": spec.x in body must be of type integer: \"boolean\"",
        ]
    );
}

#[test]
fn junctors_word_their_failures_as_kube_openapi() {
    let one_of = json!({"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]});
    assert_eq!(errors_of(one_of.clone(), json!({"a": 1})), Vec::<String>::new());
    assert_eq!(
        errors_of(one_of.clone(), json!({"a": 1, "b": 2})),
        [
            "<nil>: Invalid value: \"\": \"spec.x\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
        ]
    );
    assert_eq!(
        errors_of(one_of, json!({})),
        [
            "<nil>: Invalid value: \"\": \"spec.x\" must validate one and only one schema (oneOf). Found none valid",
            "spec.x.a: Required value",
        ]
    );
    let all_of = json!({"type": "integer", "allOf": [{"minimum": 2}, {"maximum": 5}]});
    assert_eq!(
        errors_of(all_of, json!(1)),
        [
            "spec.x: Invalid value: 1: spec.x in body should be greater than or equal to 2",
            "<nil>: Invalid value: \"\": \"spec.x\" must validate all the schemas (allOf)",
        ]
    );
    let not = json!({"type": "string", "not": {"enum": ["root"]}});
    assert_eq!(
        errors_of(not, json!("root")),
        ["<nil>: Invalid value: \"\": \"spec.x\" must not validate the schema (not)"]
    );
}

#[test]
fn list_types_report_the_first_repeat_of_each_value() {
    let set =
        json!({"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}});
    assert_eq!(
        errors_of(set, json!([1, 2, 1, 1, 2])),
        ["spec.x[2]: Duplicate value: 1", "spec.x[4]: Duplicate value: 2"]
    );
    let two_keys = json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name", "protocol"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "protocol": {"type": "string"}}},
    });
    assert_eq!(
        errors_of(
            two_keys,
            json!([{"name": "a", "protocol": "TCP"}, {"name": "a", "protocol": "UDP"}, {"protocol": "TCP", "name": "a"}])
        ),
        ["spec.x[2]: Duplicate value: {\"name\":\"a\",\"protocol\":\"TCP\"}"]
    );
    let one_key = json!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}},
    });
    assert_eq!(
        errors_of(one_key.clone(), json!([{"v": 1}, {"v": 2}])),
        ["spec.x[1]: Duplicate value: {}"]
    );
    assert_eq!(
        messages(&field(one_key), &object(json!({"x": [{"name": "a"}, "b"]}))),
        [
            "spec.x[1]: Invalid value: \"string\": spec.x[1] in body must be of type object: \"string\"",
            "spec.x[1]: Invalid value: \"b\": must be an object for an array of list-type map",
        ]
    );
    // Lists under map values are named by key.
    let nested = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "byZone": {"type": "object", "additionalProperties": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}},
        }}}}),
    );
    assert_eq!(
        messages(&nested, &object(json!({"byZone": {"eu": ["a", "a"]}}))),
        ["spec.byZone[eu][1]: Duplicate value: \"a\""]
    );
}

#[test]
fn embedded_resources_need_type_meta() {
    let schema = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
        }}}}),
    );
    assert_eq!(
        messages(
            &schema,
            &object(json!({"template": {"apiVersion": "a/b/c", "metadata": {"name": "p"}}}))
        ),
        [
            "spec.template.kind: Required value",
            "spec.template.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
        ]
    );
    let messages =
        messages(&schema, &object(json!({"template": {"apiVersion": "v1", "kind": "Pod_x"}})));
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].starts_with("spec.template.kind: Invalid value: \"Pod_x\": may have mixed case, but should otherwise match: a DNS-1035 label"),
        "{messages:?}"
    );
}

#[test]
fn pruning_keeps_resource_meta_and_declared_fields() {
    let schema = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                "strict": {"type": "object", "properties": {"a": {"type": "string"}}},
                "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
            }},
            // Items of a list that itself preserves unknown fields keep theirs.
            "freeList": {"type": "array", "x-kubernetes-preserve-unknown-fields": true,
                "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
                "spec": {"type": "object", "properties": {"x": {"type": "string"}}},
            }},
            "anything": {"type": "object", "additionalProperties": true},
            "noItems": {"type": "array"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
        }}}}),
    );
    let mut value = object(json!({
        "labels": {"k": {"v": "1", "w": "2"}},
        "free": {"kept": {"deep": 1}, "strict": {"a": "x", "b": "y"}, "list": [{"a": "x", "b": "y"}]},
        "freeList": [{"a": "x", "b": "y"}],
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "custom": 1}, "spec": {"x": "1", "y": "2"}, "z": 3},
        "anything": {"n": 1, "m": {"inner": 1}},
        "noItems": [{"a": 1}, 2],
        "items": [{"a": "x", "b": "y"}, {"c": "z"}],
    }));
    value["status"] = json!({"phase": "x"});
    let unknown = schema.prune(&mut value);
    assert_eq!(
        unknown,
        [
            "spec.anything.m.inner",
            "spec.free.list[0].b",
            "spec.free.strict.b",
            "spec.items[0].b",
            "spec.items[1].c",
            "spec.labels.k.w",
            "spec.noItems[0].a",
            "spec.template.spec.y",
            "spec.template.z",
            "status",
        ]
    );
    assert_eq!(
        value,
        object(json!({
            "labels": {"k": {"v": "1"}},
            "free": {"kept": {"deep": 1}, "strict": {"a": "x"}, "list": [{"a": "x"}]},
            "freeList": [{"a": "x", "b": "y"}],
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "custom": 1}, "spec": {"x": "1"}},
            "anything": {"n": 1, "m": {}},
            "noItems": [{}, 2],
            "items": [{"a": "x"}, {}],
        }))
    );
}

#[test]
fn pruning_drops_nulls_a_field_may_not_hold() {
    let schema =
        schema(json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "plain": {"type": "string"},
            "nullable": {"type": "string", "nullable": true},
            "defaulted": {"type": "string", "default": "d"},
        }}}}));
    let mut value = object(json!({"plain": null, "nullable": null, "defaulted": null}));
    assert_eq!(schema.prune(&mut value), Vec::<String>::new());
    assert_eq!(value["spec"], json!({"nullable": null, "defaulted": null}));
    schema.default(&mut value);
    assert_eq!(value["spec"], json!({"nullable": null, "defaulted": "d"}));
}

#[test]
fn defaults_apply_top_down_and_never_override() {
    let schema = schema(
        json!({"type": "object", "properties": {"spec": {"type": "object", "default": {}, "properties": {
            "replicas": {"type": "integer", "default": 1},
            "strategy": {"type": "object", "default": {"type": "Rolling"}, "properties": {
                "type": {"type": "string"},
                "maxSurge": {"type": "integer", "default": 25},
            }},
            "ports": {"type": "array", "items": {"type": "object", "default": {"name": "p"}, "properties": {
                "name": {"type": "string"},
                "protocol": {"type": "string", "default": "TCP"},
            }}},
            "limits": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "max": {"type": "integer", "default": 10},
            }}},
        }}}}),
    );
    let mut empty = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "x"}});
    schema.default(&mut empty);
    assert_eq!(
        empty["spec"],
        json!({"replicas": 1, "strategy": {"type": "Rolling", "maxSurge": 25}})
    );
    let mut set = object(json!({
        "replicas": 0,
        "strategy": {"type": "Recreate"},
        "ports": [{"name": "web"}, {"protocol": "UDP"}, null],
        "limits": {"cpu": {}, "mem": {"max": 3}},
    }));
    schema.default(&mut set);
    assert_eq!(
        set["spec"],
        json!({
            "replicas": 0,
            "strategy": {"type": "Recreate", "maxSurge": 25},
            "ports": [{"name": "web", "protocol": "TCP"}, {"protocol": "UDP"}, {"name": "p", "protocol": "TCP"}],
            "limits": {"cpu": {"max": 10}, "mem": {"max": 3}},
        })
    );
}

#[test]
fn broken_schemas_are_refused_with_upstream_s_messages() {
    let errors = Schema::new(&json!({"type": "object", "properties": {
        "a": {"type": "strng"},
        "b": {"type": "string", "pattern": "("},
        "c": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
        "d": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}},
        "e": {"type": "object", "x-kubernetes-preserve-unknown-fields": false},
        "f": {"type": "object", "properties": {"g": {"type": "string"}}, "additionalProperties": {"type": "string"}},
        "h": {"type": "string", "pattern": "a**"},
    }}))
    .expect_err("refused");
    let shown: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.detail)).collect();
    assert_eq!(
        shown,
        [
            "properties[a].type: Unsupported value: \"strng\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
            "properties[c].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            "properties[d].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map",
            "properties[e].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined",
            "properties[f].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
            "properties[b].pattern: Invalid value: \"(\": must be a valid regular expression, but isn't: error parsing regexp: missing closing ): `(`",
            "properties[h].pattern: Invalid value: \"a**\": must be a valid regular expression, but isn't: error parsing regexp: invalid nested repetition operator: `**`",
        ]
    );
}

#[test]
fn patterns_mean_what_they_mean_in_go() {
    let matches = |pattern: &str, s: &str| {
        errors_of(json!({"type": "string", "pattern": pattern}), json!(s)).is_empty()
    };
    // Go's \d, \w and \s are ASCII.
    assert!(matches("^\\d+$", "123"));
    assert!(!matches("^\\d+$", "١٢٣"));
    assert!(!matches("^\\w$", "é"));
    assert!(matches("^[\\w-]+$", "a-b_c"));
    // `{` that starts no repeat, and `[` inside a class, are literals.
    assert!(matches("^x{,3}$", "x{,3}"));
    assert!(matches("^[[]$", "["));
    assert!(matches("^[a&&b]$", "&"));
    assert!(matches("^\\Q*.*\\E$", "*.*"));
    let refusal = |pattern: &str| match Schema::new(&json!({"type": "string", "pattern": pattern}))
    {
        Ok(_) => String::new(),
        Err(errors) => errors[0].detail.clone(),
    };
    assert!(refusal("a{1001}").ends_with("error parsing regexp: invalid repeat count: `{1001}`"));
    assert!(refusal("[a-").ends_with("error parsing regexp: missing closing ]: `[a-`"));
    assert!(
        refusal("*a")
            .ends_with("error parsing regexp: missing argument to repetition operator: `*`")
    );
    assert!(refusal("\\q").ends_with("error parsing regexp: invalid escape sequence: `\\q`"));
    assert!(
        refusal("(?=a)")
            .ends_with("error parsing regexp: invalid or unsupported Perl syntax: `(?=`")
    );
    assert!(refusal("a)").ends_with("error parsing regexp: unexpected ): `a)`"));
}

#[test]
fn go_renders_floats_and_json_its_own_way() {
    use super::golang::{float_v, json};
    for (f, shown) in [
        (0.0, "0"),
        (1.0, "1"),
        (-2.5, "-2.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e100, "1e+100"),
    ] {
        assert_eq!(float_v(f), shown, "{f}");
    }
    assert_eq!(
        json(&json!([1.5, 1e21, 1e-7, 100000000.0, "<&>\u{2028}"])),
        "[1.5,1e+21,1e-7,100000000,\"\\u003c\\u0026\\u003e\\u2028\"]"
    );
    assert_eq!(json(&json!({"b": 1, "a": [null, true]})), "{\"a\":[null,true],\"b\":1}");
}

#[test]
fn depth_is_bounded_without_overflowing() {
    let mut deep_schema = json!({"type": "string"});
    for _ in 0..150 {
        deep_schema = json!({"type": "object", "properties": {"a": deep_schema}});
    }
    let errors = Schema::new(&deep_schema).expect_err("too deep");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].detail.contains("nested more than 100 levels"), "{errors:?}");

    let schema = schema(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"list": {"type": "array"}}}));
    let deep = || {
        // Built by hand: `json!` would copy the value at every level.
        let mut deep = json!(1);
        for _ in 0..5000 {
            let mut map = serde_json::Map::new();
            map.insert("a".to_owned(), deep);
            deep = Value::Array(vec![Value::Object(map)]);
        }
        deep
    };
    let mut value = Value::Object(serde_json::Map::from_iter([
        ("spec".to_owned(), deep()),
        ("list".to_owned(), Value::Array(vec![deep()])),
    ]));
    let unknown = schema.prune(&mut value);
    assert_eq!(unknown, ["list[0][0].a"]);
    schema.default(&mut value);
    assert!(schema.validate(&value).is_empty());
    // serde_json drops nested values recursively; take them apart first.
    let mut stack = vec![value];
    while let Some(mut v) = stack.pop() {
        match &mut v {
            Value::Array(items) => stack.append(items),
            Value::Object(map) => stack.extend(std::mem::take(map).into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z0-9\\-]{0,6}".prop_map(Value::from),
        Just(json!("object")),
        Just(json!("integer")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("properties".to_owned()),
                    Just("items".to_owned()),
                    Just("additionalProperties".to_owned()),
                    Just("anyOf".to_owned()),
                    Just("enum".to_owned()),
                    Just("default".to_owned()),
                    Just("pattern".to_owned()),
                    Just("x-kubernetes-list-type".to_owned()),
                    Just("x-kubernetes-preserve-unknown-fields".to_owned()),
                    "[a-z]{1,3}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics(raw_schema in any_json(), mut value in any_json()) {
        let (schema, _) = Schema::compile(&raw_schema);
        let mut crontab_value = value.clone();
        let _ = schema.prune(&mut value);
        schema.default(&mut value);
        let _ = schema.validate(&value);
        let fixed = crontab();
        let _ = fixed.prune(&mut crontab_value);
        fixed.default(&mut crontab_value);
        let _ = fixed.validate(&crontab_value);
    }
}
