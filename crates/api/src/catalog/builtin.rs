//! The built-in resources of Kubernetes 1.35, as upstream's discovery lists them: groups in
//! upstream's discovery order (core first, then the aggregator's priority order), versions
//! preferred first, resources sorted by name within a group-version. Only what is served
//! by default is here: no alpha or beta versions, except the two legacy `extensions/v1beta1`
//! forms krust keeps, which come last.

use super::{ALL_VERBS, Resource, Subresource};

/// Verbs of a resource that can be read but not written (`componentstatuses`).
const GET_LIST: &[&str] = &["get", "list"];
/// Verbs of a resource that is only ever posted (bindings, the review kinds).
const CREATE: &[&str] = &["create"];
/// Namespaces have no `deletecollection`.
const NAMESPACE_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// Connect subresources that stream (`exec`, `attach`, `portforward`).
const CREATE_GET: &[&str] = &["create", "get"];
/// Proxy subresources accept every HTTP method.
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

/// `kubectl get all`.
const ALL: &[&str] = &["all"];
/// `kubectl get api-extensions`.
const API_EXTENSIONS: &[&str] = &["api-extensions"];

const fn status(kind: &'static str) -> Subresource {
    Subresource { name: "status", kind, group: None, version: None, verbs: GET_PATCH_UPDATE }
}

const fn sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource { name, kind, group: None, version: None, verbs }
}

/// The `autoscaling/v1` Scale every scalable workload serves.
const SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    group: Some("autoscaling"),
    version: Some("v1"),
    verbs: GET_PATCH_UPDATE,
};

/// A namespaced read-write resource with no short names, categories or subresources.
const fn namespaced(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        singular,
        namespaced: true,
        verbs: ALL_VERBS,
        short_names: &[],
        categories: &[],
        storage: None,
        subresources: const { &[] },
    }
}

/// A cluster-scoped read-write resource with no short names, categories or subresources.
const fn cluster(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
) -> Resource {
    Resource { namespaced: false, ..namespaced(group, version, kind, plural, singular) }
}

