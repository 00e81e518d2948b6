//! How much memory this machine lets a run take, and the default budgets derived from it.
//!
//! The limit is the smallest of the physical memory (`MemTotal` of `/proc/meminfo`) and the
//! memory limits of the control groups the process runs in (cgroup v2 `memory.max`, v1
//! `memory.limit_in_bytes`, along the group's path up to the hierarchy's root): a container
//! sees the host's `MemTotal` but is killed at its group's limit. Free memory is deliberately
//! not used: it changes from run to run, and the budget chooses the tiles, whose Winograd
//! rounding the output follows, so one machine would not give one result.

use super::upscale::{DEFAULT_MAX_WORKING_BYTES, MAX_GROWN_BYTES};
use std::path::Path;

/// Share of the machine's memory limit that the automatic working-memory budget takes.
pub const AUTO_BUDGET_SHARE: u64 = 16;

/// Largest automatic working-memory budget. Measured on a 2-core Zen 3 (two threads, medians of
/// two): realesr-animevideov3 at 1920x1080 ran 8.16 s under 96 MiB, 7.39 under 512, 6.58-6.94
/// under 1 GiB and 6.52-6.59 under 2 and 4 GiB; waifu2x CUNet 18.8, 14.3, 13.7, 13.7 and
/// 12.9 s: beyond 1 GiB the tiles are large enough that wider ones save little.
pub const MAX_AUTO_BUDGET: usize = 1 << 30;

/// Share of the machine's memory limit that a budget may grow to where exact tiles would
/// recompute too much ([`crate::pipeline::upscale::UpscaleOptions::grow_budget`]).
pub const GROWTH_SHARE: u64 = 4;

/// Limits at or above this are "no limit" (cgroup v1 writes `PAGE_COUNTER_MAX` pages as bytes).
const UNLIMITED: u64 = 1 << 60;

/// The machine's memory limit in bytes (see the module docs), `None` where it cannot be read
/// (not Linux, or `/proc` not mounted).
pub fn machine_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let total = read("/proc/meminfo").as_deref().and_then(mem_total);
    let groups = read("/proc/self/cgroup").and_then(|c| cgroup_limit(Path::new("/sys/fs/cgroup"), &c));
    match (total, groups) {
        (Some(t), Some(g)) => Some(t.min(g)),
        (t, g) => t.or(g),
    }
}

/// The working-memory budget for a machine with `limit` bytes: 1/[`AUTO_BUDGET_SHARE`] of it
/// rounded down to a power of two, between [`DEFAULT_MAX_WORKING_BYTES`] (also the budget where
/// the limit is unknown) and [`MAX_AUTO_BUDGET`]. 24 GiB: 1 GiB; 8 GiB: 512 MiB; 4 GiB:
/// 256 MiB; 2 GiB: 128 MiB; less: 96 MiB.
pub fn auto_budget(limit: Option<u64>) -> usize {
    let Some(limit) = limit else { return DEFAULT_MAX_WORKING_BYTES };
    let share = usize::try_from(limit / AUTO_BUDGET_SHARE).unwrap_or(usize::MAX);
    if share < DEFAULT_MAX_WORKING_BYTES {
        return DEFAULT_MAX_WORKING_BYTES;
    }
    let pow2 = 1usize << (usize::BITS - 1 - share.leading_zeros());
    pow2.clamp(DEFAULT_MAX_WORKING_BYTES, MAX_AUTO_BUDGET)
}

/// The largest budget an image may grow to on a machine with `limit` bytes: 1/[`GROWTH_SHARE`]
/// of it, at most [`MAX_GROWN_BYTES`] (that where the limit is unknown).
pub fn growth_limit(limit: Option<u64>) -> usize {
    limit.map_or(MAX_GROWN_BYTES, |l| {
        usize::try_from(l / GROWTH_SHARE).unwrap_or(usize::MAX).min(MAX_GROWN_BYTES)
    })
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut it = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// A limit file's value: bytes, or `None` for `max`, an absurdly large value or anything else.
fn limit_value(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < UNLIMITED).then_some(v)
}

