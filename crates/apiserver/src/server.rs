//! The HTTPS edge: TLS (HTTP/2 and HTTP/1.1), client-certificate authentication, routing and
//! graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use krust_api::catalog::Catalog;
use krust_store::Store;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{debug, info, warn};

use crate::health::{self, Health};
use crate::openapi;
use crate::pki::{self, Pki};
use crate::rest::{self, ApiState};
use crate::status::Status;
use crate::version::VersionInfo;
use crate::{Error, Result};

/// How long open connections (watches included) get to finish once shutdown begins.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    /// Holds `pki/` and `admin.kubeconfig`.
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    /// 0 picks a free port; the kubeconfig then names the port actually bound.
    pub secure_port: u16,
    /// Where every object lives.
    pub store: Arc<dyn Store>,
    /// A garbage collector runs: deletes with the Orphan or Foreground policy record the
    /// `orphan` / `foregroundDeletion` finalizer for it (without one the object goes at once).
    pub garbage_collector: bool,
}

/// The verified client certificate chain of a connection, if the client presented one.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Option<Arc<Vec<CertificateDer<'static>>>>);

/// A bound, not yet serving, API server.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    health: Arc<Health>,
    kubeconfig: PathBuf,
    api: Arc<ApiState>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.listener.local_addr().ok())
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Loads or creates the PKI, binds the secure port and writes `<data-dir>/admin.kubeconfig`.
    pub async fn bind(config: Config) -> Result<Self> {
        let mut ips = vec![config.bind_address];
        for loopback in ["127.0.0.1", "::1"] {
            if let Ok(ip) = loopback.parse() {
                ips.push(ip);
            }
        }
        let names = vec![
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ];
        let pki = Pki::load_or_create(&config.data_dir, &ips, &names)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(&pki)?));

        let addr = SocketAddr::new(config.bind_address, config.secure_port);
        let listener =
            TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
        let local = listener.local_addr().map_err(|source| Error::Bind { addr, source })?;

        // A client on this machine reaches a wildcard bind through loopback.
        let host = match local.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let kubeconfig = config.data_dir.join("admin.kubeconfig");
        pki::write_kubeconfig(
            &kubeconfig,
            &pki.admin_kubeconfig(&format!("https://{host}:{}", local.port())),
        )?;

        rest::ensure_namespaces(config.store.as_ref()).await.map_err(Error::Store)?;
        let advertise = match local.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        rest::ensure_kubernetes_service(
            config.store.as_ref(),
            rest::DEFAULT_SERVICE_CIDR,
            advertise,
            local.port(),
        )
        .await
        .map_err(Error::Store)?;
        let mut state = ApiState::new(
            Catalog::builtin(),
            config.store.clone(),
            format!("{host}:{}", local.port()),
        );
        state.record_gc_finalizers = config.garbage_collector;
        // The API server reaches kubelets as the cluster admin (upstream gives it a client
        // certificate of the system:masters group too).
        match rest::KubeletClient::new(&pki.admin_cert_pem, &pki.admin_key_pem) {
            Ok(client) => state.kubelet_client = Some(client),
            Err(e) => tracing::warn!(error = %e, "no kubelet client: pods/log will fail"),
        }
        let api = Arc::new(state);
        // Every cache loads and follows its resource from the start, as upstream's do, so
        // the first list is as fast as the next (they load in the background).
        for resource in api.catalog().resources() {
            if resource.has_verb("watch") {
                api.caches.get(resource);
            }
        }
        let health = Arc::new(Health::default());
        Ok(Self {
            listener,
            acceptor,
            router: router(health.clone(), api.clone()),
            api,
            health,
            kubeconfig,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn kubeconfig_path(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// Serves until `shutdown` fires, then stops accepting, reports not-ready and drains open
    /// connections for a grace period.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let Self { listener, acceptor, router, health, api, .. } = self;
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut connections = JoinSet::new();
        health.set_ready(true);
        info!(addr = ?listener.local_addr().ok(), "API server serving");
        // Field validation's schemas are built by the first write that needs them (off the
        // async threads, ~0.1 s): an idle server does not carry them.
        let crds = tokio::spawn(crate::crd::run(api.clone(), shutdown.clone()));

        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Out of file descriptors and the like: back off, don't spin.
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let router = router.clone();
                    let watcher = graceful.watcher();
                    connections.spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(tls) => tls,
                            Err(e) => {
                                debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        };
                        let certs = tls.get_ref().1.peer_certificates().map(|c| {
                            Arc::new(c.iter().map(|d| d.clone().into_owned()).collect::<Vec<_>>())
                        });
                        let client_cert = ClientCertificate(certs);
                        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                            req.extensions_mut().insert(client_cert.clone());
                            router.clone().call(req)
                        });
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                        if let Err(e) = watcher.watch(conn.into_owned()).await {
                            debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
            }
        }

        health.set_ready(false);
        crds.abort();
        drop(listener);
        info!("API server draining connections");
        if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown()).await.is_err() {
            warn!("connections still open after the grace period; closing them");
        }
        connections.shutdown().await;
        api.caches.shutdown().await;
        Ok(())
    }
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.serving_cert_pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Tls(rustls::Error::General(format!("serving certificate: {e}"))))?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes())
        .map_err(|e| Error::Tls(rustls::Error::General(format!("serving key: {e}"))))?;

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        let ca = ca.map_err(|e| Error::Tls(rustls::Error::General(format!("CA: {e}"))))?;
        roots.add(ca).map_err(Error::Tls)?;
    }
    // Health and version are public, like upstream's system:public-info-viewer; everything else
    // is refused without a certificate by the authentication layer, not by the handshake.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Tls(rustls::Error::General(format!("client verifier: {e}"))))?;

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(Error::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn router(health: Arc<Health>, api: Arc<ApiState>) -> Router {
    let public = Router::new()
        .route("/healthz", get(health::livez))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/version", get(version))
        .route("/version/", get(version))
        .with_state(health);
    let authenticated = Router::new()
        .route("/api", any(rest::handle))
        .route("/api/{*rest}", any(rest::handle))
        .route("/apis", any(rest::handle))
        .route("/apis/{*rest}", any(rest::handle))
        .route("/metrics", get(metrics))
        .route("/openapi/v2", get(openapi::v2))
        .route("/openapi/v3", get(openapi::v3_root))
        .route("/openapi/v3/{*path}", get(openapi::v3_document))
        .with_state(api)
        .fallback(|| async { Status::path_not_found() })
        .layer(middleware::from_fn(require_authenticated));
    public.merge(authenticated)
}

async fn metrics(axum::extract::State(api): axum::extract::State<Arc<ApiState>>) -> Response {
    match &api.metrics {
        Some(metrics) => metrics.render(),
        None => Status::service_unavailable("metrics are not available").into_response(),
    }
}

async fn version() -> axum::Json<VersionInfo> {
    axum::Json(VersionInfo::current())
}

async fn require_authenticated(request: Request, next: Next) -> Response {
    match request.extensions().get::<ClientCertificate>() {
        Some(ClientCertificate(Some(_))) => next.run(request).await,
        _ => Status::unauthorized().into_response(),
    }
}
