//! The ReplicaSet and ReplicationController controllers (upstream's `replicaset` package, which
//! serves both): keep `replicas` active pods carrying a controller reference to their owner,
//! adopt matching orphans and release pods that stopped matching, create in slow-start batches,
//! delete surplus pods in upstream's order, and report status.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use krust_api::labels::Selector;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt as _};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::pods::{self, CONTROLLER_UID_INDEX};
use crate::{
    Change, Context, Error, EventRecorder, EventType, Expectations, Informer, ObjectKey, Result,
    WorkQueue,
};

/// Upstream's `BurstReplicas`: at most this many creates or deletes per sync.
const BURST_REPLICAS: usize = 500;
/// Upstream's `SlowStartInitialBatchSize`.
const SLOW_START_INITIAL_BATCH: usize = 1;

/// What the controller needs of a ReplicaSet or a ReplicationController.
pub(crate) trait Owner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The name events give as their source.
    const COMPONENT: &'static str;
    fn selector(&self) -> Result<Selector, String>;
    /// `spec.replicas` (default 1).
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// `status` as JSON (an object; empty when unset).
    fn status(&self) -> Value;
}

impl Owner for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn selector(&self) -> Result<Selector, String> {
        let selector = self.spec.as_ref().map(|s| &s.selector);
        let value = serde_json::to_value(selector).map_err(|e| e.to_string())?;
        // An empty selector selects nothing here (upstream refuses to manage with it).
        if value.as_object().is_none_or(|o| o.values().all(Value::is_null)) {
            return Ok(Selector::nothing());
        }
        Selector::from_label_selector(&value).map_err(|e| e.to_string())
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

impl Owner for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn selector(&self) -> Result<Selector, String> {
        // A ReplicationController's selector is a plain map (defaulted from the template's
        // labels by the API server); empty selects nothing.
        let labels = self.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
        if labels.is_empty() {
            return Ok(Selector::nothing());
        }
        let map = labels.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        Ok(Selector::from_labels(&map))
    }
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn status(&self) -> Value {
        serde_json::to_value(&self.status).unwrap_or(Value::Null)
    }
}

pub(crate) fn start_replicasets(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    start::<ReplicaSet>("replicaset", ctx, tasks);
}

pub(crate) fn start_rcs(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    start::<ReplicationController>("replicationcontroller", ctx, tasks);
}

/// A sync reads every pod of its owner: changes arriving while one runs are handled together,
/// at most this long after it (a 10,000-replica owner would otherwise sync once per pod event).
const SYNC_BATCH_PERIOD: Duration = Duration::from_millis(100);

struct Controller<O: Owner> {
    client: kube::Client,
    owners: Arc<Informer<O>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    expectations: Expectations,
    events: EventRecorder,
}

fn start<O: Owner>(name: &'static str, ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let owners = ctx.informers.get::<O>();
    let pods = ctx.informers.get::<Pod>();
    pods.add_index(CONTROLLER_UID_INDEX, pods::controller_uid_index::<Pod>);
    pods.add_index(pods::ORPHAN_INDEX, pods::orphan_index::<Pod>);
    owners.add_index(CONTROLLER_UID_INDEX, pods::controller_uid_index::<O>);
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        owners: owners.clone(),
        pods: pods.clone(),
        queue: WorkQueue::batched(SYNC_BATCH_PERIOD),
        expectations: Expectations::new(),
        events: ctx.events.for_component(O::COMPONENT),
    });
    let c = controller.clone();
    owners.add_handler(move |change| c.queue.add(ObjectKey::of(change.object().as_ref())));
    let c = controller.clone();
    pods.add_handler(move |change| c.on_pod(change));

    let workers = ctx.config.workers;
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.owners.wait_synced().await;
        controller.pods.wait_synced().await;
        let c = controller.clone();
        crate::run_workers(name, controller.queue.clone(), workers, stop, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    });
}

impl<O: Owner> Controller<O> {
    /// The owner `reference` (in `namespace`) names, if it is one of ours and still the same
    /// object.
    fn resolve(&self, namespace: &str, reference: &OwnerReference) -> Option<Arc<O>> {
        if reference.kind != O::kind(&()) {
            return None;
        }
        let owner = self.owners.get(&ObjectKey::namespaced(namespace, &reference.name))?;
        (owner.meta().uid.as_deref() == Some(reference.uid.as_str())).then_some(owner)
    }

