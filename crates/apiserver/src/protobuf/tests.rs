//! Bodies encoded by k8s-pb's prost types (and recorded from real kubectl 1.32/1.33), decoded
//! by the table walker and compared with the JSON upstream's Go types would produce.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::batch::v1 as batch;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{Value, json};

use super::json::{MAX_DEPTH, go_duration, message_value};
use super::schema::{Special, Ty, kind_message};
use super::table::{API_VERSIONS, MESSAGES};
use super::{Error, decode_object};

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn envelope(api_version: &str, kind: &str, object: &impl prost::Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s(api_version), kind: s(kind) }),
        raw: Some(object.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

fn decode(body: &[u8]) -> Value {
    match decode_object(body, None) {
        Ok(value) => value,
        Err(e) => panic!("decode failed: {e}"),
    }
}

/// ObjectMeta as Go writes it: every non-pointer field on the wire, zero or not.
fn go_meta(name: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(""),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

/// Recorded from real clients (`/work/shared/reference/kubectl-wire-logs`), bodies verbatim.
const KUBECTL_CONFIGMAP: &str =
    "azhzAAoPCgJ2MRIJQ29uZmlnTWFwEh0KEwoDY214EgAaACIAKgAyADgAQgASBgoBYRIBYhoAIgA=";
const KUBECTL_SECRET: &str =
    "azhzAAoMCgJ2MRIGU2VjcmV0EiAKFAoEc2VjMRIAGgAiACoAMgA4AEIAEgYKAWESAWIaABoAIgA=";
const KUBECTL_SERVICE: &str = "azhzAAoNCgJ2MRIHU2VydmljZRJjCh0KAnMxEgAaACIAKgAyADgAQgBaCQoDYXBwEgJzMRI+ChgKBTgwLTgwEgNUQ1AYUCIGCAAQUBoAKAASCQoDYXBwEgJzMRoAIglDbHVzdGVySVA6AEIAUgBaAGAAaAAaAgoAGgAiAA==";
const KUBECTL_DEPLOYMENT: &str = "azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50Eq8BCiEKBG54MzMSABoAIgAqADIAOABCAFoLCgNhcHASBG54MzMSfAgBEg0KCwoDYXBwEgRueDMzGmEKHQoAEgAaACIAKgAyADgAQgBaCwoDYXBwEgRueDMzEkASIgoFbmdpbngSBW5naW54KgBCAGoAcgCAAQCIAQCQAQCiAQAaADIAQgBKAFIAWABgAGgAggEAigEAmgEAwgEAIgIKACgAOAAaDAgAEAAYACAAKAA4ABoAIgA=";
const KUBECTL_JOB: &str = "azhzAAoPCghiYXRjaC92MRIDSm9iEnoKEgoCajESABoAIgAqADIAOABCABJaMlgKEAoAEgAaACIAKgAyADgAQgASRBIhCgJqMRIHYnVzeWJveCoAQgBqAHIAgAEAiAEAkAEAogEAGgVOZXZlcjIAQgBKAFIAWABgAGgAggEAigEAmgEAwgEAGgggACgAMAA6ABoAIgA=";
const KUBECTL_NAMESPACE: &str =
    "azhzAAoPCgJ2MRIJTmFtZXNwYWNlEhsKEwoDbnN4EgAaACIAKgAyADgAQgASABoCCgAaACIA";
const KUBECTL_TOKEN_REQUEST: &str = "azhzAAooChhhdXRoZW50aWNhdGlvbi5rOHMuaW8vdjESDFRva2VuUmVxdWVzdBIaChAKABIAGgAiACoAMgA4AEIAEgAaBAoAEgAaACIA";
const KUBECTL_HPA_V2: &str = "azhzAAopCg5hdXRvc2NhbGluZy92MhIXSG9yaXpvbnRhbFBvZEF1dG9zY2FsZXISXQoRCgF4EgAaACIAKgAyADgAQgASQgoYCgpEZXBsb3ltZW50EgF4GgdhcHBzL3YxEAIYBSIiCghSZXNvdXJjZSIWCgNjcHUSDwoLVXRpbGl6YXRpb24gUBoEGAAgABoAIgA=";

fn recorded(b64: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(b64).expect("fixture is base64")
}

#[test]
fn kubectl_bodies_decode_to_the_json_kubectl_would_send() {
    let cases = [
        (
            KUBECTL_CONFIGMAP,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cmx", "creationTimestamp": null}, "data": {"a": "b"}}),
        ),
        (
            KUBECTL_SECRET,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "sec1", "creationTimestamp": null}, "data": {"a": "Yg=="}}),
        ),
        (
            KUBECTL_SERVICE,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "s1", "creationTimestamp": null, "labels": {"app": "s1"}},
                   "spec": {"ports": [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 80}],
                            "selector": {"app": "s1"}, "type": "ClusterIP"},
                   "status": {"loadBalancer": {}}}),
        ),
        (
            KUBECTL_DEPLOYMENT,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "nx33", "creationTimestamp": null, "labels": {"app": "nx33"}},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nx33"}},
                            "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "nx33"}},
                                         "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}},
                            "strategy": {}},
                   "status": {}}),
        ),
        (
            KUBECTL_JOB,
            json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "j1", "creationTimestamp": null},
                   "spec": {"template": {"metadata": {"creationTimestamp": null},
                                         "spec": {"containers": [{"name": "j1", "image": "busybox", "resources": {}}],
                                                  "restartPolicy": "Never"}}},
                   "status": {}}),
        ),
        (
            KUBECTL_NAMESPACE,
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "nsx", "creationTimestamp": null}, "spec": {}, "status": {}}),
        ),
        (
            KUBECTL_TOKEN_REQUEST,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"creationTimestamp": null},
                   "spec": {},
                   "status": {"expirationTimestamp": null, "token": ""}}),
        ),
        (
            KUBECTL_HPA_V2,
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                   "metadata": {"name": "x", "creationTimestamp": null},
                   "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x", "apiVersion": "apps/v1"},
                            "minReplicas": 2, "maxReplicas": 5,
                            "metrics": [{"type": "Resource",
                                         "resource": {"name": "cpu",
                                                      "target": {"type": "Utilization", "averageUtilization": 80}}}]},
                   // currentReplicas is omitempty in v2, desiredReplicas is not
                   "status": {"desiredReplicas": 0}}),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(decode(&recorded(body)), expected);
    }
}

