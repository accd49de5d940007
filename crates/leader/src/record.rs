//! The pure part of an election round: is the Lease someone else's, and what to write into it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// What the elector last saw of the Lease, and when (on the monotonic clock) it last saw it change.
#[derive(Debug, Default, Clone)]
pub(crate) struct Observed {
    spec: Option<LeaseSpec>,
    changed_at: Option<Instant>,
}

impl Observed {
    /// Records a read (or our own write) of the Lease at `now`.
    pub(crate) fn observe(&mut self, spec: &LeaseSpec, now: Instant) {
        if self.spec.as_ref().is_some_and(|old| old != spec) {
            self.changed_at = Some(now);
        }
        self.spec = Some(spec.clone());
    }

    /// Whether another live holder has the Lease, so this candidate must not take it.
    ///
    /// The holder is alive while `renewTime + leaseDurationSeconds` lies ahead on the wall clock
    /// or, guarding against a clock that runs ahead of the holder's, while this candidate saw the
    /// record change less than `leaseDurationSeconds` ago (upstream's observed-time rule).
    pub(crate) fn held_by_other(&self, identity: &str, wall_now: Timestamp, now: Instant) -> bool {
        let Some(spec) = &self.spec else {
            return false;
        };
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        if holder.is_empty() || holder == identity {
            return false;
        }
        let seconds = spec.lease_duration_seconds.unwrap_or(0).max(0);
        let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
        let renewed_recently = renewed.is_some_and(|renewed| {
            wall_now.duration_since(renewed.0) < SignedDuration::from_secs(i64::from(seconds))
        });
        let seen_changing = self.changed_at.is_some_and(|at| {
            now.saturating_duration_since(at) < Duration::from_secs(seconds.unsigned_abs().into())
        });
        renewed_recently || seen_changing
    }

    /// Who holds the Lease according to the last read (empty when released or never held).
    pub(crate) fn holder(&self) -> &str {
        self.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).unwrap_or_default()
    }
}

/// The spec `identity` writes to acquire or renew the Lease whose current spec is `old`
/// (upstream's `tryAcquireOrRenew`): a renewal keeps `acquireTime` and `leaseTransitions`, a
/// takeover sets `acquireTime` and counts one more transition. Fields the elector does not own
/// (`strategy`, `preferredHolder`) are kept.
pub(crate) fn acquire_or_renew(
    old: Option<&LeaseSpec>,
    identity: &str,
    lease_duration_seconds: i32,
    wall_now: Timestamp,
) -> LeaseSpec {
    let now = MicroTime(wall_now);
    let mut spec = old.cloned().unwrap_or_default();
    let renewing = old.and_then(|o| o.holder_identity.as_deref()) == Some(identity);
    if !renewing {
        spec.acquire_time = Some(now.clone());
        spec.lease_transitions = Some(match old {
            Some(old) => old.lease_transitions.unwrap_or(0).saturating_add(1),
            None => 0,
        });
    } else if spec.acquire_time.is_none() {
        spec.acquire_time = Some(now.clone());
    }
    spec.holder_identity = Some(identity.to_owned());
    spec.lease_duration_seconds = Some(lease_duration_seconds);
    spec.renew_time = Some(now);
    spec
}

/// The spec the leader writes when it lets go (upstream's `release`): no holder and a 1-second
/// lease, so the next candidate takes over at once.
pub(crate) fn release(old: &LeaseSpec, wall_now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(wall_now)),
        renew_time: Some(MicroTime(wall_now)),
        lease_transitions: old.lease_transitions,
        ..old.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_767_000_000 + second).expect("timestamp")
    }

    fn held(holder: &str, renewed: i64) -> LeaseSpec {
        acquire_or_renew(None, holder, 15, at(renewed))
    }

    #[test]
    fn a_fresh_lease_belongs_to_its_holder_until_it_expires() {
        let now = Instant::now();
        let mut observed = Observed::default();
        observed.observe(&held("a", 0), now);
        assert!(observed.held_by_other("b", at(14), now));
        assert!(!observed.held_by_other("b", at(15), now), "renewTime + 15 s has passed");
        assert!(!observed.held_by_other("a", at(5), now), "our own lease is never someone else's");
        assert_eq!(observed.holder(), "a");
    }

    #[test]
    fn released_or_empty_leases_are_free() {
        let now = Instant::now();
        let mut observed = Observed::default();
        assert!(!observed.held_by_other("b", at(0), now), "nothing read yet");
        observed.observe(&release(&held("a", 0), at(1)), now);
        assert!(!observed.held_by_other("b", at(1), now));
        assert_eq!(observed.holder(), "");
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_seen_changing_is_alive_even_if_the_wall_clock_says_expired() {
        let mut observed = Observed::default();
        observed.observe(&held("a", 0), Instant::now());
        tokio::time::advance(Duration::from_secs(2)).await;
        observed.observe(&held("a", 2), Instant::now());
        // This candidate's clock runs a minute ahead: renewTime looks stale, but it just changed.
        assert!(observed.held_by_other("b", at(62), Instant::now()));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(!observed.held_by_other("b", at(77), Instant::now()));
    }

    #[test]
    fn renewal_keeps_acquire_time_and_takeover_counts_a_transition() {
        let first = acquire_or_renew(None, "a", 15, at(0));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.acquire_time, Some(MicroTime(at(0))));

        let renewed = acquire_or_renew(Some(&first), "a", 15, at(2));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(2))));
        assert_eq!(renewed.lease_transitions, Some(0));

        let taken = acquire_or_renew(Some(&renewed), "b", 15, at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(taken.lease_transitions, Some(1));

        let released = release(&taken, at(21));
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(1));
        let again = acquire_or_renew(Some(&released), "b", 15, at(22));
        assert_eq!(again.lease_transitions, Some(2), "taking a released lease is a transition");
        assert_eq!(again.lease_duration_seconds, Some(15));
    }

    #[test]
    fn micro_time_has_six_fractional_digits() {
        let spec = acquire_or_renew(None, "a", 15, at(0));
        let json = k8s_openapi::serde_json::to_value(&spec).expect("json");
        assert_eq!(json["renewTime"], "2025-12-29T09:20:00.000000Z");
        assert_eq!(json["holderIdentity"], "a");
        assert_eq!(json["leaseDurationSeconds"], 15);
    }
}
