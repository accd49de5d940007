//! watch: a chunked stream of `{"type": ..., "object": ...}` lines fed by a store watch,
//! with label/field filtering (objects moving out of the selection arrive as DELETED),
//! bookmarks, `timeoutSeconds`, initial events and `410 Expired` as an `ERROR` event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use krust_store::{Event, EventKind, WatchRequest, WatchResponse, WatchStream};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::object::{decode, set_resource_version};
use super::read::{Filter, list_page, parse_rv};
use super::{ApiResult, Ctx, store_error};
use crate::status::Status;
use crate::table;

/// Upstream closes watches after a randomised 30–60 minutes when the client sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

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

    let mut pending = VecDeque::new();
    let start = if send_initial {
        let page = list_page(ctx, &filter, None).await?;
        for object in page.items {
            pending.push_back(("ADDED", object));
        }
        if ctx.params.send_initial_events == Some(true) {
            let mut bookmark = bookmark(ctx, page.revision);
            bookmark["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            pending.push_back(("BOOKMARK", bookmark));
        }
        page.revision + 1
    } else {
        rv.unwrap_or(0) + 1
    };

    let key_range = match ctx.req.name.as_deref() {
        Some(name) => WatchRequest::key(ctx.key(name)),
        None => WatchRequest::prefix(ctx.resource.store_namespace_prefix(ctx.namespace())),
    };
    let mut request = key_range.from_revision(start).with_prev_kv();
    if ctx.params.allow_watch_bookmarks {
        request = request.with_progress_notify();
    }
    let stream = match ctx.store().watch(request).await {
        Ok(stream) => Some(stream),
        Err(e @ krust_store::Error::Compacted { .. }) => {
            pending.push_back(("ERROR", store_error(e).to_value()));
            None
        }
        Err(e) => return Err(store_error(e)),
    };

    let timeout = ctx.params.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let state = WatchState {
        pending,
        stream,
        filter,
        deadline: Instant::now() + timeout,
        table: ctx.wants_table().then(|| table::table_version(ctx.accept.as_deref())),
        table_columns_sent: false,
        bookmarks: ctx.params.allow_watch_bookmarks,
        group: ctx.resource.group,
        kind: ctx.resource.kind,
        api_version: ctx.resource.api_version(),
        done: false,
        _open: ctx.state.metrics.as_ref().map(|m| m.watch_started(&ctx.req)),
    };
    let body = Body::from_stream(futures_util::stream::unfold(state, next_line));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn bookmark(ctx: &Ctx<'_>, revision: i64) -> Value {
    json!({
        "kind": ctx.resource.kind,
        "apiVersion": ctx.resource.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
    })
}

struct WatchState {
    pending: VecDeque<(&'static str, Value)>,
    stream: Option<WatchStream>,
    filter: Filter,
    deadline: Instant,
    table: Option<&'static str>,
    table_columns_sent: bool,
    bookmarks: bool,
    group: &'static str,
    kind: &'static str,
    api_version: String,
    done: bool,
    /// Counts this watch in `apiserver_longrunning_requests` while it is open.
    _open: Option<crate::metrics::WatchGauge>,
}

impl WatchState {
    fn line(&mut self, event_type: &str, object: Value) -> Bytes {
        let object = match self.table {
            Some(version) if event_type != "ERROR" && event_type != "BOOKMARK" => {
                let mut meta = Map::new();
                if let Some(rv) = object.pointer("/metadata/resourceVersion") {
                    meta.insert("resourceVersion".into(), rv.clone());
                }
                let with_columns = !self.table_columns_sent;
                self.table_columns_sent = true;
                table::table(self.group, self.kind, version, &[object], meta, with_columns)
            }
            _ => object,
        };
        let mut line =
            serde_json::to_vec(&json!({"type": event_type, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn queue_response(&mut self, response: WatchResponse) {
        if response.is_progress_notify() {
            if self.bookmarks && self.table.is_none() {
                let object = json!({
                    "kind": self.kind,
                    "apiVersion": self.api_version,
                    "metadata": {"resourceVersion": response.header_revision.to_string()},
                });
                self.pending.push_back(("BOOKMARK", object));
            }
            return;
        }
        for event in &response.events {
            match self.convert(event) {
                Ok(Some(pair)) => self.pending.push_back(pair),
                Ok(None) => {}
                Err(status) => {
                    self.pending.push_back(("ERROR", status.to_value()));
                    self.stream = None;
                    return;
                }
            }
        }
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
}

async fn next_line(mut state: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    loop {
        if let Some((event_type, object)) = state.pending.pop_front() {
            let line = state.line(event_type, object);
            return Some((Ok(line), state));
        }
        if state.done {
            return None;
        }
        let stream = state.stream.as_mut()?;
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
                state.pending.push_back(("ERROR", store_error(e).to_value()));
                state.done = true;
            }
            None => state.done = true,
        }
    }
}