#[test]
fn configmap_data_and_binary_data() {
    let cm = core::ConfigMap {
        metadata: Some(meta::ObjectMeta {
            labels: labels(&[("app", "web")]),
            annotations: labels(&[("note", "")]),
            ..go_meta("cm")
        }),
        data: labels(&[("a", "b"), ("empty", "")]),
        binary_data: [("bin".to_owned(), vec![0u8, 1, 2, 255])].into(),
        immutable: Some(false),
    };
    assert_eq!(
        decode(&envelope("v1", "ConfigMap", &cm)),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cm", "creationTimestamp": null,
                         "labels": {"app": "web"}, "annotations": {"note": ""}},
            "data": {"a": "b", "empty": ""},
            "binaryData": {"bin": "AAEC/w=="},
            // a pointer in Go: present false stays
            "immutable": false,
        })
    );
}

#[test]
fn secret_data_is_base64_and_string_data_stays_text() {
    let secret = core::Secret {
        metadata: Some(go_meta("sec")),
        data: [("password".to_owned(), b"s3cr3t".to_vec())].into(),
        string_data: labels(&[("user", "admin")]),
        r#type: s("Opaque"),
        immutable: None,
    };
    assert_eq!(
        decode(&envelope("v1", "Secret", &secret)),
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "sec", "creationTimestamp": null},
            "data": {"password": "czNjcjN0"},
            "stringData": {"user": "admin"},
            "type": "Opaque",
        })
    );
}

fn nginx_container() -> core::Container {
    core::Container {
        name: s("nginx"),
        image: s("nginx:1.27"),
        working_dir: s(""),
        ports: vec![core::ContainerPort {
            name: s("http"),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        resources: Some(core::ResourceRequirements {
            limits: [
                ("cpu".to_owned(), quantity("500m")),
                ("memory".to_owned(), quantity("128Mi")),
            ]
            .into(),
            requests: [("cpu".to_owned(), quantity("250m"))].into(),
            claims: vec![],
        }),
        termination_message_path: s(""),
        termination_message_policy: s(""),
        image_pull_policy: s(""),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        ..Default::default()
    }
}

#[test]
fn deployment_with_selector_template_resources_and_ports() {
    let deployment = apps::Deployment {
        metadata: Some(meta::ObjectMeta { labels: labels(&[("app", "web")]), ..go_meta("web") }),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(3),
            selector: Some(meta::LabelSelector {
                match_labels: labels(&[("app", "web")]),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    ..go_meta("")
                }),
                spec: Some(core::PodSpec {
                    containers: vec![nginx_container()],
                    restart_policy: s(""),
                    dns_policy: s(""),
                    service_account_name: s(""),
                    node_name: s(""),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            strategy: Some(apps::DeploymentStrategy { r#type: s(""), rolling_update: None }),
            min_ready_seconds: Some(0),
            revision_history_limit: None,
            paused: Some(false),
            progress_deadline_seconds: None,
        }),
        status: Some(apps::DeploymentStatus {
            observed_generation: Some(0),
            replicas: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&envelope("apps/v1", "Deployment", &deployment)),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                      "requests": {"cpu": "250m"}},
                    }]},
                },
                "strategy": {},
            },
            "status": {},
        })
    );
}

