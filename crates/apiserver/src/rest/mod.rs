//! The generic REST machine: one code path for every resource in the catalog. A request is
//! parsed into a [`ResourceRequest`](crate::request::ResourceRequest), checked against the
//! catalog, and served from the store: get, list, watch, create, update, patch, delete and
//! deletecollection, plus the `status` subresource.

mod allocate;
mod apply;
mod componentstatus;
mod defaults;
mod field_validation;
mod legacy;
mod managed_fields;
mod metrics_api;
mod node_proxy;
mod object;
mod params;
mod partial;
mod read;
mod subresource;
mod watch;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use krust_api::catalog::{Catalog, Resource};
use krust_store::Store;
use serde_json::Value;

use crate::discovery;
use crate::request::{self, ApiPath, ResourceRequest, Verb};
use crate::status::Status;

pub use allocate::{DEFAULT_SERVICE_CIDR, ensure_kubernetes_service};
pub use node_proxy::KubeletClient;
pub use object::ensure_namespaces;
pub(crate) use object::now;
use params::Params;

/// Bodies larger than this are refused with 413, as upstream does.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Events expire an hour after their last write, as upstream's `--event-ttl`.
const EVENT_TTL: Duration = Duration::from_secs(3600);
/// One lease serves every event written within this window (upstream's lease reuse), so
/// the store does not hold one lease per event.
const LEASE_REUSE: Duration = Duration::from_secs(60);

/// What every request handler shares.
#[derive(Debug)]
pub struct ApiState {
    /// What is served: the built-in resources and those of CustomResourceDefinitions, replaced
    /// whenever a CRD changes (see [`crate::crd`]).
    catalog: std::sync::RwLock<Arc<Catalog>>,
    /// The schemas, printer columns and states of custom resources.
    pub crds: crate::crd::CustomResources,
    pub store: Arc<dyn Store>,
    /// `host:port` clients use to reach this server (for `/api`'s address list).
    pub server_address: String,
    /// Record the `orphan`/`foregroundDeletion` finalizers that deletion's propagation
    /// policies ask for. Only while a garbage collector runs to remove them: without one
    /// every such delete would hang, so until the controller manager exists the object is
    /// deleted at once and its dependents are left alone (what orphaning does).
    pub record_gc_finalizers: bool,
    /// Where Service ClusterIPs come from (IPv4 network and prefix length).
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// None only if the metric definitions were refused (they are constants).
    pub metrics: Option<crate::metrics::Metrics>,
    /// Lists and watches are served from here.
    pub caches: crate::watch_cache::WatchCaches,
    /// How `pods/log` reaches kubelets (none: such requests fail with 503).
    pub kubelet_client: Option<node_proxy::KubeletClient>,
    event_lease: tokio::sync::Mutex<Option<(krust_store::LeaseId, Instant)>>,
    /// The kubelets' previous samples, for the metrics API's CPU rates.
    pub(crate) metric_samples: metrics_api::Samples,
}

impl ApiState {
    pub fn new(catalog: Catalog, store: Arc<dyn Store>, server_address: String) -> Self {
        let metrics = crate::metrics::Metrics::new().ok();
        let store: Arc<dyn Store> = match &metrics {
            Some(metrics) => Arc::new(crate::metrics::MeteredStore::new(store, metrics)),
            None => store,
        };
        Self {
            metrics,
            caches: crate::watch_cache::WatchCaches::new(store.clone()),
            catalog: std::sync::RwLock::new(Arc::new(catalog)),
            crds: crate::crd::CustomResources::default(),
            store,
            server_address,
            record_gc_finalizers: false,
            service_cidr: allocate::DEFAULT_SERVICE_CIDR,
            kubelet_client: None,
            event_lease: tokio::sync::Mutex::new(None),
            metric_samples: metrics_api::Samples::default(),
        }
    }

