//! The garbage collector (upstream's `garbagecollector` controller), over every resource the
//! API server serves — found through discovery, custom resources included, re-discovered as
//! resources come and go — watched as metadata only:
//! - a dependent whose owners are all gone is deleted (Background); one that keeps another
//!   owner only loses the dangling references;
//! - an owner deleted with the `orphan` finalizer has the references to it removed from its
//!   dependents, then loses the finalizer;
//! - an owner deleted with `foregroundDeletion` has its dependents deleted (those that own
//!   objects themselves in the foreground too) and loses the finalizer once no dependent with
//!   `blockOwnerDeletion` is left.
//!
//! An owner counts as gone only when a read from the API server says so (not found, or another
//! UID), never on the word of a cache; owners of kinds the server does not serve are never
//! presumed gone. Events are not collected (as upstream).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::discovery::{Resources, Served};
use crate::informer::Metadata;
use crate::replicaset::is_status;
use crate::{Change, Context, Informer, ObjectKey, Result};

/// The index of objects by the UIDs of all their owners.
const OWNER_UID_INDEX: &str = "owner-uid";

/// How often owners and dependents are checked.
const PASS_PERIOD: Duration = Duration::from_secs(2);

/// Passes triggered by an owner's deletion are at least this far apart.
const MIN_PASS_SPACING: Duration = Duration::from_millis(200);

/// Discovery runs again every this many passes (new and removed resources).
const PASSES_PER_DISCOVERY: u32 = 5;

/// Resources never collected (upstream's default ignored resources).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// The verbs a resource needs to be watched and collected.
const VERBS: &[&str] = &["list", "watch", "delete", "patch"];

fn owner_uids(object: &Metadata) -> Vec<String> {
    object.metadata.owner_references.iter().flatten().map(|r| r.uid.clone()).collect()
}

/// One watched resource.
struct Monitor {
    served: Served,
    informer: Arc<Informer<Metadata>>,
    stop: CancellationToken,
}

impl Monitor {
    fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| self.served.namespaced) {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.served.resource),
            None => Api::all_with(client.clone(), &self.served.resource),
        }
    }
}

/// A dependent found through the owner index.
struct Dependent {
    monitor: Arc<Monitor>,
    object: Arc<Metadata>,
}

/// The watched resources, by group and kind.
type Monitors = HashMap<(String, String), Arc<Monitor>>;

#[derive(Clone)]
struct Collector {
    client: kube::Client,
    resources: Arc<Resources>,
    /// By group and kind.
    monitors: Arc<RwLock<Monitors>>,
    /// Set when an object with dependents is deleted or marked for deletion: pass soon.
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let collector = Collector {
        client: ctx.client.clone(),
        resources: Arc::default(),
        monitors: Arc::default(),
        wake: Arc::default(),
        stop: ctx.stop.clone(),
    };
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        let mut passes: u32 = 0;
        loop {
            if passes.is_multiple_of(PASSES_PER_DISCOVERY) {
                match collector.resources.refresh(&collector.client).await {
                    Ok(()) => collector.sync_monitors(),
                    Err(e) => tracing::info!(error = %e, "garbage collector discovery failed"),
                }
            }
            passes = passes.wrapping_add(1);
            if let Err(e) = collector.pass().await {
                tracing::info!(error = %e, "garbage collection failed; retrying");
            }
            // Next pass: after the period, or sooner when an owner goes (never more often
            // than the minimum spacing: a pass reads every cached object).
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(PASS_PERIOD) => {}
                _ = collector.wake.notified() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(MIN_PASS_SPACING) => {}
            }
        }
        collector.stop_monitors();
        Ok(())
    });
}

fn has_finalizer(meta: &ObjectMeta, name: &str) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == name)
}

