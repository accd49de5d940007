//! A small HTTPS client for probing the server in tests, built on hyper and rustls with the
//! cluster CA and (optionally) the admin client certificate from the data dir.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

impl HttpResponse {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

pub fn request(
    data_dir: &Path,
    base_url: &str,
    method: &str,
    path: &str,
    with_client_cert: bool,
) -> anyhow::Result<HttpResponse> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(request_async(data_dir, base_url, method, path, with_client_cert))
}

async fn request_async(
    data_dir: &Path,
    base_url: &str,
    method: &str,
    path: &str,
    with_client_cert: bool,
) -> anyhow::Result<HttpResponse> {
    let pki = data_dir.join("pki");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.join("ca.crt"))? {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let certs =
            CertificateDer::pem_file_iter(pki.join("admin.crt"))?.collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(pki.join("admin.key"))?;
        builder.with_client_auth_cert(certs, key)?
    } else {
        builder.with_no_client_auth()
    };

    let Some(authority) = base_url.strip_prefix("https://") else {
        bail!("not an https URL: {base_url}");
    };
    let tcp = tokio::net::TcpStream::connect(authority).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
    let tls = connector.connect(name, tcp).await?;

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("accept", "application/json, */*")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let content_type =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.into_body().collect().await?.to_bytes();
    drop(sender);
    driver.abort();
    Ok(HttpResponse { status, content_type, body: String::from_utf8_lossy(&body).into_owned() })
}
