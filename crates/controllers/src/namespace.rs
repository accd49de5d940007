//! The namespace controller (upstream's `namespace-controller`): a namespace being deleted
//! (phase `Terminating`, the `kubernetes` finalizer in `spec.finalizers`) is emptied — every
//! namespaced resource the API server serves, custom ones included, through a delete-collection
//! (or one delete per object where a resource has none), pods gracefully — and its status
//! conditions tell what is left (upstream's five `NamespaceDeletion*`/`Namespace*Remaining`
//! conditions with their reasons and messages). Once nothing is left it removes `kubernetes`
//! from `spec.finalizers` through `namespaces/<name>/finalize`, and the API server deletes
//! the namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;

use crate::discovery::{Resources, Served};
use crate::replicaset::is_status;
use crate::{Change, Context, Informer, ObjectKey, Result, WorkQueue};

/// The finalizer this controller owns.
const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going is looked at again.
const RECHECK: Duration = Duration::from_secs(1);

struct Controller {
    client: kube::Client,
    namespaces: Arc<Informer<Namespace>>,
    resources: Resources,
    queue: Arc<WorkQueue<ObjectKey>>,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        namespaces: ctx.informers.get::<Namespace>(),
        resources: Resources::default(),
        queue: WorkQueue::new(),
    });
    let c = controller.clone();
    controller.namespaces.add_handler(move |change| {
        let ns = change.object();
        if !matches!(change, Change::Deleted(_)) && ns.metadata.deletion_timestamp.is_some() {
            c.queue.add(ObjectKey::cluster(&ns.name_any()));
        }
    });
    let workers = ctx.config.workers;
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.namespaces.wait_synced().await;
        let c = controller.clone();
        crate::run_workers("namespace", controller.queue.clone(), workers, stop, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    });
}

/// What deleting a namespace's content left behind.
#[derive(Debug, Default)]
struct Remaining {
    /// Objects left, by `resource.group` (upstream's wording: `pods.` for the core group).
    objects: BTreeMap<String, usize>,
    /// Objects left holding each finalizer.
    finalizers: BTreeMap<String, usize>,
    /// Resources whose content could not be deleted, with why.
    failures: Vec<String>,
}

