//! The Deployment controller (upstream's `deployment` package): a Deployment owns ReplicaSets
//! named `<deployment>-<pod-template-hash>`; the one whose template equals the Deployment's is
//! the new one, the others are old. RollingUpdate scales the new one up and the old ones down
//! within maxSurge/maxUnavailable; Recreate scales the old ones to zero, waits for their pods to
//! go, then scales the new one up. Revisions live in annotations (a rollback with `kubectl
//! rollout undo` is a template change that makes an old ReplicaSet new again); paused
//! Deployments only scale; old ReplicaSets beyond `revisionHistoryLimit` are deleted; the status
//! and the `Available`/`Progressing` conditions are upstream's, so `kubectl rollout status`
//! ends exactly when it would upstream.

mod util;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use krust_api::labels::Selector;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinSet;

use crate::pods::{self, CONTROLLER_UID_INDEX};
use crate::replicaset::is_status;
use crate::{
    Change, Context, Error, EventRecorder, EventType, Informer, ObjectKey, Result, WorkQueue,
};
use util::{POD_TEMPLATE_HASH, replicas, rs_replicas, rs_status};

struct Controller {
    client: kube::Client,
    deployments: Arc<Informer<Deployment>>,
    replica_sets: Arc<Informer<ReplicaSet>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    events: EventRecorder,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let deployments = ctx.informers.get::<Deployment>();
    let replica_sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    replica_sets.add_index(CONTROLLER_UID_INDEX, pods::controller_uid_index::<ReplicaSet>);
    pods.add_index(CONTROLLER_UID_INDEX, pods::controller_uid_index::<Pod>);
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        deployments: deployments.clone(),
        replica_sets: replica_sets.clone(),
        pods: pods.clone(),
        queue: WorkQueue::new(),
        events: ctx.events.for_component("deployment-controller"),
    });
    let c = controller.clone();
    deployments.add_handler(move |change| c.queue.add(ObjectKey::of(change.object().as_ref())));
    let c = controller.clone();
    replica_sets.add_handler(move |change| c.on_replica_set(change));
    let c = controller.clone();
    pods.add_handler(move |change| {
        // Recreate waits for the old pods to be gone.
        if let Change::Deleted(pod) = change
            && let Some(d) = c.owner_of_pod(pod)
            && !util::is_rolling(&d)
        {
            c.queue.add(ObjectKey::of(d.as_ref()));
        }
    });
    let workers = ctx.config.workers;
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.deployments.wait_synced().await;
        controller.replica_sets.wait_synced().await;
        controller.pods.wait_synced().await;
        let c = controller.clone();
        crate::run_workers("deployment", controller.queue.clone(), workers, stop, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    });
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    let s = serde_json::to_value(d.spec.as_ref().map(|s| &s.selector)).ok()?;
    if s.as_object().is_none_or(|o| o.values().all(|v| v.is_null())) {
        return None;
    }
    Selector::from_label_selector(&s).ok()
}

fn matches(selector: &Selector, meta: &ObjectMeta) -> bool {
    let labels = meta.labels.clone().unwrap_or_default();
    selector.matches_with(|k| labels.get(k).map(String::as_str))
}

fn now() -> Time {
    Time(Timestamp::now())
}

impl Controller {
    fn resolve(&self, namespace: &str, meta: &ObjectMeta) -> Option<Arc<Deployment>> {
        let reference = pods::controller_of(meta)?;
        if reference.kind != "Deployment" {
            return None;
        }
        let d = self.deployments.get(&ObjectKey::namespaced(namespace, &reference.name))?;
        (d.metadata.uid.as_deref() == Some(reference.uid.as_str())).then_some(d)
    }

    fn owner_of_pod(&self, pod: &Pod) -> Option<Arc<Deployment>> {
        let ns = pod.namespace().unwrap_or_default();
        let rs_ref = pods::controller_of(&pod.metadata)?;
        let rs = self.replica_sets.get(&ObjectKey::namespaced(&ns, &rs_ref.name))?;
        self.resolve(&ns, &rs.metadata)
    }