    /// What is served now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Serves `catalog` from now on.
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(catalog);
    }

    /// The store lease a new object of `resource` is attached to (0: none). Events get one
    /// that outlives the event TTL by the reuse window.
    async fn lease_for(
        &self,
        resource: &Resource,
    ) -> Result<krust_store::LeaseId, krust_store::Error> {
        let is_event = resource.kind == "Event" && matches!(resource.group, "" | "events.k8s.io");
        if !is_event {
            return Ok(0);
        }
        let mut lease = self.event_lease.lock().await;
        if let Some((id, granted)) = *lease
            && granted.elapsed() < LEASE_REUSE
        {
            return Ok(id);
        }
        let id = self.store.lease_grant(EVENT_TTL + LEASE_REUSE).await?;
        *lease = Some((id, Instant::now()));
        Ok(id)
    }
}

type ApiResult<T = Response> = Result<T, Status>;

/// The handler for everything under `/api` and `/apis`.
pub async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    match dispatch(&state, request).await {
        Ok(response) => response,
        Err(status) => status.into_response(),
    }
}

async fn dispatch(state: &ApiState, request: Request) -> ApiResult {
    let (parts, body) = request.into_parts();
    let params = Params::parse(parts.uri.query())?;
    let Some(path) = request::parse(&parts.method, parts.uri.path(), params.watch) else {
        return Err(Status::path_not_found());
    };
    let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if !accepts_json(accept.as_deref()) {
        return Err(Status::not_acceptable(&["application/json", "application/yaml"]));
    }
    let aggregated = discovery::aggregated_version(accept.as_deref());
    let catalog = state.catalog();
    let req = match path {
        ApiPath::Root { legacy } if let Some((version, content_type)) = aggregated => {
            let body = discovery::aggregated(&catalog, legacy, version);
            let mut response = json_response(StatusCode::OK, &body);
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, axum::http::HeaderValue::from_static(content_type));
            return Ok(response);
        }
        ApiPath::Root { legacy: true } => {
            return Ok(json_response(
                StatusCode::OK,
                &discovery::api_versions(&state.server_address),
            ));
        }
        ApiPath::Root { legacy: false } => {
            return Ok(json_response(StatusCode::OK, &discovery::api_group_list(&catalog)));
        }
        ApiPath::Group { group } => {
            let group =
                discovery::api_group(&catalog, &group).ok_or_else(Status::path_not_found)?;
            return Ok(json_response(StatusCode::OK, &group));
        }
        ApiPath::GroupVersion { group, version } => {
            let list = discovery::api_resource_list(&catalog, &group, &version)
                .ok_or_else(Status::path_not_found)?;
            return Ok(json_response(StatusCode::OK, &list));
        }
        ApiPath::Resource(req) => req,
    };
    let started = Instant::now();
    let mut parts = parts;
    let upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .map(|u| Arc::new(std::sync::Mutex::new(Some(u))));
    let result =
        serve_resource(state, req.clone(), params, accept, parts.headers, upgrade, body).await;
    if let Some(metrics) = &state.metrics {
        let code = match &result {
            Ok(response) => response.status(),
            Err(status) => {
                StatusCode::from_u16(status.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        };
        metrics.observe(&req, code, started.elapsed());
    }
    result
}

async fn serve_resource(
    state: &ApiState,
    req: ResourceRequest,
    params: Params,
    accept: Option<String>,
    headers: HeaderMap,
    upgrade: Option<Upgrade>,
    body: Body,
) -> ApiResult {
    let catalog = state.catalog();
    let requested = catalog
        .lookup(&req.group, &req.version, &req.resource)
        .ok_or_else(Status::path_not_found)?
        .clone();
    check_scope(&requested, &req)?;
    // A legacy version is served by the handlers of its storage version, converted at the edges.
    let storage = requested.storage.and_then(|(g, v)| catalog.lookup(g, v, requested.plural));
    let (resource, served_as) = match storage {
        Some(storage) => (storage.clone(), Some(requested)),
        None => (requested, None),
    };
    let watch = req.verb == Verb::Watch;
    let ctx = Ctx { state, resource, req, params, accept, headers, served_as, upgrade };
    let objects = matches!(ctx.req.subresource.as_deref(), None | Some("status"));
    let partial = partial::wanted(ctx.accept.as_deref()).filter(|_| objects && !ctx.wants_table());
    if let Some(wanted) = partial {
        // Refused before anything is done, rather than after the write as upstream does.
        let served = ctx.served_as.as_ref().unwrap_or(&ctx.resource);
        let go_type = match ctx.custom() {
            Some(_) => "*unstructured.Unstructured".to_owned(),
            None => format!("*{}.{}", served.version, served.kind),
        };
        if let Some(status) = partial::mismatch(wanted, ctx.req.verb, &go_type) {
            return Err(status);
        }
    }
    let response = serve_ctx(&ctx, body).await?;
    let response = match &ctx.served_as {
        Some(served) => legacy::response_to_served(served, &ctx.resource, watch, response).await?,
        None => response,
    };
    match partial {
        Some(wanted) => partial::response(wanted.version, watch, response).await,
        None => Ok(response),
    }
}

async fn serve_ctx(ctx: &Ctx<'_>, body: Body) -> ApiResult {
    let is_pods = ctx.resource.group.is_empty() && ctx.resource.plural == "pods";
    match (ctx.req.subresource.as_deref(), ctx.req.verb) {
        (None, _) => {}
        (Some("status"), Verb::Get | Verb::Update | Verb::Patch)
            if ctx.resource.subresource("status").is_some() => {}
        (Some("finalize"), Verb::Update)
            if ctx.resource.group.is_empty() && ctx.resource.plural == "namespaces" => {}
        (Some("scale"), Verb::Get | Verb::Update | Verb::Patch)
            if ctx.resource.subresource("scale").is_some() =>
        {
            return subresource::scale(ctx, read_body(body).await?).await;
        }
        (Some("binding"), Verb::Create) if is_pods => {
            let name = ctx.req.name.clone();
            return subresource::bind(ctx, name.as_deref(), read_body(body).await?).await;
        }
        (Some("eviction"), Verb::Create) if is_pods => {
            return subresource::evict(ctx, read_body(body).await?).await;
        }
        (Some("log"), Verb::Get) if is_pods => return node_proxy::pod_log(ctx).await,
        (Some("proxy"), Verb::Get)
            if ctx.resource.group.is_empty() && ctx.resource.plural == "nodes" =>
        {
            return node_proxy::node_get(ctx).await;
        }
        (Some(sub @ ("exec" | "attach" | "portforward")), Verb::Get | Verb::Create) if is_pods => {
            return node_proxy::stream(ctx, sub).await;
        }
        (Some(_), _) => return Err(Status::path_not_found()),
    }
    if ctx.resource.group.is_empty()
        && ctx.resource.plural == "bindings"
        && ctx.req.verb == Verb::Create
    {
        return subresource::bind(ctx, None, read_body(body).await?).await;
    }
    if ctx.req.subresource.is_none() && !ctx.resource.has_verb(ctx.req.verb.as_str()) {
        return Err(Status::method_not_allowed());
    }
    // Resource metrics are computed from the kubelets (metrics-server's API upstream).
    if ctx.resource.group == "metrics.k8s.io" && matches!(ctx.req.verb, Verb::Get | Verb::List) {
        return metrics_api::get_or_list(ctx).await;
    }
    // Component statuses are computed, not stored.
    if ctx.resource.group.is_empty()
        && ctx.resource.plural == "componentstatuses"
        && matches!(ctx.req.verb, Verb::Get | Verb::List)
    {
        return componentstatus::get_or_list(ctx).await;
    }

    match ctx.req.verb {
        Verb::Get => read::get(ctx).await,
        Verb::List => read::list(ctx).await,
        Verb::Watch => watch::watch(ctx).await,
        Verb::Create => write::create(ctx, read_body(body).await?).await,
        Verb::Update => write::update(ctx, read_body(body).await?).await,
        Verb::Patch => write::patch(ctx, read_body(body).await?).await,
        Verb::Delete => write::delete(ctx, read_body(body).await?).await,
        Verb::DeleteCollection => write::delete_collection(ctx, read_body(body).await?).await,
    }
}

/// Everything a handler needs about one request.
#[derive(Clone)]
struct Ctx<'a> {
    state: &'a ApiState,
    resource: Resource,
    req: ResourceRequest,
    params: Params,
    accept: Option<String>,
    headers: HeaderMap,
    /// The legacy resource the client addressed, when `resource` is its storage version.
    served_as: Option<Resource>,
    /// The connection's upgrade, for the streaming subresources (exec, attach, portforward).
    upgrade: Option<Upgrade>,
}