#[test]
fn zero_replicas_survive_because_replicas_is_a_pointer() {
    let deployment = apps::Deployment {
        metadata: Some(go_meta("zero")),
        spec: Some(apps::DeploymentSpec { replicas: Some(0), ..Default::default() }),
        status: None,
    };
    let value = decode(&envelope("apps/v1", "Deployment", &deployment));
    assert_eq!(value["spec"], json!({"replicas": 0}));
}

#[test]
fn service_ports_with_int_and_string_target_ports() {
    let port = |name: &str, port: i32, target: IntOrString| core::ServicePort {
        name: s(name),
        protocol: s("TCP"),
        app_protocol: None,
        port: Some(port),
        target_port: Some(target),
        node_port: Some(0),
    };
    let service = core::Service {
        metadata: Some(go_meta("svc")),
        spec: Some(core::ServiceSpec {
            ports: vec![
                port(
                    "web",
                    80,
                    IntOrString { r#type: Some(0), int_val: Some(8080), str_val: s("") },
                ),
                port(
                    "api",
                    443,
                    IntOrString { r#type: Some(1), int_val: Some(0), str_val: s("https") },
                ),
            ],
            selector: labels(&[("app", "web")]),
            cluster_ip: s(""),
            r#type: s("ClusterIP"),
            session_affinity: s(""),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode(&envelope("v1", "Service", &service)),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc", "creationTimestamp": null},
            "spec": {
                "ports": [
                    {"name": "web", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "api", "protocol": "TCP", "port": 443, "targetPort": "https"},
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            },
        })
    );
}

#[test]
fn job_keeps_pointer_zeros_and_drops_value_zeros() {
    let job = batch::Job {
        metadata: Some(go_meta("pi")),
        spec: Some(batch::JobSpec {
            parallelism: Some(2),
            completions: Some(4),
            backoff_limit: Some(0),
            template: Some(core::PodTemplateSpec {
                metadata: Some(go_meta("")),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("pi"),
                        image: s("perl"),
                        command: vec!["perl".into(), "-e".into(), "print 1".into()],
                        ..Default::default()
                    }],
                    restart_policy: s("Never"),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(batch::JobStatus {
            active: Some(0),
            succeeded: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&envelope("batch/v1", "Job", &job)),
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "creationTimestamp": null},
            "spec": {
                "parallelism": 2, "completions": 4, "backoffLimit": 0,
                "template": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {"containers": [{"name": "pi", "image": "perl",
                                             "command": ["perl", "-e", "print 1"]}],
                             "restartPolicy": "Never"},
                },
            },
            "status": {},
        })
    );
}

#[test]
fn namespace_with_finalizers() {
    let namespace = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            finalizers: vec!["example.com/x".into()],
            ..go_meta("ns1")
        }),
        spec: Some(core::NamespaceSpec { finalizers: vec!["kubernetes".into()] }),
        status: Some(core::NamespaceStatus { phase: s(""), conditions: vec![] }),
    };
    assert_eq!(
        decode(&envelope("v1", "Namespace", &namespace)),
        json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "ns1", "creationTimestamp": null, "finalizers": ["example.com/x"]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {},
        })
    );
}