impl Collector {
    /// Watches every collectable resource discovery found, and stops watching those gone.
    fn sync_monitors(&self) {
        let wanted: Vec<Served> = self
            .resources
            .all()
            .into_iter()
            .filter(|s| s.supports(VERBS))
            .filter(|s| !IGNORED.contains(&(s.resource.group.as_str(), s.resource.plural.as_str())))
            .collect();
        let mut monitors = self.monitors.write().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<(String, String)> =
            wanted.iter().map(|s| (s.resource.group.clone(), s.resource.kind.clone())).collect();
        monitors.retain(|key, monitor| {
            let keep = keys.contains(key);
            if !keep {
                monitor.stop.cancel();
            }
            keep
        });
        for served in wanted {
            let key = (served.resource.group.clone(), served.resource.kind.clone());
            if monitors.get(&key).is_some_and(|m| m.served.resource == served.resource) {
                continue;
            }
            if let Some(old) = monitors.remove(&key) {
                old.stop.cancel();
            }
            let informer = Arc::new(Informer::metadata(self.client.clone(), &served.resource));
            informer.add_index(OWNER_UID_INDEX, owner_uids);
            let watcher = self.clone();
            informer.add_handler(move |change| {
                let object = change.object();
                let going = matches!(change, Change::Deleted(_))
                    || object.metadata.deletion_timestamp.is_some();
                if going
                    && let Some(uid) = object.metadata.uid.as_deref()
                    && watcher.has_dependents(uid)
                {
                    watcher.wake.notify_one();
                }
            });
            let stop = self.stop.child_token();
            let resource = served.group_resource();
            tokio::spawn({
                let informer = informer.clone();
                let stop = stop.clone();
                async move {
                    if let Err(e) = informer.run(stop).await {
                        tracing::debug!(%resource, error = %e, "garbage collector watch ended");
                    }
                }
            });
            monitors.insert(key, Arc::new(Monitor { served, informer, stop }));
        }
    }

    fn stop_monitors(&self) {
        let mut monitors = self.monitors.write().unwrap_or_else(PoisonError::into_inner);
        for monitor in monitors.values() {
            monitor.stop.cancel();
        }
        monitors.clear();
    }

