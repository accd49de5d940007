//! The kubelet's HTTPS endpoint (upstream's port 10250), which the API server calls for what
//! only the node has: containers' logs (`/containerLogs/{namespace}/{pod}/{container}`). Its
//! certificate is self-signed (as upstream's kubelet without TLS bootstrap); clients must
//! present a certificate of the cluster's CA (the API server does).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cri::CriRuntime;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The kubelet server's TLS material.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// The CA certificates (DER) whose client certificates are accepted (the cluster's).
    pub client_ca: Vec<Vec<u8>>,
    /// Where the self-signed serving certificate is kept.
    pub pki_dir: PathBuf,
    /// The addresses and names the certificate is for.
    pub ips: Vec<std::net::IpAddr>,
    pub names: Vec<String>,
}

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct Node {
    pub node_name: String,
    pub pod_logs_dir: PathBuf,
    pub runtime: Arc<CriRuntime>,
}

/// Binds `address` (port 0: any free port); returns the bound address and the server future.
pub async fn bind(
    address: SocketAddr,
    tls: &TlsConfig,
    node: Node,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = ()> + Send + 'static)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(tls)?));
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let node = Arc::new(node);
    let serve = async move {
        loop {
            let (stream, _) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "kubelet server: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, node, stop) = (acceptor.clone(), node.clone(), stop.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |req| {
                    let node = node.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&node, req).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                tokio::select! {
                    _ = connection => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    };
    Ok((local, serve))
}

fn server_config(tls: &TlsConfig) -> std::io::Result<rustls::ServerConfig> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let (cert_pem, key_pem) = serving_pair(tls)?;
    let certs = rustls_pemfile_certs(&cert_pem)?;
    use rustls::pki_types::pem::PemObject as _;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid(format!("kubelet key: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in &tls.client_ca {
        roots
            .add(rustls::pki_types::CertificateDer::from(ca.clone()))
            .map_err(|e| invalid(format!("client CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| invalid(format!("client verifier: {e}")))?;
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("kubelet certificate: {e}")))
}

fn rustls_pemfile_certs(
    pem: &str,
) -> std::io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("certificate: {e}"))
        })
}

/// The serving certificate and key: kept under `pki_dir`, made (self-signed) when missing or
/// issued for other addresses.
fn serving_pair(tls: &TlsConfig) -> std::io::Result<(String, String)> {
    let cert_path = tls.pki_dir.join("kubelet.crt");
    let key_path = tls.pki_dir.join("kubelet.key");
    let sans_path = tls.pki_dir.join("kubelet.sans");
    let mut sans: Vec<String> = tls.ips.iter().map(ToString::to_string).collect();
    sans.extend(tls.names.iter().cloned());
    let record = sans.join(",");
    if let (Ok(cert), Ok(key), Ok(recorded)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
        std::fs::read_to_string(&sans_path),
    ) && recorded == record
    {
        return Ok((cert, key));
    }
    let other = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let mut params = rcgen::CertificateParams::new(tls.names.clone()).map_err(other)?;
    params.subject_alt_names.extend(tls.ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        tls.names.first().cloned().unwrap_or_else(|| "kubelet".into()),
    );
    let key = rcgen::KeyPair::generate().map_err(other)?;
    let cert = params.self_signed(&key).map_err(other)?;
    std::fs::create_dir_all(&tls.pki_dir)?;
    std::fs::write(&cert_path, cert.pem())?;
    write_private(&key_path, &key.serialize_pem())?;
    std::fs::write(&sans_path, &record)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(message.to_owned())).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