impl Controller {
    async fn sync(self: &Arc<Self>, key: &ObjectKey) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        // A fresh read: the cache may be behind the finalize that already happened.
        let Some(ns) = api.get_opt(&key.name).await? else { return Ok(()) };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let discovered = self.resources.refresh(&self.client).await;
        let remaining = match &discovered {
            Ok(()) => self.delete_content(&key.name).await,
            Err(_) => Remaining::default(),
        };
        self.set_conditions(&ns, discovered.as_ref().err().map(ToString::to_string), &remaining)
            .await?;
        if discovered.is_err() || !remaining.failures.is_empty() || !remaining.objects.is_empty() {
            self.queue.add_after(key.clone(), RECHECK);
            return Ok(());
        }
        // Empty: the namespace may go.
        let mut finalized = ns.clone();
        if let Some(spec) = finalized.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        match api
            .replace_subresource("finalize", &key.name, &PostParams::default(), &finalized)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes everything in `namespace` and reports what is still there.
    async fn delete_content(&self, namespace: &str) -> Remaining {
        let mut remaining = Remaining::default();
        let resources: Vec<Served> = self
            .resources
            .all()
            .into_iter()
            .filter(|s| s.namespaced && s.supports(&["list", "delete"]))
            .collect();
        for served in resources {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &served.resource);
            if let Err(e) = delete_all(&api, &served).await {
                remaining.failures.push(format!("{}: {e}", served.group_resource()));
                continue;
            }
            let left = match api.list_metadata(&ListParams::default()).await {
                Ok(list) => list.items,
                Err(e) => {
                    remaining.failures.push(format!("{}: {e}", served.group_resource()));
                    continue;
                }
            };
            if left.is_empty() {
                continue;
            }
            let name = format!("{}.{}", served.resource.plural, served.resource.group);
            remaining.objects.insert(name, left.len());
            for object in &left {
                for f in object.metadata.finalizers.iter().flatten() {
                    *remaining.finalizers.entry(f.clone()).or_default() += 1;
                }
            }
        }
        remaining
    }

    /// Writes upstream's deletion conditions when they changed (a condition's transition time
    /// moves only when its status does).
    async fn set_conditions(
        &self,
        ns: &Namespace,
        discovery_error: Option<String>,
        remaining: &Remaining,
    ) -> Result<()> {
        let wanted = conditions(discovery_error.as_deref(), remaining);
        let current: Vec<NamespaceCondition> =
            ns.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut merged = Vec::new();
        let mut changed = false;
        for (kind, status, reason, message) in wanted {
            let old = current.iter().find(|c| c.type_ == kind);
            let same = old.is_some_and(|c| {
                c.status == status
                    && c.reason.as_deref() == Some(reason)
                    && c.message.as_deref() == Some(message.as_str())
            });
            changed |= !same;
            let transition = match old {
                Some(c) if c.status == status => c.last_transition_time.clone(),
                _ => Some(now.clone()),
            };
            merged.push(NamespaceCondition {
                type_: kind.to_owned(),
                status: status.to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                last_transition_time: transition,
            });
        }
        if !changed {
            return Ok(());
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let patch = json!({"status": {"phase": "Terminating", "conditions": merged}});
        match api.patch_status(&ns.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes every object of one resource in the API's namespace.
async fn delete_all(api: &Api<DynamicObject>, served: &Served) -> Result<()> {
    let params = DeleteParams::background();
    let ignorable = |e: &kube::Error| is_status(e, 404) || is_status(e, 405) || is_status(e, 409);
    if served.supports(&["deletecollection"]) {
        match api.delete_collection(&params, &ListParams::default()).await {
            Ok(_) => return Ok(()),
            Err(e) if ignorable(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    for object in api.list_metadata(&ListParams::default()).await?.items {
        if object.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&object.name_any(), &params).await {
            Ok(_) => {}
            Err(e) if ignorable(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Upstream's five conditions (type, status, reason, message) for what a pass found.
fn conditions(
    discovery_error: Option<&str>,
    remaining: &Remaining,
) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let discovery = match discovery_error {
        Some(e) => (
            "NamespaceDeletionDiscoveryFailure",
            "True",
            "DiscoveryFailed",
            format!("Discovery failed for some groups, 1 failing: {e}"),
        ),
        None => (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".to_owned(),
        ),
    };
    let parsing = (
        "NamespaceDeletionGroupVersionParsingFailure",
        "False",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed".to_owned(),
    );
    let content = if remaining.failures.is_empty() {
        (
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_owned(),
        )
    } else {
        (
            "NamespaceDeletionContentFailure",
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                remaining.failures.len(),
                remaining.failures.join(", ")
            ),
        )
    };
    let objects = if remaining.objects.is_empty() {
        (
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".to_owned(),
        )
    } else {
        let list: Vec<String> = remaining
            .objects
            .iter()
            .map(|(resource, n)| format!("{resource} has {n} resource instances"))
            .collect();
        (
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
        )
    };
    let finalizers = if remaining.finalizers.is_empty() {
        (
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".to_owned(),
        )
    } else {
        let list: Vec<String> = remaining
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        (
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {}", list.join(", ")),
        )
    };
    vec![discovery, parsing, content, objects, finalizers]
}

/// Whether a namespace takes new objects: not deleted, not `Terminating`.
pub(crate) fn is_active(ns: &k8s_openapi::api::core::v1::Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_read_as_upstream_writes_them() {
        let mut remaining = Remaining::default();
        remaining.objects.insert("configmaps.".into(), 1);
        remaining.objects.insert("pods.".into(), 2);
        remaining.finalizers.insert("example.com/keep".into(), 1);
        let c = conditions(None, &remaining);
        assert_eq!(c[0].2, "ResourcesDiscovered");
        assert_eq!(c[3].1, "True");
        assert_eq!(
            c[3].3,
            "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
        );
        assert_eq!(
            c[4].3,
            "Some content in the namespace has finalizers remaining: example.com/keep in 1 resource instances"
        );
        let done = conditions(None, &Remaining::default());
        assert!(done.iter().all(|c| c.1 == "False"));
        assert_eq!(done[3].3, "All content successfully removed");
    }
}
