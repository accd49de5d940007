//! watch: a chunked stream of `{"type": ..., "object": ...}` lines with label/field filtering
//! (objects moving out of the selection arrive as DELETED), bookmarks, `timeoutSeconds`,
//! initial events and `410 Expired` as an `ERROR` event.
//!
//! Watches are fed by the watch cache, whose serialized objects every watcher shares. A watch
//! from a revision the cache's ring no longer reaches (or a watcher that fell that far behind)
//! is fed by a store watch instead, so no event is ever skipped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use krust_store::{
    Event, EventKind, Revision, Store, WatchRequest, WatchResponse, WatchStream, prefix_end,
};
use serde_json::{Map, Value, json};
use tokio::sync::watch as signal;
use tokio::time::Instant;

use super::object::{decode, set_resource_version};
use super::read::{Filter, list_page, parse_rv};
use super::{ApiResult, Ctx, store_error};
use crate::status::Status;
use crate::table;
use crate::watch_cache::{CachedEvent, CachedObject, Events, WatchCache};

/// Upstream closes watches after a randomised 30–60 minutes when the client sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a watch that asked for bookmarks gets one while nothing it sees changes.
const BOOKMARK_PERIOD: Duration = Duration::from_secs(60);
/// How long a watch waits for the cache to load or catch up before the store serves it.
const CACHE_WAIT: Duration = Duration::from_secs(3);

pub async fn watch(ctx: &Ctx<'_>) -> ApiResult {
    let filter = Filter::from_ctx(ctx)?;
    let rv = match ctx.params.resource_version.as_deref() {
        None => None,
        Some(rv) => Some(parse_rv(rv)?),
    };
    let send_initial = match ctx.params.send_initial_events {
        Some(true) => {
            if ctx.params.resource_version_match.as_deref() != Some("NotOlderThan") {
                return Err(Status::bad_request(
                    "sendInitialEvents is forbidden unless resourceVersionMatch is NotOlderThan",
                ));
            }
            if !ctx.params.allow_watch_bookmarks {
                return Err(Status::bad_request(
                    "sendInitialEvents requires allowWatchBookmarks=true",
                ));
            }
            true
        }
        Some(false) => false,
        // Unset: "" and "0" mean "current state, then changes", as upstream.
        None => matches!(rv, None | Some(0)),
    };
    let (start_key, end_key) = match ctx.req.name.as_deref() {
        Some(name) => {
            let key = ctx.key(name);
            let end = format!("{key}\0");
            (key, end)
        }
        None => {
            let prefix = ctx.resource.store_namespace_prefix(ctx.namespace());
            let end = prefix_end(&prefix);
            (prefix, end)
        }
    };

    let mut state = WatchState {
        pending: VecDeque::new(),
        source: Source::Ended,
        filter,
        start_key,
        end_key,
        deadline: Instant::now()
            + ctx.params.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        table: ctx.wants_table().then(|| table::table_version(ctx.accept.as_deref())),
        table_columns_sent: false,
        bookmarks: ctx.params.allow_watch_bookmarks,
        last_bookmark: (Instant::now(), 0),
        group: ctx.resource.group,
        kind: ctx.resource.kind,
        custom: ctx.custom(),
        api_version: ctx.resource.api_version(),
        store: ctx.state.store.clone(),
        done: false,
        _open: ctx.state.metrics.as_ref().map(|m| m.watch_started(&ctx.req)),
    };
    let from_cache = match ctx.state.caches.get(&ctx.resource) {
        Some(cache) => state.start_from_cache(ctx, cache, rv, send_initial).await?,
        None => false,
    };
    if !from_cache {
        state.start_from_store(ctx, rv, send_initial).await?;
    }
    let body = Body::from_stream(futures_util::stream::unfold(state, next_line));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn bookmark_object(kind: &str, api_version: &str, revision: Revision) -> Value {
    json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": {"resourceVersion": revision.to_string()},
    })
}

/// Where a watch's events come from.
enum Source {
    /// The watch cache: events after `after`, woken by `changed`.
    Cache {
        cache: Arc<WatchCache>,
        changed: signal::Receiver<Revision>,
        after: Revision,
    },
    /// A store watch, for revisions the cache no longer holds.
    Store(WatchStream),
    Ended,
}

