//! What the scheduler counts: attempts, outcomes, the time each attempt took and the time from a
//! pod entering the queue to its binding (upstream's `scheduler_pod_scheduling_sli_duration`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Keeps at most this many latency samples (the most recent ones).
const MAX_SAMPLES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct Metrics {
    attempts: AtomicU64,
    scheduled: AtomicU64,
    unschedulable: AtomicU64,
    errors: AtomicU64,
    attempt_latency: Mutex<Vec<Duration>>,
    e2e_latency: Mutex<Vec<Duration>>,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    pub attempts: u64,
    pub scheduled: u64,
    pub unschedulable: u64,
    pub errors: u64,
}

fn push(samples: &Mutex<Vec<Duration>>, d: Duration) {
    let mut s = samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if s.len() >= MAX_SAMPLES {
        s.clear();
    }
    s.push(d);
}

impl Metrics {
    pub(crate) fn record_attempt(&self, took: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        push(&self.attempt_latency, took);
    }

    pub(crate) fn record_scheduled(&self, since_queued: Duration) {
        self.scheduled.fetch_add(1, Ordering::Relaxed);
        push(&self.e2e_latency, since_queued);
    }

    pub(crate) fn record_unschedulable(&self) {
        self.unschedulable.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            attempts: self.attempts.load(Ordering::Relaxed),
            scheduled: self.scheduled.load(Ordering::Relaxed),
            unschedulable: self.unschedulable.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Takes the queue-to-bound latencies recorded so far.
    pub fn take_e2e_latencies(&self) -> Vec<Duration> {
        std::mem::take(
            &mut *self.e2e_latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Takes the per-attempt (scheduling algorithm) latencies recorded so far.
    pub fn take_attempt_latencies(&self) -> Vec<Duration> {
        std::mem::take(
            &mut *self.attempt_latency.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}