#[test]
fn pod_times_inline_volume_sources_selectors_and_probes() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            creation_timestamp: Some(meta::Time { seconds: Some(1_704_164_645), nanos: Some(0) }),
            deletion_timestamp: Some(meta::Time { seconds: Some(1_704_164_700), nanos: Some(999) }),
            deletion_grace_period_seconds: Some(0),
            managed_fields: vec![meta::ManagedFieldsEntry {
                manager: s("kubectl"),
                operation: s("Update"),
                api_version: s("v1"),
                time: Some(meta::Time { seconds: Some(0), nanos: None }),
                fields_type: s("FieldsV1"),
                fields_v1: Some(meta::FieldsV1 { raw: Some(br#"{"f:metadata":{}}"#.to_vec()) }),
                subresource: s(""),
            }],
            ..go_meta("p")
        }),
        spec: Some(core::PodSpec {
            volumes: vec![core::Volume {
                name: s("config"),
                volume_source: Some(core::VolumeSource {
                    config_map: Some(core::ConfigMapVolumeSource {
                        local_object_reference: Some(core::LocalObjectReference { name: s("cm") }),
                        default_mode: Some(420),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            }],
            containers: vec![core::Container {
                name: s("app"),
                env: vec![core::EnvVar {
                    name: s("KEY"),
                    value: s(""),
                    value_from: Some(core::EnvVarSource {
                        config_map_key_ref: Some(core::ConfigMapKeySelector {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: s("cm"),
                            }),
                            key: s("k"),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    }),
                }],
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: Some(IntOrString {
                                r#type: Some(1),
                                int_val: None,
                                str_val: s("http"),
                            }),
                            host: s(""),
                            scheme: s("HTTP"),
                            http_headers: vec![],
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(5),
                    initial_delay_seconds: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            start_time: Some(meta::Time { seconds: Some(951_782_400), nanos: Some(5) }),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&envelope("v1", "Pod", &pod)),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p",
                "creationTimestamp": "2024-01-02T03:04:05Z",
                "deletionTimestamp": "2024-01-02T03:05:00Z",
                "deletionGracePeriodSeconds": 0,
                "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                                   "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                                   "fieldsV1": {"f:metadata": {}}}],
            },
            "spec": {
                "volumes": [{"name": "config", "configMap": {"name": "cm", "defaultMode": 420}}],
                "containers": [{
                    "name": "app",
                    "env": [{"name": "KEY",
                             "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": true}}}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                       "periodSeconds": 5},
                }],
            },
            "status": {"startTime": "2000-02-29T00:00:00Z"},
        })
    );
}

#[test]
fn micro_time_has_six_fractional_digits() {
    use k8s_pb::api::events::v1 as events;
    let event = events::Event {
        metadata: Some(go_meta("e")),
        event_time: Some(meta::MicroTime {
            seconds: Some(1_704_164_645),
            nanos: Some(123_456_789),
        }),
        reason: s("Started"),
        ..Default::default()
    };
    let value = decode(&envelope("events.k8s.io/v1", "Event", &event));
    assert_eq!(value["eventTime"], "2024-01-02T03:04:05.123456Z");
    let whole = events::Event {
        event_time: Some(meta::MicroTime { seconds: Some(1_704_164_645), nanos: None }),
        ..Default::default()
    };
    let value = decode(&envelope("events.k8s.io/v1", "Event", &whole));
    assert_eq!(value["eventTime"], "2024-01-02T03:04:05.000000Z");
}

#[test]
fn raw_extension_embeds_its_json() {
    let revision = apps::ControllerRevision {
        metadata: Some(go_meta("rev")),
        data: Some(RawExtension { raw: Some(br#"{"spec":{"template":{"x":1}}}"#.to_vec()) }),
        revision: Some(2),
    };
    let value = decode(&envelope("apps/v1", "ControllerRevision", &revision));
    assert_eq!(value["data"], json!({"spec": {"template": {"x": 1}}}));
    assert_eq!(value["revision"], 2);

    let broken = apps::ControllerRevision {
        data: Some(RawExtension { raw: Some(b"{not json".to_vec()) }),
        ..revision
    };
    assert!(matches!(
        decode_object(&envelope("apps/v1", "ControllerRevision", &broken), None),
        Err(Error::RawJson { .. })
    ));
}

#[test]
fn list_types_become_arrays() {
    use k8s_pb::api::authorization::v1 as authz;
    let review = authz::SubjectAccessReview {
        metadata: Some(go_meta("")),
        spec: Some(authz::SubjectAccessReviewSpec {
            user: s("jane"),
            groups: vec!["dev".into()],
            extra: [(
                "scopes".to_owned(),
                authz::ExtraValue { items: vec!["a".into(), "b".into()] },
            )]
            .into(),
            ..Default::default()
        }),
        status: None,
    };
    let value = decode(&envelope("authorization.k8s.io/v1", "SubjectAccessReview", &review));
    assert_eq!(
        value["spec"],
        json!({"user": "jane", "groups": ["dev"], "extra": {"scopes": ["a", "b"]}})
    );
}

#[test]
fn crd_schemas_use_the_apiextensions_unions() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string = ext::JsonSchemaProps { r#type: s("string"), ..Default::default() };
    let schema = ext::JsonSchemaProps {
        r#type: s("object"),
        properties: [
            (
                "tags".to_owned(),
                ext::JsonSchemaProps {
                    r#type: s("array"),
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string.clone())),
                        j_son_schemas: vec![],
                    })),
                    ..Default::default()
                },
            ),
            (
                "labels".to_owned(),
                ext::JsonSchemaProps {
                    r#type: s("object"),
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(true),
                        schema: Some(Box::new(string.clone())),
                    })),
                    ..Default::default()
                },
            ),
            (
                "closed".to_owned(),
                ext::JsonSchemaProps {
                    r#type: s("object"),
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(false),
                        schema: None,
                    })),
                    default: Some(ext::Json { raw: Some(br#"{"a":1}"#.to_vec()) }),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        x_kubernetes_preserve_unknown_fields: Some(true),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(go_meta("things.example.com")),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: s("things"),
                kind: s("Thing"),
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation { open_apiv3_schema: Some(schema) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let value = decode(&envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd));
    assert_eq!(
        value["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        json!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "tags": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "closed": {"type": "object", "additionalProperties": false, "default": {"a": 1}},
            },
        })
    );
}