    /// The owners in the pod's namespace whose selector matches it (for orphans).
    fn matching_owners(&self, pod: &Pod) -> Vec<Arc<O>> {
        let labels = pod.metadata.labels.as_ref();
        self.owners
            .list_namespace(pod.metadata.namespace.as_deref().unwrap_or_default())
            .into_iter()
            .filter(|o| {
                o.selector().is_ok_and(|s| {
                    s.matches_with(|k| labels.and_then(|l| l.get(k)).map(String::as_str))
                })
            })
            .collect()
    }

    fn enqueue(&self, owner: &O) {
        self.queue.add(ObjectKey::of(owner));
    }

    fn on_pod(&self, change: &Change<'_, Pod>) {
        let namespace = change.object().metadata.namespace.clone().unwrap_or_default();
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    return self.pod_deleted(pod);
                }
                if let Some(reference) = pods::controller_of(&pod.metadata) {
                    if let Some(owner) = self.resolve(&namespace, reference) {
                        self.expectations.creation_observed(&ObjectKey::of(owner.as_ref()));
                        self.enqueue(&owner);
                    }
                    return;
                }
                for owner in self.matching_owners(pod) {
                    self.enqueue(&owner);
                }
            }
            Change::Updated { old, new } => {
                let labels_changed = old.metadata.labels != new.metadata.labels;
                if new.metadata.deletion_timestamp.is_some() {
                    // A graceful deletion counts as observed at once.
                    self.pod_deleted(new);
                    if labels_changed {
                        self.pod_deleted(old);
                    }
                    return;
                }
                let old_ref = pods::controller_of(&old.metadata);
                let new_ref = pods::controller_of(&new.metadata);
                if old_ref != new_ref
                    && let Some(owner) = old_ref.and_then(|r| self.resolve(&namespace, r))
                {
                    self.enqueue(&owner);
                }
                if let Some(reference) = new_ref {
                    if let Some(owner) = self.resolve(&namespace, reference) {
                        self.enqueue(&owner);
                        // Becoming ready starts the minReadySeconds clock: look again then.
                        let min_ready = owner.min_ready_seconds();
                        if min_ready > 0 && !pods::is_ready(old) && pods::is_ready(new) {
                            self.queue.add_after(
                                ObjectKey::of(owner.as_ref()),
                                Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1),
                            );
                        }
                    }
                    return;
                }
                if labels_changed || old_ref != new_ref {
                    for owner in self.matching_owners(new) {
                        self.enqueue(&owner);
                    }
                }
            }
            Change::Deleted(pod) => self.pod_deleted(pod),
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let Some(owner) =
            pods::controller_of(&pod.metadata).and_then(|r| self.resolve(&namespace, r))
        else {
            return;
        };
        let key = ObjectKey::of(owner.as_ref());
        self.expectations.deletion_observed(&key, &ObjectKey::of(pod));
        self.queue.add(key);
    }

    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let Some(owner) = self.owners.get(key) else {
            self.expectations.delete(key);
            return Ok(());
        };
        let needs_sync = self.expectations.satisfied(key);
        let selector = match owner.selector() {
            Ok(s) => s,
            Err(e) => {
                // Retrying cannot fix an invalid selector; the object's next update will.
                tracing::warn!(%key, error = %e, "invalid selector");
                return Ok(());
            }
        };
        // Upstream's candidates: the pods this owner controls and the namespace's orphans
        // (pods controlled by others are never claimed).
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let mut candidates = self.pods.indexed(CONTROLLER_UID_INDEX, &uid);
        candidates.extend(self.pods.indexed(pods::ORPHAN_INDEX, key.ns()));
        let active: Vec<Arc<Pod>> = candidates
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(key.ns()) && pods::is_active(p))
            .collect();
        let claimed = self.claim(&owner, &selector, active).await?;

        let mut failure = None;
        let mut deleted = Vec::new();
        if needs_sync && owner.meta().deletion_timestamp.is_none() {
            let (gone, result) = self.manage(&owner, key, &claimed).await;
            deleted = gone;
            failure = result.err();
        }
        // The status counts what remains: pods deleted just now are neither ready nor
        // available any more (so a Deployment reading it never over-counts availability).
        let remaining: Vec<Arc<Pod>> =
            claimed.into_iter().filter(|p| !deleted.contains(&p.metadata.uid)).collect();
        let now = Timestamp::now();
        let status = calculate_status(owner.as_ref(), &remaining, failure.as_ref(), now);
        self.update_status(&owner, status.clone()).await?;

        let min_ready = owner.min_ready_seconds();
        if failure.is_none()
            && min_ready > 0
            && status["readyReplicas"] == json!(owner.replicas())
            && status["availableReplicas"] != json!(owner.replicas())
        {
            self.queue
                .add_after(key.clone(), Duration::from_secs(u64::try_from(min_ready).unwrap_or(0)));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Upstream's `ClaimPods`: keeps the pods this owner controls and still selects, adopts
    /// selected orphans, releases controlled pods it no longer selects.
    async fn claim(
        &self,
        owner: &Arc<O>,
        selector: &Selector,
        candidates: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>> {
        let uid = owner.meta().uid.clone().unwrap_or_default();
        let deleting = owner.meta().deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        let mut may_adopt: Option<bool> = None;
        for pod in candidates {
            let controller = pods::controller_of(&pod.metadata);
            if controller.is_some_and(|r| r.uid != uid) {
                continue;
            }
            let labels = pod.metadata.labels.as_ref();
            let matches =
                selector.matches_with(|k| labels.and_then(|l| l.get(k)).map(String::as_str));
            match controller {
                Some(r) if r.uid != uid => {}
                Some(_) if matches => claimed.push(pod),
                Some(_) if !deleting => self.release(&pod, &uid).await?,
                Some(_) => {}
                None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                    let allowed = match may_adopt {
                        Some(allowed) => allowed,
                        None => {
                            let allowed = self.can_adopt(owner).await?;
                            may_adopt = Some(allowed);
                            allowed
                        }
                    };
                    if allowed && let Some(adopted) = self.adopt(owner, &pod).await? {
                        claimed.push(Arc::new(adopted));
                    }
                }
                None => {}
            }
        }
        Ok(claimed)
    }

    /// Adoption needs a fresh read: the owner must still exist, be the same object, and not be
    /// going away (upstream's `RecheckDeletionTimestamp`).
    async fn can_adopt(&self, owner: &O) -> Result<bool> {
        let api: Api<O> =
            Api::namespaced(self.client.clone(), &owner.namespace().unwrap_or_default());
        let fresh = api.get_opt(&owner.name_any()).await?;
        Ok(fresh.is_some_and(|f| {
            f.meta().uid == owner.meta().uid && f.meta().deletion_timestamp.is_none()
        }))
    }

    async fn adopt(&self, owner: &O, pod: &Pod) -> Result<Option<Pod>> {
        let reference = pods::controller_ref(&O::api_version(&()), &O::kind(&()), owner.meta());
        let patch = json!({"metadata": {"ownerReferences": [reference], "uid": pod.metadata.uid}});
        self.patch_pod(pod, &patch).await
    }

    async fn release(&self, pod: &Pod, owner_uid: &str) -> Result<()> {
        let patch = json!({"metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": pod.metadata.uid,
        }});
        self.patch_pod(pod, &patch).await.map(|_| ())
    }

    /// A strategic merge patch of `pod`; `None` when the pod is gone.
    async fn patch_pod(&self, pod: &Pod, patch: &Value) -> Result<Option<Pod>> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if is_status(&e, 404) || is_status(&e, 422) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates or deletes pods to reach `replicas` (upstream's `manageReplicas`).
    /// Creates or deletes pods to reach `replicas`; returns the UIDs of the pods it deleted.
    async fn manage(
        &self,
        owner: &Arc<O>,
        key: &ObjectKey,
        active: &[Arc<Pod>],
    ) -> (Vec<Option<String>>, Result<()>) {
        let wanted = usize::try_from(owner.replicas()).unwrap_or(0);
        if active.len() < wanted {
            let count = (wanted - active.len()).min(BURST_REPLICAS);
            (Vec::new(), self.create_pods(owner, key, count).await)
        } else if active.len() > wanted {
            let count = (active.len() - wanted).min(BURST_REPLICAS);
            self.delete_pods(owner, key, active, count).await
        } else {
            (Vec::new(), Ok(()))
        }
    }

    async fn create_pods(&self, owner: &Arc<O>, key: &ObjectKey, count: usize) -> Result<()> {
        let Some(template) = owner.template() else {
            return Err(Error::Invalid(format!("{key} has no pod template")));
        };
        // Expect them all before the first create, so that a fast watch cannot outrun us.
        self.expectations.expect_creations(key, count);
        let reference = pods::controller_ref(&O::api_version(&()), &O::kind(&()), owner.meta());
        let pod =
            pods::pod_from_template(template, key.ns(), &pods::pods_prefix(&key.name), reference);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), key.ns());
        let mut remaining = count;
        let mut batch = SLOW_START_INITIAL_BATCH.min(count);
        let mut failure = None;
        let params = PostParams::default();
        while batch > 0 {
            let results = join_all((0..batch).map(|_| api.create(&params, &pod))).await;
            remaining -= batch;
            for result in results {
                match result {
                    Ok(created) => self.events.record(
                        owner.as_ref(),
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.name_any()),
                    ),
                    Err(e) => {
                        self.expectations.creation_observed(key);
                        if is_namespace_terminating(&e) {
                            // The namespace is going away; nothing to report.
                            continue;
                        }
                        self.events.record(
                            owner.as_ref(),
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {}", api_message(&e)),
                        );
                        failure.get_or_insert(e);
                    }
                }
            }
            if failure.is_some() {
                break;
            }
            batch = (batch * 2).min(remaining);
        }
        // Creates never attempted will never be observed.
        for _ in 0..remaining {
            self.expectations.creation_observed(key);
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn delete_pods(
        &self,
        owner: &Arc<O>,
        key: &ObjectKey,
        active: &[Arc<Pod>],
        count: usize,
    ) -> (Vec<Option<String>>, Result<()>) {
        let mut candidates = active.to_vec();
        let related = self.related_pods(owner);
        pods::sort_for_deletion(&mut candidates, &related, Timestamp::now());
        candidates.truncate(count);
        self.expectations
            .expect_deletions(key, candidates.iter().map(|p| ObjectKey::of(p.as_ref())));
        let api: Api<Pod> = Api::namespaced(self.client.clone(), key.ns());
        let results = join_all(candidates.iter().map(|pod| {
            let api = api.clone();
            async move { (pod, api.delete(&pod.name_any(), &DeleteParams::default()).await) }
        }))
        .await;
        let mut failure = None;
        let mut deleted = Vec::new();
        for (pod, result) in results {
            match result {
                Ok(_) => {
                    deleted.push(pod.metadata.uid.clone());
                    self.events.record(
                        owner.as_ref(),
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", pod.name_any()),
                    );
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, &ObjectKey::of(pod.as_ref()));
                    if is_status(&e, 404) {
                        deleted.push(pod.metadata.uid.clone());
                        continue;
                    }
                    self.events.record(
                        owner.as_ref(),
                        EventType::Warning,
                        "FailedDelete",
                        format!("Error deleting: {}", api_message(&e)),
                    );
                    failure.get_or_insert(e);
                }
            }
        }
        let result = match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        };
        (deleted, result)
    }

    /// The active pods of `owner` and of its siblings (the owners controlled by the same
    /// object, e.g. one Deployment's ReplicaSets), for ranking pods per node.
    fn related_pods(&self, owner: &O) -> Vec<Arc<Pod>> {
        let siblings: Vec<String> = match pods::controller_of(owner.meta()) {
            Some(parent) => self
                .owners
                .indexed(CONTROLLER_UID_INDEX, &parent.uid)
                .iter()
                .filter_map(|o| o.meta().uid.clone())
                .collect(),
            None => owner.meta().uid.iter().cloned().collect(),
        };
        siblings
            .iter()
            .flat_map(|uid| self.pods.indexed(CONTROLLER_UID_INDEX, uid))
            .filter(|p| pods::is_active(p))
            .collect()
    }

    /// Writes `status` unless the object already says exactly that (upstream's
    /// `updateReplicaSetStatus`: one retry on a conflict, from a fresh read).
    async fn update_status(&self, owner: &O, status: Value) -> Result<()> {
        if same_status(&owner.status(), &status) {
            return Ok(());
        }
        let api: Api<O> =
            Api::namespaced(self.client.clone(), &owner.namespace().unwrap_or_default());
        let mut current = owner.clone();
        for attempt in 0..2 {
            let mut object =
                serde_json::to_value(&current).map_err(|e| Error::Invalid(e.to_string()))?;
            object["status"] = status.clone();
            let object: O =
                serde_json::from_value(object).map_err(|e| Error::Invalid(e.to_string()))?;
            match api.replace_status(&owner.name_any(), &PostParams::default(), &object).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) if is_status(&e, 409) && attempt == 0 => {
                    match api.get_opt(&owner.name_any()).await? {
                        Some(fresh) => current = fresh,
                        None => return Ok(()),
                    }
                    if same_status(&current.status(), &status) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The status upstream's `calculateStatus` reports for `pods` (the claimed active pods).
fn calculate_status<O: Owner>(
    owner: &O,
    pods: &[Arc<Pod>],
    failure: Option<&Error>,
    now: Timestamp,
) -> Value {
    let template_labels: BTreeMap<String, String> = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = owner.min_ready_seconds();
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for p in pods {
        let labels = p.metadata.labels.as_ref();
        if template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            fully_labeled += 1;
        }
        if pods::is_ready(p) {
            ready += 1;
            if pods::is_available(p, min_ready, now) {
                available += 1;
            }
        }
    }

    let previous = owner.status();
    let mut conditions: Vec<Value> =
        previous.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c["type"] == "ReplicaFailure");
    match failure {
        Some(e) if !has_failure => {
            let reason =
                if owner_needs_more(owner, pods) { "FailedCreate" } else { "FailedDelete" };
            conditions.push(json!({
                "type": "ReplicaFailure",
                "status": "True",
                "lastTransitionTime": Timestamp::now().to_string(),
                "reason": reason,
                "message": e.to_string(),
            }));
        }
        None if has_failure => conditions.retain(|c| c["type"] != "ReplicaFailure"),
        _ => {}
    }

    let mut status = serde_json::Map::new();
    status.insert("replicas".into(), json!(pods.len()));
    let mut nonzero = |field: &str, n: usize| {
        if n > 0 {
            status.insert(field.into(), json!(n));
        }
    };
    nonzero("fullyLabeledReplicas", fully_labeled);
    nonzero("readyReplicas", ready);
    nonzero("availableReplicas", available);
    if let Some(generation) = owner.meta().generation {
        status.insert("observedGeneration".into(), json!(generation));
    }
    if !conditions.is_empty() {
        status.insert("conditions".into(), Value::Array(conditions));
    }
    Value::Object(status)
}

