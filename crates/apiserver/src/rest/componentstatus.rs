//! `componentstatuses` (deprecated upstream since 1.19, still served, and what `kubectl get cs`
//! reads): computed on each request, never stored. The store answers for `etcd-0`; the scheduler
//! and the controller manager are healthy while their leader-election Lease in `kube-system` is
//! held and renewed — the API is how the API server learns about other components.

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use krust_api::catalog::Catalog;
use krust_store::StoreExt;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ApiResult, Ctx, json_response};
use crate::table;

/// The components and the Lease each one holds while it runs.
const LEASED: [(&str, &str); 2] =
    [("scheduler", "kube-scheduler"), ("controller-manager", "kube-controller-manager")];

const DEPRECATION: &str = "299 - \"v1 ComponentStatus is deprecated in v1.19+\"";

pub(super) async fn get_or_list(ctx: &Ctx<'_>) -> ApiResult {
    let mut items = Vec::new();
    for (component, lease) in LEASED {
        items.push(leased(ctx, component, lease).await);
    }
    items.push(store_status(ctx).await);
    let items: Vec<Value> = match ctx.req.name.as_deref() {
        Some(name) => {
            let one = items.into_iter().find(|i| i["metadata"]["name"] == name);
            vec![one.ok_or_else(|| ctx.not_found(name))?]
        }
        None => items,
    };
    let response = if ctx.wants_table() {
        let version = table::table_version(ctx.accept.as_deref());
        let table = table::table("", "ComponentStatus", None, version, &items, Map::new(), true);
        json_response(StatusCode::OK, &table)
    } else if ctx.req.name.is_some() {
        json_response(StatusCode::OK, &items[0])
    } else {
        let list = json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items});
        json_response(StatusCode::OK, &list)
    };
    Ok(with_deprecation(response))
}

fn with_deprecation(mut response: Response) -> Response {
    response.headers_mut().append("warning", HeaderValue::from_static(DEPRECATION));
    response
}

fn status(name: &str, healthy: bool, message: &str, error: &str) -> Value {
    let mut condition =
        json!({"type": "Healthy", "status": if healthy { "True" } else { "False" }});
    if !message.is_empty() {
        condition["message"] = json!(message);
    }
    if !error.is_empty() {
        condition["error"] = json!(error);
    }
    json!({
        "kind": "ComponentStatus", "apiVersion": "v1",
        "metadata": {"name": name},
        "conditions": [condition],
    })
}

async fn store_status(ctx: &Ctx<'_>) -> Value {
    match ctx.store().current_revision().await {
        Ok(_) => status("etcd-0", true, r#"{"health":"true","reason":""}"#, ""),
        Err(e) => status("etcd-0", false, "", &e.to_string()),
    }
}

async fn leased(ctx: &Ctx<'_>, component: &str, lease: &str) -> Value {
    let key = Catalog::builtin_lookup("coordination.k8s.io", "v1", "leases")
        .map(|r| r.store_key(Some("kube-system"), lease));
    let stored = match key {
        Some(key) => ctx.store().get(&key).await.ok().flatten(),
        None => None,
    };
    let lease_value: Option<Value> = stored.and_then(|kv| serde_json::from_slice(&kv.value).ok());
    match lease_value.as_ref().map(|l| renewed_in_time(l, OffsetDateTime::now_utc())) {
        Some(Ok(())) => status(component, true, "ok", ""),
        Some(Err(why)) => status(component, false, "", &why),
        None => status(
            component,
            false,
            "",
            &format!("no leader lease kube-system/{lease}: {component} is not running"),
        ),
    }
}

/// Whether a Lease is held and was renewed within its duration.
fn renewed_in_time(lease: &Value, now: OffsetDateTime) -> Result<(), String> {
    let spec = lease.get("spec").unwrap_or(&Value::Null);
    let holder = spec.get("holderIdentity").and_then(Value::as_str).unwrap_or_default();
    if holder.is_empty() {
        return Err("the leader lease has no holder".into());
    }
    let duration = spec.get("leaseDurationSeconds").and_then(Value::as_i64).unwrap_or(0);
    let renewed = spec
        .get("renewTime")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
    match renewed {
        Some(at) if now - at <= time::Duration::seconds(duration) => Ok(()),
        Some(at) => {
            Err(format!("leader {holder} last renewed its lease at {at}, over {duration}s ago"))
        }
        None => Err(format!("leader {holder} never renewed its lease")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::renewed_in_time;

    #[test]
    fn a_lease_is_healthy_while_renewed_within_its_duration() {
        let now = OffsetDateTime::parse("2026-01-01T00:00:20Z", &Rfc3339).expect("time");
        let lease = |holder: &str, renewed: &str| json!({"spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed}});
        assert!(renewed_in_time(&lease("a", "2026-01-01T00:00:10.000000Z"), now).is_ok());
        assert!(renewed_in_time(&lease("a", "2026-01-01T00:00:01.000000Z"), now).is_err());
        assert!(renewed_in_time(&lease("", "2026-01-01T00:00:19.000000Z"), now).is_err());
    }
}