async fn route(node: &Node, req: Request<hyper::body::Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let segments: Vec<String> =
        path.trim_start_matches('/').split('/').map(str::to_owned).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["exec" | "attach", namespace, pod, container] => {
            let (kind, namespace, pod, container) = (
                segments[0].to_owned(),
                (*namespace).to_owned(),
                (*pod).to_owned(),
                (*container).to_owned(),
            );
            return stream(node, req, &kind, &namespace, &pod, Some(&container)).await;
        }
        ["portForward", namespace, pod] => {
            let (namespace, pod) = ((*namespace).to_owned(), (*pod).to_owned());
            return stream(node, req, "portForward", &namespace, &pod, None).await;
        }
        _ => {}
    }
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match segments.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["stats", "summary"] => summary(node).await,
        ["containerLogs", namespace, pod, container] => match LogOptions::from_query(&query) {
            Ok(options) => container_logs(node, namespace, pod, container, options).await,
            Err(message) => text(StatusCode::BAD_REQUEST, &message),
        },
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// exec, attach and port-forward: the runtime's streaming server does the work; the kubelet
/// asks it for a URL and passes the client's upgrade request (SPDY or WebSocket) through.
async fn stream(
    node: &Node,
    req: Request<hyper::body::Incoming>,
    kind: &str,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
) -> Response<Body> {
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let flag = |names: &[&str]| {
        query
            .iter()
            .any(|(k, v)| names.contains(&k.as_str()) && (v.is_empty() || v == "true" || v == "1"))
    };
    let streams = crate::cri::Streams {
        stdin: flag(&["stdin", "input"]),
        stdout: flag(&["stdout", "output"]),
        stderr: flag(&["stderr", "error"]),
        tty: flag(&["tty"]),
    };
    let (sandbox, container_id) = match node.runtime.find_running(namespace, pod, container).await {
        Ok(found) => found,
        Err(e) => return text(StatusCode::NOT_FOUND, &e.to_string()),
    };
    let url = match (kind, container_id) {
        ("exec", Some(id)) => {
            let command: Vec<String> =
                query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
            if command.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "you must specify at least one command for the container",
                );
            }
            node.runtime.exec_url(&id, command, streams).await
        }
        ("attach", Some(id)) => node.runtime.attach_url(&id, streams).await,
        _ => {
            let ports: Vec<i32> = query
                .iter()
                .filter(|(k, _)| k == "port" || k == "ports")
                .flat_map(|(_, v)| {
                    v.split(',').filter_map(|p| p.trim().parse().ok()).collect::<Vec<_>>()
                })
                .collect();
            node.runtime.port_forward_url(&sandbox, ports).await
        }
    };
    match url {
        Ok(url) => proxy_upgrade(req, &url).await,
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Sends `req` (an upgrade request) to `url` and, once upgraded, splices the two connections.
async fn proxy_upgrade(mut req: Request<hyper::body::Incoming>, url: &str) -> Response<Body> {
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("bad streaming URL {url}"));
    };
    let Some(authority) = uri.authority().map(ToString::to_string) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("bad streaming URL {url}"));
    };
    let upstream = async {
        let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection.with_upgrades());
        let mut forward = Request::builder()
            .method(req.method().clone())
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, &authority);
        for (name, value) in req.headers() {
            if name != hyper::header::HOST && name != hyper::header::AUTHORIZATION {
                forward = forward.header(name, value);
            }
        }
        let forward =
            forward.body(http_body_util::Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        sender.send_request(forward).await.map_err(|e| e.to_string())
    };
    let mut response = match upstream.await {
        Ok(r) => r,
        Err(e) => {
            return text(StatusCode::BAD_GATEWAY, &format!("the runtime's streaming server: {e}"));
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return text(status, &String::from_utf8_lossy(&body));
    }
    let upstream = hyper::upgrade::on(&mut response);
    let downstream = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match (upstream.await, downstream.await) {
            (Ok(up), Ok(down)) => {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(up), &mut TokioIo::new(down))
                        .await;
            }
            (up, down) => tracing::warn!(
                runtime = ?up.err(),
                client = ?down.err(),
                "a streaming upgrade failed"
            ),
        }
    });
    let mut answer = Response::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *answer.headers_mut() = response.headers().clone();
    answer
}

