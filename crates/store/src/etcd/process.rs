//! Throw-away etcd servers on loopback, for tests and `krust bench store`: one member or a small
//! cluster, on free ports, in a given data directory, killed (and reaped) on drop.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::types::MAX_VALUE_SIZE;

/// How to start a local etcd.
#[derive(Clone, Debug)]
pub struct LocalEtcdOptions {
    /// The etcd binary (Debian's `etcd-server` installs `/usr/bin/etcd`).
    pub binary: PathBuf,
    /// Interval of periodic progress notifications on watches that ask for them
    /// (`--experimental-watch-progress-notify-interval`).
    pub progress_notify_interval: Duration,
    /// Keep only this many revisions of history (`--auto-compaction-mode=revision`);
    /// `None`: no automatic compaction.
    pub auto_compaction_revisions: Option<u64>,
    /// How long to wait for the member (or the cluster) to become healthy.
    pub ready_timeout: Duration,
}

impl Default for LocalEtcdOptions {
    fn default() -> Self {
        LocalEtcdOptions {
            binary: PathBuf::from("/usr/bin/etcd"),
            progress_notify_interval: Duration::from_secs(5),
            auto_compaction_revisions: None,
            ready_timeout: Duration::from_secs(20),
        }
    }
}

/// A running etcd member; killed and reaped when dropped (also during a panic).
pub struct EtcdProcess {
    name: String,
    child: Option<Child>,
    client_url: String,
    data_dir: PathBuf,
}

impl fmt::Debug for EtcdProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdProcess")
            .field("name", &self.name)
            .field("client_url", &self.client_url)
            .field("data_dir", &self.data_dir)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl EtcdProcess {
    /// The member's client URL (`http://127.0.0.1:<port>`).
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The member's name in the cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// etcd's `--data-dir` (the database is `member/snap/db` inside it).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.join("data")
    }

    /// Kills the member (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                tracing::warn!(member = %self.name, error = %e, "killing etcd");
            }
            if let Err(e) = child.wait() {
                tracing::warn!(member = %self.name, error = %e, "reaping etcd");
            }
        }
    }

    fn log_path(data_dir: &Path) -> PathBuf {
        data_dir.join("etcd.log")
    }

    /// Whether the process exited; with the end of its log if it did.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(format!("etcd exited ({status}): {}", self.log_tail())),
            Err(e) => Some(format!("etcd: {e}")),
        }
    }

    fn log_tail(&self) -> String {
        let mut log = String::new();
        if let Ok(mut file) = File::open(Self::log_path(&self.data_dir)) {
            let _ = file.read_to_string(&mut log);
        }
        let start = log.len().saturating_sub(2000);
        let start = (start..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
        log[start..].to_string()
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_error(
    context: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Storage { context: context.into(), source: Arc::new(source) }
}

fn io_error(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| spawn_error("finding a free port for etcd", e))?;
    let port = listener.local_addr().map_err(|e| spawn_error("finding a free port", e))?.port();
    Ok(port)
}

/// Distinguishes clusters started by one process (etcd refuses to mix cluster tokens).
static CLUSTER_SEQ: AtomicU64 = AtomicU64::new(0);

/// Starts a single-member etcd on loopback with data in `data_dir` (created if missing) and
/// waits until it is healthy. Connect with [`EtcdProcess::client_url`].
pub async fn spawn_local_etcd(data_dir: &Path, options: &LocalEtcdOptions) -> Result<EtcdProcess> {
    let mut members = spawn_local_etcd_cluster(data_dir, 1, options).await?;
    members.pop().ok_or_else(|| Error::invalid("no etcd member started"))
}

/// Starts an etcd cluster of `size` members on loopback (member `i` keeps its data in
/// `base_dir/m<i>`) and waits until every member is healthy (a leader is elected).
/// Ports are picked free; a member that fails to start (e.g. a port taken meanwhile) makes
/// the whole cluster start again on new ports, up to 3 times.
pub async fn spawn_local_etcd_cluster(
    base_dir: &Path,
    size: usize,
    options: &LocalEtcdOptions,
) -> Result<Vec<EtcdProcess>> {
    if size == 0 {
        return Err(Error::invalid("an etcd cluster needs at least one member"));
    }
    let mut last_error = None;
    for attempt in 0..3 {
        let dir = base_dir.join(format!("attempt-{attempt}"));
        match try_spawn_cluster(&dir, size, options).await {
            Ok(members) => return Ok(members),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "starting etcd");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::invalid("etcd did not start")))
}

async fn try_spawn_cluster(
    base_dir: &Path,
    size: usize,
    options: &LocalEtcdOptions,
) -> Result<Vec<EtcdProcess>> {
    let ports: Vec<(u16, u16)> =
        (0..size).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<_>>()?;
    let initial_cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let token =
        format!("krust-{}-{}", std::process::id(), CLUSTER_SEQ.fetch_add(1, Ordering::Relaxed));
    let mut members = Vec::with_capacity(size);
    for (i, (client, peer)) in ports.iter().enumerate() {
        let name = format!("m{i}");
        let data_dir = base_dir.join(&name);
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| spawn_error(format!("creating {}", data_dir.display()), e))?;
        let log = File::create(EtcdProcess::log_path(&data_dir))
            .map_err(|e| spawn_error("creating the etcd log", e))?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut command = Command::new(&options.binary);
        command
            .arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(data_dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(&initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&token)
            .arg(format!(
                "--experimental-watch-progress-notify-interval={}ms",
                options.progress_notify_interval.as_millis().max(1)
            ))
            // Room for a value of exactly MAX_VALUE_SIZE plus its key and framing, so that the
            // client-side limit is the one that applies, as with the other backends.
            .arg(format!("--max-request-bytes={}", MAX_VALUE_SIZE + 64 * 1024))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(revisions) = options.auto_compaction_revisions {
            command
                .arg("--auto-compaction-mode=revision")
                .arg(format!("--auto-compaction-retention={revisions}"));
        }
        let child = command.spawn().map_err(|e| {
            spawn_error(format!("starting {} (package etcd-server)", options.binary.display()), e)
        })?;
        members.push(EtcdProcess { name, child: Some(child), client_url, data_dir });
    }
    let deadline = Instant::now() + options.ready_timeout;
    for member in &mut members {
        wait_healthy(member, deadline).await?;
    }
    Ok(members)
}

/// Polls the member's `/health` until it reports healthy (it has a leader and answers).
async fn wait_healthy(member: &mut EtcdProcess, deadline: Instant) -> Result<()> {
    let addr: SocketAddr = member
        .client_url
        .trim_start_matches("http://")
        .parse()
        .map_err(|e| spawn_error("parsing the etcd client URL", e))?;
    loop {
        if let Some(exit) = member.exited() {
            return Err(spawn_error(
                format!("starting etcd member {}", member.name),
                io_error(exit),
            ));
        }
        let healthy = tokio::task::spawn_blocking(move || health(addr))
            .await
            .map_err(|e| spawn_error("checking etcd health", e))?;
        if healthy {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(spawn_error(
                format!("waiting for etcd member {} to become healthy", member.name),
                io_error(member.log_tail()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `GET /health` (etcd serves HTTP/1 next to gRPC on the client port).
fn health(addr: SocketAddr) -> bool {
    let timeout = Duration::from_secs(2);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else { return false };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") && response.contains("\"health\":\"true\"")
}