#[test]
fn durations_print_as_go_does() {
    for (nanos, text) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (360_000_000_000_000, "100h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-1_500_000_000, "-1.5s"),
        (i64::MIN, "-2562047h47m16.854775808s"),
    ] {
        assert_eq!(go_duration(nanos), text, "{nanos}");
    }
    use k8s_pb::metrics::pkg::apis::metrics::v1beta1 as metrics;
    let node = metrics::NodeMetrics {
        metadata: Some(go_meta("n1")),
        timestamp: Some(meta::Time { seconds: Some(1_704_164_645), nanos: None }),
        window: Some(meta::Duration { duration: Some(30_000_000_000) }),
        usage: [("cpu".to_owned(), quantity("100m"))].into(),
    };
    let value = decode(&envelope("metrics.k8s.io/v1beta1", "NodeMetrics", &node));
    assert_eq!(value["window"], "30s");
    assert_eq!(value["usage"], json!({"cpu": "100m"}));
}

#[test]
fn binding_and_eviction_decode_for_subresources() {
    let binding = core::Binding {
        metadata: Some(go_meta("p")),
        target: Some(core::ObjectReference {
            kind: s("Node"),
            name: s("n1"),
            namespace: s(""),
            ..Default::default()
        }),
    };
    let value = decode(&envelope("v1", "Binding", &binding));
    assert_eq!(value["target"], json!({"kind": "Node", "name": "n1"}));

    let eviction = k8s_pb::api::policy::v1::Eviction {
        metadata: Some(go_meta("p")),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            propagation_policy: s("Background"),
            ..Default::default()
        }),
    };
    let value = decode(&envelope("policy/v1", "Eviction", &eviction));
    assert_eq!(
        value["deleteOptions"],
        json!({"gracePeriodSeconds": 0, "propagationPolicy": "Background"})
    );
    // DeleteOptions is registered in every group-version, as upstream does.
    let options = meta::DeleteOptions { propagation_policy: s("Orphan"), ..Default::default() };
    let value = decode(&envelope("apps/v1", "DeleteOptions", &options));
    assert_eq!(
        value,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "propagationPolicy": "Orphan"})
    );
}

#[test]
fn the_envelope_type_defaults_from_the_endpoint() {
    let cm = core::ConfigMap { metadata: Some(go_meta("cm")), ..Default::default() };
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s(""), kind: s("") }),
        raw: Some(cm.encode_to_vec()),
        ..Default::default()
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    assert!(matches!(decode_object(&body, None), Err(Error::MissingKind)));
    let value = decode_object(&body, Some(("v1", "ConfigMap"))).expect("defaulted");
    assert_eq!(value["kind"], "ConfigMap");
    assert_eq!(value["metadata"]["name"], "cm");
}

#[test]
fn unknown_fields_are_skipped_and_unknown_kinds_refused() {
    let cm = core::ConfigMap { metadata: Some(go_meta("cm")), ..Default::default() };
    let mut raw = cm.encode_to_vec();
    // field 99 as a string, field 98 as a varint, field 97 as fixed32, field 96 as fixed64
    raw.extend([0x9a, 0x06, 3, b'x', b'y', b'z', 0x90, 0x06, 7]);
    raw.extend([0x8d, 0x06, 1, 2, 3, 4, 0x81, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s("v1"), kind: s("ConfigMap") }),
        raw: Some(raw),
        ..Default::default()
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    assert_eq!(decode(&body)["metadata"], json!({"name": "cm", "creationTimestamp": null}));

    assert!(matches!(
        decode_object(&envelope("v1", "Gadget", &cm), None),
        Err(Error::UnknownKind { .. })
    ));
    assert!(matches!(
        decode_object(&envelope("nope.example.com/v1", "ConfigMap", &cm), None),
        Err(Error::UnknownKind { .. })
    ));
}

