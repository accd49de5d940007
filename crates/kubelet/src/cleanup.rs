//! Forced removal of what a real node left behind when it could not stop its pods itself (a
//! test or benchmark that failed half-way): the pods' processes, the shims and containerd of
//! its data directory, its cgroups and its mounts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Kills every process of the pods under `cgroup_root` and every process whose command line
/// names `data_dir` (containerd and its shims), then removes the cgroups and unmounts what is
/// mounted under `data_dir`.
pub fn force(data_dir: &Path, cgroup_root: &str) {
    for pid in crate::cgroups::processes(cgroup_root) {
        kill(pid);
    }
    let marker = data_dir.to_string_lossy().into_owned();
    for pid in processes_mentioning(&marker) {
        kill(pid);
    }
    std::thread::sleep(Duration::from_millis(200));
    crate::cgroups::remove(cgroup_root);
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&marker))
        .collect();
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
}

fn kill(pid: u32) {
    if pid != std::process::id() {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}

/// Processes whose command line mentions `marker` (the shims name their containerd's socket).
fn processes_mentioning(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}
