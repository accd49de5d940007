//! The garbage collector, for the ownership chains the built-in controllers make (Deployment →
//! ReplicaSet → Pod, ReplicationController → Pod, Service → EndpointSlice, Node → Lease and
//! mirror Pod): a dependent whose owners are all gone is deleted (Background), one that keeps
//! another owner only loses the dangling reference; an owner deleted with the `orphan`
//! finalizer has the references to it removed from its dependents, one deleted with
//! `foregroundDeletion` waits until its dependents are gone; then the finalizer is removed.
//!
//! An owner counts as gone only when a read from the API server says so (not found, or another
//! UID), never on the word of a cache; owners of kinds outside this set are never presumed gone.
//! Upstream's collector covers every resource through discovery — see the notes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::task::JoinSet;

use crate::replicaset::is_status;
use crate::{Context, Informer, Result};

/// The index of objects by the UIDs of all their owners.
const OWNER_UID_INDEX: &str = "owner-uid";

fn owner_uids<K: Resource>(object: &K) -> Vec<String> {
    object.meta().owner_references.iter().flatten().map(|r| r.uid.clone()).collect()
}

/// One kind the collector knows, as owner and as dependent.
trait Kind:
    Resource<DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

#[derive(Clone)]
struct Collector {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    replica_sets: Arc<Informer<ReplicaSet>>,
    slices: Arc<Informer<EndpointSlice>>,
    deployments: Arc<Informer<Deployment>>,
    controllers: Arc<Informer<ReplicationController>>,
    services: Arc<Informer<Service>>,
    nodes: Arc<Informer<Node>>,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let client = ctx.client.clone();
    let collector = Collector {
        client: ctx.client.clone(),
        pods: ctx.informers.get::<Pod>(),
        replica_sets: ctx.informers.get::<ReplicaSet>(),
        slices: ctx.informers.get::<EndpointSlice>(),
        deployments: ctx.informers.get::<Deployment>(),
        controllers: ctx.informers.get::<ReplicationController>(),
        services: ctx.informers.get::<Service>(),
        nodes: ctx.informers.get::<Node>(),
    };
    let leases =
        ctx.informers.get_or_insert(crate::nodelifecycle::NODE_LEASE_NAMESPACE.to_owned(), || {
            Informer::new(
                Api::namespaced(client, crate::nodelifecycle::NODE_LEASE_NAMESPACE),
                Default::default(),
            )
        });
    collector.pods.add_index(OWNER_UID_INDEX, owner_uids::<Pod>);
    collector.replica_sets.add_index(OWNER_UID_INDEX, owner_uids::<ReplicaSet>);
    collector.slices.add_index(OWNER_UID_INDEX, owner_uids::<EndpointSlice>);
    leases.add_index(OWNER_UID_INDEX, owner_uids::<Lease>);
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        collector.pods.wait_synced().await;
        collector.replica_sets.wait_synced().await;
        collector.slices.wait_synced().await;
        collector.deployments.wait_synced().await;
        collector.controllers.wait_synced().await;
        collector.services.wait_synced().await;
        collector.nodes.wait_synced().await;
        leases.wait_synced().await;
        let c = collector.clone();
        let leases = leases.clone();
        crate::every(Duration::from_secs(2), stop, "garbage collection", move || {
            let c = c.clone();
            let leases = leases.clone();
            async move { c.pass(&leases).await }
        })
        .await
    });
}

