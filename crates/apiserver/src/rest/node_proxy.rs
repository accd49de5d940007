//! Requests the API server passes on to a node's kubelet (its HTTPS endpoint, the port the
//! Node's `status.daemonEndpoints.kubeletEndpoint` names): `pods/log`. The API server
//! authenticates with its client certificate; like upstream's without
//! `--kubelet-certificate-authority`, it does not verify the kubelet's self-signed one.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use krust_api::catalog::Catalog;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

use super::{ApiResult, Ctx};
use crate::status::Status;

/// How the API server connects to kubelets.
#[derive(Debug, Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
}

impl KubeletClient {
    /// A client presenting `cert_pem`/`key_pem`.
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject as _;
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyKubelet(provider)))
            .with_client_auth_cert(certs, key)
            .map_err(|e| e.to_string())?;
        Ok(Self { tls: Arc::new(tls) })
    }

    /// Passes an upgrade request to the kubelet; on 101, splices the client's upgraded
    /// connection with the kubelet's.
    async fn upgrade(
        &self,
        address: &str,
        port: u16,
        method: &str,
        path_and_query: &str,
        headers: &axum::http::HeaderMap,
        client: hyper::upgrade::OnUpgrade,
    ) -> Result<Response, String> {
        let mut sender = self.connect(address, port, true).await?;
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_owned() };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, format!("{host}:{port}"));
        for (name, value) in headers {
            if name != header::HOST && name != header::AUTHORIZATION {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let mut response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = response.into_parts();
            return Ok(Response::from_parts(parts, Body::new(body)));
        }
        let kubelet = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match (kubelet.await, client.await) {
                (Ok(up), Ok(down)) => {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(up),
                        &mut TokioIo::new(down),
                    )
                    .await;
                }
                (up, down) => tracing::warn!(
                    kubelet = ?up.err(),
                    client = ?down.err(),
                    "a streaming upgrade failed"
                ),
            }
        });
        let (parts, _) = response.into_parts();
        Ok(Response::from_parts(parts, Body::empty()))
    }

    /// An HTTP/1.1 connection to the kubelet.
    async fn connect(
        &self,
        address: &str,
        port: u16,
        upgrades: bool,
    ) -> Result<
        hyper::client::conn::http1::SendRequest<http_body_util::Empty<hyper::body::Bytes>>,
        String,
    > {
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_owned() };
        let tcp = tokio::net::TcpStream::connect(format!("{host}:{port}"))
            .await
            .map_err(|e| format!("dial tcp {host}:{port}: connect: {e}"))?;
        let name = ServerName::try_from(address.to_owned()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("tls handshake with {host}:{port}: {e}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        if upgrades {
            tokio::spawn(connection.with_upgrades());
        } else {
            tokio::spawn(connection);
        }
        Ok(sender)
    }

    /// `GET https://<address>:<port><path_and_query>`, the response streamed.
    pub(super) async fn get(
        &self,
        address: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<Response, String> {
        let mut sender = self.connect(address, port, false).await?;
        let host = if address.contains(':') { format!("[{address}]") } else { address.to_owned() };
        let request = hyper::Request::get(path_and_query)
            .header(header::HOST, format!("{host}:{port}"))
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

/// Accepts the kubelet's self-signed certificate; signatures are still checked.
#[derive(Debug)]
struct AnyKubelet(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyKubelet {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

/// The container a request names, or the pod's only one (upstream's messages otherwise).
fn choose_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, Status> {
    let names = |path: &str| -> Vec<String> {
        pod.pointer(path)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let containers = names("/spec/containers");
    let init = names("/spec/initContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(Status::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(Status::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The kubelet of the pod's node: the client to reach it, its address and port.
async fn kubelet_of<'a>(
    ctx: &'a Ctx<'_>,
    pod: &Value,
    name: &str,
) -> ApiResult<(&'a KubeletClient, String, u16)> {
    let Some(node_name) = str_at(pod, "/spec/nodeName").filter(|n| !n.is_empty()) else {
        return Err(Status::bad_request(format!("pod {name} does not have a host assigned")));
    };
    let node = node_of(ctx, node_name).await?;
    kubelet_endpoint(ctx, &node, node_name)
}

/// The kubelet of `node`: the client to reach it, its address and port.
pub(super) fn kubelet_endpoint<'a>(
    ctx: &'a Ctx<'_>,
    node: &Value,
    node_name: &str,
) -> ApiResult<(&'a KubeletClient, String, u16)> {
    let client = ctx
        .state
        .kubelet_client
        .as_ref()
        .ok_or_else(|| Status::service_unavailable("this API server has no kubelet client"))?;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|list| {
            ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|kind| {
                list.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str())
            })
        })
        .ok_or_else(|| Status::bad_request(format!("node {node_name} has no address")))?
        .to_owned();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(10250);
    Ok((client, address, port))
}

/// `exec`, `attach`, `portforward`: the client's upgrade request passed to the kubelet, the
/// two connections spliced once it answers 101.
pub async fn stream(ctx: &Ctx<'_>, subresource: &str) -> ApiResult {
    let name = ctx.name().to_owned();
    let pod = super::read::get_object(ctx, &name).await?;
    let query = ctx.params.raw_query.clone().unwrap_or_default();
    let asked: Option<String> = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.into_owned());
    if str_at(&pod, "/status/phase").is_some_and(|p| p == "Succeeded" || p == "Failed") {
        return Err(Status::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {}",
            str_at(&pod, "/status/phase").unwrap_or_default()
        )));
    }
    let namespace = ctx.req.namespace.clone().unwrap_or_else(|| "default".into());
    let path = if subresource == "portforward" {
        format!("/portForward/{namespace}/{name}?{query}")
    } else {
        let container = choose_container(&pod, &name, asked.as_deref())?;
        format!("/{subresource}/{namespace}/{name}/{container}?{query}")
    };
    let (client, address, port) = kubelet_of(ctx, &pod, &name).await?;
    let upgrade = ctx
        .upgrade
        .as_ref()
        .and_then(|u| u.lock().ok()?.take())
        .ok_or_else(|| Status::bad_request("Upgrade request required"))?;
    let method = if ctx.req.verb == super::Verb::Get { "GET" } else { "POST" };
    client
        .upgrade(&address, port, method, &path, &ctx.headers, upgrade)
        .await
        .map_err(|e| Status::internal(format!("error dialing backend: {e}")))
}

