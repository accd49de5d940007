//! CustomResourceDefinitions: what a CRD declares becomes served resources. A task follows the
//! CRDs (through their watch cache) and, on every change, rebuilds the catalog the REST machine
//! serves (discovery, routing, tables) and the per-version facts writes need (schema, printer
//! columns, scale paths); it also plays upstream's naming, establishing and finalizing
//! controllers: it writes each CRD's `acceptedNames`, `NamesAccepted`/`Established` conditions
//! and `storedVersions`, and deletes the custom resources of a CRD being deleted before letting
//! the CRD go.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use krust_api::catalog::{Catalog, Resource};
use krust_api::schema::Schema;
use krust_store::{RangeRequest, Store, StoreExt, WriteOutcome, prefix_end};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::rest::ApiState;

mod cel;
mod columns;
mod definition;

pub use columns::PrinterColumn;
pub use definition::{CLEANUP_FINALIZER, default_spec, prepare_for_create, validate};

/// Where CRDs are stored.
const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// Pause before retrying a status write or a cleanup that failed.
const RETRY: Duration = Duration::from_secs(1);

/// The `scale` subresource of a custom resource: where its replica counts live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `.spec.replicas`
    pub spec_replicas: String,
    /// `.status.replicas`
    pub status_replicas: String,
    /// `.status.selector`, when the resource publishes one.
    pub label_selector: Option<String>,
}

/// What serving one version of a custom resource needs beyond its catalog entry.
#[derive(Debug)]
pub struct CustomVersion {
    /// The CRD's name (`crontabs.stable.example.com`).
    pub crd: String,
    /// The version's schema; None when the CRD gave none (everything is kept).
    pub schema: Option<Schema>,
    /// The shapes server-side apply merges by (list types, map keys), root at 0.
    pub(crate) fields: Option<Arc<crate::openapi::FieldSchemas>>,
    /// Its `x-kubernetes-validations` rules (None: it has none).
    pub rules: Option<cel::Rules>,
    /// The same schema as the CRD states it (`openAPIV3Schema`), for the OpenAPI documents.
    pub openapi: Option<Value>,
    /// The Table columns after `Name`.
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: its resources may be read and deleted, not created.
    pub terminating: bool,
    /// `group/version` objects are stored in.
    pub storage_api_version: String,
}