/// Whether `reference` (from an object in `namespace`) names an owner this collector can
/// vouch for, and if so whether that owner is gone (read from the API server).
async fn owner_gone(
    client: &kube::Client,
    namespace: &str,
    r: &OwnerReference,
) -> Result<Option<bool>> {
    async fn check<K: Kind>(api: Api<K>, r: &OwnerReference) -> Result<Option<bool>> {
        Ok(Some(match api.get_opt(&r.name).await? {
            None => true,
            Some(owner) => owner.meta().uid.as_deref() != Some(r.uid.as_str()),
        }))
    }
    match (r.api_version.as_str(), r.kind.as_str()) {
        ("apps/v1", "Deployment") => {
            check::<Deployment>(Api::namespaced(client.clone(), namespace), r).await
        }
        ("apps/v1", "ReplicaSet") => {
            check::<ReplicaSet>(Api::namespaced(client.clone(), namespace), r).await
        }
        ("v1", "ReplicationController") => {
            check::<ReplicationController>(Api::namespaced(client.clone(), namespace), r).await
        }
        ("v1", "Service") => check::<Service>(Api::namespaced(client.clone(), namespace), r).await,
        ("v1", "Node") => check::<Node>(Api::all(client.clone()), r).await,
        _ => Ok(None),
    }
}

fn has_finalizer(meta: &ObjectMeta, name: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == name)
}

impl Collector {
    async fn pass(&self, leases: &Informer<Lease>) -> Result<()> {
        // Owners being deleted with orphan or foreground finalizers.
        self.finalize_owners(&self.deployments).await?;
        self.finalize_owners(&self.replica_sets).await?;
        self.finalize_owners(&self.controllers).await?;
        self.finalize_owners(&self.services).await?;
        // Dependents whose owners are gone.
        self.collect(&self.replica_sets).await?;
        self.collect(&self.pods).await?;
        self.collect(&self.slices).await?;
        self.collect(leases).await?;
        Ok(())
    }

    /// The dependents of `uid` among the kinds collected.
    fn dependents(&self, uid: &str) -> Vec<(String, String, &'static str, ObjectMeta)> {
        let mut out = Vec::new();
        for p in self.pods.indexed(OWNER_UID_INDEX, uid) {
            out.push((p.namespace().unwrap_or_default(), p.name_any(), "pods", p.metadata.clone()));
        }
        for r in self.replica_sets.indexed(OWNER_UID_INDEX, uid) {
            out.push((
                r.namespace().unwrap_or_default(),
                r.name_any(),
                "replicasets",
                r.metadata.clone(),
            ));
        }
        for s in self.slices.indexed(OWNER_UID_INDEX, uid) {
            out.push((
                s.namespace().unwrap_or_default(),
                s.name_any(),
                "endpointslices",
                s.metadata.clone(),
            ));
        }
        out
    }

