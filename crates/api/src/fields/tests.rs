use super::*;
use proptest::prelude::*;
use serde_json::json;

fn set<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |f| pairs.iter().find(|(k, _)| *k == f).map(|(_, v)| (*v).to_owned())
}

fn parse(input: &str) -> Selector {
    Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"))
}

#[test]
fn good_strings_round_trip_as_upstream() {
    for good in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
        assert_eq!(parse(good).to_string(), good);
    }
    for bad in ["x=a||y=b", "x==a==b", "x=a,b", "x in (a)", "x in (a,b,c)", "x"] {
        assert!(Selector::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn parse_is_deterministic() {
    assert_eq!(parse("x=a,a=x"), parse("a=x,x=a"));
    assert_eq!(parse("x=a,a=x").to_string(), "a=x,x=a");
    assert_eq!(parse("a==b").to_string(), "a=b");
}

#[test]
fn matching_from_upstream() {
    assert!(parse("").matches(set(&[("x", "y")])));
    assert!(parse("x=y").matches(set(&[("x", "y")])));
    assert!(parse("x=y,z=w").matches(set(&[("x", "y"), ("z", "w")])));
    assert!(parse("x!=y,z!=w").matches(set(&[("x", "z"), ("z", "a")])));
    assert!(parse("notin=in").matches(set(&[("notin", "in")])));
    assert!(!parse("x=y").matches(set(&[("x", "z")])));
    assert!(!parse("x=y,z=w").matches(set(&[("x", "w"), ("z", "w")])));
    assert!(!parse("x!=y,z!=w").matches(set(&[("x", "z"), ("z", "w")])));
    let fieldset = [("foo", "bar"), ("baz", "blah"), ("complex", r"=value\,\")];
    assert!(parse("foo=bar").matches(set(&fieldset)));
    assert!(parse(r"complex=\=value\\\,\\").matches(set(&fieldset)));
    assert!(!parse(r"foo=\=value\\\,\\").matches(set(&fieldset)));
    // Missing fields read as "".
    assert!(parse("spec.nodeName=").matches(set(&[])));
    assert!(parse("spec.nodeName!=a").matches(set(&[])));
}

#[test]
fn escaping_from_upstream() {
    for (raw, escaped) in
        [("", ""), ("a", "a"), ("=", r"\="), (",", r"\,"), (r"\", r"\\"), (r"\=\,\", r"\\\=\\\,\\")]
    {
        assert_eq!(escape_value(raw), escaped);
        assert_eq!(unescape_value(escaped).as_deref(), Ok(raw));
    }
    let err = |s: &str| unescape_value(s).err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(err(r"\"), r"invalid field selector: invalid escape sequence: \");
    assert_eq!(err(r"\\\"), r"invalid field selector: invalid escape sequence: \");
    assert_eq!(err(r"\a"), r"invalid field selector: invalid escape sequence: \a");
    assert_eq!(err(r"\\\a"), r"invalid field selector: invalid escape sequence: \a");
    assert_eq!(err("="), "invalid field selector: unescaped character in value: 61");
    assert_eq!(err(","), "invalid field selector: unescaped character in value: 44");
    assert_eq!(err(r"\\="), "invalid field selector: unescaped character in value: 61");
}

#[test]
fn parse_errors() {
    assert_eq!(
        Selector::parse("a=b,x").err().map(|e| e.to_string()).as_deref(),
        Some("invalid selector: 'a=b,x'; can't understand 'x'")
    );
    assert_eq!(
        Selector::parse("x==a==b").err().map(|e| e.to_string()).as_deref(),
        Some("invalid field selector: unescaped character in value: 61")
    );
    // Nothing is trimmed, and an escaped comma does not split.
    let s = parse(r" a = b\,c ,");
    assert_eq!(
        s.requirements(),
        &[Requirement { field: " a ".into(), operator: Operator::Equals, value: " b,c ".into() }]
    );
}

#[test]
fn supported_fields_per_kind() {
    assert!(supported_fields("", "Pod").contains(&"spec.nodeName"));
    assert_eq!(supported_fields("apps", "Deployment"), &["metadata.name", "metadata.namespace"]);
    assert_eq!(supported_fields("", "Node"), &["metadata.name", "spec.unschedulable"]);
    let refusal = |g: &str, k: &str, f: &str| {
        convert_field_label(g, k, f).err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert_eq!(
        refusal("networking.k8s.io", "Ingress", "foo.bar"),
        r#""foo.bar" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    assert_eq!(
        refusal("apps", "ReplicaSet", "status.replicas"),
        r#""status.replicas" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    assert_eq!(refusal("", "Pod", "status.hostIP"), "field label not supported: status.hostIP");
    assert_eq!(
        refusal("", "Node", "metadata.namespace"),
        "field label not supported: metadata.namespace"
    );
    assert_eq!(
        refusal("batch", "Job", "spec.x"),
        r#"field label "spec.x" not supported for batchv1.Job"#
    );
    assert_eq!(convert_field_label("", "Pod", "spec.host"), Ok("spec.nodeName"));
    let s = parse("spec.host=n1").for_kind("", "Pod").unwrap_or_default();
    assert_eq!(s.to_string(), "spec.nodeName=n1");
    assert!(parse("spec.x=1").for_kind("", "Pod").is_err());
}

#[test]
fn values_from_objects() {
    let pod = json!({
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"restartPolicy": "Always", "schedulerName": "default-scheduler"},
        "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}
    });
    let v = |f: &str| field_value("", "Pod", &pod, f).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v("metadata.name").as_deref(), Some("p"));
    assert_eq!(v("spec.nodeName").as_deref(), Some(""));
    assert_eq!(v("spec.host").as_deref(), Some(""));
    assert_eq!(v("spec.hostNetwork").as_deref(), Some("false"));
    assert_eq!(v("status.podIP").as_deref(), Some("10.0.0.5"));
    assert_eq!(v("status.podIPs"), None);
    assert_eq!(v("status.phase").as_deref(), Some("Running"));
    assert_eq!(
        parse("spec.nodeName=,status.phase!=Failed").matches_object("", "Pod", &pod),
        Ok(true)
    );
    assert_eq!(parse("spec.restartPolicy=Never").matches_object("", "Pod", &pod), Ok(false));
    assert!(parse("status.hostIP=1").matches_object("", "Pod", &pod).is_err());

    let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
    assert_eq!(field_value("", "Node", &node, "spec.unschedulable"), Ok(Some("true".into())));
    let rc = json!({"status": {"replicas": 3}});
    assert_eq!(
        field_value("", "ReplicationController", &rc, "status.replicas"),
        Ok(Some("3".into()))
    );
    let job = json!({"status": {}});
    assert_eq!(field_value("batch", "Job", &job, "status.successful"), Ok(Some("0".into())));
    let secret = json!({"type": "kubernetes.io/tls"});
    assert_eq!(field_value("", "Secret", &secret, "type"), Ok(Some("kubernetes.io/tls".into())));
    let event = json!({
        "involvedObject": {"kind": "Pod", "name": "p", "uid": "u1"},
        "reason": "Scheduled", "type": "Normal", "reportingComponent": "default-scheduler"
    });
    let ev = |f: &str| field_value("", "Event", &event, f).ok().flatten().unwrap_or_default();
    assert_eq!(ev("involvedObject.kind"), "Pod");
    assert_eq!(ev("involvedObject.uid"), "u1");
    assert_eq!(ev("source"), "default-scheduler");
    assert_eq!(ev("reportingComponent"), "default-scheduler");
    let new_event = json!({"regarding": {"name": "p"}, "reportingController": "kubelet", "deprecatedSource": {"component": "kl"}});
    let nev = |f: &str| {
        field_value("events.k8s.io", "Event", &new_event, f).ok().flatten().unwrap_or_default()
    };
    assert_eq!(nev("regarding.name"), "p");
    assert_eq!(nev("reportingController"), "kubelet");
    assert_eq!(nev("source"), "kl");
    let svc = json!({"spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1"}});
    assert_eq!(field_value("", "Service", &svc, "spec.clusterIP"), Ok(Some("10.96.0.1".into())));
    let csr = json!({"spec": {"signerName": "kubernetes.io/kubelet-serving"}});
    assert_eq!(
        field_value("certificates.k8s.io", "CertificateSigningRequest", &csr, "spec.signerName"),
        Ok(Some("kubernetes.io/kubelet-serving".into()))
    );
    let ns = json!({"status": {"phase": "Terminating"}});
    assert_eq!(field_value("", "Namespace", &ns, "status.phase"), Ok(Some("Terminating".into())));
}

fn term_strategy() -> impl Strategy<Value = Requirement> {
    ("[a-zA-Z0-9.]{1,12}", any::<bool>(), "\\PC{0,12}").prop_map(|(field, eq, value)| Requirement {
        field,
        operator: if eq { Operator::Equals } else { Operator::NotEquals },
        value,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(input in "\\PC{0,40}") {
        let _ = Selector::parse(&input);
    }

    #[test]
    fn parse_never_panics_on_selector_like_input(input in "[a-z=!,\\\\ ]{0,30}") {
        let _ = Selector::parse(&input);
    }

    #[test]
    fn display_round_trips(mut terms in prop::collection::vec(term_strategy(), 0..5)) {
        // Parsing sorts terms by their text, so a generated selector is built that way.
        terms.sort_by_key(|t| t.to_string());
        let selector = Selector { terms };
        let text = selector.to_string();
        prop_assert_eq!(Selector::parse(&text), Ok(selector), "{}", text);
    }

    #[test]
    fn escape_round_trips(value in "\\PC{0,20}") {
        prop_assert_eq!(unescape_value(&escape_value(&value)), Ok(value));
    }
}
