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