    async fn finalize_owners<K>(&self, owners: &Informer<K>) -> Result<()>
    where
        K: Kind + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        for owner in owners.list() {
            let meta = owner.meta();
            if meta.deletion_timestamp.is_none() {
                continue;
            }
            let uid = meta.uid.clone().unwrap_or_default();
            let orphan = has_finalizer(meta, "orphan");
            let foreground = has_finalizer(meta, "foregroundDeletion");
            if !orphan && !foreground {
                continue;
            }
            let dependents = self.dependents(&uid);
            if orphan {
                for (ns, name, resource, _) in &dependents {
                    let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}]}});
                    self.patch_dependent(ns, name, resource, &patch).await?;
                }
            } else {
                // Foreground: the dependents go first (each in the foreground too).
                for (ns, name, resource, dep) in &dependents {
                    if dep.deletion_timestamp.is_none() {
                        // Owners among them go in the foreground too; leaves (pods, slices) need
                        // no finalizer of their own.
                        let foreground = *resource == "replicasets";
                        self.delete_dependent(ns, name, resource, dep.uid.clone(), foreground)
                            .await?;
                    }
                }
                let blocking = dependents.iter().any(|(_, _, _, d)| {
                    d.owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
                });
                if blocking {
                    continue;
                }
            }
            let finalizer = if orphan { "orphan" } else { "foregroundDeletion" };
            let remaining: Vec<String> =
                meta.finalizers.iter().flatten().filter(|f| *f != finalizer).cloned().collect();
            let api: Api<K> =
                Api::namespaced(self.client.clone(), &owner.namespace().unwrap_or_default());
            let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": meta.resource_version}});
            match api.patch(&owner.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn collect<K: Kind>(&self, dependents: &Informer<K>) -> Result<()> {
        for object in dependents.list() {
            let meta = object.meta();
            let refs = meta.owner_references.clone().unwrap_or_default();
            if refs.is_empty() || meta.deletion_timestamp.is_some() {
                continue;
            }
            let ns = object.namespace().unwrap_or_default();
            // Cheap first look: skip objects whose owners are all in the caches.
            let cached = refs.iter().all(|r| self.cached_alive(&ns, r));
            if cached {
                continue;
            }
            let mut gone = Vec::new();
            let mut alive = 0;
            for r in &refs {
                match owner_gone(&self.client, &ns, r).await? {
                    Some(true) => gone.push(r.uid.clone()),
                    Some(false) | None => alive += 1,
                }
            }
            if gone.is_empty() {
                continue;
            }
            let resource = K::plural(&()).into_owned();
            if alive == 0 {
                self.delete_dependent(&ns, &object.name_any(), &resource, meta.uid.clone(), false)
                    .await?;
            } else {
                let deletes: Vec<_> =
                    gone.iter().map(|uid| json!({"$patch": "delete", "uid": uid})).collect();
                let patch = json!({"metadata": {"ownerReferences": deletes}});
                self.patch_dependent(&ns, &object.name_any(), &resource, &patch).await?;
            }
        }
        Ok(())
    }

    /// Whether the caches show the owner alive (a hint only: "not cached" is checked with a read).
    fn cached_alive(&self, ns: &str, r: &OwnerReference) -> bool {
        let key = crate::ObjectKey::namespaced(ns, &r.name);
        let uid = |m: &ObjectMeta| m.uid.as_deref() == Some(r.uid.as_str());
        match (r.api_version.as_str(), r.kind.as_str()) {
            ("apps/v1", "Deployment") => {
                self.deployments.get(&key).is_some_and(|o| uid(&o.metadata))
            }
            ("apps/v1", "ReplicaSet") => {
                self.replica_sets.get(&key).is_some_and(|o| uid(&o.metadata))
            }
            ("v1", "ReplicationController") => {
                self.controllers.get(&key).is_some_and(|o| uid(&o.metadata))
            }
            ("v1", "Service") => self.services.get(&key).is_some_and(|o| uid(&o.metadata)),
            ("v1", "Node") => self
                .nodes
                .get(&crate::ObjectKey::cluster(&r.name))
                .is_some_and(|o| uid(&o.metadata)),
            // Kinds we cannot see are never presumed gone.
            _ => true,
        }
    }

    fn dynamic(&self, ns: &str, resource: &str) -> Option<Api<kube::api::DynamicObject>> {
        let ar = match resource {
            "pods" => kube::api::ApiResource::erase::<Pod>(&()),
            "replicasets" => kube::api::ApiResource::erase::<ReplicaSet>(&()),
            "endpointslices" => kube::api::ApiResource::erase::<EndpointSlice>(&()),
            "leases" => kube::api::ApiResource::erase::<Lease>(&()),
            _ => return None,
        };
        Some(Api::namespaced_with(self.client.clone(), ns, &ar))
    }

    async fn patch_dependent(
        &self,
        ns: &str,
        name: &str,
        resource: &str,
        patch: &serde_json::Value,
    ) -> Result<()> {
        let Some(api) = self.dynamic(ns, resource) else { return Ok(()) };
        match api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_dependent(
        &self,
        ns: &str,
        name: &str,
        resource: &str,
        uid: Option<String>,
        foreground: bool,
    ) -> Result<()> {
        let Some(api) = self.dynamic(ns, resource) else { return Ok(()) };
        let params = DeleteParams {
            propagation_policy: Some(if foreground {
                kube::api::PropagationPolicy::Foreground
            } else {
                kube::api::PropagationPolicy::Background
            }),
            preconditions: Some(Preconditions { uid, resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
