//! Watch machinery shared by the local backends: a hub that fans committed events out to live
//! watchers, and the watch stream that first replays history and then hands over to the hub.
//!
//! The handoff is exact: a stream replays history up to the hub's published revision, then —
//! under the hub's lock, which every publication also takes — either subscribes (if it has
//! caught up) or reads the next chunk. Since a publication and a subscription never interleave,
//! no event is missed or delivered twice.
//!
//! Backpressure: each watcher has a bounded buffer. A publication never waits; if a watcher's
//! buffer is full the hub drops it, the stream delivers what is buffered and then ends with
//! [`Error::WatchLagged`], so the client re-lists instead of silently missing events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

use crate::error::{Error, Result};
use crate::store::WatchSource;
use crate::types::{Event, Revision, WatchRequest, WatchResponse, in_range};

/// Revisions read from history per catch-up step.
const CATCH_UP_CHUNK: Revision = 512;

/// Locks a mutex; a poisoned lock is still usable because every critical section leaves the
/// state consistent before anything that can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a watch stream reads the events it must replay.
#[async_trait]
pub(crate) trait History: Send + Sync {
    /// Events with revisions in `[from, to]` for keys in the range, in revision order.
    /// Fails with [`Error::Compacted`] if `from` is below the compaction point.
    async fn events(
        &self,
        key: &str,
        range_end: &str,
        from: Revision,
        to: Revision,
        prev_kv: bool,
    ) -> Result<Vec<Event>>;
}

/// Fans committed events out to live watchers.
#[derive(Debug)]
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    buffer: usize,
}

#[derive(Debug)]
struct HubState {
    published: Revision,
    next_id: u64,
    watchers: HashMap<u64, Subscriber>,
    closed: bool,
}

#[derive(Debug)]
struct Subscriber {
    key: String,
    range_end: String,
    start: Revision,
    prev_kv: bool,
    tx: mpsc::Sender<WatchResponse>,
    lagged: Arc<AtomicBool>,
}

impl WatchHub {
    pub(crate) fn new(published: Revision, buffer: usize) -> Arc<Self> {
        Arc::new(WatchHub {
            state: Mutex::new(HubState {
                published,
                next_id: 0,
                watchers: HashMap::new(),
                closed: false,
            }),
            buffer: buffer.max(1),
        })
    }

    /// The last revision whose events have been handed to watchers.
    pub(crate) fn published(&self) -> Revision {
        lock(&self.state).published
    }