/// A connection upgrade the handler may take (once).
type Upgrade = Arc<std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>>;

impl Ctx<'_> {
    fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    /// The namespace the request addresses (None for cluster-scoped resources and for
    /// all-namespace lists and watches).
    fn namespace(&self) -> Option<&str> {
        if self.resource.namespaced { self.req.namespace.as_deref() } else { None }
    }

    fn name(&self) -> &str {
        self.req.name.as_deref().unwrap_or_default()
    }

    fn is_status(&self) -> bool {
        self.req.subresource.as_deref() == Some("status")
    }

    fn key(&self, name: &str) -> String {
        self.resource.store_key(self.namespace(), name)
    }

    fn not_found(&self, name: &str) -> Status {
        Status::failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", self.resource.qualified_name()),
        )
        .with_details(name, self.resource.group, self.resource.plural)
    }

    fn already_exists(&self, name: &str) -> Status {
        Status::failure(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", self.resource.qualified_name()),
        )
        .with_details(name, self.resource.group, self.resource.plural)
    }

    fn conflict(&self, name: &str, why: &str) -> Status {
        Status::failure(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                self.resource.qualified_name()
            ),
        )
        .with_details(name, self.resource.group, self.resource.plural)
    }

    /// 422 Invalid with one cause per field error, each with upstream's reason.
    fn invalid_fields(&self, name: &str, errors: &[krust_api::validation::FieldError]) -> Status {
        let pairs: Vec<(String, String)> =
            errors.iter().map(|e| (e.field.clone(), e.detail.clone())).collect();
        let causes = errors
            .iter()
            .map(|e| serde_json::json!({"reason": e.reason, "message": e.detail, "field": e.field}))
            .collect();
        self.invalid(name, &pairs).with_causes(causes)
    }

    /// 422 Invalid with one cause per `(field, message)`, as upstream's field errors read.
    fn invalid(&self, name: &str, errors: &[(String, String)]) -> Status {
        let summary: Vec<String> = errors.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        // Upstream names the kind with its group (`Deployment.apps`), the core group bare.
        let kind = match self.resource.group {
            "" => self.resource.kind.to_owned(),
            group => format!("{}.{group}", self.resource.kind),
        };
        let message = match summary.as_slice() {
            [one] => format!("{kind} \"{name}\" is invalid: {one}"),
            many => format!("{kind} \"{name}\" is invalid: [{}]", many.join(", ")),
        };
        let causes = errors
            .iter()
            .map(|(field, message)| {
                serde_json::json!({"reason": "FieldValueInvalid", "message": message, "field": field})
            })
            .collect();
        Status::failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
            .with_details(name, self.resource.group, self.resource.kind)
            .with_causes(causes)
    }

    /// The custom resource version addressed; None for a built-in resource.
    fn custom(&self) -> Option<Arc<crate::crd::CustomVersion>> {
        self.state.crds.get(self.served_as.as_ref().unwrap_or(&self.resource))
    }

    fn is_crd(&self) -> bool {
        self.resource.group == "apiextensions.k8s.io"
            && self.resource.kind == "CustomResourceDefinition"
    }

    /// A Table of `objects` of the resource addressed.
    fn table(
        &self,
        version: &str,
        objects: &[Value],
        list_meta: serde_json::Map<String, Value>,
    ) -> Value {
        let custom = self.custom();
        let columns = custom.as_ref().map(|c| c.columns.as_slice());
        let (group, kind) = (self.resource.group, self.resource.kind);
        crate::table::table(group, kind, columns, version, objects, list_meta, true)
    }

    fn wants_table(&self) -> bool {
        crate::table::wants_table(self.accept.as_deref())
    }
}

