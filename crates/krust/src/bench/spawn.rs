//! A `krust server` child process for the benchmarks: loopback, a free port, a temporary data
//! directory, killed when dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct SpawnedServer {
    pub child: tokio::process::Child,
    pub data_dir: tempfile::TempDir,
    /// The admin kubeconfig the server printed.
    pub kubeconfig: PathBuf,
    /// When the process was started (for start-to-ready).
    pub started: Instant,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `krust server` (with `extra_args`) from this executable and waits (up to `timeout`)
/// for the line that names its kubeconfig.
pub async fn spawn_server(timeout: Duration, extra_args: &[&str]) -> anyhow::Result<SpawnedServer> {
    let data_dir = tempfile::tempdir()?;
    let started = Instant::now();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["server", "--bind-address", "127.0.0.1", "--secure-port", "0", "--disable-agent"])
        .args(extra_args)
        .args(["--log-level", "warn", "--data-dir"])
        .arg(data_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let kubeconfig = loop {
        match tokio::time::timeout(timeout, lines.next_line()).await {
            Ok(Ok(Some(line))) if line.starts_with("KUBECONFIG=") => {
                let path = line.trim_start_matches("KUBECONFIG=").split_whitespace().next();
                break PathBuf::from(path.unwrap_or_default());
            }
            Ok(Ok(Some(_))) => {}
            _ => bail!("the server did not start"),
        }
    };
    Ok(SpawnedServer { child, data_dir, kubeconfig, started })
}
