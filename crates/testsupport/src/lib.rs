//! Test harness for end-to-end tests: runs the real `krust` binary on a free loopback port with
//! a temporary data dir, and drives it with the real clients that `scripts/clients.sh` installs
//! into the project's tools folder (`.tools/bin`, or `$KRUST_TOOLS_DIR/bin`).
//!
//! The server is killed when its [`KrustServer`] is dropped, also when a test panics.

mod https;
pub mod node;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub use https::HttpResponse;

/// How long a server may take from spawn to a passing `/readyz`.
const START_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum DataDir {
    Owned(tempfile::TempDir),
    Borrowed(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Owned(dir) => dir.path(),
            DataDir::Borrowed(path) => path,
        }
    }
}

/// A running `krust server`, owned by the test.
#[derive(Debug)]
pub struct KrustServer {
    child: Child,
    data_dir: DataDir,
    kubeconfig: PathBuf,
    base_url: String,
}

impl KrustServer {
    /// Starts `krust server` from `binary` (an integration test passes
    /// `env!("CARGO_BIN_EXE_krust")`) on 127.0.0.1 with a port the server picks itself, and
    /// waits until `/readyz` answers 200. `extra_args` are appended to the server's flags.
    pub fn start(binary: impl AsRef<Path>, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("krust-test-").tempdir()?;
        Self::spawn(binary.as_ref(), DataDir::Owned(dir), extra_args)
    }

    /// Like [`KrustServer::start`], with a data dir the test owns (to restart on the same state).
    pub fn start_in(
        binary: impl AsRef<Path>,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn(binary.as_ref(), DataDir::Borrowed(data_dir.to_owned()), extra_args)
    }

