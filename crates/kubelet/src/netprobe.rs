//! The network probe actions the kubelet performs itself, from the node: `httpGet` and
//! `tcpSocket` against the pod's address (upstream's `probe/http` and `probe/tcp`), with
//! upstream's success rules and failure messages.

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use crate::runtime::ProbeResult;

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name}"))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

fn target(host: Option<&str>, pod_ips: &[String]) -> Result<String, String> {
    host.filter(|h| !h.is_empty())
        .map(str::to_owned)
        .or_else(|| pod_ips.first().cloned())
        .ok_or_else(|| "the pod has no IP address yet".to_owned())
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// `tcpSocket`: success when a connection opens within the timeout.
pub async fn tcp(
    action: &TCPSocketAction,
    ports: &[ContainerPort],
    pod_ips: &[String],
    timeout: Duration,
) -> ProbeResult {
    let address = match resolve_port(&action.port, ports)
        .and_then(|port| Ok(host_port(&target(action.host.as_deref(), pod_ips)?, port)))
    {
        Ok(a) => a,
        Err(e) => return ProbeResult::Failure(e),
    };
    match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
        Ok(Ok(_)) => ProbeResult::Success,
        Ok(Err(e)) => ProbeResult::Failure(format!("dial tcp {address}: connect: {e}")),
        Err(_) => ProbeResult::Failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// `httpGet`: success on a status from 200 to 399 within the timeout (redirects are not
/// followed: a 3xx counts as success, as upstream counts a redirect to another host).
pub async fn http(
    action: &HTTPGetAction,
    ports: &[ContainerPort],
    pod_ips: &[String],
    timeout: Duration,
) -> ProbeResult {
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let path = action.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let address = match resolve_port(&action.port, ports)
        .and_then(|port| Ok(host_port(&target(action.host.as_deref(), pod_ips)?, port)))
    {
        Ok(a) => a,
        Err(e) => return ProbeResult::Failure(e),
    };
    let url = format!("{scheme}://{address}{path}");
    if scheme != "http" {
        return ProbeResult::Failure(format!("Get \"{url}\": HTTPS probes are not supported yet"));
    }
    let request = async {
        let stream = TcpStream::connect(&address)
            .await
            .map_err(|e| format!("dial tcp {address}: connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut builder = hyper::Request::get(&path)
            .header(hyper::header::HOST, &address)
            .header(hyper::header::USER_AGENT, format!("kube-probe/{}", probe_version()))
            .header(hyper::header::ACCEPT, "*/*");
        for h in action.http_headers.iter().flatten() {
            builder = builder.header(h.name.as_str(), h.value.as_str());
        }
        let request = builder.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read (and drop) the body so the server sees a complete exchange.
        let _ = response.into_body().collect().await;
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(status)) if (200..400).contains(&status.as_u16()) => ProbeResult::Success,
        Ok(Ok(status)) => {
            ProbeResult::Failure(format!("HTTP probe failed with statuscode: {}", status.as_u16()))
        }
        Ok(Err(e)) => ProbeResult::Failure(format!("Get \"{url}\": {e}")),
        Err(_) => ProbeResult::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// `major.minor` of the Kubernetes version we follow, as upstream's `kube-probe/1.35` agent.
fn probe_version() -> &'static str {
    let v = crate::KUBELET_VERSION.trim_start_matches('v');
    let end = v.match_indices('.').nth(1).map_or(v.len(), |(i, _)| i);
    &v[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_resolve_by_number_or_name() {
        let ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(resolve_port(&IntOrString::Int(80), &ports), Ok(80));
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &ports), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &ports), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &ports),
            Err("couldn't find port: grpc".into())
        );
        assert!(resolve_port(&IntOrString::Int(70000), &ports).is_err());
    }

    #[test]
    fn the_probe_agent_names_the_minor_version() {
        assert_eq!(probe_version(), "1.35");
    }

    #[tokio::test]
    async fn http_and_tcp_probes_follow_upstream_rules() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]).to_string();
                    let status = if request.starts_with("GET /healthy ") {
                        "200 OK"
                    } else if request.starts_with("GET /moved ") {
                        "302 Found"
                    } else {
                        "500 Internal Server Error"
                    };
                    let agent_ok = request.contains("User-Agent: kube-probe/1.35")
                        || request.contains("user-agent: kube-probe/1.35");
                    let status = if agent_ok { status } else { "400 Bad Request" };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let ips = vec!["127.0.0.1".to_owned()];
        let get = |path: &str| HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            ..Default::default()
        };
        let t = Duration::from_secs(2);
        assert_eq!(http(&get("/healthy"), &[], &ips, t).await, ProbeResult::Success);
        assert_eq!(http(&get("/moved"), &[], &ips, t).await, ProbeResult::Success);
        assert_eq!(
            http(&get("/broken"), &[], &ips, t).await,
            ProbeResult::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let tcp_ok = TCPSocketAction { port: IntOrString::Int(i32::from(port)), host: None };
        assert_eq!(tcp(&tcp_ok, &[], &ips, t).await, ProbeResult::Success);
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closed_port = closed.local_addr().expect("addr").port();
        drop(closed);
        let tcp_closed =
            TCPSocketAction { port: IntOrString::Int(i32::from(closed_port)), host: None };
        let ProbeResult::Failure(message) = tcp(&tcp_closed, &[], &ips, t).await else {
            panic!("a closed port must fail the probe");
        };
        assert!(
            message.starts_with(&format!("dial tcp 127.0.0.1:{closed_port}: connect:")),
            "{message}"
        );
    }
}