fn owner_needs_more<O: Owner>(owner: &O, pods: &[Arc<Pod>]) -> bool {
    usize::try_from(owner.replicas()).unwrap_or(0) > pods.len()
}

/// Equal counts, generation and conditions (upstream compares the same fields).
fn same_status(current: &Value, wanted: &Value) -> bool {
    let field = |v: &Value, f: &str| v.get(f).cloned().filter(|x| !x.is_null() && *x != json!(0));
    ["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"]
        .iter()
        .all(|f| field(current, f) == field(wanted, f))
        && field(current, "conditions").unwrap_or(json!([]))
            == field(wanted, "conditions").unwrap_or(json!([]))
}

pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some([("app".to_owned(), "web".to_owned())].into()),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_owned(), "web".to_owned()),
                                ("tier".to_owned(), "x".to_owned()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)]) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                labels: Some(
                    labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn status_counts_fully_labeled_pods_and_the_generation() {
        let owner = rs(3);
        let pods = [pod(&[("app", "web"), ("tier", "x")]), pod(&[("app", "web")])];
        let status = calculate_status(&owner, &pods, None, Timestamp::now());
        assert_eq!(
            status,
            json!({"replicas": 2, "fullyLabeledReplicas": 1, "observedGeneration": 3})
        );
        assert!(same_status(
            &status,
            &json!({"replicas": 2, "fullyLabeledReplicas": 1, "observedGeneration": 3, "readyReplicas": 0})
        ));
        assert!(!same_status(&status, &json!({"replicas": 3, "observedGeneration": 3})));
    }

    #[test]
    fn a_failed_create_sets_replica_failure_until_a_clean_sync() {
        let mut owner = rs(3);
        let failure = Error::Invalid("quota exceeded".into());
        let status = calculate_status(&owner, &[], Some(&failure), Timestamp::now());
        assert_eq!(status["conditions"][0]["type"], "ReplicaFailure");
        assert_eq!(status["conditions"][0]["reason"], "FailedCreate");
        owner.status = serde_json::from_value(status).ok();
        let status = calculate_status(&owner, &[], None, Timestamp::now());
        assert!(status.get("conditions").is_none());
    }

    #[test]
    fn selectors_of_both_kinds() {
        let s = rs(1).selector().expect("selector");
        assert!(s.matches_with(|k| (k == "app").then_some("web")));
        let rc = ReplicationController::default();
        assert!(rc.selector().expect("selector").matches_nothing());
    }
}
