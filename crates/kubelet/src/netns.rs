//! Network namespaces made by tests and benchmarks (`ip netns add`), so that what a real node
//! sets up — the pod bridge, routes, iptables rules — lives and dies with the namespace, and
//! the host's network is left alone.

use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace made for one test or benchmark (`ip netns add`), deleted when dropped.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `krust-<pid>-<n>` with its loopback up, and moves the calling thread into it:
    /// everything the test starts from this thread afterwards (server, agent, kubectl,
    /// threads and their sockets) lives there.
    pub fn enter() -> std::io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("krust-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        run(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        let file = std::fs::File::open(Path::new("/var/run/netns").join(&ns.name))?;
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(|e| std::io::Error::other(format!("setns into {}: {e}", ns.name)))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

fn run(command: &mut Command) -> std::io::Result<()> {
    let out = command.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
