//! The node's cgroup hierarchies (cgroup v1 with one per controller, or the v2 unified one),
//! for the cgroupfs driver: where a cgroup path exists, and removing a pod's cgroups once its
//! containers are gone.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// The mounted hierarchies: `/sys/fs/cgroup` itself under v2, each controller's directory
/// under v1.
pub fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_owned()];
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// `cgroup` (an absolute cgroup path such as `/kubepods/pod<uid>`) in every hierarchy where
/// it exists.
pub fn directories(cgroup: &str) -> Vec<PathBuf> {
    let relative = cgroup.trim_start_matches('/');
    hierarchies().into_iter().map(|h| h.join(relative)).filter(|p| p.is_dir()).collect()
}

/// Every process in `cgroup` and below it (any hierarchy).
pub fn processes(cgroup: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for dir in directories(cgroup) {
        walk(&dir, &mut |d| {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        });
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes `cgroup` and the empty cgroups below it, deepest first, in every hierarchy.
/// A cgroup that still has processes stays (the kernel refuses).
pub fn remove(cgroup: &str) {
    for dir in directories(cgroup) {
        let mut all = Vec::new();
        walk(&dir, &mut |d| all.push(d.to_owned()));
        // `walk` visits parents first: remove in reverse.
        for d in all.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    visit(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), visit);
            }
        }
    }
}

/// A cgroup's memory and CPU figures (the summary API's), where the kernel tells them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    /// Usage minus inactive file pages (what the eviction manager and `top` count).
    pub working_set_bytes: Option<u64>,
    pub cpu_nanoseconds: Option<u64>,
}

fn read(path: PathBuf) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn stat_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The usage of `cgroup` (an absolute cgroup path).
pub fn usage(cgroup: &str) -> Usage {
    let relative = cgroup.trim_start_matches('/');
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(relative);
        let memory = read(dir.join("memory.current")).and_then(|s| s.trim().parse::<u64>().ok());
        let inactive = read(dir.join("memory.stat")).and_then(|s| stat_field(&s, "inactive_file"));
        let cpu = read(dir.join("cpu.stat"))
            .and_then(|s| stat_field(&s, "usage_usec"))
            .map(|us| us * 1000);
        return Usage {
            memory_bytes: memory,
            working_set_bytes: memory.map(|m| m.saturating_sub(inactive.unwrap_or(0))),
            cpu_nanoseconds: cpu,
        };
    }
    let memory_dir = root.join("memory").join(relative);
    let memory =
        read(memory_dir.join("memory.usage_in_bytes")).and_then(|s| s.trim().parse::<u64>().ok());
    let inactive =
        read(memory_dir.join("memory.stat")).and_then(|s| stat_field(&s, "total_inactive_file"));
    let cpu = ["cpuacct", "cpu,cpuacct"]
        .iter()
        .find_map(|c| read(root.join(c).join(relative).join("cpuacct.usage")))
        .and_then(|s| s.trim().parse::<u64>().ok());
    Usage {
        memory_bytes: memory,
        working_set_bytes: memory.map(|m| m.saturating_sub(inactive.unwrap_or(0))),
        cpu_nanoseconds: cpu,
    }
}

/// The machine's CPU time in nanoseconds (every CPU, idle and iowait excluded), from the first
/// line of `/proc/stat`: what upstream's summary reports as the node's `usageCoreNanoSeconds`.
pub fn node_cpu_nanoseconds() -> Option<u64> {
    node_cpu_from_stat(&read(PathBuf::from("/proc/stat"))?)
}

/// `/proc/stat`'s `cpu` line in nanoseconds (its unit is USER_HZ, 100 per second on Linux).
fn node_cpu_from_stat(stat: &str) -> Option<u64> {
    const NANOS_PER_TICK: u64 = 10_000_000;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice] (guest time is in user).
    let busy: u64 =
        ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy * NANOS_PER_TICK)
}

#[cfg(test)]
mod node_cpu_tests {
    #[test]
    fn node_cpu_is_the_busy_ticks_of_proc_stat() {
        let stat = "cpu  100 5 50 9000 20 3 2 1 0 0\ncpu0 50 2 25 4500 10 1 1 0 0 0\n";
        assert_eq!(super::node_cpu_from_stat(stat), Some((100 + 5 + 50 + 3 + 2 + 1) * 10_000_000));
        assert!(super::node_cpu_nanoseconds().is_some_and(|n| n > 0));
    }
}
