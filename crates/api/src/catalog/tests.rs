use std::collections::HashSet;

use super::*;

fn catalog() -> Catalog {
    Catalog::builtin()
}

fn get<'a>(c: &'a Catalog, group: &str, version: &str, plural: &str) -> &'a Resource {
    c.lookup(group, version, plural).unwrap_or_else(|| panic!("{group}/{version} {plural} missing"))
}

#[test]
fn pods_match_upstream_discovery() {
    let c = catalog();
    let pods = get(&c, "", "v1", "pods");
    assert_eq!(pods.kind, "Pod");
    assert_eq!(pods.singular, "pod");
    assert!(pods.namespaced);
    assert_eq!(pods.verbs, ALL_VERBS);
    assert_eq!(pods.short_names, &["po"]);
    assert_eq!(pods.categories, &["all"]);
    let names: Vec<&str> = pods.subresources.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status"
        ]
    );
    let eviction = pods.subresource("eviction").unwrap_or_else(|| panic!("no eviction"));
    assert_eq!(
        (eviction.kind, eviction.group, eviction.version),
        ("Eviction", Some("policy"), Some("v1"))
    );
    assert_eq!(eviction.verbs, &["create"]);
    assert_eq!(
        pods.subresource("exec").map(|s| (s.kind, s.verbs)),
        Some(("PodExecOptions", &["create", "get"][..]))
    );
    assert_eq!(pods.subresource("log").map(|s| s.verbs), Some(&["get"][..]));
    assert_eq!(pods.subresource("binding").map(|s| s.kind), Some("Binding"));
}

#[test]
fn core_specials() {
    let c = catalog();
    let cs = get(&c, "", "v1", "componentstatuses");
    assert_eq!(cs.verbs, &["get", "list"]);
    assert_eq!(cs.short_names, &["cs"]);
    assert!(!cs.namespaced);
    let bindings = get(&c, "", "v1", "bindings");
    assert_eq!(bindings.verbs, &["create"]);
    assert!(bindings.namespaced);
    let ns = get(&c, "", "v1", "namespaces");
    assert!(!ns.has_verb("deletecollection"));
    assert_eq!(ns.subresource("finalize").map(|s| s.verbs), Some(&["update"][..]));
    let sa = get(&c, "", "v1", "serviceaccounts");
    let token = sa.subresource("token").map(|s| (s.kind, s.group, s.version));
    assert_eq!(token, Some(("TokenRequest", Some("authentication.k8s.io"), Some("v1"))));
    assert_eq!(get(&c, "", "v1", "endpoints").singular, "endpoints");
    assert_eq!(get(&c, "", "v1", "limitranges").short_names, &["limits"]);
    assert_eq!(get(&c, "", "v1", "resourcequotas").short_names, &["quota"]);
}

#[test]
fn workloads_scale_and_short_names() {
    let c = catalog();
    for (group, plural, short) in [
        ("apps", "deployments", "deploy"),
        ("apps", "replicasets", "rs"),
        ("apps", "statefulsets", "sts"),
        ("", "replicationcontrollers", "rc"),
    ] {
        let r = get(&c, group, "v1", plural);
        assert_eq!(r.short_names, &[short]);
        let scale = r.subresource("scale").map(|s| (s.kind, s.group, s.version));
        assert_eq!(scale, Some(("Scale", Some("autoscaling"), Some("v1"))), "{plural}");
        assert!(r.subresource("status").is_some());
    }
    assert!(get(&c, "apps", "v1", "daemonsets").subresource("scale").is_none());
}

#[test]
fn all_category_members() {
    let c = catalog();
    let mut all: Vec<String> = c
        .resources()
        .iter()
        .filter(|r| r.categories.contains(&"all"))
        .map(|r| format!("{}/{}", r.group, r.plural))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all,
        [
            "/pods",
            "/replicationcontrollers",
            "/services",
            "apps/daemonsets",
            "apps/deployments",
            "apps/replicasets",
            "apps/statefulsets",
            "autoscaling/horizontalpodautoscalers",
            "batch/cronjobs",
            "batch/jobs"
        ]
    );
}

#[test]
fn review_kinds_are_create_only() {
    let c = catalog();
    for (group, plural) in [
        ("authentication.k8s.io", "tokenreviews"),
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ] {
        assert_eq!(get(&c, group, "v1", plural).verbs, &["create"], "{plural}");
    }
    assert!(get(&c, "authorization.k8s.io", "v1", "localsubjectaccessreviews").namespaced);
}

