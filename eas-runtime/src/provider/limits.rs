//! How the child-process provider holds a worker process to its spec's `metadata.cpu` and
//! `metadata.memory`: a control group of its own where the machine lets this process make one
//! (cgroup v2 with the `cpu`/`memory` controllers delegated, else the v1 `cpu` and `memory`
//! hierarchies), else a memory rlimit the worker sets on itself (`RLIMIT_DATA`, which has no
//! CPU counterpart). [`Limits::detect`] finds out once; [`Limits::describe`] says what is
//! enforced and what is not, and why, for the start-up log.
//!
//! Each instance gets `<our cgroup>/eas-<pid>/<n>` in each hierarchy used, removed when its
//! worker is gone: CPU as a CFS quota (`cpu` cores per 100 ms period), memory as a hard limit
//! (the kernel's OOM killer ends the worker with SIGKILL when it is passed).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The CFS period the CPU quota is given over.
const PERIOD_US: u64 = 100_000;

/// Where this process can make control groups, per resource. Its own parent groups are
/// removed on drop (once empty).
#[derive(Debug, Default)]
pub struct Limits {
    cpu: Option<Hierarchy>,
    memory: Option<Hierarchy>,
    /// Why a resource has no control group (for [`describe`](Self::describe)).
    why_not: Vec<String>,
}

/// One place to make groups in.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// `<our cgroup>/eas-<pid>`, made by `detect`.
    base: PathBuf,
    version: u8,
}

/// The control group(s) of one worker process; removed on drop.
#[derive(Debug, Default)]
pub struct Group {
    dirs: Vec<PathBuf>,
}

impl Limits {
    /// Finds where this process may make control groups (and makes its own parent group in
    /// each). Never fails: what it cannot use is described.
    #[must_use]
    pub fn detect() -> Self {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let groups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut limits = Self::default();
        for controller in ["cpu", "memory"] {
            let found = v2(&mounts, &groups, controller).or_else(|v2_why| {
                v1(&mounts, &groups, controller).map_err(|v1_why| format!("{v2_why}; {v1_why}"))
            });
            match found {
                Ok(hierarchy) => match controller {
                    "cpu" => limits.cpu = Some(hierarchy),
                    _ => limits.memory = Some(hierarchy),
                },
                Err(why) => limits.why_not.push(format!("{controller}: {why}")),
            }
        }
        limits
    }

    /// No control groups: memory through the worker's rlimit only, CPU not limited.
    #[must_use]
    pub fn none() -> Self {
        Self {
            cpu: None,
            memory: None,
            why_not: vec!["control groups not used (Limits::none)".to_owned()],
        }
    }

    /// Whether CPU quotas are enforced.
    #[must_use]
    pub fn limits_cpu(&self) -> bool {
        self.cpu.is_some()
    }

    /// Whether memory limits are enforced by a control group (else by the worker's rlimit).
    #[must_use]
    pub fn limits_memory_by_cgroup(&self) -> bool {
        self.memory.is_some()
    }

    /// What is enforced and how, in words.
    #[must_use]
    pub fn describe(&self) -> String {
        let how = |h: &Option<Hierarchy>| {
            h.as_ref()
                .map(|h| format!("cgroup v{} under {}", h.version, h.base.display()))
        };
        let cpu = how(&self.cpu).unwrap_or_else(|| "not enforced (no usable cgroup)".to_owned());
        let memory = how(&self.memory).unwrap_or_else(|| {
            "enforced by RLIMIT_DATA in the worker (no usable cgroup)".to_owned()
        });
        let mut text = format!("metadata.cpu: {cpu}; metadata.memory: {memory}");
        if !self.why_not.is_empty() {
            text.push_str(&format!(" ({})", self.why_not.join("; ")));
        }
        text
    }

    /// Makes the control groups of one worker with the given limits and moves `pid` into them.
    /// What fails is logged and left unenforced: a limit is a safeguard, not a reason to refuse
    /// an instance.
    pub fn apply(&self, pid: u32, cpu: Option<f64>, memory_mb: Option<u64>) -> Group {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = NEXT.fetch_add(1, Ordering::Relaxed).to_string();
        let mut group = Group::default();
        if let (Some(h), Some(cores)) = (&self.cpu, cpu.filter(|c| *c > 0.0)) {
            let quota = ((cores * PERIOD_US as f64).round() as u64).max(1000);
            let files: Vec<(&str, String)> = if h.version == 2 {
                vec![("cpu.max", format!("{quota} {PERIOD_US}"))]
            } else {
                vec![
                    ("cpu.cfs_period_us", PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota.to_string()),
                ]
            };
            group.join(&h.base.join(&name), &files, pid);
        }
        if let (Some(h), Some(mb)) = (&self.memory, memory_mb.filter(|m| *m > 0)) {
            let bytes = mb.saturating_mul(1024 * 1024).to_string();
            let file = if h.version == 2 {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            let dir = h.base.join(&name);
            if group.dirs.last() == Some(&dir) {
                // One v2 group holds both.
                write_or_warn(&dir.join(file), &bytes);
            } else {
                group.join(&dir, &[(file, bytes)], pid);
            }
        }
        group
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        for hierarchy in [&self.cpu, &self.memory].into_iter().flatten() {
            let _ = std::fs::remove_dir(&hierarchy.base);
        }
    }
}

impl Group {
    /// How many times the kernel's OOM killer killed a process of this group for passing its
    /// memory limit (`oom_kill` of v1 `memory.oom_control` or v2 `memory.events`); `None`
    /// where no group says.
    #[must_use]
    pub fn oom_kills(&self) -> Option<u64> {
        self.dirs.iter().find_map(|dir| {
            ["memory.events", "memory.oom_control"]
                .iter()
                .find_map(|file| {
                    let text = std::fs::read_to_string(dir.join(file)).ok()?;
                    text.lines()
                        .find_map(|line| line.strip_prefix("oom_kill "))
                        .and_then(|n| n.trim().parse().ok())
                })
        })
    }