/// Bytes of a `runtime.Unknown` envelope around arbitrary `raw` bytes.
fn wrap(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s(api_version), kind: s(kind) }),
        raw: Some(raw),
        ..Default::default()
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    let good = recorded(KUBECTL_DEPLOYMENT);
    assert!(matches!(decode_object(&good[1..], None), Err(Error::Magic)));
    assert!(matches!(decode_object(b"{\"kind\":\"Pod\"}", None), Err(Error::Magic)));
    // Cut inside the envelope's raw field: its length runs past the end.
    assert!(matches!(decode_object(&good[..good.len() - 10], None), Err(Error::Length(_))));
    // Every prefix decodes or fails, never panics.
    for end in 0..good.len() {
        let _ = decode_object(&good[..end], None);
    }
    // Truncated varint inside the object.
    assert!(matches!(
        decode_object(&wrap("v1", "ConfigMap", vec![0x0a, 0x80]), None),
        Err(Error::Truncated)
    ));
    // metadata (tag 1) as a varint: wrong wire type.
    assert!(matches!(
        decode_object(&wrap("v1", "ConfigMap", vec![0x08, 0x01]), None),
        Err(Error::WireType { tag: 1, wire: 0, .. })
    ));
    // a string field (metadata.name) as fixed64
    assert!(matches!(
        decode_object(
            &wrap("v1", "ConfigMap", vec![0x0a, 0x09, 0x09, 1, 2, 3, 4, 5, 6, 7, 8]),
            None
        ),
        Err(Error::WireType { tag: 1, wire: 1, .. })
    ));
    // varint of 11 bytes
    assert!(matches!(
        decode_object(
            &wrap(
                "v1",
                "ConfigMap",
                vec![0x20; 1].into_iter().chain([0xff; 10]).chain([1]).collect()
            ),
            None
        ),
        Err(Error::VarintOverflow)
    ));
    // a length of 2^40
    assert!(matches!(
        decode_object(
            &wrap("v1", "ConfigMap", vec![0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]),
            None
        ),
        Err(Error::Length(_))
    ));
    // a group (wire type 3) and tag 0
    assert!(matches!(
        decode_object(&wrap("v1", "ConfigMap", vec![0x0b]), None),
        Err(Error::IllegalTag { wire: 3, .. })
    ));
    assert!(matches!(
        decode_object(&wrap("v1", "ConfigMap", vec![0x02, 0x00]), None),
        Err(Error::IllegalTag { tag: 0, .. })
    ));
    // a map entry whose key is a varint
    assert!(matches!(
        decode_object(&wrap("v1", "ConfigMap", vec![0x12, 0x02, 0x08, 0x01]), None),
        Err(Error::WireType { tag: 1, .. })
    ));
    // an IntOrString of type 2
    let bad_port = core::ServicePort {
        target_port: Some(IntOrString { r#type: Some(2), int_val: None, str_val: None }),
        ..Default::default()
    };
    let service = core::Service {
        spec: Some(core::ServiceSpec { ports: vec![bad_port], ..Default::default() }),
        ..Default::default()
    };
    assert!(matches!(
        decode_object(&envelope("v1", "Service", &service), None),
        Err(Error::IntOrStringType(2))
    ));
    // a compressed envelope
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s("v1"), kind: s("ConfigMap") }),
        raw: Some(vec![]),
        content_encoding: s("gzip"),
        ..Default::default()
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    assert!(matches!(decode_object(&body, None), Err(Error::ContentEncoding(_))));
}

#[test]
fn deep_nesting_is_refused_before_the_stack_or_serde_json_would() {
    // JSONSchemaProps.not (tag 28) nested far deeper than any real schema.
    let mut raw = Vec::new();
    for _ in 0..10_000 {
        let mut outer = vec![0xe2, 0x01]; // tag 28, wire type 2
        let mut len = raw.len();
        while len >= 0x80 {
            outer.push((len as u8) | 0x80);
            len >>= 7;
        }
        outer.push(len as u8);
        outer.extend(&raw);
        raw = outer;
    }
    let props = MESSAGES
        .iter()
        .position(|m| {
            m.name == "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
        })
        .expect("JSONSchemaProps in the table");
    assert!(matches!(message_value(props, &raw, 1), Err(Error::Depth)));
    // Just below the limit is fine, and serde_json can read the result back.
    let mut raw = Vec::new();
    for _ in 0..MAX_DEPTH - 2 {
        let mut outer = vec![0xe2, 0x01, raw.len() as u8];
        if raw.len() >= 0x80 {
            outer = vec![0xe2, 0x01, (raw.len() as u8) | 0x80, (raw.len() >> 7) as u8];
        }
        outer.extend(&raw);
        raw = outer;
    }
    let value = message_value(props, &raw, 1).expect("within the limit");
    let text = serde_json::to_string(&value).expect("serialises");
    let _: Value = serde_json::from_str(&text).expect("serde_json reads it back");
}