    fn spawn(binary: &Path, data_dir: DataDir, extra_args: &[&str]) -> anyhow::Result<Self> {
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        let mut child = Command::new(binary)
            // No local node: tests add the nodes they want (hollow, fake or real agents).
            .args(["server", "--bind-address", "127.0.0.1", "--secure-port", "0"])
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;

        // The server prints `KUBECONFIG=<path> kubectl get nodes` once it has bound its port.
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server =
            Self { child, data_dir, kubeconfig: PathBuf::new(), base_url: String::new() };
        let deadline = Instant::now() + START_DEADLINE;
        let kubeconfig = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("KUBECONFIG=") {
                        let path = rest.split_whitespace().next().unwrap_or_default();
                        break PathBuf::from(path);
                    }
                }
                Err(_) => bail!("server printed no KUBECONFIG line in time\n{}", server.log()),
            }
        };
        let config = std::fs::read_to_string(&kubeconfig)?;
        server.base_url = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .context("kubeconfig has no server")?
            .to_owned();
        server.kubeconfig = kubeconfig;

        loop {
            match server.get("/readyz") {
                Ok(resp) if resp.status == 200 => return Ok(server),
                _ if Instant::now() > deadline => bail!("/readyz never passed\n{}", server.log()),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// `https://127.0.0.1:<port>`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// A GET as the cluster admin (client certificate from the data dir).
    pub fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        https::request(self.data_dir.path(), &self.base_url, "GET", path, true)
    }

    /// A GET without a client certificate.
    pub fn get_anonymous(&self, path: &str) -> anyhow::Result<HttpResponse> {
        https::request(self.data_dir.path(), &self.base_url, "GET", path, false)
    }

    /// A real kubectl (`version` as in the tools folder: "1.20", "1.27" … "1.33", "1.35")
    /// pointed at this server.
    pub fn kubectl(&self, version: &str) -> Kubectl {
        Kubectl::new(version, &self.kubeconfig)
    }

    /// `kubectl create -f` of `object` (written to a file in the data dir).
    pub fn create(&self, kubectl: &str, object: &serde_json::Value) -> anyhow::Result<String> {
        let name = format!(
            "{}-{}-{}.json",
            object["kind"].as_str().unwrap_or("object"),
            object["metadata"]["namespace"].as_str().unwrap_or("-"),
            object["metadata"]["name"].as_str().unwrap_or("-"),
        );
        let path = self.data_dir.path().join(name);
        std::fs::write(&path, object.to_string())?;
        self.kubectl(kubectl).args(["create".as_ref(), "-f".as_ref(), path.as_os_str()]).run()
    }

    /// Runs a Python client script (the `kubernetes` package from `scripts/clients.sh`) with
    /// this server's kubeconfig path as its argument; returns stdout, panicking with both
    /// streams when the script fails.
    pub fn python(&self, script: &str) -> String {
        let out = Command::new(tool("python-k8s"))
            .args(["-c", script])
            .arg(&self.kubeconfig)
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// `kubectl <args> -o json`, parsed.
    pub fn get_json(&self, kubectl: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = self.kubectl(kubectl).args(args).args(["-o", "json"]).run()?;
        Ok(serde_json::from_str(&out)?)
    }

    /// The pods `selector` selects that are not being deleted.
    pub fn live_pods(&self, kubectl: &str, selector: &str) -> Vec<serde_json::Value> {
        let list = self.get_json(kubectl, &["get", "pods", "-l", selector]).unwrap_or_default();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect()
    }

    /// Polls `check` every 100 ms until it returns `Some`; panics with `what` and the server's
    /// log once `deadline` passed (for tests: convergence, never performance).
    pub fn wait_for<T>(
        &self,
        deadline: Duration,
        what: &str,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let until = Instant::now() + deadline;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(Instant::now() < until, "timed out waiting for {what}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("server did not exit within {timeout:?} of SIGTERM\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A `krust hollow` or `krust agent` process joined to a server, killed when dropped.
#[derive(Debug)]
pub struct NodeProcess(std::process::Child);

impl NodeProcess {
    /// `krust hollow --nodes <nodes>` against `server` (log in the server's data dir).
    pub fn hollow(
        binary: impl AsRef<Path>,
        server: &KrustServer,
        nodes: usize,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(server.data_dir().join("hollow.log"))?;
        let child = Command::new(binary.as_ref())
            .arg("hollow")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["--nodes", &nodes.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self(child))
    }

    /// `krust agent` for node `node` (address 127.0.0.1), with static pods from `manifests`.
    pub fn agent(
        binary: impl AsRef<Path>,
        server: &KrustServer,
        node: &str,
        manifests: &Path,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(server.data_dir().join("agent.log"))?;
        let child = Command::new(binary.as_ref())
            .arg("agent")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["--node-name", node, "--node-ip", "127.0.0.1", "--file-check-frequency", "1s"])
            .args(["--container-runtime", "fake"])
            .arg("--data-dir")
            .arg(server.data_dir().join("agent"))
            .arg("--pod-manifest-path")
            .arg(manifests)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self(child))
    }

    /// Kills the process (its nodes stop heartbeating).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for KrustServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The project's tools folder (`scripts/clients.sh` fills it).
pub fn tools_bin() -> PathBuf {
    match std::env::var_os("KRUST_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir).join("bin"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin"),
    }
}

/// The path of a tool in the tools folder; panics with the fix when it is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/clients.sh (or set KRUST_TOOLS_DIR)",
        path.display()
    );
    path
}

/// A kubectl invocation against one server.
#[derive(Debug)]
pub struct Kubectl {
    command: Command,
    shown: String,
}

impl Kubectl {
    fn new(version: &str, kubeconfig: &Path) -> Self {
        let binary = tool(&format!("kubectl-{version}"));
        let mut command = Command::new(&binary);
        command.env("KUBECONFIG", kubeconfig).env_remove("KUBERNETES_MASTER").stdin(Stdio::null());
        Self { command, shown: format!("kubectl-{version}") }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            self.shown.push(' ');
            self.shown.push_str(&arg.as_ref().to_string_lossy());
            self.command.arg(arg);
        }
        self
    }

    /// Runs it; whatever the exit code.
    pub fn output(mut self) -> anyhow::Result<Output> {
        self.command.output().with_context(|| format!("cannot run {}", self.shown))
    }

    /// Runs it and returns stdout; fails with stdout and stderr when it exits non-zero.
    pub fn run(self) -> anyhow::Result<String> {
        let shown = self.shown.clone();
        let out = self.output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "`{shown}` failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }
}
