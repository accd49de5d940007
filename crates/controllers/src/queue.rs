//! A rate-limited work queue keyed by object (client-go's `workqueue`): a key queued many
//! times before a worker takes it is processed once; a key is never handed to two workers at
//! once (re-adding it while it is processed queues it again for after `done`); failed keys come
//! back after a per-key exponential delay.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// Upstream's default per-item backoff: 5 ms doubling per failure up to 1,000 s.
const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);

#[derive(Debug)]
pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    /// How long a key re-added while it was processed waits before it is processed again
    /// (upstream's `--*-updates-batch-period`): the changes meanwhile are handled in one go.
    batch_period: Duration,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    /// Keys waiting to be processed (in `queue`, or re-added while processing).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new() -> Arc<Self> {
        Self::batched(Duration::ZERO)
    }

    /// A queue in which a key changed again while it was processed comes back only after
    /// `batch_period` (for controllers whose sync reads many objects: a burst of changes costs
    /// a few syncs, not one per change).
    pub fn batched(batch_period: Duration) -> Arc<Self> {
        Arc::new(Self {
            batch_period,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            }),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking worker cannot leave the queue half-updated: every change is one statement.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` unless it is already waiting.
    pub fn add(&self, key: T) {
        let mut state = self.lock();
        if state.shut_down || !state.dirty.insert(key.clone()) {
            return;
        }
        if !state.processing.contains(&key) {
            state.queue.push_back(key);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Queues `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(queue) = queue.upgrade() {
                queue.add(key);
            }
        });
    }

    /// Queues `key` after its backoff, which doubles with each call until [`Self::forget`].
    pub fn add_rate_limited(self: &Arc<Self>, key: T) {
        let failures = {
            let mut state = self.lock();
            let n = state.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.add_after(key, backoff(failures));
    }

    /// Clears `key`'s backoff (it was processed successfully).
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    /// How many times `key` failed in a row.
    pub fn failures(&self, key: &T) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, waiting for one; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.shut_down {
                    return None;
                }
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Wake another worker for the rest.
                        self.ready.notify_one();
                    }
                    return Some(key);
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was re-added meanwhile, it is queued again (after the
    /// batch period, if the queue has one: until then it stays waiting, and adds change nothing).
    pub fn done(self: &Arc<Self>, key: &T) {
        let mut state = self.lock();
        state.processing.remove(key);
        if !state.dirty.contains(key) {
            return;
        }
        if self.batch_period.is_zero() {
            state.queue.push_back(key.clone());
            drop(state);
            self.ready.notify_one();
            return;
        }
        drop(state);
        let queue = Arc::downgrade(self);
        let key = key.clone();
        let delay = self.batch_period;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(queue) = queue.upgrade() else { return };
            let mut state = queue.lock();
            if !state.shut_down && state.dirty.contains(&key) && !state.processing.contains(&key) {
                state.queue.push_back(key);
                drop(state);
                queue.ready.notify_one();
            }
        });
    }

    /// Wakes every waiting worker with `None`; later adds are ignored.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.ready.notify_waiters();
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_added_twice_is_processed_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_re_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let key = q.get().await;
        assert_eq!(key, Some("a"));
        q.add("a");
        // Not handed out twice at once.
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batched_key_changed_while_processing_waits_out_the_period() {
        let q = WorkQueue::batched(Duration::from_millis(100));
        q.add("a");
        assert_eq!(q.get().await, Some("a"));
        q.add("a");
        q.add("a");
        q.done(&"a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.add("a");
        assert!(q.is_empty(), "still within the batch period");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(q.len(), 1, "one sync for every change meanwhile");
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        // A key not touched while processed is simply done; a later add queues it at once.
        q.add("a");
        assert_eq!(q.len(), 1);
    }

    #[tokio::test]
    async fn shut_down_wakes_waiting_workers() {
        let q: Arc<WorkQueue<&str>> = WorkQueue::new();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.shut_down();
        assert_eq!(waiter.await.ok(), Some(None));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_until_forgotten() {
        let q = WorkQueue::new();
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        q.add_rate_limited("a");
        assert_eq!(q.failures(&"a"), 3);
        // 5, 10 and 20 ms: the key is queued once the first delay passed.
        tokio::time::sleep(Duration::from_millis(6)).await;
        assert_eq!(q.get().await, Some("a"));
        q.forget(&"a");
        assert_eq!(q.failures(&"a"), 0);
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(60), MAX_DELAY);
    }
}