/// One line to send.
enum Item {
    Value(&'static str, Value),
    Cached(&'static str, Arc<CachedObject>),
}

struct WatchState {
    pending: VecDeque<Item>,
    source: Source,
    filter: Filter,
    start_key: String,
    end_key: String,
    deadline: Instant,
    table: Option<&'static str>,
    table_columns_sent: bool,
    bookmarks: bool,
    /// When the last bookmark went out, and its revision.
    last_bookmark: (Instant, Revision),
    group: &'static str,
    kind: &'static str,
    /// The printer columns of a custom resource.
    custom: Option<Arc<crate::crd::CustomVersion>>,
    api_version: String,
    store: Arc<dyn Store>,
    done: bool,
    /// Counts this watch in `apiserver_longrunning_requests` while it is open.
    _open: Option<crate::metrics::WatchGauge>,
}

impl WatchState {
    /// Starts from the cache; false if the cache cannot serve this watch (not loaded in time,
    /// or a revision older than its ring), which leaves it to the store.
    async fn start_from_cache(
        &mut self,
        ctx: &Ctx<'_>,
        cache: Arc<WatchCache>,
        rv: Option<Revision>,
        send_initial: bool,
    ) -> ApiResult<bool> {
        if send_initial {
            // Unset means the latest state (a consistent read); "0" any state; N not older.
            let target = match rv {
                None => ctx.store().current_revision().await.map_err(store_error)?,
                Some(rv) => rv,
            };
            if !cache.wait_for(target, CACHE_WAIT).await {
                return Ok(false);
            }
            let filter = &self.filter;
            let (snapshot, changed) =
                cache.snapshot_and_subscribe(&self.start_key, &self.end_key, |o| {
                    filter.matches_cached(&o.attrs)
                });
            for object in snapshot.objects {
                self.pending.push_back(Item::Cached("ADDED", object));
            }
            if ctx.params.send_initial_events == Some(true) {
                self.queue_initial_events_end(snapshot.revision);
            }
            self.source = Source::Cache { cache, changed, after: snapshot.revision };
            return Ok(true);
        }
        if !cache.wait_for(0, CACHE_WAIT).await {
            return Ok(false);
        }
        let changed = cache.subscribe();
        let after = match rv {
            Some(rv) if rv > 0 => rv,
            // No revision: changes from now on.
            _ => cache.revision(),
        };
        if !cache.reaches_back_to(after) {
            return Ok(false);
        }
        self.source = Source::Cache { cache, changed, after };
        Ok(true)
    }

    async fn start_from_store(
        &mut self,
        ctx: &Ctx<'_>,
        rv: Option<Revision>,
        send_initial: bool,
    ) -> ApiResult<()> {
        let start = if send_initial {
            let page = list_page(ctx, &self.filter, None).await?;
            for object in page.items {
                self.pending.push_back(Item::Value("ADDED", object));
            }
            if ctx.params.send_initial_events == Some(true) {
                self.queue_initial_events_end(page.revision);
            }
            page.revision + 1
        } else {
            rv.unwrap_or(0) + 1
        };
        self.watch_store(start).await.map_err(store_error)
    }

    /// Follows the store from `start` (inclusive); a compacted start is an `ERROR` event.
    async fn watch_store(&mut self, start: Revision) -> Result<(), krust_store::Error> {
        let mut request =
            WatchRequest::range(self.start_key.clone(), self.end_key.clone()).from_revision(start);
        request = request.with_prev_kv();
        if self.bookmarks {
            request = request.with_progress_notify();
        }
        match self.store.watch(request).await {
            Ok(stream) => self.source = Source::Store(stream),
            Err(e @ krust_store::Error::Compacted { .. }) => {
                self.pending.push_back(Item::Value("ERROR", store_error(e).to_value()));
                self.source = Source::Ended;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn line(&mut self, item: Item) -> Bytes {
        let (event_type, object) = match item {
            Item::Cached(event_type, object) if self.table.is_none() => {
                // The shared bytes go out as they are: no per-watcher serialization.
                let mut line = Vec::with_capacity(object.bytes.len() + 40);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(event_type.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(&object.bytes);
                line.extend_from_slice(b"}\n");
                return Bytes::from(line);
            }
            Item::Cached(event_type, object) => {
                (event_type, serde_json::from_slice(&object.bytes).unwrap_or(Value::Null))
            }
            Item::Value(event_type, object) => (event_type, object),
        };
        let object = match self.table {
            Some(version) if event_type != "ERROR" && event_type != "BOOKMARK" => {
                let mut meta = Map::new();
                if let Some(rv) = object.pointer("/metadata/resourceVersion") {
                    meta.insert("resourceVersion".into(), rv.clone());
                }
                let with_columns = !self.table_columns_sent;
                self.table_columns_sent = true;
                let custom = self.custom.as_ref().map(|c| c.columns.as_slice());
                table::table(self.group, self.kind, custom, version, &[object], meta, with_columns)
            }
            _ => object,
        };
        let mut line =
            serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// The bookmark that ends the initial events of a watch-list (`sendInitialEvents`).
    fn queue_initial_events_end(&mut self, revision: Revision) {
        let mut bookmark = bookmark_object(self.kind, &self.api_version, revision);
        bookmark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        self.pending.push_back(Item::Value("BOOKMARK", bookmark));
    }

    fn queue_bookmark(&mut self, revision: Revision) {
        if self.bookmarks && self.table.is_none() && revision > self.last_bookmark.1 {
            let object = bookmark_object(self.kind, &self.api_version, revision);
            self.pending.push_back(Item::Value("BOOKMARK", object));
            self.last_bookmark = (Instant::now(), revision);
        }
    }

    fn queue_response(&mut self, response: WatchResponse) {
        if response.is_progress_notify() {
            self.queue_bookmark(response.header_revision);
            return;
        }
        for event in &response.events {
            match self.convert(event) {
                Ok(Some((event_type, object))) => {
                    self.pending.push_back(Item::Value(event_type, object));
                }
                Ok(None) => {}
                Err(status) => {
                    self.pending.push_back(Item::Value("ERROR", status.to_value()));
                    self.source = Source::Ended;
                    return;
                }
            }
        }
    }

    /// A cached event as the client sees it through its selectors.
    fn convert_cached(&self, event: &CachedEvent) -> Option<Item> {
        let matches = |o: &CachedObject| self.filter.matches_cached(&o.attrs);
        let old_matches = event.prev.as_deref().is_some_and(matches);
        let event_type = match event.kind {
            EventKind::Put => match (old_matches, matches(&event.object)) {
                (false, true) => "ADDED",
                (true, true) => "MODIFIED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            EventKind::Delete if old_matches => "DELETED",
            EventKind::Delete => return None,
        };
        Some(Item::Cached(event_type, event.object.clone()))
    }

    /// A store event as the client sees it through its selectors.
    fn convert(&self, event: &Event) -> Result<Option<(&'static str, Value)>, Status> {
        let old = match &event.prev_kv {
            Some(kv) => Some(decode(kv)?),
            None => None,
        };
        match event.kind {
            EventKind::Put => {
                let new = decode(&event.kv)?;
                let new_matches = self.filter.matches(&new);
                let created = event.kv.create_revision == event.kv.mod_revision;
                // Without the previous value (history compacted) assume it matched as now.
                let old_matches =
                    old.as_ref().map_or(new_matches && !created, |o| self.filter.matches(o));
                Ok(match (old_matches, new_matches) {
                    (_, true) if created => Some(("ADDED", new)),
                    (true, true) => Some(("MODIFIED", new)),
                    (false, true) => Some(("ADDED", new)),
                    (true, false) => Some(("DELETED", new)),
                    (false, false) => None,
                })
            }
            EventKind::Delete => {
                let Some(mut old) = old else { return Ok(None) };
                if !self.filter.matches(&old) {
                    return Ok(None);
                }
                set_resource_version(&mut old, event.kv.mod_revision);
                Ok(Some(("DELETED", old)))
            }
        }
    }

    /// Waits for the next batch from the cache. False once the watch is over.
    async fn next_from_cache(&mut self) -> bool {
        let Source::Cache { cache, changed, after } = &mut self.source else { return false };
        changed.borrow_and_update();
        let (events, revision) = match cache.events_after(*after, &self.start_key, &self.end_key) {
            Events::Ready { events, revision } => (events, revision),
            Events::TooOld => {
                // This watcher fell behind the ring: the store still has the history.
                let start = *after + 1;
                if let Err(e) = self.watch_store(start).await {
                    self.pending.push_back(Item::Value("ERROR", store_error(e).to_value()));
                    self.source = Source::Ended;
                }
                return true;
            }
        };
        *after = revision;
        if !events.is_empty() {
            let items: Vec<Item> = events.iter().filter_map(|e| self.convert_cached(e)).collect();
            self.pending.extend(items);
            return true;
        }
        let bookmark_due = self.last_bookmark.0 + BOOKMARK_PERIOD;
        if self.bookmarks && Instant::now() >= bookmark_due {
            self.queue_bookmark(revision);
            if !self.pending.is_empty() {
                return true;
            }
        }
        let Source::Cache { changed, .. } = &mut self.source else { return false };
        tokio::select! {
            moved = changed.changed() => moved.is_ok(),
            () = tokio::time::sleep_until(self.deadline) => false,
            () = tokio::time::sleep_until(bookmark_due), if self.bookmarks => true,
        }
    }
}

async fn next_line(mut state: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    loop {
        if let Some(item) = state.pending.pop_front() {
            let line = state.line(item);
            return Some((Ok(line), state));
        }
        if state.done {
            return None;
        }
        match &mut state.source {
            Source::Ended => return None,
            Source::Cache { .. } => {
                if !state.next_from_cache().await {
                    state.done = true;
                }
            }
            Source::Store(stream) => {
                let next = tokio::select! {
                    next = stream.next() => next,
                    () = tokio::time::sleep_until(state.deadline) => {
                        state.done = true;
                        continue;
                    }
                };
                match next {
                    Some(Ok(response)) => state.queue_response(response),
                    Some(Err(e)) => {
                        state.pending.push_back(Item::Value("ERROR", store_error(e).to_value()));
                        state.done = true;
                    }
                    None => state.done = true,
                }
            }
        }
    }
}
