//! CustomResourceDefinitions with real kubectl 1.35: a CRD applied and established, its custom
//! resources applied (client- and server-side), listed with the printer columns, found by
//! short name and in `get all`, refused when the schema says so, scaled through the `scale`
//! subresource, and deleted with their CRD.

use krust_testsupport::KrustServer;

const KUBECTL: &str = "1.35";

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            x-kubernetes-validations:
            - rule: "!has(self.image) || self.image.startsWith('my-')"
              message: images come from my- repositories
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
          status:
            type: object
            properties:
              replicas:
                type: integer
"#;

fn crontab(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl"]
fn kubectl_serves_custom_resources_from_a_crd() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let dir = server.data_dir().to_owned();
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("manifest");
        path
    };
    let kubectl =
        |args: &[&std::ffi::OsStr]| server.kubectl(KUBECTL).args(args).output().expect("kubectl");
    let ok = |args: &[&str]| server.kubectl(KUBECTL).args(args).run().expect("kubectl succeeds");

    let crd = file("crd.yaml", CRD);
    let out = server
        .kubectl(KUBECTL)
        .args(["apply".as_ref(), "--server-side".as_ref(), "-f".as_ref(), crd.as_os_str()])
        .run()
        .expect("apply crd");
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com serverside-applied"
    );
    // A Deployment beside it, server-side applied by the same kubectl.
    let deployment = file(
        "deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cron-runner\nspec:\n  selector:\n    matchLabels: {app: cron}\n  template:\n    metadata:\n      labels: {app: cron}\n    spec:\n      containers:\n      - name: runner\n        image: busybox\n",
    );
    let out = kubectl(&[
        "apply".as_ref(),
        "--server-side".as_ref(),
        "-f".as_ref(),
        deployment.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/cron-runner serverside-applied"
    );
    let out = ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/crontabs.stable.example.com",
    ]);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com condition met"
    );

    let daily = file(
        "daily.yaml",
        &crontab("daily", "  cronSpec: '* * * * */5'\n  image: my-cron-image\n"),
    );
    let apply = |path: &std::path::Path| {
        server
            .kubectl(KUBECTL)
            .args(["apply".as_ref(), "-f".as_ref(), path.as_os_str()])
            .output()
            .expect("kubectl apply")
    };
    let out = apply(&daily);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "crontab.stable.example.com/daily created"
    );

    // The printer columns, the short name, the `all` category.
    let table = ok(&["get", "crontabs"]);
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert_eq!(&lines[1][..6], ["daily", "*", "*", "*", "*", "*/5"], "{table}");
    assert_eq!(lines[1][6], "1", "the schema's default: {table}");
    let short = ok(&["get", "ct", "-o", "name"]);
    assert_eq!(short.trim(), "crontab.stable.example.com/daily");
    let all = ok(&["get", "all", "-o", "name"]);
    assert!(all.lines().any(|l| l == "crontab.stable.example.com/daily"), "{all}");

    // Changed and applied again: configured (a merge patch), then unchanged.
    let changed = file(
        "daily.yaml",
        &crontab("daily", "  cronSpec: '* * * * */5'\n  image: my-cron-image\n  replicas: 2\n"),
    );
    let out = apply(&changed);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "crontab.stable.example.com/daily configured",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = apply(&changed);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "crontab.stable.example.com/daily unchanged"
    );

    // The schema refuses what it does not allow, in upstream's words.
    let bad = file("bad.yaml", &crontab("bad", "  cronSpec: often\n  replicas: 20\n"));
    let out = apply(&bad);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("The CronTab \"bad\" is invalid: "), "{stderr}");
    assert!(stderr.contains("spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"), "{stderr}");
    let foreign =
        file("foreign.yaml", &crontab("foreign", "  cronSpec: '* * * * *'\n  image: other\n"));
    let out = apply(&foreign);
    assert!(!out.status.success(), "the CEL rule refuses it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("The CronTab \"foreign\" is invalid: spec: Invalid value: \"object\": images come from my- repositories"),
        "{stderr}"
    );
    let unknown =
        file("unknown.yaml", &crontab("unknown", "  cronSpec: '* * * * *'\n  colour: red\n"));
    let out = apply(&unknown);
    assert!(!out.status.success(), "kubectl validates strictly by default");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown field \"spec.colour\""), "{stderr}");

    // Server-side apply of a custom resource.
    let weekly = file("weekly.yaml", &crontab("weekly", "  cronSpec: '0 0 * * 0'\n"));
    let out =
        kubectl(&["apply".as_ref(), "--server-side".as_ref(), "-f".as_ref(), weekly.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "crontab.stable.example.com/weekly serverside-applied"
    );
    let applied = server
        .get_json(KUBECTL, &["get", "crontab", "weekly", "--show-managed-fields"])
        .expect("get weekly");
    let managers: Vec<&str> = applied["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");

    // `explain` reads the CRD's schema from the OpenAPI v3 document of its group-version.
    let explained = ok(&["explain", "crontab.spec"]);
    assert!(explained.contains("GROUP:      stable.example.com"), "{explained}");
    assert!(explained.contains("KIND:       CronTab"), "{explained}");
    for field in ["cronSpec\t<string> -required-", "image\t<string>", "replicas\t<integer>"] {
        assert!(explained.contains(field), "{field:?} in {explained}");
    }

    // The scale subresource.
    let out = ok(&["scale", "crontab/daily", "--replicas=5"]);
    assert_eq!(out.trim(), "crontab.stable.example.com/daily scaled");
    let scaled = server.get_json(KUBECTL, &["get", "crontab", "daily"]).expect("get daily");
    assert_eq!(scaled["spec"]["replicas"], 5);

    // Deleting the CRD deletes its custom resources; the type is gone.
    let out = ok(&["delete", "crd", "crontabs.stable.example.com"]);
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io \"crontabs.stable.example.com\" deleted"
    );
    server.wait_for(std::time::Duration::from_secs(30), "the CRD to go", || {
        let out = kubectl(&["get".as_ref(), "crd".as_ref(), "-o".as_ref(), "name".as_ref()]);
        String::from_utf8_lossy(&out.stdout).trim().is_empty().then_some(())
    });
    // Discovery no longer lists the group (`api-resources` refreshes kubectl's cache).
    let listed = ok(&["api-resources", "--api-group=stable.example.com", "-o", "name"]);
    assert_eq!(listed.trim(), "", "{listed}");
    let out = kubectl(&["get".as_ref(), "crontabs".as_ref()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the server doesn't have a resource type \"crontabs\""), "{stderr}");
}

/// The Python client: a CRD through `ApiextensionsV1Api`, custom resources through
/// `CustomObjectsApi` (create, get, list, merge and JSON patches, status, watch, delete) and the
/// dynamic client's server-side apply.
#[test]
#[ignore = "end-to-end: real krust server and the Python client"]
fn python_client_custom_objects_and_dynamic_server_side_apply() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let crd = serde_json::to_string(
        &serde_saphyr::from_str::<serde_json::Value>(CRD).expect("the CRD parses"),
    )
    .expect("json");
    let script = format!(
        r#"
import json, sys, threading, time
from kubernetes import client, config, dynamic, watch
config.load_kube_config(config_file=sys.argv[1])
ext = client.ApiextensionsV1Api()
ext.create_custom_resource_definition(json.loads(r'''{crd}'''))
for _ in range(100):
    crd = ext.read_custom_resource_definition("crontabs.stable.example.com")
    conditions = {{c.type: c.status for c in (crd.status.conditions or [])}}
    if conditions.get("Established") == "True":
        break
    time.sleep(0.1)
assert conditions == {{"NamesAccepted": "True", "Established": "True"}}, conditions
co = client.CustomObjectsApi()
G, V, P = "stable.example.com", "v1", "crontabs"
seen = []
def follow():
    for event in watch.Watch().stream(co.list_namespaced_custom_object, G, V, "default", P, timeout_seconds=10):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            return
watcher = threading.Thread(target=follow)
watcher.start()
time.sleep(0.5)
body = {{"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {{"name": "py"}}, "spec": {{"cronSpec": "* * * * *"}}}}
created = co.create_namespaced_custom_object(G, V, "default", P, body)
assert created["spec"]["replicas"] == 1, created
got = co.get_namespaced_custom_object(G, V, "default", P, "py")
assert got["metadata"]["uid"] == created["metadata"]["uid"]
patched = co.patch_namespaced_custom_object(G, V, "default", P, "py", {{"spec": {{"image": "my-cron:2"}}}})
assert patched["spec"]["image"] == "my-cron:2", patched
patched = co.patch_namespaced_custom_object(G, V, "default", P, "py", [{{"op": "replace", "path": "/spec/replicas", "value": 4}}], _content_type="application/json-patch+json")
assert patched["spec"]["replicas"] == 4, patched
status = co.patch_namespaced_custom_object_status(G, V, "default", P, "py", {{"status": {{"replicas": 4}}}})
assert status["status"] == {{"replicas": 4}}, status
try:
    co.patch_namespaced_custom_object(G, V, "default", P, "py", {{"spec": {{"replicas": 11}}}})
    raise SystemExit("an invalid patch was accepted")
except client.ApiException as e:
    assert e.status == 422, e
    assert "spec.replicas in body should be less than or equal to 10" in json.loads(e.body)["message"], e.body
items = co.list_namespaced_custom_object(G, V, "default", P)["items"]
assert [i["metadata"]["name"] for i in items] == ["py"], items

dyn = dynamic.DynamicClient(client.ApiClient())
crontabs = dyn.resources.get(api_version="stable.example.com/v1", kind="CronTab")
applied = crontabs.server_side_apply(
    body={{"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {{"name": "ssa", "namespace": "default"}}, "spec": {{"cronSpec": "0 * * * *"}}}},
    field_manager="py-ssa")
assert applied.spec.cronSpec == "0 * * * *", applied
managers = [m.manager for m in crontabs.get(name="ssa", namespace="default").metadata.managedFields]
assert "py-ssa" in managers, managers

co.delete_namespaced_custom_object(G, V, "default", P, "py")
watcher.join()
assert seen[0] == ("ADDED", "py") and seen[-1] == ("DELETED", "py"), seen
assert ("MODIFIED", "py") in seen, seen
print("ok")
"#
    );
    assert_eq!(server.python(&script).trim(), "ok");
}
