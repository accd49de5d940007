//! The scheduling queue, as upstream's `PriorityQueue`: an active queue ordered by priority then
//! arrival, a backoff queue (1 s doubling to 10 s per failed attempt) and the unschedulable pods,
//! which go back to the active or backoff queue when a cluster event one of the plugins that
//! rejected them registered for happens (or after 5 minutes anyway).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use crate::cache::PodInfo;
use crate::framework::ClusterEvents;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pod waiting to be scheduled, with its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: PodInfo,
    /// Scheduling attempts so far (incremented on pop).
    pub attempts: u32,
    /// When it last entered a queue (backoff counts from here).
    pub timestamp: Instant,
    /// When the queue first saw it (for the end-to-end latency).
    pub first_seen: Instant,
    /// The events that may make it schedulable after a failure.
    pub events: ClusterEvents,
}

impl QueuedPod {
    /// Upstream's `calculateBackoffDuration`.
    pub fn backoff(&self) -> Duration {
        let mut d = INITIAL_BACKOFF;
        for _ in 1..self.attempts {
            d = d.saturating_mul(2);
            if d > MAX_BACKOFF {
                return MAX_BACKOFF;
            }
        }
        d
    }

    fn backoff_expiry(&self) -> Instant {
        self.timestamp + self.backoff()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: QueuedPod,
    location: Location,
    /// Identifies the heap entry that is current (older ones are skipped).
    seq: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    seq: u64,
    uid: String,
}

impl Ord for ActiveKey {
    /// Higher priority first, then first in first out.
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The three queues (see the module documentation).
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
}

/// Whether an update of a pending pod may change the scheduling outcome: anything but status
/// and bookkeeping metadata (upstream's `isPodUpdated`).
fn meaningfully_updated(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl SchedulingQueue {
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    fn unschedulable_len(&self) -> usize {
        self.entries.values().filter(|e| e.location == Location::Unschedulable).count()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, uid: &str, now: Instant) {
        let seq = self.next_seq();
        let Some(entry) = self.entries.get_mut(uid) else {
            return;
        };
        entry.location = Location::Active;
        entry.seq = seq;
        entry.pod.timestamp = now;
        self.active.push(ActiveKey {
            priority: entry.pod.info.priority(),
            seq,
            uid: uid.to_owned(),
        });
    }

    fn push_backoff(&mut self, uid: &str) {
        let seq = self.next_seq();
        let Some(entry) = self.entries.get_mut(uid) else {
            return;
        };
        entry.location = Location::Backoff;
        entry.seq = seq;
        self.backoff.push(Reverse((entry.pod.backoff_expiry(), seq, uid.to_owned())));
    }

    /// A pending pod appeared or changed. Returns true when the scheduling loop has something
    /// new to look at (a pod in the active or backoff queue).
    pub fn add_or_update(&mut self, pod: Arc<Pod>, now: Instant) -> bool {
        let info = PodInfo::new(pod);
        let uid = info.uid.clone();
        if let Some(entry) = self.entries.get_mut(&uid) {
            let updated = meaningfully_updated(&entry.pod.info.pod, &info.pod);
            entry.pod.info = info;
            if updated && entry.location == Location::Unschedulable {
                return self.move_to_active_or_backoff(&uid, now);
            }
            if updated && entry.location == Location::Active {
                // The priority may have changed: queue it again under the new one.
                self.push_active(&uid, now);
            }
            return false;
        }
        self.entries.insert(
            uid.clone(),
            Entry {
                pod: QueuedPod {
                    info,
                    attempts: 0,
                    timestamp: now,
                    first_seen: now,
                    events: ClusterEvents::ALL,
                },
                location: Location::Active,
                seq: 0,
            },
        );
        self.push_active(&uid, now);
        true
    }

    /// A pod is gone or no longer pending.
    pub fn delete(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    /// Moves pods whose backoff expired to the active queue. Returns how many moved.
    pub fn flush_backoff_completed(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        while let Some(Reverse((expiry, seq, _))) = self.backoff.peek() {
            if *expiry > now {
                break;
            }
            let (seq, Some(Reverse((_, _, uid)))) = (*seq, self.backoff.pop()) else {
                break;
            };
            let current = self
                .entries
                .get(&uid)
                .is_some_and(|e| e.location == Location::Backoff && e.seq == seq);
            if current {
                self.push_active(&uid, now);
                moved += 1;
            }
        }
        moved
    }

    /// When the earliest backoff ends.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next pod to schedule (highest priority, oldest), marked in flight.
    pub fn pop(&mut self, now: Instant) -> Option<(QueuedPod, u64)> {
        self.flush_backoff_completed(now);
        while let Some(key) = self.active.pop() {
            let Some(entry) = self.entries.get_mut(&key.uid) else {
                continue;
            };
            if entry.location != Location::Active || entry.seq != key.seq {
                continue;
            }
            entry.location = Location::InFlight;
            entry.pod.attempts += 1;
            self.scheduling_cycle += 1;
            return Some((entry.pod.clone(), self.scheduling_cycle));
        }
        None
    }

    /// The pod was assumed onto a node: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.entries.remove(uid);
    }

    /// A scheduling attempt failed. Unschedulable pods wait for an event in `events` unless
    /// such a move happened while they were being scheduled; errors back off.
    pub fn requeue(
        &mut self,
        uid: &str,
        cycle: u64,
        events: ClusterEvents,
        error: bool,
        now: Instant,
    ) {
        let move_requested = self.move_request_cycle >= cycle;
        let Some(entry) = self.entries.get_mut(uid) else {
            return;
        };
        if entry.location != Location::InFlight {
            return;
        }
        entry.pod.timestamp = now;
        entry.pod.events = events;
        if error || move_requested {
            self.push_backoff(uid);
        } else {
            entry.location = Location::Unschedulable;
        }
    }

    /// Returns true: the pod moved, and the scheduling loop must recompute when to look again.
    fn move_to_active_or_backoff(&mut self, uid: &str, now: Instant) -> bool {
        let Some(entry) = self.entries.get(uid) else {
            return false;
        };
        if entry.pod.backoff_expiry() > now {
            self.push_backoff(uid);
        } else {
            self.push_active(uid, now);
        }
        true
    }

    /// A cluster event happened: unschedulable pods it may help go back. Returns true when
    /// pods moved.
    pub fn move_all_for(&mut self, event: ClusterEvents, now: Instant) -> bool {
        self.move_request_cycle = self.scheduling_cycle;
        let uids: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.location == Location::Unschedulable && e.pod.events.intersects(event)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut activated = false;
        for uid in uids {
            activated |= self.move_to_active_or_backoff(&uid, now);
        }
        activated
    }

    /// Pods unschedulable for longer than [`MAX_IN_UNSCHEDULABLE`] get another try.
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) -> bool {
        let uids: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.location == Location::Unschedulable
                    && now.saturating_duration_since(e.pod.timestamp) > MAX_IN_UNSCHEDULABLE
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut activated = false;
        for uid in uids {
            activated |= self.move_to_active_or_backoff(&uid, now);
        }
        activated
    }

    /// Keeps only the pods in `uids` (after a relist), and those in flight.
    pub fn retain(&mut self, uids: &HashSet<String>) {
        self.entries.retain(|uid, e| e.location == Location::InFlight || uids.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::pod;

    fn add(q: &mut SchedulingQueue, name: &str, priority: i32, now: Instant) {
        q.add_or_update(Arc::new(pod(name).priority(priority).build()), now);
    }

    fn pop_name(q: &mut SchedulingQueue, now: Instant) -> Option<String> {
        q.pop(now).and_then(|(p, _)| p.info.pod.metadata.name.clone())
    }

    #[tokio::test(start_paused = true)]
    async fn priority_then_fifo() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        add(&mut q, "low1", 0, now);
        add(&mut q, "high", 10, now);
        add(&mut q, "low2", 0, now);
        add(&mut q, "mid", 5, now);
        let order: Vec<_> = std::iter::from_fn(|| pop_name(&mut q, now)).collect();
        assert_eq!(order, ["high", "mid", "low1", "low2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_ten_seconds() {
        let mut p = QueuedPod {
            info: pod("p").info(),
            attempts: 1,
            timestamp: Instant::now(),
            first_seen: Instant::now(),
            events: ClusterEvents::ALL,
        };
        let secs: Vec<u64> = (1..=6)
            .map(|a| {
                p.attempts = a;
                p.backoff().as_secs()
            })
            .collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_then_return() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        add(&mut q, "p", 0, start);
        let (_, cycle) = q.pop(start).expect("pod");
        q.requeue("p-uid", cycle, ClusterEvents::ALL, true, start);
        assert!(q.pop(start).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(start + Duration::from_secs(1)));
        assert!(q.pop(start + Duration::from_millis(999)).is_none());
        let (p, cycle) = q.pop(start + Duration::from_secs(1)).expect("back after 1s");
        assert_eq!(p.attempts, 2);
        let t = start + Duration::from_secs(1);
        q.requeue("p-uid", cycle, ClusterEvents::ALL, true, t);
        assert!(q.pop(t + Duration::from_millis(1999)).is_none());
        assert!(q.pop(t + Duration::from_secs(2)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_relevant_event() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        add(&mut q, "p", 0, start);
        let (_, cycle) = q.pop(start).expect("pod");
        q.requeue(
            "p-uid",
            cycle,
            ClusterEvents::NODE_ADD | ClusterEvents::NODE_TAINT,
            false,
            start,
        );
        assert_eq!(q.unschedulable_len(), 1);
        let later = start + Duration::from_secs(30);
        assert!(q.pop(later).is_none(), "no event, no retry");
        assert!(!q.move_all_for(ClusterEvents::ASSIGNED_POD_DELETE, later));
        assert_eq!(q.unschedulable_len(), 1);
        assert!(q.move_all_for(ClusterEvents::NODE_TAINT, later));
        assert!(q.pop(later).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn moved_while_backing_off_waits_for_the_backoff() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        add(&mut q, "p", 0, start);
        let (_, cycle) = q.pop(start).expect("pod");
        q.requeue("p-uid", cycle, ClusterEvents::ALL, false, start);
        assert!(q.move_all_for(ClusterEvents::NODE_ADD, start + Duration::from_millis(10)));
        assert!(q.pop(start + Duration::from_millis(500)).is_none());
        assert_eq!(q.next_backoff_expiry(), Some(start + Duration::from_secs(1)));
        assert!(q.pop(start + Duration::from_secs(1)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn event_during_the_attempt_sends_the_pod_to_backoff() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        add(&mut q, "p", 0, start);
        let (_, cycle) = q.pop(start).expect("pod");
        q.move_all_for(ClusterEvents::NODE_ADD, start);
        q.requeue("p-uid", cycle, ClusterEvents::NODE_ADD, false, start);
        assert_eq!(q.unschedulable_len(), 0);
        assert!(q.pop(start + Duration::from_secs(1)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn leftover_unschedulable_pods_retry_after_five_minutes() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        add(&mut q, "p", 0, start);
        let (_, cycle) = q.pop(start).expect("pod");
        q.requeue("p-uid", cycle, ClusterEvents::NODE_ADD, false, start);
        assert!(!q.flush_unschedulable_leftover(start + Duration::from_secs(299)));
        assert!(q.flush_unschedulable_leftover(start + Duration::from_secs(301)));
        assert!(q.pop(start + Duration::from_secs(301)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn spec_updates_retry_status_updates_do_not() {
        let mut q = SchedulingQueue::default();
        let start = Instant::now();
        add(&mut q, "p", 0, start);
        let (_, cycle) = q.pop(start).expect("pod");
        q.requeue("p-uid", cycle, ClusterEvents::NODE_ADD, false, start);
        let t = start + Duration::from_secs(20);
        let mut status_only = pod("p").priority(0).build();
        status_only.status = Some(Default::default());
        assert!(!q.add_or_update(Arc::new(status_only), t));
        assert_eq!(q.unschedulable_len(), 1);
        assert!(q.add_or_update(Arc::new(pod("p").priority(0).node_selector("a", "b").build()), t));
        assert!(q.pop(t).is_some());
        q.delete("p-uid");
        assert!(q.is_empty());
    }
}