/// (group, version, plural), as the catalog's interned strings.
type VersionKey = (&'static str, &'static str, &'static str);

/// The custom versions served now, by (group, version, plural).
#[derive(Debug, Default)]
pub struct CustomResources {
    versions: RwLock<HashMap<VersionKey, Arc<CustomVersion>>>,
    /// Moves on whenever the custom versions are replaced (for caches of what derives from them).
    generation: std::sync::atomic::AtomicU64,
}

impl CustomResources {
    /// The custom version `resource` is, None for a built-in resource.
    pub fn get(&self, resource: &Resource) -> Option<Arc<CustomVersion>> {
        // Every request asks (built-in ones too): no allocation on the way.
        let versions = self.versions.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if versions.is_empty() {
            return None;
        }
        versions.get(&(resource.group, resource.version, resource.plural)).cloned()
    }

    fn replace(&self, new: HashMap<VersionKey, Arc<CustomVersion>>) {
        *self.versions.write().unwrap_or_else(std::sync::PoisonError::into_inner) = new;
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// How many times the custom versions were replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Follows the CRDs until `shutdown`, keeping what is served in step with them.
pub async fn run(state: Arc<ApiState>, shutdown: CancellationToken) {
    let Some(resource) =
        state.catalog().lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions").cloned()
    else {
        return;
    };
    let Some(cache) = state.caches.get(&resource) else { return };
    let mut warmed = false;
    let mut changes = cache.subscribe();
    // Loaded: the first snapshot is the whole truth.
    while !cache.wait_for(0, Duration::from_secs(5)).await {
        if shutdown.is_cancelled() {
            return;
        }
    }
    let end = prefix_end(CRD_PREFIX);
    let mut served: Vec<Resource> = Vec::new();
    loop {
        changes.borrow_and_update();
        let snapshot = cache.snapshot(CRD_PREFIX, &end, None, |_| true);
        let crds: Vec<Value> =
            snapshot.objects.iter().filter_map(|o| serde_json::from_slice(&o.bytes).ok()).collect();
        // Custom resources' merge shapes draw on the OpenAPI library: build it off the async
        // threads, once there is a CRD (a server without any never pays its memory).
        if !warmed && !crds.is_empty() {
            let _ = tokio::task::spawn_blocking(crate::openapi::warm_library).await;
            warmed = true;
        }
        let pending = sync(&state, &crds, &mut served).await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY), if pending => {}
        }
    }
}

/// One pass over every CRD. True when something is left to do (a write failed, custom
/// resources remain to be deleted) and the pass should run again soon.
async fn sync(state: &ApiState, crds: &[Value], served: &mut Vec<Resource>) -> bool {
    let mut crds: Vec<&Value> = crds.iter().collect();
    // The oldest CRD keeps a contested name, as upstream's naming controller decides.
    crds.sort_by_key(|crd| {
        (
            crd.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default(),
            crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default(),
        )
    });
    let mut resources = Vec::new();
    let mut versions = HashMap::new();
    let mut claimed: Vec<(String, String)> = Vec::new();
    let mut pending = false;
    for crd in crds {
        let Some(def) = definition::Definition::parse(crd) else { continue };
        let conflict = def.conflict(&claimed);
        if conflict.is_none() {
            claimed.extend(def.claims());
            for (resource, version) in def.served() {
                versions
                    .insert((resource.group, resource.version, resource.plural), Arc::new(version));
                resources.push(resource);
            }
        }
        let status = def.status(crd, conflict.as_ref());
        if crd.get("status") != Some(&status) {
            pending |= !write_status(state.store.as_ref(), &def.name, status).await;
        }
        if def.terminating {
            pending |= !cleanup(state, &def).await;
        }
    }
    // Versions of one group are listed together, preferred (highest priority) first.
    resources.sort_by(|a, b| {
        a.group.cmp(b.group).then_with(|| {
            definition::version_priority(b.version).cmp(&definition::version_priority(a.version))
        })
    });
    state.crds.replace(versions);
    if *served != resources {
        debug!(resources = resources.len(), "custom resources served");
        state.set_catalog(Catalog::with_custom(resources.iter().cloned()));
        *served = resources;
    }
    pending
}

/// Replaces a CRD's status if the CRD is still there. False when it should be tried again.
async fn write_status(store: &dyn Store, name: &str, status: Value) -> bool {
    let key = format!("{CRD_PREFIX}{name}");
    let Ok(resp) = store.range(RangeRequest::key(key.clone())).await else { return false };
    let Some(kv) = resp.kvs.first() else { return true };
    let Ok(mut crd) = serde_json::from_slice::<Value>(&kv.value) else { return true };
    let Some(map) = crd.as_object_mut() else { return true };
    map.insert("status".into(), status);
    let Ok(bytes) = serde_json::to_vec(&crd) else { return true };
    match store.update_if(&key, bytes.into(), kv.mod_revision, kv.lease).await {
        Ok(WriteOutcome::Applied { .. }) => true,
        Ok(WriteOutcome::Conflict { .. }) => false,
        Err(e) => {
            warn!(crd = %name, error = %e, "cannot write the CRD's status");
            false
        }
    }
}

/// Deletes the custom resources of a CRD being deleted; once none is left, removes the
/// CRD's cleanup finalizer (and the CRD, when that was its last). True when done.
async fn cleanup(state: &ApiState, def: &definition::Definition) -> bool {
    let prefix = def.store_prefix();
    let objects = match state.store.range(RangeRequest::prefix(prefix.clone())).await {
        Ok(resp) => resp.kvs,
        Err(e) => {
            warn!(crd = %def.name, error = %e, "cannot list the custom resources to delete");
            return false;
        }
    };
    if !objects.is_empty() {
        for kv in objects {
            let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            let has_finalizers = object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            let result = if !has_finalizers {
                state.store.delete_if(&kv.key, kv.mod_revision).await.map(|_| ())
            } else if object.pointer("/metadata/deletionTimestamp").is_none() {
                // Whoever owns its finalizers lets it go.
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("deletionTimestamp".into(), crate::rest::now().into());
                    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                match serde_json::to_vec(&object) {
                    Ok(bytes) => state
                        .store
                        .update_if(&kv.key, bytes.into(), kv.mod_revision, kv.lease)
                        .await
                        .map(|_| ()),
                    Err(_) => Ok(()),
                }
            } else {
                Ok(())
            };
            if let Err(e) = result {
                warn!(crd = %def.name, key = %kv.key, error = %e, "cannot delete a custom resource");
            }
        }
        return false;
    }
    // Nothing left: the finalizer goes, and with the last finalizer the CRD.
    let key = format!("{CRD_PREFIX}{}", def.name);
    let Ok(resp) = state.store.range(RangeRequest::key(key.clone())).await else { return false };
    let Some(kv) = resp.kvs.first() else { return true };
    let Ok(mut crd) = serde_json::from_slice::<Value>(&kv.value) else { return true };
    let mut remaining: Vec<Value> =
        crd.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
    remaining.retain(|f| f != CLEANUP_FINALIZER);
    let outcome = if remaining.is_empty() {
        state.store.delete_if(&key, kv.mod_revision).await
    } else {
        if let Some(meta) = crd.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("finalizers".into(), Value::Array(remaining));
        }
        let Ok(bytes) = serde_json::to_vec(&crd) else { return true };
        state.store.update_if(&key, bytes.into(), kv.mod_revision, kv.lease).await
    };
    matches!(outcome, Ok(WriteOutcome::Applied { .. }))
}

#[cfg(test)]
mod tests;
