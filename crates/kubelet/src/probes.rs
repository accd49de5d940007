//! The probes framework (upstream's `prober` package): when each probe of a running container
//! is due, and what its results add up to — startup gates the other two, liveness kills after
//! `failureThreshold` failures in a row, readiness flips after `successThreshold` successes or
//! `failureThreshold` failures in a row. The runtime performs the probe itself.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// As upstream's events and annotations name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }

    /// As upstream's messages capitalise it ("Liveness probe failed: ...").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// One probe of one container run.
#[derive(Debug, Clone)]
pub struct Prober {
    pub kind: ProbeKind,
    pub probe: Probe,
    period: SignedDuration,
    success_threshold: i32,
    failure_threshold: i32,
    successes: i32,
    failures: i32,
    /// The current verdict (`None` before the first; readiness and startup start false,
    /// liveness true).
    healthy: bool,
    next: Timestamp,
}

/// What a probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    /// Now healthy (ready / started / live again).
    Healthy,
    /// Now unhealthy (failureThreshold failures in a row).
    Unhealthy,
}

impl Prober {
    pub fn new(kind: ProbeKind, probe: &Probe, started: Timestamp) -> Self {
        let secs = |v: Option<i32>, default: i32| i64::from(v.unwrap_or(default).max(0));
        let period = SignedDuration::from_secs(secs(probe.period_seconds, 10).max(1));
        let delay = SignedDuration::from_secs(secs(probe.initial_delay_seconds, 0));
        Self {
            kind,
            probe: probe.clone(),
            period,
            success_threshold: probe.success_threshold.unwrap_or(1).max(1),
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1),
            successes: 0,
            failures: 0,
            healthy: kind == ProbeKind::Liveness,
            next: started.checked_add(delay).unwrap_or(started),
        }
    }

    /// The probes `container` declares, fresh for a container started at `started`.
    pub fn for_container(container: &Container, started: Timestamp) -> Vec<Prober> {
        [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(kind, probe)| probe.as_ref().map(|p| Prober::new(kind, p, started)))
        .collect()
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    pub fn due(&self, now: Timestamp) -> bool {
        now >= self.next
    }

    pub fn next(&self) -> Timestamp {
        self.next
    }

    /// The probe's timeout (`timeoutSeconds`, default 1 s).
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            u64::try_from(self.probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1),
        )
    }

    /// Records one result taken at `now`.
    pub fn record(&mut self, ok: bool, now: Timestamp) -> Verdict {
        self.next = now.checked_add(self.period).unwrap_or(now);
        if ok {
            self.failures = 0;
            self.successes += 1;
            if !self.healthy && self.successes >= self.success_threshold {
                self.healthy = true;
                return Verdict::Healthy;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.failure_threshold {
                if self.kind == ProbeKind::Readiness {
                    if self.healthy {
                        self.healthy = false;
                        return Verdict::Unhealthy;
                    }
                } else {
                    // Startup and liveness failures kill the container, every time.
                    self.healthy = false;
                    self.failures = 0;
                    return Verdict::Unhealthy;
                }
            }
        }
        Verdict::Unchanged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(period: i32, delay: i32, success: i32, failure: i32) -> Probe {
        Probe {
            period_seconds: Some(period),
            initial_delay_seconds: Some(delay),
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    fn at(base: Timestamp, secs: i64) -> Timestamp {
        base.checked_add(SignedDuration::from_secs(secs)).expect("time")
    }

    #[test]
    fn readiness_waits_for_its_delay_and_thresholds() {
        let t0 = Timestamp::now();
        let mut p = Prober::new(ProbeKind::Readiness, &probe(5, 3, 2, 2), t0);
        assert!(!p.healthy(), "not ready before the first success");
        assert!(!p.due(at(t0, 2)));
        assert!(p.due(at(t0, 3)));
        assert_eq!(p.record(true, at(t0, 3)), Verdict::Unchanged);
        assert_eq!(p.next(), at(t0, 8));
        assert_eq!(p.record(true, at(t0, 8)), Verdict::Healthy);
        assert!(p.healthy());
        assert_eq!(p.record(false, at(t0, 13)), Verdict::Unchanged);
        assert_eq!(p.record(false, at(t0, 18)), Verdict::Unhealthy);
        assert!(!p.healthy());
    }

    #[test]
    fn liveness_fails_after_its_threshold() {
        let t0 = Timestamp::now();
        let mut p = Prober::new(ProbeKind::Liveness, &probe(1, 0, 1, 3), t0);
        assert!(p.healthy());
        assert_eq!(p.record(false, t0), Verdict::Unchanged);
        assert_eq!(p.record(true, at(t0, 1)), Verdict::Unchanged, "a success resets the count");
        assert_eq!(p.record(false, at(t0, 2)), Verdict::Unchanged);
        assert_eq!(p.record(false, at(t0, 3)), Verdict::Unchanged);
        assert_eq!(p.record(false, at(t0, 4)), Verdict::Unhealthy);
    }
}
