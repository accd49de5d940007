//! `/healthz`, `/livez` and `/readyz` as upstream answers them: `ok`, or with `?verbose` one
//! `[+]check ok` line per check and a closing verdict.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Query, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// What the probes look at. Readiness turns false when shutdown begins, so load balancers and
/// clients move away before connections are drained.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

#[derive(Debug, Deserialize)]
pub struct ProbeQuery {
    verbose: Option<String>,
}

pub async fn livez(query: Query<ProbeQuery>, raw: RawQuery) -> Response {
    probe("livez", &[("ping", true)], &query, raw)
}

pub async fn readyz(
    health: axum::extract::State<Arc<Health>>,
    query: Query<ProbeQuery>,
    raw: RawQuery,
) -> Response {
    let ready = health.ready.load(Ordering::SeqCst);
    probe("readyz", &[("ping", true), ("shutdown", ready)], &query, raw)
}

fn probe(name: &str, checks: &[(&str, bool)], query: &ProbeQuery, raw: RawQuery) -> Response {
    let healthy = checks.iter().all(|(_, ok)| *ok);
    let verbose =
        query.verbose.is_some() || raw.0.as_deref().is_some_and(|q| q.contains("verbose"));
    let code = if healthy { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    if !verbose && healthy {
        return (code, "ok").into_response();
    }
    let mut body = String::new();
    for (check, ok) in checks {
        if *ok {
            body.push_str(&format!("[+]{check} ok\n"));
        } else {
            body.push_str(&format!("[-]{check} failed: reason withheld\n"));
        }
    }
    if healthy {
        body.push_str(&format!("{name} check passed\n"));
    } else {
        body.push_str(&format!("{name} check failed\n"));
    }
    (code, body).into_response()
}