    fn on_replica_set(&self, change: &Change<'_, ReplicaSet>) {
        let rs = change.object();
        let ns = rs.namespace().unwrap_or_default();
        let enqueue = |meta: &ObjectMeta| {
            if let Some(d) = self.resolve(&ns, meta) {
                self.queue.add(ObjectKey::of(d.as_ref()));
                return true;
            }
            false
        };
        if let Change::Updated { old, .. } = change {
            enqueue(&old.metadata);
        }
        if enqueue(&rs.metadata) || pods::controller_of(&rs.metadata).is_some() {
            return;
        }
        // An orphan: every Deployment that selects it may adopt it.
        for d in self.deployments.list_namespace(&ns) {
            if selector_of(&d).is_some_and(|s| matches(&s, &rs.metadata)) {
                self.queue.add(ObjectKey::of(d.as_ref()));
            }
        }
    }

    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let Some(d) = self.deployments.get(key) else { return Ok(()) };
        let d = d.as_ref().clone();
        let Some(selector) = selector_of(&d) else {
            self.events.record(
                &d,
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            return Ok(());
        };
        let rs_list = self.claim(&d, &selector).await?;
        if d.metadata.deletion_timestamp.is_some() {
            return self.sync_status(&d, &rs_list, None).await;
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        self.check_paused_condition(&d, paused).await?;
        if paused || self.is_scaling_event(&d, &rs_list) {
            return self.scale_sync(&d, rs_list, paused).await;
        }
        if util::is_rolling(&d) {
            self.rollout_rolling(&d, rs_list).await
        } else {
            self.rollout_recreate(&d, rs_list).await
        }
    }

    /// Upstream's `ClaimReplicaSets`: ours by controller reference, orphans adopted by selector,
    /// ours that stopped matching released.
    async fn claim(&self, d: &Deployment, selector: &Selector) -> Result<Vec<ReplicaSet>> {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let ns = d.namespace().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let mut out = Vec::new();
        for rs in self.replica_sets.list_namespace(&ns) {
            let selected = matches(selector, &rs.metadata);
            match pods::controller_of(&rs.metadata) {
                Some(r) if r.uid != uid => {}
                Some(_) if selected => out.push(rs.as_ref().clone()),
                Some(_) => {
                    let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": rs.metadata.uid}});
                    if let Err(e) = api
                        .patch(&rs.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                        && !is_status(&e, 404)
                    {
                        return Err(e.into());
                    }
                }
                None if selected
                    && d.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let reference = pods::controller_ref("apps/v1", "Deployment", &d.metadata);
                    let patch = json!({"metadata": {"ownerReferences": [reference], "uid": rs.metadata.uid}});
                    match api
                        .patch(&rs.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
                        .await
                    {
                        Ok(adopted) => out.push(adopted),
                        Err(e) if is_status(&e, 404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// The ReplicaSet whose template is the Deployment's (the oldest of several), and the rest.
    fn split(d: &Deployment, rs_list: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
        let template = d.spec.as_ref().map(|s| util::without_hash(&s.template));
        let mut sorted = rs_list;
        sorted.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let position = sorted.iter().position(|rs| {
            rs.spec.as_ref().and_then(|s| s.template.as_ref()).map(util::without_hash) == template
        });
        match position {
            Some(i) => {
                let new = sorted.remove(i);
                (Some(new), sorted)
            }
            None => (None, sorted),
        }
    }

    fn is_scaling_event(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> bool {
        let want = replicas(d).to_string();
        rs_list.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(util::DESIRED_REPLICAS))
                .is_some_and(|v| *v != want)
        })
    }

    /// Finds or creates the new ReplicaSet, keeping revisions in order.
    async fn new_replica_set(
        &self,
        d: &Deployment,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>> {
        let (new, old) = Self::split(d, rs_list.to_vec());
        let max_old = old.iter().map(util::revision).max().unwrap_or(0);
        let ns = d.namespace().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        if let Some(mut rs) = new {
            let revision =
                if util::revision(&rs) > max_old { util::revision(&rs) } else { max_old + 1 };
            let annotations = util::rs_annotations(d, rs.metadata.annotations.as_ref(), revision);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if rs.metadata.annotations.as_ref() != Some(&annotations)
                || min_ready.unwrap_or(0) != rs_min_ready.unwrap_or(0)
            {
                rs.metadata.annotations = Some(annotations);
                rs.spec.get_or_insert_default().min_ready_seconds = min_ready;
                rs = api.replace(&rs.name_any(), &PostParams::default(), &rs).await?;
            }
            self.set_revision(d, revision).await?;
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let spec = d.spec.clone().unwrap_or_default();
        let collision = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::template_hash(&spec.template, collision);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let all: Vec<&ReplicaSet> = rs_list.iter().collect();
        let count = util::new_rs_replicas(d, &all, 0);
        let revision = max_old + 1;
        let name = format!("{}-{hash}", d.name_any());
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                annotations: Some(util::rs_annotations(d, None, revision)),
                owner_references: Some(vec![pods::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(count),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.events.record(
                    d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    format!("Scaled up replica set {name} from 0 to {count}"),
                );
                self.set_progressing(
                    d,
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{name}\""),
                )
                .await?;
                self.set_revision(d, revision).await?;
                Ok(Some(created))
            }
            Err(e) if is_status(&e, 409) => {
                // Ours already (the cache had not shown it yet)?
                if let Some(existing) = api.get_opt(&name).await?
                    && pods::controller_of(&existing.metadata)
                        .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref())
                    && existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .map(util::without_hash)
                        == Some(util::without_hash(&spec.template))
                {
                    return Ok(Some(existing));
                }
                // Someone else's ReplicaSet has our name: try the next hash.
                let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
                let patch = json!({"status": {"collisionCount": collision.unwrap_or(0) + 1}});
                api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Err(Error::Invalid(format!(
                    "hash collision for {name}; retrying with collisionCount {}",
                    collision.unwrap_or(0) + 1
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn set_revision(&self, d: &Deployment, revision: i64) -> Result<()> {
        let current = d.metadata.annotations.as_ref().and_then(|a| a.get(util::REVISION));
        if current.map(String::as_str) == Some(revision.to_string().as_str()) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {util::REVISION: revision.to_string()}}});
        api.patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Sets `rs`'s replicas (and its desired/max annotations); records the event.
    async fn scale(&self, d: &Deployment, rs: &ReplicaSet, count: i32) -> Result<bool> {
        let (surge, _) = util::surge_and_unavailable(d);
        let desired = replicas(d).to_string();
        let max = (replicas(d) + surge).to_string();
        let annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let same_annotations = annotations.get(util::DESIRED_REPLICAS) == Some(&desired)
            && annotations.get(util::MAX_REPLICAS) == Some(&max);
        let from = rs_replicas(rs);
        if from == count && same_annotations {
            return Ok(false);
        }
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &rs.namespace().unwrap_or_default());
        let patch = json!({
            "metadata": {"annotations": {util::DESIRED_REPLICAS: desired, util::MAX_REPLICAS: max}},
            "spec": {"replicas": count},
        });
        api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        if from != count {
            let direction = if count > from { "up" } else { "down" };
            self.events.record(
                d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {} from {from} to {count}", rs.name_any()),
            );
        }
        Ok(from != count)
    }

    /// Upstream's `sync` for scaling events and paused Deployments: proportional scaling.
    async fn scale_sync(
        &self,
        d: &Deployment,
        rs_list: Vec<ReplicaSet>,
        paused: bool,
    ) -> Result<()> {
        let new = self.new_replica_set(d, &rs_list, false).await?;
        let (_, mut old) = Self::split(d, rs_list.clone());
        let mut active: Vec<ReplicaSet> =
            old.iter().filter(|rs| rs_replicas(rs) > 0).cloned().collect();
        if let Some(n) = &new
            && rs_replicas(n) > 0
        {
            active.push(n.clone());
        }
        let want = replicas(d);
        if active.len() <= 1 {
            // One active ReplicaSet (or none: the newest) takes all the replicas.
            let target = active.pop().or_else(|| new.clone()).or_else(|| old.pop());
            if let Some(rs) = target {
                self.scale(d, &rs, want).await?;
            }
        } else {
            let (surge, _) = util::surge_and_unavailable(d);
            let allowed = want + surge;
            let current: i32 = active.iter().map(rs_replicas).sum();
            let to_add = allowed - current;
            if to_add != 0 {
                // Bigger ones first when growing, smaller first when shrinking; each gets its
                // share of the change; the rest goes to the first.
                active
                    .sort_by_key(|rs| if to_add > 0 { -rs_replicas(rs) } else { rs_replicas(rs) });
                let mut added = 0;
                let mut targets: Vec<i32> = Vec::new();
                for rs in &active {
                    let share = if current == 0 {
                        0
                    } else {
                        (i64::from(rs_replicas(rs)) * i64::from(to_add) / i64::from(current)) as i32
                    };
                    let share = if to_add > 0 {
                        share.min(to_add - added)
                    } else {
                        share.max(to_add - added)
                    };
                    added += share;
                    targets.push((rs_replicas(rs) + share).max(0));
                }
                if let Some(first) = targets.first_mut() {
                    *first = (*first + to_add - added).max(0);
                }
                for (rs, target) in active.iter().zip(targets) {
                    self.scale(d, rs, target).await?;
                }
            }
        }
        if !paused && util::is_rolling(d) {
            // A rollout in progress goes on at the next sync.
            self.queue.add(ObjectKey::of(d));
        }
        let fresh = self.claim(d, &selector_of(d).unwrap_or_else(Selector::nothing)).await?;
        let new = Self::split(d, fresh.clone()).0;
        self.sync_status(d, &fresh, new.as_ref()).await
    }

    async fn rollout_rolling(&self, d: &Deployment, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let Some(new) = self.new_replica_set(d, &rs_list, true).await? else { return Ok(()) };
        let (_, old) = Self::split(d, rs_list.clone());
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.push(&new);
        let want = replicas(d);
        // Scale the new one up (or down, if it is too big).
        let target = if rs_replicas(&new) > want {
            want
        } else {
            util::new_rs_replicas(d, &all, rs_replicas(&new))
        };
        if self.scale(d, &new, target).await? {
            return self.finish(d).await;
        }
        // Scale old ones down: unhealthy replicas first, then within maxUnavailable — but only
        // from statuses that reflect every ReplicaSet's latest spec (a status from before a
        // scale-down would over-count what is available).
        let old_active: Vec<&ReplicaSet> = old.iter().filter(|rs| rs_replicas(rs) > 0).collect();
        let settled = all.iter().all(|rs| {
            rs.status.as_ref().and_then(|s| s.observed_generation) >= rs.metadata.generation
        });
        if !settled {
            return self.finish(d).await;
        }
        if !old_active.is_empty() {
            let all_pods: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
            let min_available = want - util::max_unavailable(d);
            let new_unavailable = rs_replicas(&new) - rs_status(&new).2;
            let mut max_scaled_down = all_pods - min_available - new_unavailable;
            let mut scaled = false;
            let mut remaining: Vec<(ReplicaSet, i32)> = Vec::new();
            for rs in &old_active {
                let (spec, available) = (rs_replicas(rs), rs_status(rs).2);
                // Upstream's cleanupUnhealthyReplicas: drop what is not available anyway.
                let unhealthy = (spec - available).max(0).min(max_scaled_down.max(0));
                if unhealthy > 0 {
                    self.scale(d, rs, spec - unhealthy).await?;
                    max_scaled_down -= unhealthy;
                    scaled = true;
                }
                remaining.push(((*rs).clone(), spec - unhealthy));
            }
            let all_available: i32 =
                old_active.iter().map(|rs| rs_status(rs).2).sum::<i32>() + rs_status(&new).2;
            let specs: Vec<(i32, i32)> =
                remaining.iter().map(|(rs, spec)| (*spec, rs_status(rs).2)).collect();
            let left = util::old_scale_down(d, all_available, &specs);
            for ((rs, spec), target) in remaining.iter().zip(left) {
                if target < *spec {
                    self.scale(d, rs, target).await?;
                    scaled = true;
                }
            }
            if scaled {
                return self.finish(d).await;
            }
        }
        let fresh = self.fresh_list(d).await?;
        self.cleanup(d, &fresh).await?;
        let new = Self::split(d, fresh.clone()).0;
        self.sync_status(d, &fresh, new.as_ref()).await
    }

    async fn rollout_recreate(&self, d: &Deployment, rs_list: Vec<ReplicaSet>) -> Result<()> {
        let (_, old) = Self::split(d, rs_list.clone());
        let mut scaled = false;
        for rs in old.iter().filter(|rs| rs_replicas(rs) > 0) {
            scaled |= self.scale(d, rs, 0).await?;
        }
        if scaled {
            return self.finish(d).await;
        }
        // Wait until no pod of an old ReplicaSet is running.
        let running = old.iter().any(|rs| {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            self.pods.indexed(CONTROLLER_UID_INDEX, &uid).iter().any(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
        });
        if running {
            let new = Self::split(d, rs_list.clone()).0;
            return self.sync_status(d, &rs_list, new.as_ref()).await;
        }
        if let Some(new) = self.new_replica_set(d, &rs_list, true).await? {
            self.scale(d, &new, replicas(d)).await?;
        }
        let fresh = self.fresh_list(d).await?;
        self.cleanup(d, &fresh).await?;
        let new = Self::split(d, fresh.clone()).0;
        self.sync_status(d, &fresh, new.as_ref()).await
    }

    /// After a scaling step: the status from fresh reads, and another look soon.
    async fn finish(&self, d: &Deployment) -> Result<()> {
        let fresh = self.fresh_list(d).await?;
        let new = Self::split(d, fresh.clone()).0;
        self.sync_status(d, &fresh, new.as_ref()).await
    }

    /// The Deployment's ReplicaSets read from the API (the cache may not show our own writes yet).
    async fn fresh_list(&self, d: &Deployment) -> Result<Vec<ReplicaSet>> {
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let list = api.list(&kube::api::ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|rs| pods::controller_of(&rs.metadata).is_some_and(|r| r.uid == uid))
            .collect())
    }

    /// Old ReplicaSets beyond `revisionHistoryLimit` that are scaled to zero go, oldest first.
    async fn cleanup(&self, d: &Deployment, rs_list: &[ReplicaSet]) -> Result<()> {
        let limit =
            usize::try_from(d.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10))
                .unwrap_or(0);
        let (_, old) = Self::split(d, rs_list.to_vec());
        let mut idle: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| {
                rs_replicas(rs) == 0
                    && rs_status(rs).0 == 0
                    && rs.metadata.deletion_timestamp.is_none()
            })
            .collect();
        if idle.len() <= limit {
            return Ok(());
        }
        idle.sort_by_key(|rs| util::revision(rs));
        let api: Api<ReplicaSet> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        for rs in &idle[..idle.len() - limit] {
            match api.delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn check_paused_condition(&self, d: &Deployment, paused: bool) -> Result<()> {
        let current = condition(d, "Progressing");
        let (reason, message) = match (paused, current.and_then(|c| c.reason.as_deref())) {
            (true, Some("DeploymentPaused")) => return Ok(()),
            (true, _) => ("DeploymentPaused", "Deployment is paused"),
            (false, Some("DeploymentPaused")) => ("DeploymentResumed", "Deployment is resumed"),
            (false, _) => return Ok(()),
        };
        self.set_progressing(d, "Unknown", reason, message).await
    }

    async fn set_progressing(
        &self,
        d: &Deployment,
        status: &str,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        let mut conditions =
            d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        set_condition(&mut conditions, "Progressing", status, reason, message);
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        Ok(())
    }

    /// Upstream's `syncRolloutStatus`: counts and the Available/Progressing conditions.
    async fn sync_status(
        &self,
        d: &Deployment,
        rs_list: &[ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<()> {
        let want = replicas(d);
        let spec_total: i32 = rs_list.iter().map(rs_replicas).sum();
        let actual: i32 = rs_list.iter().map(|rs| rs_status(rs).0).sum();
        let ready: i32 = rs_list.iter().map(|rs| rs_status(rs).1).sum();
        let available: i32 = rs_list.iter().map(|rs| rs_status(rs).2).sum();
        let updated = new.map_or(0, |rs| rs_status(rs).0);
        let previous = d.status.clone().unwrap_or_default();
        let mut conditions = previous.conditions.clone().unwrap_or_default();
        if available >= want - util::max_unavailable(d) {
            set_condition(
                &mut conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            );
        } else {
            set_condition(
                &mut conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            );
        }
        let paused = d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
        let generation = d.metadata.generation.unwrap_or(0);
        let complete = updated == want && actual == want && available == want;
        if let Some(new) = new.filter(|_| !paused && d.metadata.deletion_timestamp.is_none()) {
            let name = new.name_any();
            let current = conditions.iter().find(|c| c.type_ == "Progressing").cloned();
            let progressed = updated > previous.updated_replicas.unwrap_or(0)
                || ready > previous.ready_replicas.unwrap_or(0)
                || available > previous.available_replicas.unwrap_or(0)
                || actual < previous.replicas.unwrap_or(0);
            if complete {
                set_condition(
                    &mut conditions,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    &format!("ReplicaSet \"{name}\" has successfully progressed."),
                );
            } else if progressed || current.is_none() {
                set_condition(
                    &mut conditions,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{name}\" is progressing."),
                );
            } else if let Some(c) = &current
                && c.reason.as_deref() != Some("ProgressDeadlineExceeded")
                && c.last_update_time.as_ref().is_some_and(|t| {
                    t.0.as_second() + i64::from(deadline) < Timestamp::now().as_second()
                })
            {
                set_condition(
                    &mut conditions,
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{name}\" has timed out progressing."),
                );
            }
            if !complete {
                // Look again when the deadline could pass.
                self.queue.add_after(
                    ObjectKey::of(d),
                    Duration::from_secs(u64::try_from(deadline).unwrap_or(600) + 1),
                );
            }
        }
        // Upstream's counts are `omitempty`: a zero is not written.
        let count = |n: i32| (n != 0).then_some(n);
        let status = DeploymentStatus {
            observed_generation: Some(generation),
            replicas: count(actual),
            updated_replicas: count(updated),
            ready_replicas: count(ready),
            available_replicas: count(available),
            unavailable_replicas: count((spec_total - available).max(0)),
            collision_count: previous.collision_count,
            conditions: Some(conditions),
            terminating_replicas: None,
        };
        if same_status(&previous, &status) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.client.clone(), &d.namespace().unwrap_or_default());
        let mut body = d.clone();
        body.status = Some(status);
        match api.replace_status(&d.name_any(), &PostParams::default(), &body).await {
            Ok(_) => Ok(()),
            // A newer Deployment is on its way through the watch; that sync writes the status.
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream's `SetDeploymentCondition`: the transition time moves only when the status does;
/// Available stays first, Progressing second.
fn set_condition(
    conditions: &mut Vec<DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let now = now();
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return;
        }
        if c.status != status {
            c.last_transition_time = Some(now.clone());
        }
        c.status = status.to_owned();
        c.reason = Some(reason.to_owned());
        c.message = Some(message.to_owned());
        c.last_update_time = Some(now);
        return;
    }
    conditions.push(DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: Some(now.clone()),
        last_update_time: Some(now),
    });
    conditions.sort_by_key(|c| match c.type_.as_str() {
        "Available" => 0,
        "Progressing" => 1,
        _ => 2,
    });
}

fn same_status(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    a.observed_generation == b.observed_generation
        && n(a.replicas) == n(b.replicas)
        && n(a.updated_replicas) == n(b.updated_replicas)
        && n(a.ready_replicas) == n(b.ready_replicas)
        && n(a.available_replicas) == n(b.available_replicas)
        && n(a.unavailable_replicas) == n(b.unavailable_replicas)
        && a.conditions == b.conditions
}