/// `/stats/summary` (upstream's summary API, reduced to CPU and memory): the node, and each
/// running pod and container, from their cgroups.
async fn summary(node: &Node) -> Response<Body> {
    let pods = match node.runtime.running_pods().await {
        Ok(p) => p,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let now = Timestamp::now().to_string();
    let stats = |u: crate::cgroups::Usage| {
        (
            serde_json::json!({"time": now, "usageCoreNanoSeconds": u.cpu_nanoseconds}),
            serde_json::json!({"time": now, "usageBytes": u.memory_bytes, "workingSetBytes": u.working_set_bytes}),
        )
    };
    let pods: Vec<serde_json::Value> = pods
        .into_iter()
        .map(|p| {
            let (cpu, memory) = stats(crate::cgroups::usage(&p.cgroup));
            let containers: Vec<serde_json::Value> = p
                .containers
                .iter()
                .map(|(name, cgroup)| {
                    let (cpu, memory) = stats(crate::cgroups::usage(cgroup));
                    serde_json::json!({"name": name, "cpu": cpu, "memory": memory})
                })
                .collect();
            serde_json::json!({
                "podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid},
                "cpu": cpu,
                "memory": memory,
                "containers": containers,
            })
        })
        .collect();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            l.strip_prefix(key)?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        })
    };
    let (total, available) = (kib("MemTotal:"), kib("MemAvailable:"));
    let body = serde_json::json!({
        "node": {
            "nodeName": node.node_name,
            "cpu": {"time": now, "usageCoreNanoSeconds": crate::cgroups::node_cpu_nanoseconds()},
            "memory": {
                "time": now,
                "availableBytes": available,
                "usageBytes": total.zip(available).map(|(t, a)| t.saturating_sub(a)),
                "workingSetBytes": total.zip(available).map(|(t, a)| t.saturating_sub(a)),
            },
        },
        "pods": pods,
    });
    let mut response = text(StatusCode::OK, &body.to_string());
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `kubectl logs` options (upstream's `PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub limit_bytes: Option<usize>,
    pub since: Option<Timestamp>,
}

impl LogOptions {
    fn from_query(query: &HashMap<String, String>) -> Result<Self, String> {
        let flag =
            |name: &str| query.get(name).is_some_and(|v| v.is_empty() || v == "true" || v == "1");
        let number = |name: &str| -> Result<Option<i64>, String> {
            query
                .get(name)
                .map(|v| v.parse::<i64>().map_err(|_| format!("invalid {name}: {v:?}")))
                .transpose()
        };
        let since = match (number("sinceSeconds")?, query.get("sinceTime")) {
            (Some(seconds), _) => Some(
                Timestamp::now()
                    .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
                    .map_err(|e| e.to_string())?,
            ),
            (None, Some(time)) => {
                Some(time.parse::<Timestamp>().map_err(|e| format!("invalid sinceTime: {e}"))?)
            }
            (None, None) => None,
        };
        Ok(Self {
            follow: flag("follow"),
            previous: flag("previous"),
            timestamps: flag("timestamps"),
            tail_lines: number("tailLines")?.and_then(|n| usize::try_from(n).ok()),
            limit_bytes: number("limitBytes")?
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0),
            since,
        })
    }
}

/// The pod's log directory: `<dir>/<namespace>_<pod>_<uid>` (the newest, if the name was
/// reused) and its UID.
fn pod_log_dir(root: &Path, namespace: &str, pod: &str) -> Option<(PathBuf, String)> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name.strip_prefix(&prefix)?.to_owned();
            // A pod named `a_b`... would not match `a`'s prefix exactly: UIDs have no `_`.
            (!uid.contains('_')).then_some(())?;
            let modified = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, e.path(), uid))
        })
        .max_by_key(|(modified, _, _)| *modified)
        .map(|(_, path, uid)| (path, uid))
}

/// The container's log files by attempt, newest last.
fn attempts(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let n = name.strip_suffix(".log")?.parse::<u32>().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// One line of a CRI log file: `<RFC3339Nano> <stdout|stderr> <P|F> <content>`.
#[derive(Debug, PartialEq, Eq)]
struct LogLine<'a> {
    time: &'a str,
    partial: bool,
    content: &'a str,
}

fn parse_line(line: &str) -> Option<LogLine<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let _stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some(LogLine { time, partial: tag.split(':').next() == Some("P"), content })
}

