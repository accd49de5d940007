//! Which k8s-openapi type describes each kind the catalog serves: the single source of the
//! schemas. Every kind of `Catalog::builtin()` (and of its subresources) must be listed here;
//! a unit test keeps the two in step.

use std::borrow::Cow;

use k8s_openapi::Resource;
use k8s_openapi::api::{
    admissionregistration, apps, authentication, authorization, autoscaling, batch, certificates,
    coordination, core, discovery, events, flowcontrol, networking, node, policy, rbac, resource,
    scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use schemars::{JsonSchema, SchemaGenerator};

/// One kind and the type whose schema describes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct KindSchema {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The type's component name (`io.k8s.api.apps.v1.Deployment`).
    pub name: fn() -> Cow<'static, str>,
    /// Adds the type's schema (and everything it references) to the generator.
    pub add: fn(&mut SchemaGenerator),
}

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

macro_rules! kinds {
    ($($ty:ty),* $(,)?) => {
        [$(KindSchema {
            group: <$ty as Resource>::GROUP,
            version: <$ty as Resource>::VERSION,
            kind: <$ty as Resource>::KIND,
            name: <$ty as JsonSchema>::schema_name,
            add: add::<$ty>,
        }),*]
    };
}

/// A kind served under another group-version with the schema of `T`: the legacy
/// `extensions/v1beta1` forms are described by schemas derived from upstream's current types
/// (`schemas::add_legacy`), whose fields they mostly share.
const fn legacy<T: JsonSchema + Resource>(
    group: &'static str,
    version: &'static str,
) -> KindSchema {
    KindSchema { group, version, kind: T::KIND, name: T::schema_name, add: add::<T> }
}

/// Every kind listed.
pub(super) fn all() -> impl Iterator<Item = &'static KindSchema> {
    KINDS.iter().chain(LEGACY.iter())
}

/// The kind's schema source, if the kind is known.
pub(super) fn lookup(group: &str, version: &str, kind: &str) -> Option<KindSchema> {
    KINDS
        .iter()
        .chain(LEGACY.iter())
        .copied()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

const LEGACY: [KindSchema; 3] = [
    KindSchema {
        name: || Cow::Borrowed(super::schemas::LEGACY_DEPLOYMENT),
        ..legacy::<apps::v1::Deployment>("extensions", "v1beta1")
    },
    KindSchema {
        name: || Cow::Borrowed(super::schemas::LEGACY_INGRESS),
        ..legacy::<networking::v1::Ingress>("extensions", "v1beta1")
    },
    legacy::<autoscaling::v1::Scale>("extensions", "v1beta1"),
];

const KINDS: [KindSchema; 68] = kinds![
    core::v1::Binding,
    core::v1::ComponentStatus,
    core::v1::ConfigMap,
    core::v1::Endpoints,
    core::v1::Event,
    core::v1::LimitRange,
    core::v1::Namespace,
    core::v1::Node,
    core::v1::PersistentVolumeClaim,
    core::v1::PersistentVolume,
    core::v1::Pod,
    core::v1::PodTemplate,
    core::v1::ReplicationController,
    core::v1::ResourceQuota,
    core::v1::Secret,
    core::v1::ServiceAccount,
    core::v1::Service,
    apps::v1::ControllerRevision,
    apps::v1::DaemonSet,
    apps::v1::Deployment,
    apps::v1::ReplicaSet,
    apps::v1::StatefulSet,
    events::v1::Event,
    authentication::v1::SelfSubjectReview,
    authentication::v1::TokenReview,
    authentication::v1::TokenRequest,
    authorization::v1::LocalSubjectAccessReview,
    authorization::v1::SelfSubjectAccessReview,
    authorization::v1::SelfSubjectRulesReview,
    authorization::v1::SubjectAccessReview,
    autoscaling::v1::HorizontalPodAutoscaler,
    autoscaling::v1::Scale,
    autoscaling::v2::HorizontalPodAutoscaler,
    batch::v1::CronJob,
    batch::v1::Job,
    certificates::v1::CertificateSigningRequest,
    networking::v1::IngressClass,
    networking::v1::Ingress,
    networking::v1::IPAddress,
    networking::v1::NetworkPolicy,
    networking::v1::ServiceCIDR,
    policy::v1::PodDisruptionBudget,
    policy::v1::Eviction,
    rbac::v1::ClusterRoleBinding,
    rbac::v1::ClusterRole,
    rbac::v1::RoleBinding,
    rbac::v1::Role,
    storage::v1::CSIDriver,
    storage::v1::CSINode,
    storage::v1::CSIStorageCapacity,
    storage::v1::StorageClass,
    storage::v1::VolumeAttachment,
    storage::v1::VolumeAttributesClass,
    admissionregistration::v1::MutatingWebhookConfiguration,
    admissionregistration::v1::ValidatingAdmissionPolicy,
    admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    admissionregistration::v1::ValidatingWebhookConfiguration,
    apiextensions::v1::CustomResourceDefinition,
    scheduling::v1::PriorityClass,
    coordination::v1::Lease,
    node::v1::RuntimeClass,
    discovery::v1::EndpointSlice,
    flowcontrol::v1::FlowSchema,
    flowcontrol::v1::PriorityLevelConfiguration,
    resource::v1::DeviceClass,
    resource::v1::ResourceClaim,
    resource::v1::ResourceClaimTemplate,
    resource::v1::ResourceSlice,
];