/// Rewrites each watch line (`{"type", "object"}`) of a chunk with `rewrite`; lines that are
/// not JSON pass as they are.
fn rewrite_watch_lines(
    chunk: &axum::body::Bytes,
    rewrite: impl Fn(&mut serde_json::Value),
) -> axum::body::Bytes {
    let mut out = Vec::with_capacity(chunk.len() + 16);
    for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(mut event) => {
                rewrite(&mut event);
                match serde_json::to_vec(&event) {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(_) => out.extend_from_slice(line),
                }
            }
            Err(_) => out.extend_from_slice(line),
        }
        out.push(b'\n');
    }
    axum::body::Bytes::from(out)
}

/// Upstream serves JSON (and YAML and protobuf); a client that accepts none of what we
/// produce gets 406. `*/*`, `application/*` and a missing header all accept JSON.
fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|media| {
        let mime = media.split(';').next().unwrap_or_default().trim();
        matches!(mime, "application/json" | "*/*" | "application/*" | "application/yaml" | "text/*")
    })
}

async fn read_body(body: Body) -> ApiResult<axum::body::Bytes> {
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            // `to_bytes` reports an over-limit body as a length-limit error in its source chain.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit exceeded"));
            if over {
                Err(Status::too_large(MAX_BODY_BYTES))
            } else {
                Err(Status::bad_request(format!("unable to read the request body: {e}")))
            }
        }
    }
}