const POD_SUBRESOURCES: &[Subresource] = &[
    sub("attach", "PodAttachOptions", CREATE_GET),
    sub("binding", "Binding", CREATE),
    sub("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
    Subresource {
        name: "eviction",
        kind: "Eviction",
        group: Some("policy"),
        version: Some("v1"),
        verbs: CREATE,
    },
    sub("exec", "PodExecOptions", CREATE_GET),
    sub("log", "Pod", &["get"]),
    sub("portforward", "PodPortForwardOptions", CREATE_GET),
    sub("proxy", "PodProxyOptions", PROXY_VERBS),
    sub("resize", "Pod", GET_PATCH_UPDATE),
    status("Pod"),
];

const NAMESPACE_SUBRESOURCES: &[Subresource] =
    &[sub("finalize", "Namespace", &["update"]), status("Namespace")];
const NODE_SUBRESOURCES: &[Subresource] =
    &[sub("proxy", "NodeProxyOptions", PROXY_VERBS), status("Node")];

fn core() -> Vec<Resource> {
    vec![
        Resource { verbs: CREATE, ..namespaced("", "v1", "Binding", "bindings", "binding") },
        Resource {
            verbs: GET_LIST,
            short_names: &["cs"],
            ..cluster("", "v1", "ComponentStatus", "componentstatuses", "componentstatus")
        },
        Resource {
            short_names: &["cm"],
            ..namespaced("", "v1", "ConfigMap", "configmaps", "configmap")
        },
        Resource {
            short_names: &["ep"],
            ..namespaced("", "v1", "Endpoints", "endpoints", "endpoints")
        },
        Resource { short_names: &["ev"], ..namespaced("", "v1", "Event", "events", "event") },
        Resource {
            short_names: &["limits"],
            ..namespaced("", "v1", "LimitRange", "limitranges", "limitrange")
        },
        Resource {
            verbs: NAMESPACE_VERBS,
            short_names: &["ns"],
            subresources: NAMESPACE_SUBRESOURCES,
            ..cluster("", "v1", "Namespace", "namespaces", "namespace")
        },
        Resource {
            short_names: &["no"],
            subresources: NODE_SUBRESOURCES,
            ..cluster("", "v1", "Node", "nodes", "node")
        },
        Resource {
            short_names: &["pvc"],
            subresources: const { &[status("PersistentVolumeClaim")] },
            ..namespaced(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
            )
        },
        Resource {
            short_names: &["pv"],
            subresources: const { &[status("PersistentVolume")] },
            ..cluster("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume")
        },
        Resource {
            short_names: &["po"],
            categories: ALL,
            subresources: POD_SUBRESOURCES,
            ..namespaced("", "v1", "Pod", "pods", "pod")
        },
        namespaced("", "v1", "PodTemplate", "podtemplates", "podtemplate"),
        Resource {
            short_names: &["rc"],
            categories: ALL,
            subresources: const { &[SCALE, status("ReplicationController")] },
            ..namespaced(
                "",
                "v1",
                "ReplicationController",
                "replicationcontrollers",
                "replicationcontroller",
            )
        },
        Resource {
            short_names: &["quota"],
            subresources: const { &[status("ResourceQuota")] },
            ..namespaced("", "v1", "ResourceQuota", "resourcequotas", "resourcequota")
        },
        namespaced("", "v1", "Secret", "secrets", "secret"),
        Resource {
            short_names: &["sa"],
            subresources: const {
                &[Subresource {
                    name: "token",
                    kind: "TokenRequest",
                    group: Some("authentication.k8s.io"),
                    version: Some("v1"),
                    verbs: CREATE,
                }]
            },
            ..namespaced("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount")
        },
        Resource {
            short_names: &["svc"],
            categories: ALL,
            subresources: const {
                &[sub("proxy", "ServiceProxyOptions", PROXY_VERBS), status("Service")]
            },
            ..namespaced("", "v1", "Service", "services", "service")
        },
    ]
}

fn apps() -> Vec<Resource> {
    vec![
        namespaced("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision"),
        Resource {
            short_names: &["ds"],
            categories: ALL,
            subresources: const { &[status("DaemonSet")] },
            ..namespaced("apps", "v1", "DaemonSet", "daemonsets", "daemonset")
        },
        Resource {
            short_names: &["deploy"],
            categories: ALL,
            subresources: const { &[SCALE, status("Deployment")] },
            ..namespaced("apps", "v1", "Deployment", "deployments", "deployment")
        },
        Resource {
            short_names: &["rs"],
            categories: ALL,
            subresources: const { &[SCALE, status("ReplicaSet")] },
            ..namespaced("apps", "v1", "ReplicaSet", "replicasets", "replicaset")
        },
        Resource {
            short_names: &["sts"],
            categories: ALL,
            subresources: const { &[SCALE, status("StatefulSet")] },
            ..namespaced("apps", "v1", "StatefulSet", "statefulsets", "statefulset")
        },
    ]
}

fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
) -> Resource {
    Resource { verbs: CREATE, ..cluster(group, "v1", kind, plural, singular) }
}

fn hpa(version: &'static str) -> Resource {
    Resource {
        short_names: &["hpa"],
        categories: ALL,
        subresources: const { &[status("HorizontalPodAutoscaler")] },
        ..namespaced(
            "autoscaling",
            version,
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
        )
    }
}