/// `GET /api/v1/namespaces/{ns}/pods/{name}/log`: the container's log from its node.
pub async fn pod_log(ctx: &Ctx<'_>) -> ApiResult {
    let name = ctx.name().to_owned();
    let pod = super::read::get_object(ctx, &name).await?;
    let query: Vec<(String, String)> =
        form_urlencoded::parse(ctx.params.raw_query.as_deref().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let container = choose_container(&pod, &name, param("container"))?;
    let previous = param("previous").is_some_and(|v| v == "true" || v == "1");
    // A container that never ran has no log (upstream's message).
    let statuses = ["/status/containerStatuses", "/status/initContainerStatuses"];
    let status = statuses
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|s| s["name"] == container.as_str());
    if !previous
        && let Some(reason) = status.and_then(|s| str_at(s, "/state/waiting/reason"))
        && status.is_some_and(|s| s.pointer("/lastState/terminated").is_none())
    {
        return Err(Status::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let (client, address, port) = kubelet_of(ctx, &pod, &name).await?;
    let forwarded = {
        // (The serializer is not Send: it must not live across an await.)
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &query {
            if matches!(
                k.as_str(),
                "follow"
                    | "previous"
                    | "timestamps"
                    | "tailLines"
                    | "limitBytes"
                    | "sinceSeconds"
                    | "sinceTime"
            ) {
                serializer.append_pair(k, v);
            }
        }
        serializer.finish()
    };
    let path = format!(
        "/containerLogs/{}/{name}/{container}?{}",
        ctx.req.namespace.as_deref().unwrap_or("default"),
        forwarded
    );
    let response = client
        .get(&address, port, &path)
        .await
        .map_err(|e| Status::internal(format!("Get \"https://{address}:{port}{path}\": {e}")))?;
    if response.status() != StatusCode::OK {
        let code = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await.unwrap_or_default();
        let message = String::from_utf8_lossy(&body).trim().to_owned();
        return Err(match code {
            StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND => Status::bad_request(message),
            _ => Status::internal(message),
        });
    }
    Ok(response)
}

/// `GET /api/v1/nodes/{name}/proxy/{path}`: the kubelet's `/{path}` (e.g. `stats/summary`).
pub async fn node_get(ctx: &Ctx<'_>) -> ApiResult {
    let name = ctx.name().to_owned();
    let node = super::read::get_object(ctx, &name).await?;
    let (client, address, port) = kubelet_endpoint(ctx, &node, &name)?;
    let query = ctx.params.raw_query.as_deref().filter(|q| !q.is_empty());
    let path = format!(
        "/{}{}",
        ctx.req.subpath.as_deref().unwrap_or(""),
        query.map(|q| format!("?{q}")).unwrap_or_default()
    );
    client
        .get(&address, port, &path)
        .await
        .map_err(|e| Status::service_unavailable(format!("error trying to reach service: {e}")))
}

/// The Node object `name` (from the cluster-scoped `nodes`).
async fn node_of(ctx: &Ctx<'_>, name: &str) -> ApiResult<Value> {
    let nodes = Catalog::builtin_lookup("", "v1", "nodes")
        .ok_or_else(|| Status::internal("no nodes resource"))?
        .clone();
    let mut node_ctx = ctx.clone();
    node_ctx.resource = nodes;
    node_ctx.req.namespace = None;
    super::read::get_object(&node_ctx, name).await
}