/// The smallest memory limit of the groups named in a `/proc/self/cgroup` text, looked up under
/// `root` (normally `/sys/fs/cgroup`): the v2 group (`0::/path`) in `root/path/memory.max` and
/// its parents, the v1 memory group (`N:...memory...:/path`) in `root/memory/path/
/// memory.limit_in_bytes` and its parents. Inside a container the group directory may be
/// mounted as the root itself, so the root's own file counts too.
fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut best: Option<u64> = None;
    let mut consider = |dir: &Path, file: &str, rel: &str| {
        // The group's own directory and each parent, up to `dir`.
        let rel = rel.trim_start_matches('/');
        let mut p = dir.join(rel);
        loop {
            if let Some(v) = std::fs::read_to_string(p.join(file)).ok().as_deref().and_then(limit_value) {
                best = Some(best.map_or(v, |b| b.min(v)));
            }
            if p.as_path() == dir || !p.pop() || !p.starts_with(dir) {
                break;
            }
        }
    };
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // A path with `..` would leave the hierarchy: not a real group, ignore it.
        if path.split('/').any(|c| c == "..") {
            continue;
        }
        if ctrls.is_empty() {
            consider(root, "memory.max", path);
        } else if ctrls.split(',').any(|c| c == "memory") {
            consider(&root.join("memory"), "memory.limit_in_bytes", path);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn auto_budget_is_a_sixteenth_in_powers_of_two_within_bounds() {
        assert_eq!(auto_budget(None), DEFAULT_MAX_WORKING_BYTES);
        assert_eq!(auto_budget(Some(0)), DEFAULT_MAX_WORKING_BYTES);
        assert_eq!(auto_budget(Some(512 * MIB)), DEFAULT_MAX_WORKING_BYTES);
        assert_eq!(auto_budget(Some(2 * GIB - 1)), DEFAULT_MAX_WORKING_BYTES);
        assert_eq!(auto_budget(Some(2 * GIB)), 128 << 20);
        assert_eq!(auto_budget(Some(3 * GIB)), 128 << 20);
        assert_eq!(auto_budget(Some(4 * GIB)), 256 << 20);
        assert_eq!(auto_budget(Some(8 * GIB - 1)), 256 << 20);
        assert_eq!(auto_budget(Some(8 * GIB)), 512 << 20);
        assert_eq!(auto_budget(Some(24_684_092 * 1024)), 1 << 30);
        assert_eq!(auto_budget(Some(1 << 50)), MAX_AUTO_BUDGET);
        assert_eq!(auto_budget(Some(u64::MAX)), MAX_AUTO_BUDGET);
    }

    #[test]
    fn growth_is_a_quarter_of_the_machine() {
        assert_eq!(growth_limit(None), MAX_GROWN_BYTES);
        assert_eq!(growth_limit(Some(GIB)), 256 << 20);
        assert_eq!(growth_limit(Some(1 << 50)), MAX_GROWN_BYTES);
    }

    #[test]
    fn meminfo_total_in_bytes() {
        let text = "MemTotal:       24684092 kB\nMemFree:        1000 kB\nMemAvailable:   24041072 kB\n";
        assert_eq!(mem_total(text), Some(24_684_092 * 1024));
        assert_eq!(mem_total("MemFree: 5 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total("MemTotal: 5 MB\n"), None);
    }

    #[test]
    fn limit_files_say_max_or_bytes() {
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("536870912\n"), Some(512 * MIB));
        assert_eq!(limit_value("9223372036854771712\n"), None);
        assert_eq!(limit_value(""), None);
    }

    /// A throwaway directory tree standing in for `/sys/fs/cgroup`.
    fn tree(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("superres-cgroup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (path, text) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        root
    }

    #[test]
    fn cgroup_v2_takes_the_smallest_limit_on_the_path() {
        let root = tree(
            "v2",
            &[
                ("a/memory.max", "2147483648\n"),
                ("a/b/memory.max", "max\n"),
                ("a/b/c/memory.max", "4294967296\n"),
            ],
        );
        assert_eq!(cgroup_limit(&root, "0::/a/b/c\n"), Some(2 * GIB));
        assert_eq!(cgroup_limit(&root, "0::/a/b\n"), Some(2 * GIB));
        // No group file on the path: no limit; an escaping path is ignored.
        assert_eq!(cgroup_limit(&root, "0::/x/y\n"), None);
        assert_eq!(cgroup_limit(&root, "0::/../a\n"), None);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn cgroup_v1_reads_the_memory_controller_only() {
        let root = tree(
            "v1",
            &[
                ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory/job/memory.limit_in_bytes", "1073741824\n"),
                ("cpu/job/memory.limit_in_bytes", "1024\n"),
            ],
        );
        let cg = "9:name=systemd:/\n4:memory:/job\n1:cpu,cpuacct:/job\n0::/\n";
        assert_eq!(cgroup_limit(&root, cg), Some(GIB));
        // Mounted at the container's group: the path does not exist below the root, whose own
        // file is unlimited here.
        assert_eq!(cgroup_limit(&root, "4:memory:/elsewhere\n"), None);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn this_machine_has_a_limit_on_linux() {
        if cfg!(target_os = "linux") && Path::new("/proc/meminfo").exists() {
            let l = machine_limit().expect("MemTotal is readable");
            assert!(l >= 16 * MIB, "{l} bytes");
        } else {
            eprintln!("skipped: no /proc/meminfo here");
        }
    }
}
