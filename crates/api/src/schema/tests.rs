use serde_json::{Value, json};

use super::Schema;

fn crontab() -> Schema {
    Schema::new(&json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["cronSpec"],
                "properties": {
                    "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                    "image": {"type": "string", "maxLength": 8},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                    "port": {"x-kubernetes-int-or-string": true},
                    "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1},
                    "since": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "x-kubernetes-list-type": "set"},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "number": {"type": "integer", "default": 80},
                        }},
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                              "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                },
            },
        },
    }))
    .expect("schema compiles")
}

fn messages(schema: &Schema, object: &Value) -> Vec<String> {
    schema.validate(object).iter().map(|e| format!("{}: {}", e.field, e.detail)).collect()
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"}, "spec": spec})
}

#[test]
fn a_valid_object_has_no_errors() {
    let ok = object(
        json!({"cronSpec": "* * * * */5", "image": "cron:1", "replicas": 3, "mode": "fast",
                           "port": "http", "ratio": 0.5, "since": "2024-01-02T03:04:05Z", "tags": ["a", "b"],
                           "ports": [{"name": "a"}, {"name": "b"}], "labels": {"k": "v"}}),
    );
    assert_eq!(messages(&crontab(), &ok), Vec::<String>::new());
}

#[test]
fn errors_read_as_upstream_s() {
    let schema = crontab();
    let bad = object(
        json!({"cronSpec": "often", "image": "a-very-long-image", "replicas": 20, "mode": "medium",
                            "port": {"x": 1}, "ratio": 1, "since": "yesterday", "tags": ["a", "a", "b"],
                            "ports": [{"name": "a"}, {"name": "a"}], "labels": {"k": 1}}),
    );
    let found = messages(&schema, &bad);
    for expected in [
        "spec.cronSpec: Invalid value: \"often\": spec.cronSpec in body should match '^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
        "spec.image: Too long: may not be more than 8 bytes",
        "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
        "spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\"",
        "spec.port: Invalid value: \"object\": spec.port in body must be of type integer,string: \"object\"",
        "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
        "spec.since: Invalid value: \"yesterday\": spec.since in body must be of type date-time: \"yesterday\"",
        "spec.tags: Too many: 3: must have at most 2 items",
        "spec.tags[1]: Duplicate value: \"a\"",
        "spec.ports[1]: Duplicate value: {\"name\":\"a\"}",
        "spec.labels.k: Invalid value: \"integer\": spec.labels.k in body must be of type string: \"integer\"",
    ] {
        assert!(found.iter().any(|f| f == expected), "missing {expected:?} in {found:#?}");
    }
    let missing = messages(&schema, &object(json!({"replicas": "3"})));
    assert!(missing.contains(&"spec.cronSpec: Required value".to_owned()), "{missing:?}");
    assert!(
        missing.contains(&"spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"".to_owned()),
        "{missing:?}"
    );
    let reasons: Vec<&str> = schema.validate(&object(json!({}))).iter().map(|e| e.reason).collect();
    assert_eq!(reasons, ["FieldValueRequired"]);
}

#[test]
fn pruning_drops_and_names_undeclared_fields() {
    let schema = crontab();
    let mut value = object(json!({
        "cronSpec": "* * * * *",
        "color": "red",
        "ports": [{"name": "a", "protocol": "TCP"}],
        "labels": {"any": "key"},
        "extra": {"free": {"deep": 1}, "known": {"a": "x", "b": "y"}},
        "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "1", "y": "2"}},
    }));
    value["status"] = json!({"phase": "x"});
    let unknown = schema.prune(&mut value);
    assert_eq!(
        unknown,
        [
            "spec.color",
            "spec.extra.known.b",
            "spec.ports[0].protocol",
            "spec.template.spec.y",
            "status"
        ]
    );
    assert_eq!(value["apiVersion"], "stable.example.com/v1");
    assert_eq!(value["metadata"]["name"], "x");
    assert_eq!(value["spec"]["labels"]["any"], "key");
    assert_eq!(value["spec"]["extra"]["free"]["deep"], 1, "preserved");
    assert_eq!(value["spec"]["template"]["kind"], "Pod", "embedded resources keep their type meta");
    assert_eq!(value["spec"]["template"]["metadata"]["name"], "p");
}

#[test]
fn defaults_fill_missing_fields_only() {
    let schema = crontab();
    let mut value = object(
        json!({"cronSpec": "* * * * *", "ports": [{"name": "a"}, {"name": "b", "number": 8080}]}),
    );
    schema.default(&mut value);
    assert_eq!(value["spec"]["replicas"], 1);
    assert_eq!(value["spec"]["ports"][0]["number"], 80);
    assert_eq!(value["spec"]["ports"][1]["number"], 8080);
    let mut set = object(json!({"cronSpec": "* * * * *", "replicas": 4}));
    schema.default(&mut set);
    assert_eq!(set["spec"]["replicas"], 4);
}

#[test]
fn broken_schemas_are_refused_with_their_paths() {
    let errors = Schema::new(&json!({"type": "object", "properties": {
        "a": {"type": "strng"},
        "b": {"type": "string", "pattern": "("},
    }}))
    .expect_err("refused");
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["properties[a].type", "properties[b].pattern"]);
    assert!(
        errors[0].detail.starts_with("Unsupported value: \"strng\": supported values: \"array\"")
    );
}

#[test]
fn deep_objects_do_not_overflow() {
    let schema =
        Schema::new(&json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}))
            .expect("schema");
    let mut deep = json!(1);
    for _ in 0..1000 {
        deep = json!({"a": deep});
    }
    let mut deep = json!({"spec": deep});
    assert!(schema.prune(&mut deep).is_empty());
    schema.default(&mut deep);
    let _ = schema.validate(&deep);
}