    fn monitors(&self) -> Vec<Arc<Monitor>> {
        self.monitors.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    fn monitor_of(&self, api_version: &str, kind: &str) -> Option<Arc<Monitor>> {
        let group = crate::discovery::group_of(api_version).to_owned();
        let monitors = self.monitors.read().unwrap_or_else(PoisonError::into_inner);
        monitors.get(&(group, kind.to_owned())).cloned()
    }

    async fn pass(&self) -> Result<()> {
        let monitors = self.monitors();
        // Owners being deleted with orphan or foreground finalizers.
        for monitor in &monitors {
            if !monitor.informer.has_synced() {
                continue;
            }
            for owner in monitor.informer.list() {
                let meta = &owner.metadata;
                if meta.deletion_timestamp.is_some()
                    && (has_finalizer(meta, "orphan") || has_finalizer(meta, "foregroundDeletion"))
                {
                    self.finalize_owner(monitor, &owner).await?;
                }
            }
        }
        // Dependents whose owners are gone (owners seen alive once per pass need no second look).
        let mut alive = HashSet::new();
        for monitor in &monitors {
            if !monitor.informer.has_synced() {
                continue;
            }
            for object in monitor.informer.list() {
                let meta = &object.metadata;
                if meta.owner_references.as_ref().is_some_and(|r| !r.is_empty())
                    && meta.deletion_timestamp.is_none()
                {
                    self.collect(monitor, &object, &mut alive).await?;
                }
            }
        }
        Ok(())
    }

    fn has_dependents(&self, uid: &str) -> bool {
        let monitors = self.monitors.read().unwrap_or_else(PoisonError::into_inner);
        monitors.values().any(|m| !m.informer.indexed(OWNER_UID_INDEX, uid).is_empty())
    }

    /// The cached dependents of `uid`, of every resource.
    fn dependents(&self, uid: &str) -> Vec<Dependent> {
        let mut out = Vec::new();
        for monitor in self.monitors() {
            for object in monitor.informer.indexed(OWNER_UID_INDEX, uid) {
                out.push(Dependent { monitor: monitor.clone(), object });
            }
        }
        out
    }

    async fn finalize_owner(&self, monitor: &Arc<Monitor>, owner: &Metadata) -> Result<()> {
        let meta = &owner.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let orphan = has_finalizer(meta, "orphan");
        let dependents = self.dependents(&uid);
        if orphan {
            for d in &dependents {
                self.remove_owner_refs(d, std::slice::from_ref(&uid)).await?;
            }
        } else {
            // Foreground: the dependents go first, owners among them in the foreground too.
            for d in &dependents {
                let dm = &d.object.metadata;
                if dm.deletion_timestamp.is_none() {
                    let owns = dm.uid.as_deref().is_some_and(|u| {
                        self.monitors()
                            .iter()
                            .any(|m| !m.informer.indexed(OWNER_UID_INDEX, u).is_empty())
                    });
                    self.delete(&d.monitor, &d.object, owns).await?;
                }
            }
            let blocking = dependents.iter().any(|d| {
                d.object
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            });
            if blocking {
                return Ok(());
            }
        }
        let finalizer = if orphan { "orphan" } else { "foregroundDeletion" };
        let remaining: Vec<String> =
            meta.finalizers.iter().flatten().filter(|f| *f != finalizer).cloned().collect();
        let api = monitor.api(&self.client, meta.namespace.as_deref());
        let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": meta.resource_version}});
        let name = meta.name.clone().unwrap_or_default();
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn collect(
        &self,
        monitor: &Arc<Monitor>,
        object: &Arc<Metadata>,
        alive: &mut HashSet<String>,
    ) -> Result<()> {
        let meta = &object.metadata;
        let refs = meta.owner_references.as_deref().unwrap_or_default();
        let ns = meta.namespace.as_deref();
        // Cheap first look: skip objects whose owners are all in the caches.
        let mut cached = true;
        for r in refs {
            if alive.contains(&r.uid) {
                continue;
            }
            if !self.cached_alive(ns, r) {
                cached = false;
                break;
            }
            alive.insert(r.uid.clone());
        }
        if cached {
            return Ok(());
        }
        let mut gone = Vec::new();
        let mut alive = 0;
        for r in refs {
            match self.owner_gone(ns, r).await? {
                Some(true) => gone.push(r.uid.clone()),
                Some(false) | None => alive += 1,
            }
        }
        if gone.is_empty() {
            Ok(())
        } else if alive == 0 {
            self.delete(monitor, object, false).await
        } else {
            let dependent = Dependent { monitor: monitor.clone(), object: object.clone() };
            self.remove_owner_refs(&dependent, &gone).await
        }
    }

    /// Whether the caches show the owner alive (a hint only: "not cached" is checked with a
    /// read). Kinds the server does not serve are never presumed gone.
    fn cached_alive(&self, ns: Option<&str>, r: &OwnerReference) -> bool {
        let Some(monitor) = self.monitor_of(&r.api_version, &r.kind) else { return true };
        let key = match ns.filter(|_| monitor.served.namespaced) {
            Some(ns) => ObjectKey::namespaced(ns, &r.name),
            None => ObjectKey::cluster(&r.name),
        };
        monitor
            .informer
            .get(&key)
            .is_some_and(|o| o.metadata.uid.as_deref() == Some(r.uid.as_str()))
    }

    /// Whether the owner `r` (of an object in `ns`) is gone, read from the API server; `None`
    /// for kinds the server does not serve.
    async fn owner_gone(&self, ns: Option<&str>, r: &OwnerReference) -> Result<Option<bool>> {
        let Some(monitor) = self.monitor_of(&r.api_version, &r.kind) else { return Ok(None) };
        let api = monitor.api(&self.client, ns);
        Ok(Some(match api.get_metadata_opt(&r.name).await? {
            None => true,
            Some(owner) => owner.metadata.uid.as_deref() != Some(r.uid.as_str()),
        }))
    }

    /// Removes the references to `uids` from a dependent: a strategic merge patch deleting them
    /// by UID where the resource takes one, else a merge patch of the remaining list guarded by
    /// the resourceVersion.
    async fn remove_owner_refs(&self, d: &Dependent, uids: &[String]) -> Result<()> {
        let meta = &d.object.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let api = d.monitor.api(&self.client, meta.namespace.as_deref());
        let deletes: Vec<_> =
            uids.iter().map(|uid| json!({"$patch": "delete", "uid": uid})).collect();
        let strategic = json!({"metadata": {"ownerReferences": deletes}});
        let result = match api
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&strategic))
            .await
        {
            Err(e) if is_status(&e, 415) => {
                let remaining: Vec<&OwnerReference> = meta
                    .owner_references
                    .iter()
                    .flatten()
                    .filter(|r| !uids.contains(&r.uid))
                    .collect();
                let merge = json!({"metadata": {"ownerReferences": remaining, "resourceVersion": meta.resource_version}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&merge)).await
            }
            other => other,
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, monitor: &Monitor, object: &Metadata, foreground: bool) -> Result<()> {
        let meta = &object.metadata;
        let api = monitor.api(&self.client, meta.namespace.as_deref());
        let params = DeleteParams {
            propagation_policy: Some(if foreground {
                kube::api::PropagationPolicy::Foreground
            } else {
                kube::api::PropagationPolicy::Background
            }),
            preconditions: Some(Preconditions { uid: meta.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(meta.name.as_deref().unwrap_or_default(), &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