/// `key` then the varint length of `inner`, then `inner`.
fn length_delimited(key: &[u8], inner: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    let mut len = inner.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend(inner);
    out
}

#[test]
fn arrays_and_maps_count_towards_the_depth_limit() {
    let props = MESSAGES
        .iter()
        .position(|m| {
            m.name == "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
        })
        .expect("JSONSchemaProps in the table");
    // allOf (tag 25, repeated) and properties (tag 29, map): each level is two JSON levels.
    let all_of = |inner: &[u8]| length_delimited(&[0xca, 0x01], inner);
    let property = |inner: &[u8]| {
        let entry = [vec![0x0a, 0x01, b'p'], length_delimited(&[0x12], inner)].concat();
        length_delimited(&[0xea, 0x01], &entry)
    };
    for wrap in [&all_of as &dyn Fn(&[u8]) -> Vec<u8>, &property] {
        let mut raw = Vec::new();
        let mut refused = false;
        for _ in 0..MAX_DEPTH {
            raw = wrap(&raw);
            match message_value(props, &raw, 1) {
                Ok(value) => {
                    let text = serde_json::to_string(&value).expect("serialises");
                    let _: Value = serde_json::from_str(&text).expect("serde_json reads it back");
                }
                Err(Error::Depth) => {
                    refused = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused, "{} levels of two were accepted", MAX_DEPTH);
    }
}

#[test]
fn the_table_is_consistent() {
    assert!(MESSAGES.windows(2).all(|w| w[0].name < w[1].name), "messages sorted by name");
    assert!(API_VERSIONS.windows(2).all(|w| w[0].0 < w[1].0), "apiVersions sorted");
    for message in &MESSAGES {
        assert!(
            message.fields.windows(2).all(|w| w[0].tag < w[1].tag),
            "{}: fields sorted by tag",
            message.name
        );
        for field in message.fields {
            if let Ty::Msg(index) = field.ty {
                assert!(index < MESSAGES.len(), "{}: {index}", message.name);
            }
            if message.special == Special::Plain {
                assert!(
                    !field.json.is_empty() || field.has(super::schema::INLINE),
                    "{} tag {} has no JSON name",
                    message.name,
                    field.tag
                );
            }
        }
    }
}

#[test]
fn every_catalog_kind_has_a_message() {
    let catalog = krust_api::catalog::Catalog::builtin();
    for resource in catalog.resources() {
        let api_version = resource.api_version();
        let index = kind_message(&api_version, resource.kind)
            .unwrap_or_else(|| panic!("no message for {api_version} {}", resource.kind));
        assert!(MESSAGES[index].name.ends_with(&format!(".{}", resource.kind)));
    }
    for (api_version, kind) in [
        ("policy/v1", "Eviction"),
        ("v1", "Binding"),
        ("autoscaling/v1", "Scale"),
        ("authentication.k8s.io/v1", "TokenRequest"),
        ("v1", "DeleteOptions"),
    ] {
        assert!(kind_message(api_version, kind).is_some(), "{api_version} {kind}");
    }
}

/// The REST machine over a memory store, as rest::tests drives it, for protobuf bodies.
mod rest {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::any;
    use http_body_util::BodyExt;
    use krust_api::catalog::Catalog;
    use krust_store::{MemoryConfig, MemoryStore, Store};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::rest::{ApiState, ensure_namespaces, handle};

    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

    async fn router() -> Router {
        let store: Arc<dyn Store> =
            Arc::new(MemoryStore::new(MemoryConfig::default()).expect("memory store"));
        ensure_namespaces(store.as_ref()).await.expect("namespaces");
        let state = Arc::new(ApiState::new(Catalog::builtin(), store, "127.0.0.1:6443".into()));
        Router::new()
            .route("/api/{*rest}", any(handle))
            .route("/apis/{*rest}", any(handle))
            .with_state(state)
    }

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::from(body)).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn kubectl_protobuf_creates_store_the_objects() {
        let api = router().await;
        let (code, cm) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-create&fieldValidation=Strict",
            Some(PROTOBUF),
            recorded(KUBECTL_CONFIGMAP),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{cm}");
        assert_eq!(cm["data"], json!({"a": "b"}));
        assert_eq!(cm["metadata"]["namespace"], "default");
        assert!(cm["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()), "{cm}");

        // Content-Type parameters are ignored.
        let (code, deploy) = call(
            &api,
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            Some("application/vnd.kubernetes.protobuf; charset=binary"),
            recorded(KUBECTL_DEPLOYMENT),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{deploy}");
        let (code, got) =
            call(&api, "GET", "/apis/apps/v1/namespaces/default/deployments/nx33", None, vec![])
                .await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(got["spec"]["replicas"], 1);
        assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");

        let (code, svc) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/services",
            Some(PROTOBUF),
            recorded(KUBECTL_SERVICE),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{svc}");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert!(svc["spec"]["clusterIP"].as_str().is_some_and(|ip| ip.starts_with("10.")), "{svc}");

        let (code, ns) =
            call(&api, "POST", "/api/v1/namespaces", Some(PROTOBUF), recorded(KUBECTL_NAMESPACE))
                .await;
        assert_eq!(code, StatusCode::CREATED, "{ns}");
        assert_eq!(ns["status"]["phase"], "Active");
    }

    #[tokio::test]
    async fn protobuf_updates_and_bindings() {
        let api = router().await;
        let (code, created) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(PROTOBUF),
            recorded(KUBECTL_CONFIGMAP),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{created}");
        let rv = created["metadata"]["resourceVersion"].as_str().expect("rv").to_owned();
        let update = core::ConfigMap {
            metadata: Some(meta::ObjectMeta { resource_version: Some(rv), ..go_meta("cmx") }),
            data: labels(&[("a", "changed")]),
            ..Default::default()
        };
        let (code, updated) = call(
            &api,
            "PUT",
            "/api/v1/namespaces/default/configmaps/cmx",
            Some(PROTOBUF),
            envelope("v1", "ConfigMap", &update),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{updated}");
        assert_eq!(updated["data"], json!({"a": "changed"}));

        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let (code, _) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/pods",
            Some("application/json"),
            pod.to_string().into_bytes(),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED);
        let binding = core::Binding {
            metadata: Some(go_meta("p")),
            target: Some(core::ObjectReference {
                kind: s("Node"),
                name: s("n1"),
                ..Default::default()
            }),
        };
        // client-go sends the Binding as protobuf; the body's magic says so.
        let (code, status) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/pods/p/binding",
            Some(PROTOBUF),
            envelope("v1", "Binding", &binding),
        )
        .await;
        assert_eq!(code, StatusCode::CREATED, "{status}");
        let (_, pod) = call(&api, "GET", "/api/v1/namespaces/default/pods/p", None, vec![]).await;
        assert_eq!(pod["spec"]["nodeName"], "n1");
    }

    #[tokio::test]
    async fn malformed_or_mismatched_protobuf_is_a_bad_request() {
        let api = router().await;
        let body = recorded(KUBECTL_CONFIGMAP);
        let (code, status) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(PROTOBUF),
            body[..body.len() - 5].to_vec(),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "BadRequest");
        assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the object provided is unrecognized or malformed")),
            "{status}"
        );
        // A ConfigMap posted to secrets is refused by the usual type check.
        let (code, status) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/secrets",
            Some(PROTOBUF),
            recorded(KUBECTL_CONFIGMAP),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
        assert!(status["message"].as_str().is_some_and(|m| m.contains("ConfigMap")), "{status}");
        // Other media types are still 415, and name protobuf among the accepted ones.
        let (code, status) = call(
            &api,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some("application/cbor"),
            vec![0xa0],
        )
        .await;
        assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(status["message"].as_str().is_some_and(|m| m.contains(PROTOBUF)), "{status}");
    }
}

proptest! {
    /// Arbitrary bytes as the object of a few kinds: an error or a JSON object, never a panic.
    #[test]
    fn arbitrary_objects_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..512),
        kind in prop::sample::select(vec![
            ("v1", "Pod"), ("v1", "ConfigMap"), ("apps/v1", "Deployment"),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("v1", "Service"),
        ]),
    ) {
        if let Ok(value) = decode_object(&wrap(kind.0, kind.1, raw), None) {
            prop_assert!(value.is_object());
        }
    }

    /// Real bodies with one byte changed: same.
    #[test]
    fn mutated_kubectl_bodies_never_panic(at in 0usize..200, byte in any::<u8>()) {
        let mut body = recorded(KUBECTL_DEPLOYMENT);
        let at = at % body.len();
        body[at] = byte;
        let _ = decode_object(&body, None);
    }
}