/// Namespaced resources need a namespace for named operations and creates; cluster-scoped
/// resources are never addressed inside one (the namespaces resource addresses itself).
fn check_scope(resource: &Resource, req: &ResourceRequest) -> ApiResult<()> {
    let needs_namespace = !matches!(req.verb, Verb::List | Verb::Watch) || req.name.is_some();
    if resource.namespaced && req.namespace.is_none() && needs_namespace {
        return Err(Status::path_not_found());
    }
    let namespaces_itself = resource.group.is_empty() && resource.plural == "namespaces";
    if !resource.namespaced && req.namespace.is_some() && !namespaces_itself {
        return Err(Status::path_not_found());
    }
    Ok(())
}

pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => Status::internal(format!("cannot encode the response: {e}")).into_response(),
    }
}

/// Every store failure becomes a Status here; the match is exhaustive on purpose.
fn store_error(error: krust_store::Error) -> Status {
    use krust_store::Error as E;
    match error {
        E::Compacted { requested, compacted } => {
            Status::expired(format!("too old resource version: {requested} ({compacted})"))
        }
        E::FutureRevision { requested, current } => {
            Status::timeout(format!("Too large resource version: {requested}, current: {current}"))
                .with_retry_after(1)
        }
        E::ValueTooLarge { size, limit, .. } => Status::failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: the object is {size} bytes, the limit is {limit}"),
        ),
        E::LeaseNotFound { id } => Status::internal(format!("storage lease {id} not found")),
        E::InvalidArgument { reason } => {
            Status::internal(format!("storage rejected the request: {reason}"))
        }
        E::WatchLagged { revision } => Status::expired(format!(
            "the watch fell behind after resource version {revision}; list again"
        )),
        E::DiskFull { .. } => Status::service_unavailable(
            "the storage is full: the write was not applied (database or disk is full)",
        ),
        e @ E::Storage { .. } => Status::internal(e.to_string()),
        E::Closed => Status::service_unavailable("the storage is shutting down"),
    }
}

/// The REST routes alone, for tests that drive the machine without TLS.
#[cfg(test)]
pub(crate) fn test_router(state: Arc<ApiState>) -> axum::Router {
    use axum::routing::any;
    axum::Router::new()
        .route("/api", any(handle))
        .route("/api/{*rest}", any(handle))
        .route("/apis", any(handle))
        .route("/apis/{*rest}", any(handle))
        .with_state(state)
}

#[cfg(test)]
mod tests;