/// Renders CRI log lines as the user sees them.
fn render(lines: &[&str], options: &LogOptions) -> Vec<u8> {
    let mut out = Vec::new();
    for raw in lines {
        let Some(line) = parse_line(raw) else { continue };
        if let Some(since) = options.since
            && line.time.parse::<Timestamp>().is_ok_and(|t| t < since)
        {
            continue;
        }
        if options.timestamps {
            out.extend_from_slice(line.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(line.content.as_bytes());
        if !line.partial {
            out.push(b'\n');
        }
    }
    out
}

async fn container_logs(
    node: &Node,
    namespace: &str,
    pod: &str,
    container: &str,
    options: LogOptions,
) -> Response<Body> {
    let Some((dir, uid)) = pod_log_dir(&node.pod_logs_dir, namespace, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod {namespace}/{pod} has no logs on this node"),
        );
    };
    let files = attempts(&dir.join(container));
    let chosen = if options.previous { files.iter().rev().nth(1) } else { files.last() };
    let Some((attempt, path)) = chosen.cloned() else {
        let message = if options.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" has no logs")
        };
        return text(StatusCode::BAD_REQUEST, &message);
    };
    let content = match tokio::fs::read(&path).await {
        Ok(c) => c,
        Err(e) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{}: {e}", path.display()));
        }
    };
    // Only whole lines now; a line still being written is read by the follower.
    let complete = content.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let text_now = String::from_utf8_lossy(&content[..complete]).into_owned();
    let mut lines: Vec<&str> = text_now.lines().collect();
    if let Some(n) = options.tail_lines {
        lines = lines.split_off(lines.len().saturating_sub(n));
    }
    let mut first = render(&lines, &options);
    let mut budget = options.limit_bytes;
    if let Some(limit) = budget {
        first.truncate(limit);
        budget = Some(limit - first.len());
    }
    let follow = options.follow && !options.previous && budget != Some(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut response_start = Some(Bytes::from(first));
    if follow {
        let runtime = node.runtime.clone();
        let container = container.to_owned();
        let options = options.clone();
        tokio::spawn(async move {
            if let Some(start) = response_start.take()
                && !start.is_empty()
                && tx.send(start).await.is_err()
            {
                return;
            }
            follow_file(
                &runtime,
                &uid,
                &container,
                attempt,
                &path,
                complete as u64,
                &options,
                budget,
                tx,
            )
            .await;
        });
    } else {
        let start = response_start.take().unwrap_or_default();
        tokio::spawn(async move {
            if !start.is_empty() {
                let _ = tx.send(start).await;
            }
        });
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(Frame::data(chunk)), rx))
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
    response
}

/// Sends what is appended to `path` from `offset` on, until the container stops (or starts
/// again as a new attempt) or the reader goes away.
#[allow(clippy::too_many_arguments)]
async fn follow_file(
    runtime: &CriRuntime,
    uid: &str,
    container: &str,
    attempt: u32,
    path: &Path,
    mut offset: u64,
    options: &LogOptions,
    mut budget: Option<usize>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let mut pending = Vec::new();
    let mut idle_checks = 0u32;
    loop {
        let mut chunk = Vec::new();
        if let Ok(mut file) = tokio::fs::File::open(path).await
            && file.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
        {
            let _ = file.read_to_end(&mut chunk).await;
        }
        offset += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        if let Some(end) = pending.iter().rposition(|b| *b == b'\n') {
            let whole: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&whole).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let mut out = render(&lines, options);
            if let Some(left) = budget {
                out.truncate(left);
                budget = Some(left - out.len());
            }
            if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                return;
            }
            if budget == Some(0) {
                return;
            }
        }
        if chunk.is_empty() {
            idle_checks += 1;
            // Every second without output: is the container still this attempt, running?
            if idle_checks.is_multiple_of(5)
                && !runtime.container_running(uid, container, attempt).await
            {
                return;
            }
        } else {
            idle_checks = 0;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_render_as_the_user_sees_them() {
        let lines = [
            "2026-11-22T10:00:00.000000001Z stdout F hello",
            "2026-11-22T10:00:01.000000000Z stderr P par",
            "2026-11-22T10:00:01.500000000Z stderr F tial",
            "2026-11-22T10:00:02.000000000Z stdout F ",
        ];
        assert_eq!(render(&lines, &LogOptions::default()), b"hello\npartial\n\n");
        let stamped = LogOptions { timestamps: true, ..LogOptions::default() };
        assert!(
            String::from_utf8_lossy(&render(&lines[..1], &stamped))
                .starts_with("2026-11-22T10:00:00.000000001Z hello")
        );
        let since = LogOptions {
            since: Some("2026-11-22T10:00:01.200Z".parse().expect("time")),
            ..LogOptions::default()
        };
        assert_eq!(render(&lines, &since), b"tial\n\n");
    }

    #[test]
    fn options_parse_from_the_query() {
        let q: HashMap<String, String> =
            [("follow", "true"), ("tailLines", "5"), ("previous", "false"), ("limitBytes", "100")]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        let o = LogOptions::from_query(&q).expect("options");
        assert!(o.follow && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(100)));
        let bad: HashMap<String, String> = [("tailLines".to_owned(), "x".to_owned())].into();
        assert!(LogOptions::from_query(&bad).is_err());
    }
}