#[test]
fn group_order_follows_upstream_discovery() {
    let groups: Vec<&str> = catalog().groups().into_iter().map(|(g, _)| g).collect();
    assert_eq!(
        groups,
        [
            "",
            "apps",
            "events.k8s.io",
            "authentication.k8s.io",
            "authorization.k8s.io",
            "autoscaling",
            "batch",
            "certificates.k8s.io",
            "networking.k8s.io",
            "policy",
            "rbac.authorization.k8s.io",
            "storage.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
            "scheduling.k8s.io",
            "coordination.k8s.io",
            "node.k8s.io",
            "discovery.k8s.io",
            "flowcontrol.apiserver.k8s.io",
            "resource.k8s.io",
            "metrics.k8s.io",
            "extensions"
        ]
    );
    let c = catalog();
    assert_eq!(c.preferred_version("autoscaling"), Some("v2"));
    assert_eq!(
        c.groups().iter().find(|(g, _)| *g == "autoscaling").map(|(_, v)| v.clone()),
        Some(vec!["v2", "v1"])
    );
    assert_eq!(c.preferred_version("extensions"), Some("v1beta1"));
}

#[test]
fn resources_sorted_within_group_version() {
    let c = catalog();
    for (group, versions) in c.groups() {
        for version in versions {
            let plurals: Vec<&str> =
                c.group_version(group, version).iter().map(|r| r.plural).collect();
            let mut sorted = plurals.clone();
            sorted.sort_unstable();
            assert_eq!(plurals, sorted, "{group}/{version}");
        }
    }
}

#[test]
fn no_duplicates_and_well_formed() {
    let c = catalog();
    // 65 resources of upstream 1.35 (apiregistration.k8s.io aside), metrics-server's 2 and 2
    // legacy forms.
    assert_eq!(c.resources().len(), 69);
    let mut seen = HashSet::new();
    for r in c.resources() {
        assert!(seen.insert((r.group, r.version, r.plural)), "duplicate {}", r.qualified_name());
        assert!(!r.kind.is_empty() && !r.singular.is_empty() && !r.verbs.is_empty());
        assert_eq!(r.plural, r.plural.to_ascii_lowercase());
        let mut subs = HashSet::new();
        for s in r.subresources {
            assert!(!s.kind.is_empty(), "{}/{} has no kind", r.plural, s.name);
            assert!(!s.verbs.is_empty());
            assert!(subs.insert(s.name), "duplicate {}/{}", r.plural, s.name);
            assert_eq!(s.group.is_some(), s.version.is_some());
        }
        for verb in r.verbs {
            assert!(ALL_VERBS.contains(verb), "{verb}");
        }
    }
    // Short names are unique within a group (they may repeat across groups: ev, ing, deploy).
    let mut shorts = HashSet::new();
    for r in c.resources() {
        for s in r.short_names {
            assert!(shorts.insert((r.group, r.version, *s)), "short name {s} repeated");
        }
    }
}

#[test]
fn find_resolves_like_kubectl() {
    let c = catalog();
    let find = |n: &str| c.find(n).map(|r| (r.group, r.version, r.plural));
    assert_eq!(find("deploy"), Some(("apps", "v1", "deployments")));
    assert_eq!(find("Deployment"), Some(("apps", "v1", "deployments")));
    assert_eq!(find("deployment"), Some(("apps", "v1", "deployments")));
    assert_eq!(find("po"), Some(("", "v1", "pods")));
    assert_eq!(find("PODS"), Some(("", "v1", "pods")));
    assert_eq!(find("hpa"), Some(("autoscaling", "v2", "horizontalpodautoscalers")));
    assert_eq!(find("ev"), Some(("", "v1", "events")));
    assert_eq!(find("events.events.k8s.io"), Some(("events.k8s.io", "v1", "events")));
    assert_eq!(find("ing"), Some(("networking.k8s.io", "v1", "ingresses")));
    assert_eq!(find("deployments.extensions"), Some(("extensions", "v1beta1", "deployments")));
    assert_eq!(find("crds"), Some(("apiextensions.k8s.io", "v1", "customresourcedefinitions")));
    assert_eq!(find("nope"), None);
    // The legacy extensions/v1beta1 forms carry no short names: no ambiguity for kubectl.
    assert_eq!(c.find_all("deploy").len(), 1);
    assert_eq!(c.find_all("ing").len(), 1);
}

#[test]
fn storage_keys() {
    let c = catalog();
    let deploy = get(&c, "apps", "v1", "deployments");
    assert_eq!(deploy.store_key(Some("default"), "web"), "/registry/apps/deployments/default/web");
    assert_eq!(get(&c, "", "v1", "nodes").store_key(Some("x"), "n1"), "/registry/nodes/n1");
}
