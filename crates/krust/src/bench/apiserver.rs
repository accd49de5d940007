//! `krust bench apiserver`: a real `krust server` (this binary, spawned on loopback with a
//! temporary sqlite store) driven over HTTPS/HTTP2 with the admin certificate. The store's own
//! 64-writer rate is measured in the same run, so the ratio shows the API's overhead.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::task::JoinSet;

#[derive(Debug, clap::Args)]
pub struct ApiserverArgs {
    /// Objects created per client-count level (each level also stops after 10 s).
    #[arg(long, default_value_t = 20_000)]
    creates: u64,
    /// Pods in the list benchmark.
    #[arg(long, default_value_t = 10_000)]
    list_pods: u64,
    /// Concurrent watchers in the fan-out benchmark.
    #[arg(long, default_value_t = 1_000)]
    watchers: usize,
    /// Updates delivered to every watcher.
    #[arg(long, default_value_t = 100)]
    updates: usize,
}

type Conn = SendRequest<Full<Bytes>>;

struct Server {
    process: super::spawn::SpawnedServer,
    authority: String,
    ready_ms: f64,
}

async fn start_server() -> anyhow::Result<Server> {
    let process = super::spawn::spawn_server(
        Duration::from_secs(10),
        // The API server alone, as the reference's API server process is measured.
        &["--disable-controller-manager", "--disable-scheduler"],
    )
    .await?;
    let started = process.started;
    let kubeconfig = process.kubeconfig.clone();
    let config = std::fs::read_to_string(&kubeconfig)?;
    let authority = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .context("no server in the kubeconfig")?
        .to_owned();
    let mut server = Server { process, authority, ready_ms: 0.0 };
    let conn = connect(&server).await?;
    loop {
        if let Ok((200, _)) = request(&conn, "GET", "/readyz", None).await {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("/readyz never passed");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(server)
}

async fn connect(server: &Server) -> anyhow::Result<Conn> {
    let pki = server.process.data_dir.path().join("pki");
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(pki.join("ca.crt"))? {
        roots.add(ca?)?;
    }
    let certs =
        CertificateDer::pem_file_iter(pki.join("admin.crt"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(pki.join("admin.key"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&server.authority).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    // The connection task ends when the connection closes (when the last sender drops).
    tokio::spawn(conn);
    Ok(send)
}

async fn request(
    conn: &Conn,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(u16, Bytes)> {
    let mut conn = conn.clone();
    conn.ready().await?;
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Full::new(body))?;
    let resp = conn.send_request(req).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.99))
}

/// Creates `total` objects with `clients` connections (bounded by 10 s); returns (per second, p50, p99).
async fn create_level(
    server: &Server,
    clients: usize,
    total: u64,
    make: fn(u64) -> (String, serde_json::Value),
) -> anyhow::Result<(f64, f64, f64)> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let conn = connect(server).await?;
        let next = next.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total || Instant::now() > deadline {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let (path, body) = make(i);
                let t = Instant::now();
                let (status, resp) = request(&conn, "POST", &path, Some(&body)).await?;
                if status != 201 {
                    bail!("create answered {status}: {}", String::from_utf8_lossy(&resp));
                }
                latencies.push(t.elapsed());
            }
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(all);
    Ok((rate, p50, p99))
}

fn configmap(i: u64) -> (String, serde_json::Value) {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": {"k": "v".repeat(100)}});
    ("/api/v1/namespaces/default/configmaps".into(), body)
}

fn pod(i: u64) -> (String, serde_json::Value) {
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
    ("/api/v1/namespaces/kube-public/pods".into(), body)
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `RssAnon`) in MB.
fn rss_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub async fn run(args: ApiserverArgs) -> anyhow::Result<()> {
    let server = start_server().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = server.process.child.id();
    let idle_rss_mb = pid.map_or(0.0, |pid| rss_mb(pid, "VmRSS"));
    // Without the executable's shared, file-backed pages: the process's own memory.
    let idle_rss_anon_mb = pid.map_or(0.0, |pid| rss_mb(pid, "RssAnon"));
    println!(
        "apiserver bench: ready in {:.1} ms, idle RSS {idle_rss_mb:.1} MB ({idle_rss_anon_mb:.1} MB anonymous)",
        server.ready_ms
    );

    // Creates with 1, 8 and 64 clients (each level creates its own objects).
    let mut creates = Vec::new();
    for (level, clients) in [(0u64, 1usize), (1, 8), (2, 64)] {
        fn make0(i: u64) -> (String, serde_json::Value) {
            configmap(i)
        }
        fn make1(i: u64) -> (String, serde_json::Value) {
            configmap(1_000_000 + i)
        }
        fn make2(i: u64) -> (String, serde_json::Value) {
            configmap(2_000_000 + i)
        }
        let make = [make0, make1, make2][level as usize];
        let (rate, p50, p99) = create_level(&server, clients, args.creates, make).await?;
        println!("  create x{clients:<3} {rate:>8.0}/s  p50 {p50:>7.3} ms  p99 {p99:>7.3} ms");
        creates.push((rate, p50, p99));
    }

    // Gets of one object with 8 clients.
    let conn = connect(&server).await?;
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let conn = conn.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..1000 {
                let t = Instant::now();
                request(&conn, "GET", "/api/v1/namespaces/default/configmaps/cm-0", None).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut gets = Vec::new();
    while let Some(done) = tasks.join_next().await {
        gets.extend(done??);
    }
    let (get_p50, get_p99) = percentiles(gets);
    println!("  get  x8    p50 {get_p50:>7.3} ms  p99 {get_p99:>7.3} ms");

    // List of `list_pods` pods.
    let (rate, _, _) = create_level(&server, 64, args.list_pods, pod).await?;
    let mut lists = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (status, body) =
            request(&conn, "GET", "/api/v1/namespaces/kube-public/pods", None).await?;
        if status != 200 {
            bail!("list answered {status}");
        }
        lists.push(t.elapsed());
        std::hint::black_box(body.len());
    }
    let (list_p50, list_p99) = percentiles(lists);
    println!(
        "  list {} pods (created at {rate:.0}/s)  p50 {list_p50:>7.3} ms  p99 {list_p99:>7.3} ms",
        args.list_pods
    );

    // Watch fan-out: every watcher sees every update; latency from the update's send.
    let (watch_p50, watch_p99) = watch_fanout(&server, args.watchers, args.updates).await?;
    println!(
        "  watch fan-out {} watchers x {} updates  p50 {watch_p50:>7.3} ms  p99 {watch_p99:>7.3} ms",
        args.watchers, args.updates
    );

    // The store alone, same machine, same run.
    let store_rate = store_rate(server.process.data_dir.path()).await?;
    println!("  store (sqlite) x64 {store_rate:>8.0}/s");

    let line = json!({
        "bench": "apiserver",
        "create_per_s_1": creates[0].0.round(), "create_p50_ms_1": round3(creates[0].1), "create_p99_ms_1": round3(creates[0].2),
        "creates_per_s_8": creates[1].0.round(), "create_p50_ms_8": round3(creates[1].1), "create_p99_ms_8": round3(creates[1].2),
        "creates_per_s_64": creates[2].0.round(), "create_p50_ms_64": round3(creates[2].1), "create_p99_ms_64": round3(creates[2].2),
        "get_p50_ms": round3(get_p50), "get_p99_ms": round3(get_p99),
        "list10k_p50_ms": round3(list_p50), "list10k_p99_ms": round3(list_p99),
        "watch_fanout_p50_ms": round3(watch_p50), "watch_fanout_p99_ms": round3(watch_p99),
        "watchers": args.watchers, "watch_updates": args.updates,
        "store_ops_per_s_64": store_rate.round(),
        "api_to_store_ratio_64": round3(creates[2].0 / store_rate.max(1.0)),
        "idle_rss_mb": round3(idle_rss_mb), "idle_rss_anon_mb": round3(idle_rss_anon_mb), "ready_ms": round3(server.ready_ms),
    });
    println!("{line}");
    Ok(())
}

async fn watch_fanout(
    server: &Server,
    watchers: usize,
    updates: usize,
) -> anyhow::Result<(f64, f64)> {
    let conn = connect(server).await?;
    let (status, body) = request(
        &conn,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&json!({"metadata": {"name": "fanout"}, "data": {"n": "0"}})),
    )
    .await?;
    if status != 201 {
        bail!("fan-out object: {status} {}", String::from_utf8_lossy(&body));
    }
    let created: serde_json::Value = serde_json::from_slice(&body)?;
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_owned();
    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; updates + 1]));
    let mut tasks = JoinSet::new();
    let mut conns = Vec::new();
    for _ in 0..watchers.div_ceil(100) {
        conns.push(connect(server).await?);
    }
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    for w in 0..watchers {
        let mut conn = conns[w / 100].clone();
        let sent = sent.clone();
        let ready = ready_tx.clone();
        let path = format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dfanout"
        );
        tasks.spawn(async move {
            conn.ready().await?;
            let req = hyper::Request::builder()
                .uri(format!("https://127.0.0.1{path}"))
                .body(Full::new(Bytes::new()))?;
            let resp = conn.send_request(req).await?;
            let _ = ready.send(()).await;
            let mut body = resp.into_body();
            let mut buf = Vec::new();
            let mut latencies = Vec::new();
            while latencies.len() < updates {
                let Some(frame) = body.frame().await else { break };
                let Ok(data) = frame?.into_data() else { continue };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let event: serde_json::Value = serde_json::from_slice(&line)?;
                    let n: usize = event["object"]["data"]["n"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let at = sent.lock().ok().and_then(|s| s.get(n).copied().flatten());
                    if let Some(at) = at {
                        latencies.push(at.elapsed());
                    }
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    drop(ready_tx);
    for _ in 0..watchers {
        ready_rx.recv().await;
    }
    for n in 1..=updates {
        if let Ok(mut s) = sent.lock() {
            s[n] = Some(Instant::now());
        }
        let patch = json!({"data": {"n": n.to_string()}});
        let mut c = conn.clone();
        c.ready().await?;
        let req = hyper::Request::builder()
            .method("PATCH")
            .uri("https://127.0.0.1/api/v1/namespaces/default/configmaps/fanout")
            .header("content-type", "application/merge-patch+json")
            .body(Full::new(Bytes::from(patch.to_string())))?;
        let resp = c.send_request(req).await?;
        resp.into_body().collect().await?;
    }
    let mut all = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(done) => all.extend(done??),
                None => break,
            },
            () = &mut deadline => bail!("watchers did not receive every update within 60 s"),
        }
    }
    Ok(percentiles(all))
}

async fn store_rate(dir: &Path) -> anyhow::Result<f64> {
    use krust_store::bench::{BenchOptions, run_store_bench};
    let path = dir.join("store-reference.db");
    let store: Arc<dyn krust_store::Store> =
        Arc::new(krust_store::SqliteStore::open(krust_store::SqliteConfig::new(&path))?);
    let opts = BenchOptions {
        writes_per_level: 20_000,
        churn_writes: 0,
        watch_events: 100,
        ..Default::default()
    };
    let report = run_store_bench(store.clone(), "sqlite", &opts).await?;
    store.shutdown().await?;
    Ok(report.put_64_per_sec)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