fn groups() -> Vec<Resource> {
    const AUTHN: &str = "authentication.k8s.io";
    const AUTHZ: &str = "authorization.k8s.io";
    const NET: &str = "networking.k8s.io";
    const RBAC: &str = "rbac.authorization.k8s.io";
    const STORAGE: &str = "storage.k8s.io";
    const ADMISSION: &str = "admissionregistration.k8s.io";
    const FLOW: &str = "flowcontrol.apiserver.k8s.io";
    const DRA: &str = "resource.k8s.io";
    vec![
        Resource {
            short_names: &["ev"],
            ..namespaced("events.k8s.io", "v1", "Event", "events", "event")
        },
        review(AUTHN, "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview"),
        review(AUTHN, "TokenReview", "tokenreviews", "tokenreview"),
        Resource {
            namespaced: true,
            ..review(
                AUTHZ,
                "LocalSubjectAccessReview",
                "localsubjectaccessreviews",
                "localsubjectaccessreview",
            )
        },
        review(
            AUTHZ,
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
        ),
        review(
            AUTHZ,
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
        ),
        review(AUTHZ, "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview"),
        hpa("v2"),
        hpa("v1"),
        Resource {
            short_names: &["cj"],
            categories: ALL,
            subresources: const { &[status("CronJob")] },
            ..namespaced("batch", "v1", "CronJob", "cronjobs", "cronjob")
        },
        Resource {
            categories: ALL,
            subresources: const { &[status("Job")] },
            ..namespaced("batch", "v1", "Job", "jobs", "job")
        },
        Resource {
            short_names: &["csr"],
            subresources: const {
                &[
                    sub("approval", "CertificateSigningRequest", GET_PATCH_UPDATE),
                    status("CertificateSigningRequest"),
                ]
            },
            ..cluster(
                "certificates.k8s.io",
                "v1",
                "CertificateSigningRequest",
                "certificatesigningrequests",
                "certificatesigningrequest",
            )
        },
        cluster(NET, "v1", "IngressClass", "ingressclasses", "ingressclass"),
        Resource {
            short_names: &["ing"],
            subresources: const { &[status("Ingress")] },
            ..namespaced(NET, "v1", "Ingress", "ingresses", "ingress")
        },
        Resource {
            short_names: &["ip"],
            ..cluster(NET, "v1", "IPAddress", "ipaddresses", "ipaddress")
        },
        Resource {
            short_names: &["netpol"],
            ..namespaced(NET, "v1", "NetworkPolicy", "networkpolicies", "networkpolicy")
        },
        Resource {
            subresources: const { &[status("ServiceCIDR")] },
            ..cluster(NET, "v1", "ServiceCIDR", "servicecidrs", "servicecidr")
        },
        Resource {
            short_names: &["pdb"],
            subresources: const { &[status("PodDisruptionBudget")] },
            ..namespaced(
                "policy",
                "v1",
                "PodDisruptionBudget",
                "poddisruptionbudgets",
                "poddisruptionbudget",
            )
        },
        cluster(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding"),
        cluster(RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole"),
        namespaced(RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding"),
        namespaced(RBAC, "v1", "Role", "roles", "role"),
        cluster(STORAGE, "v1", "CSIDriver", "csidrivers", "csidriver"),
        cluster(STORAGE, "v1", "CSINode", "csinodes", "csinode"),
        namespaced(
            STORAGE,
            "v1",
            "CSIStorageCapacity",
            "csistoragecapacities",
            "csistoragecapacity",
        ),
        Resource {
            short_names: &["sc"],
            ..cluster(STORAGE, "v1", "StorageClass", "storageclasses", "storageclass")
        },
        Resource {
            subresources: const { &[status("VolumeAttachment")] },
            ..cluster(STORAGE, "v1", "VolumeAttachment", "volumeattachments", "volumeattachment")
        },
        Resource {
            short_names: &["vac"],
            ..cluster(
                STORAGE,
                "v1",
                "VolumeAttributesClass",
                "volumeattributesclasses",
                "volumeattributesclass",
            )
        },
        Resource {
            categories: API_EXTENSIONS,
            ..cluster(
                ADMISSION,
                "v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                "mutatingwebhookconfiguration",
            )
        },
        Resource {
            categories: API_EXTENSIONS,
            subresources: const { &[status("ValidatingAdmissionPolicy")] },
            ..cluster(
                ADMISSION,
                "v1",
                "ValidatingAdmissionPolicy",
                "validatingadmissionpolicies",
                "validatingadmissionpolicy",
            )
        },
        Resource {
            categories: API_EXTENSIONS,
            ..cluster(
                ADMISSION,
                "v1",
                "ValidatingAdmissionPolicyBinding",
                "validatingadmissionpolicybindings",
                "validatingadmissionpolicybinding",
            )
        },
        Resource {
            categories: API_EXTENSIONS,
            ..cluster(
                ADMISSION,
                "v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                "validatingwebhookconfiguration",
            )
        },
        Resource {
            short_names: &["crd", "crds"],
            categories: API_EXTENSIONS,
            subresources: const { &[status("CustomResourceDefinition")] },
            ..cluster(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                "customresourcedefinition",
            )
        },
        Resource {
            short_names: &["pc"],
            ..cluster(
                "scheduling.k8s.io",
                "v1",
                "PriorityClass",
                "priorityclasses",
                "priorityclass",
            )
        },
        namespaced("coordination.k8s.io", "v1", "Lease", "leases", "lease"),
        cluster("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass"),
        namespaced("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice"),
        Resource {
            subresources: const { &[status("FlowSchema")] },
            ..cluster(FLOW, "v1", "FlowSchema", "flowschemas", "flowschema")
        },
        Resource {
            subresources: const { &[status("PriorityLevelConfiguration")] },
            ..cluster(
                FLOW,
                "v1",
                "PriorityLevelConfiguration",
                "prioritylevelconfigurations",
                "prioritylevelconfiguration",
            )
        },
        cluster(DRA, "v1", "DeviceClass", "deviceclasses", "deviceclass"),
        Resource {
            subresources: const { &[status("ResourceClaim")] },
            ..namespaced(DRA, "v1", "ResourceClaim", "resourceclaims", "resourceclaim")
        },
        namespaced(
            DRA,
            "v1",
            "ResourceClaimTemplate",
            "resourceclaimtemplates",
            "resourceclaimtemplate",
        ),
        cluster(DRA, "v1", "ResourceSlice", "resourceslices", "resourceslice"),
    ]
}

/// The legacy forms krust keeps serving for old manifests. They join no category, so
/// `kubectl get all` does not list each Deployment twice, and carry no short names, so kubectl
/// resolves `deploy` and `ing` to the current groups without warning about an ambiguity.
fn legacy() -> Vec<Resource> {
    vec![
        Resource {
            subresources: const {
                &[
                    Subresource {
                        name: "scale",
                        kind: "Scale",
                        group: Some("extensions"),
                        version: Some("v1beta1"),
                        verbs: GET_PATCH_UPDATE,
                    },
                    status("Deployment"),
                ]
            },
            storage: Some(("apps", "v1")),
            ..namespaced("extensions", "v1beta1", "Deployment", "deployments", "deployment")
        },
        Resource {
            subresources: const { &[status("Ingress")] },
            storage: Some(("networking.k8s.io", "v1")),
            ..namespaced("extensions", "v1beta1", "Ingress", "ingresses", "ingress")
        },
    ]
}

/// The resource metrics API metrics-server serves upstream (an aggregated API, listed after the
/// built-in groups): computed from the kubelets on each read, never stored or watched.
fn metrics() -> Vec<Resource> {
    const METRICS: &str = "metrics.k8s.io";
    vec![
        Resource { verbs: GET_LIST, ..cluster(METRICS, "v1beta1", "NodeMetrics", "nodes", "node") },
        Resource { verbs: GET_LIST, ..namespaced(METRICS, "v1beta1", "PodMetrics", "pods", "pod") },
    ]
}

pub(super) fn resources() -> Vec<Resource> {
    let mut all = core();
    all.extend(apps());
    all.extend(groups());
    all.extend(metrics());
    all.extend(legacy());
    all
}
