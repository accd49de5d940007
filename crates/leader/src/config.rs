//! Which Lease to campaign for, under which identity, and the timing (upstream's defaults).

use std::time::Duration;

use crate::{Error, Result};

/// The Lease that decides the leader, and who is asking for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLock {
    pub namespace: String,
    pub name: String,
    /// Written into `spec.holderIdentity`; unique per process (see [`default_identity`]).
    pub identity: String,
}

/// How the elector campaigns and renews (upstream's `LeaderElectionConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderElectionConfig {
    pub lock: LeaseLock,
    /// How long a candidate waits after the last renewal before it takes the Lease over
    /// (`leaseDurationSeconds`, whole seconds; upstream default 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failed renewal before it steps down (10 s).
    pub renew_deadline: Duration,
    /// How often the leader renews and a candidate retries (2 s).
    pub retry_period: Duration,
    /// Release the Lease when cancelled (upstream's `ReleaseOnCancel`), so the next candidate
    /// takes over at once instead of after `lease_duration`.
    pub release_on_cancel: bool,
}

/// Upstream's jitter factor on a candidate's retry period.
pub(crate) const JITTER_FACTOR: f64 = 1.2;

impl LeaderElectionConfig {
    /// The Lease `namespace/name` with upstream's default timing and a fresh
    /// [`default_identity`].
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            lock: LeaseLock {
                namespace: namespace.into(),
                name: name.into(),
                identity: default_identity(),
            },
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            release_on_cancel: true,
        }
    }

    /// Upstream's `NewLeaderElector` checks.
    pub fn validate(&self) -> Result<()> {
        if self.lock.name.is_empty() || self.lock.namespace.is_empty() {
            return Err(Error::InvalidConfig("the lease needs a namespace and a name"));
        }
        if self.lock.identity.is_empty() {
            return Err(Error::InvalidConfig("the identity is empty"));
        }
        if self.lease_duration.as_secs() < 1 {
            return Err(Error::InvalidConfig("lease_duration must be at least one second"));
        }
        if self.lease_duration.as_secs() > i32::MAX as u64 {
            return Err(Error::InvalidConfig("lease_duration does not fit leaseDurationSeconds"));
        }
        if self.renew_deadline.is_zero() || self.retry_period.is_zero() {
            return Err(Error::InvalidConfig("renew_deadline and retry_period must be positive"));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(Error::InvalidConfig("lease_duration must be greater than renew_deadline"));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(Error::InvalidConfig(
                "renew_deadline must be greater than 1.2 * retry_period",
            ));
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written into the Lease (validated to fit).
    pub(crate) fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// `<hostname>_<uuid>`, the identity upstream's components campaign under: the host says where
/// the leader runs, the UUID keeps two processes on one host apart.
pub fn default_identity() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_defaults_are_valid() {
        let config = LeaderElectionConfig::new("kube-system", "kube-scheduler");
        assert_eq!(config.lease_duration_seconds(), 15);
        assert!(config.release_on_cancel);
        config.validate().expect("valid");
    }

    #[test]
    fn timing_that_allows_two_leaders_is_refused() {
        let base = LeaderElectionConfig::new("kube-system", "x");
        let cases = [
            LeaderElectionConfig { renew_deadline: Duration::from_secs(15), ..base.clone() },
            LeaderElectionConfig { retry_period: Duration::from_secs(9), ..base.clone() },
            LeaderElectionConfig { lease_duration: Duration::from_millis(500), ..base.clone() },
            LeaderElectionConfig { retry_period: Duration::ZERO, ..base.clone() },
            LeaderElectionConfig {
                lock: LeaseLock { identity: String::new(), ..base.lock.clone() },
                ..base.clone()
            },
        ];
        for config in cases {
            assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))), "{config:?}");
        }
    }

    #[test]
    fn identity_is_host_and_uuid() {
        let a = default_identity();
        let (host, id) = a.rsplit_once('_').expect("host_uuid");
        assert!(!host.is_empty());
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{a}");
        assert_ne!(a, default_identity());
    }
}
