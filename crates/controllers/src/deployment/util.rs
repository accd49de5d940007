//! The Deployment controller's arithmetic (upstream's `deployment/util`): pod-template hashes,
//! maxSurge/maxUnavailable, revisions, how far to scale the new and old ReplicaSets, and the
//! status a set of ReplicaSets adds up to. Pure functions, tested on their own.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Annotations a Deployment does not hand down to its ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The alphabet of upstream's `rand.SafeEncodeString` (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The `pod-template-hash` of `template` with `collision_count` (upstream: FNV-32a of the
/// template and the collision count, its decimal digits mapped through the safe alphabet).
/// The template is hashed in its canonical JSON form, so values differ from upstream's Go
/// printer but are as stable.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    fnv32a(&bytes)
        .to_string()
        .bytes()
        .map(|d| SAFE_ALPHABET[usize::from(d) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// The template without the `pod-template-hash` label, for comparing a ReplicaSet's template
/// with its Deployment's (upstream's `EqualIgnoreHash`).
pub fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    if let Some(meta) = t.metadata.as_mut()
        && meta.labels.as_ref().is_some_and(BTreeMap::is_empty)
    {
        meta.labels = None;
    }
    t
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

pub fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    let s = rs.status.as_ref();
    (
        s.map_or(0, |s| s.replicas),
        s.and_then(|s| s.ready_replicas).unwrap_or(0),
        s.and_then(|s| s.available_replicas).unwrap_or(0),
    )
}

/// `intstr` scaled against `total`: percentages round up for surge, down for unavailable.
fn scaled(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => {
            let pct = 25 * i64::from(total);
            let v = if round_up { (pct + 99) / 100 } else { pct / 100 };
            i32::try_from(v).unwrap_or(0)
        }
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let v = pct * i64::from(total);
            i32::try_from(if round_up { (v + 99) / 100 } else { v / 100 }).unwrap_or(0)
        }
    }
}

pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// Upstream's `ResolveFenceposts`: (maxSurge, maxUnavailable); both zero becomes 0/1.
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let rolling =
        d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let total = replicas(d);
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), total, true);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), total, false);
    if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// Upstream's `MaxUnavailable`: never more than the replicas.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    surge_and_unavailable(d).1.min(replicas(d))
}

pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Upstream's `NewRSNewReplicas`: how big the new ReplicaSet may be now.
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let (surge, _) = surge_and_unavailable(d);
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas(d) + surge;
    if current >= max_total {
        return new_rs_replicas;
    }
    let scale_up = max_total - current;
    new_rs_replicas + scale_up.min(replicas(d) - new_rs_replicas).max(0)
}

/// The annotations a ReplicaSet of `d` carries (upstream's `SetNewReplicaSetAnnotations` +
/// `SetReplicasAnnotations`): the Deployment's own (minus the skip list), the revision (the
/// previous one appended to the history), desired and max replicas.
pub fn rs_annotations(
    d: &Deployment,
    existing: Option<&BTreeMap<String, String>>,
    revision: i64,
) -> BTreeMap<String, String> {
    let mut out = existing.cloned().unwrap_or_default();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    let old = out.get(REVISION).cloned();
    if let Some(old) = old.clone().filter(|o| o.parse::<i64>().is_ok_and(|o| o < revision)) {
        let history = match out.get(REVISION_HISTORY) {
            Some(h) if !h.is_empty() => format!("{h},{old}"),
            _ => old,
        };
        out.insert(REVISION_HISTORY.into(), history);
    }
    if old.as_deref().and_then(|o| o.parse::<i64>().ok()).is_none_or(|o| o < revision) {
        out.insert(REVISION.into(), revision.to_string());
    }
    out.insert(DESIRED_REPLICAS.into(), replicas(d).to_string());
    out.insert(MAX_REPLICAS.into(), (replicas(d) + surge_and_unavailable(d).0).to_string());
    out
}

/// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: how many pods each old ReplicaSet
/// (oldest first) loses so that availability never drops below `replicas - maxUnavailable`.
pub fn old_scale_down(d: &Deployment, all_available: i32, old: &[(i32, i32)]) -> Vec<i32> {
    let min_available = replicas(d) - max_unavailable(d);
    let mut budget = (all_available - min_available).max(0);
    old.iter()
        .map(|(spec, _)| {
            let take = (*spec).min(budget).max(0);
            budget -= take;
            spec - take
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
    use proptest::prelude::*;

    fn deployment(
        replicas: i32,
        surge: Option<IntOrString>,
        unavailable: Option<IntOrString>,
    ) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: surge,
                        max_unavailable: unavailable,
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn percentages_round_as_upstream() {
        // 25% of 10: surge rounds up to 3, unavailable down to 2.
        assert_eq!(surge_and_unavailable(&deployment(10, None, None)), (3, 2));
        assert_eq!(
            surge_and_unavailable(&deployment(
                3,
                Some(IntOrString::String("50%".into())),
                Some(IntOrString::Int(0))
            )),
            (2, 0)
        );
        // Both zero would never progress: upstream makes it 0/1.
        assert_eq!(
            surge_and_unavailable(&deployment(
                3,
                Some(IntOrString::Int(0)),
                Some(IntOrString::Int(0))
            )),
            (0, 1)
        );
        assert_eq!(max_unavailable(&deployment(1, None, Some(IntOrString::Int(5)))), 1);
    }

    #[test]
    fn hashes_are_stable_and_safe() {
        let t = PodTemplateSpec::default();
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{h}");
    }

    #[test]
    fn revisions_move_into_the_history() {
        let d = deployment(3, None, None);
        let a = rs_annotations(&d, None, 1);
        assert_eq!(a[REVISION], "1");
        assert_eq!(a[MAX_REPLICAS], "4");
        let b = rs_annotations(&d, Some(&a), 3);
        assert_eq!((b[REVISION].as_str(), b[REVISION_HISTORY].as_str()), ("3", "1"));
        let c = rs_annotations(&d, Some(&b), 5);
        assert_eq!(c[REVISION_HISTORY], "1,3");
    }

    proptest! {
        /// Whatever the pods' readiness, a rolling update's decisions keep the total at most
        /// replicas + maxSurge and the available pods at least replicas - maxUnavailable.
        #[test]
        fn rolling_decisions_keep_the_bounds(
            replicas in 1i32..20,
            surge in 0i32..5,
            unavailable in 0i32..5,
            steps in proptest::collection::vec(0u8..4, 1..60),
        ) {
            let d = deployment(replicas, Some(IntOrString::Int(surge)), Some(IntOrString::Int(unavailable)));
            let (max_surge, _) = surge_and_unavailable(&d);
            let max_unavail = max_unavailable(&d);
            // (spec, available) of the old and the new ReplicaSet; the old one starts full.
            let (mut old, mut new) = ((replicas, replicas), (0, 0));
            for step in steps {
                match step {
                    // Some new pods become available.
                    0 => new.1 = (new.1 + 1).min(new.0),
                    // The controller scales the new ReplicaSet up.
                    1 => {
                        let a = ReplicaSet { spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec { replicas: Some(old.0), ..Default::default() }), ..Default::default() };
                        let b = ReplicaSet { spec: Some(k8s_openapi::api::apps::v1::ReplicaSetSpec { replicas: Some(new.0), ..Default::default() }), ..Default::default() };
                        new.0 = new_rs_replicas(&d, &[&a, &b], new.0);
                    }
                    // The controller scales old ones down.
                    2 => {
                        let left = old_scale_down(&d, old.1 + new.1, &[old]);
                        old.0 = left[0];
                        old.1 = old.1.min(old.0);
                    }
                    // Nothing.
                    _ => {}
                }
                prop_assert!(old.0 + new.0 <= replicas + max_surge, "total {} > {}", old.0 + new.0, replicas + max_surge);
                prop_assert!(old.1 + new.1 >= replicas - max_unavail, "available {} < {}", old.1 + new.1, replicas - max_unavail);
            }
        }
    }
}