    /// Makes `dir`, writes the limit files, then moves `pid` in.
    fn join(&mut self, dir: &Path, files: &[(&str, String)], pid: u32) {
        if !dir.exists()
            && let Err(e) = std::fs::create_dir(dir)
        {
            tracing::warn!("cannot make the control group {}: {e}", dir.display());
            return;
        }
        self.dirs.push(dir.to_path_buf());
        for (file, value) in files {
            write_or_warn(&dir.join(file), value);
        }
        write_or_warn(&dir.join("cgroup.procs"), &pid.to_string());
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The worker has exited (its reaper drops the group after `wait`); a group that still
        // holds a process (a grandchild) cannot be removed and is left.
        for dir in self.dirs.drain(..) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

fn write_or_warn(path: &Path, value: &str) {
    if let Err(e) = std::fs::write(path, value) {
        tracing::warn!("cannot write {value} to {}: {e}", path.display());
    }
}

/// The v2 (unified) hierarchy, if the controller is enabled for groups made under ours.
fn v2(mounts: &str, groups: &str, controller: &str) -> Result<Hierarchy, String> {
    let mount = mounts
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or("no cgroup2 mount")?;
    let own = groups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("not in a cgroup2 group")?;
    let own = mount.join(own.trim_start_matches('/'));
    let base = own.join(format!("eas-{}", std::process::id()));
    make_dir(&base)?;
    // Groups under `base` get the controller only if `own` and `base` pass it down; `own`
    // holding processes (this one) forbids that unless it is the root.
    for dir in [&own, &base] {
        let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        if !available.split_whitespace().any(|c| c == controller) {
            let _ = std::fs::remove_dir(&base);
            return Err(format!(
                "cgroup v2 has no `{controller}` controller in {}",
                dir.display()
            ));
        }
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"));
    }
    let delegated =
        std::fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    if !delegated.split_whitespace().any(|c| c == controller) {
        let _ = std::fs::remove_dir(&base);
        return Err(format!(
            "cgroup v2: cannot enable `{controller}` for groups under {}",
            base.display()
        ));
    }
    Ok(Hierarchy { base, version: 2 })
}

/// The v1 hierarchy the controller is mounted in, under our own group there.
fn v1(mounts: &str, groups: &str, controller: &str) -> Result<Hierarchy, String> {
    let (root, mount) = mounts
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            if right.next()? != "cgroup" {
                return None;
            }
            let options = right.nth(1)?;
            if !options.split(',').any(|o| o == controller) {
                return None;
            }
            let mut left = left.split_whitespace();
            let root = left.nth(3)?;
            let mount = left.next()?;
            Some((root.to_owned(), PathBuf::from(mount)))
        })
        .ok_or_else(|| format!("no cgroup v1 `{controller}` hierarchy mounted"))?;
    let own = groups
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })
        .ok_or_else(|| format!("not in a cgroup v1 `{controller}` group"))?;
    let relative = own.strip_prefix(root.as_str()).unwrap_or(own);
    let base = mount
        .join(relative.trim_start_matches('/'))
        .join(format!("eas-{}", std::process::id()));
    make_dir(&base)?;
    Ok(Hierarchy { base, version: 1 })
}

/// Removes the groups an earlier server (no longer running) left under `parent`: an `eas-PID`
/// group whose PID is gone, and its empty instance groups.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("eas-")) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(groups) = std::fs::read_dir(entry.path()) {
            for group in groups.flatten().filter(|g| g.path().is_dir()) {
                let _ = std::fs::remove_dir(group.path());
            }
        }
        let _ = std::fs::remove_dir(entry.path());
    }
}

fn make_dir(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        remove_stale(parent);
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot make {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
35 25 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
36 25 0:31 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
37 25 0:32 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw
";

    #[test]
    fn v1_should_find_the_hierarchy_and_our_group_in_it() {
        let groups = "4:memory:/outer/inner\n1:cpu:/\n0::/\n";
        // The mount points do not exist here, so making the base fails; the error names the
        // path that was worked out.
        let error = v1(
            MOUNTS.replace("/sys/fs/cgroup", "/nonexistent").as_str(),
            groups,
            "memory",
        )
        .expect_err("no such mount here");
        assert!(
            error.contains("/nonexistent/memory/outer/inner/eas-"),
            "{error}"
        );
        let error = v1("", groups, "cpu").expect_err("nothing mounted");
        assert!(error.contains("no cgroup v1 `cpu`"), "{error}");
    }
}