    /// Publishes the events of every revision up to `revision` (which must all be committed).
    pub(crate) fn publish(&self, revision: Revision, events: &[Event]) {
        let mut st = lock(&self.state);
        st.published = st.published.max(revision);
        if events.is_empty() {
            return;
        }
        st.watchers.retain(|_, w| {
            let matching: Vec<Event> = events
                .iter()
                .filter(|e| {
                    e.kv.mod_revision >= w.start && in_range(&e.kv.key, &w.key, &w.range_end)
                })
                .map(|e| Event {
                    kind: e.kind,
                    kv: e.kv.clone(),
                    prev_kv: if w.prev_kv { e.prev_kv.clone() } else { None },
                })
                .collect();
            if matching.is_empty() {
                return true;
            }
            match w.tx.try_send(WatchResponse { header_revision: revision, events: matching }) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    w.lagged.store(true, Ordering::Release);
                    tracing::warn!(key = %w.key, revision, "watcher fell behind; closing it");
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Ends every watch (they report [`Error::Closed`]).
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.watchers.clear();
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }
}

/// A watch stream over a [`WatchHub`] and a [`History`].
pub(crate) struct HubWatch {
    hub: Arc<WatchHub>,
    history: Arc<dyn History>,
    key: String,
    range_end: String,
    prev_kv: bool,
    progress_notify: bool,
    progress_interval: Duration,
    progress_requested: bool,
    next_rev: Revision,
    delivered: Revision,
    last_sent: tokio::time::Instant,
    phase: Phase,
}

enum Phase {
    CatchUp,
    Live { id: u64, rx: mpsc::Receiver<WatchResponse>, lagged: Arc<AtomicBool> },
    Done,
}

impl HubWatch {
    /// A watch from `req.start_revision` (0: from the hub's next revision). The caller has
    /// checked the start revision against compaction.
    pub(crate) fn new(
        hub: Arc<WatchHub>,
        history: Arc<dyn History>,
        req: WatchRequest,
        progress_interval: Duration,
    ) -> Self {
        let published = hub.published();
        let next_rev = if req.start_revision <= 0 { published + 1 } else { req.start_revision };
        HubWatch {
            hub,
            history,
            key: req.key,
            range_end: req.range_end,
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            progress_interval,
            progress_requested: false,
            next_rev,
            delivered: next_rev - 1,
            last_sent: tokio::time::Instant::now(),
            phase: Phase::CatchUp,
        }
    }

    fn deliver(&mut self, resp: WatchResponse) -> Option<Result<WatchResponse>> {
        self.delivered = self.delivered.max(resp.header_revision);
        self.last_sent = tokio::time::Instant::now();
        Some(Ok(resp))
    }

    fn finish(&mut self, err: Error) -> Option<Result<WatchResponse>> {
        self.unsubscribe();
        self.phase = Phase::Done;
        Some(Err(err))
    }

    fn unsubscribe(&mut self) {
        if let Phase::Live { id, .. } = self.phase {
            lock(&self.hub.state).watchers.remove(&id);
        }
    }

    /// Subscribes if caught up; otherwise returns the revision history must be read up to.
    fn subscribe_or_target(&mut self) -> Result<Option<Revision>> {
        let mut st = lock(&self.hub.state);
        if st.closed {
            return Err(Error::Closed);
        }
        if self.next_rev <= st.published {
            return Ok(Some(st.published));
        }
        let (tx, rx) = mpsc::channel(self.hub.buffer);
        let id = st.next_id;
        st.next_id += 1;
        let lagged = Arc::new(AtomicBool::new(false));
        st.watchers.insert(
            id,
            Subscriber {
                key: self.key.clone(),
                range_end: self.range_end.clone(),
                start: self.next_rev,
                prev_kv: self.prev_kv,
                tx,
                lagged: lagged.clone(),
            },
        );
        drop(st);
        self.phase = Phase::Live { id, rx, lagged };
        Ok(None)
    }

    /// A buffered response or, if none, a progress notification at the published revision.
    /// Decided under the hub lock, so no publication can slip in between.
    fn progress_or_buffered(&mut self) -> Option<WatchResponse> {
        let Phase::Live { rx, .. } = &mut self.phase else { return None };
        let st = lock(&self.hub.state);
        match rx.try_recv() {
            Ok(resp) => Some(resp),
            Err(TryRecvError::Empty) => {
                Some(WatchResponse { header_revision: st.published, events: Vec::new() })
            }
            Err(TryRecvError::Disconnected) => None,
        }
    }

    fn terminal_error(&self) -> Error {
        match &self.phase {
            Phase::Live { lagged, .. } if lagged.load(Ordering::Acquire) => {
                Error::WatchLagged { revision: self.delivered }
            }
            _ => Error::Closed,
        }
    }
}

#[async_trait]
impl WatchSource for HubWatch {
    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        loop {
            match &mut self.phase {
                Phase::Done => return None,
                Phase::CatchUp => {
                    let target = match self.subscribe_or_target() {
                        Ok(Some(target)) => target,
                        Ok(None) => continue,
                        Err(e) => return self.finish(e),
                    };
                    let to = target.min(self.next_rev.saturating_add(CATCH_UP_CHUNK - 1));
                    let events = self
                        .history
                        .events(&self.key, &self.range_end, self.next_rev, to, self.prev_kv)
                        .await;
                    match events {
                        Err(e) => return self.finish(e),
                        Ok(events) => {
                            self.next_rev = to + 1;
                            if !events.is_empty() {
                                return self.deliver(WatchResponse { header_revision: to, events });
                            }
                        }
                    }
                }
                Phase::Live { rx, .. } => {
                    let mut progress_due = self.progress_requested;
                    if !progress_due {
                        let received = if self.progress_notify {
                            let deadline = self.last_sent + self.progress_interval;
                            tokio::select! {
                                r = rx.recv() => Some(r),
                                () = tokio::time::sleep_until(deadline) => None,
                            }
                        } else {
                            Some(rx.recv().await)
                        };
                        match received {
                            Some(Some(resp)) => return self.deliver(resp),
                            Some(None) => {
                                let err = self.terminal_error();
                                return self.finish(err);
                            }
                            None => progress_due = true,
                        }
                    }
                    if progress_due {
                        match self.progress_or_buffered() {
                            Some(resp) => {
                                if resp.is_progress_notify() {
                                    self.progress_requested = false;
                                }
                                return self.deliver(resp);
                            }
                            None => {
                                let err = self.terminal_error();
                                return self.finish(err);
                            }
                        }
                    }
                }
            }
        }
    }

    fn request_progress(&mut self) {
        self.progress_requested = true;
    }
}

impl Drop for HubWatch {
    fn drop(&mut self) {
        self.unsubscribe();
    }
}
