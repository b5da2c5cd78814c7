//! The host as the tuning checks see it: files under /proc and /sys, two resource limits and
//! whether we run as root. Every check reads through [`Host`] and nothing else, so that each one
//! can be tested on a fabricated tree ([`FakeHost`]) instead of the machine running the tests.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

/// A per-process resource limit the checks look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Resource {
    /// RLIMIT_MEMLOCK, in bytes.
    #[serde(rename = "RLIMIT_MEMLOCK")]
    LockedMemory,
    /// RLIMIT_NOFILE, in descriptors.
    #[serde(rename = "RLIMIT_NOFILE")]
    OpenFiles,
}

impl Resource {
    /// The kernel's name, as getrlimit(2) spells it.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Resource::LockedMemory => "RLIMIT_MEMLOCK",
            Resource::OpenFiles => "RLIMIT_NOFILE",
        }
    }
}

/// A soft and a hard limit; `None` stands for unlimited (RLIM_INFINITY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// What the checks may read and `tune apply` may change. Paths are absolute ("/sys/...").
pub trait Host {
    /// The whole content of a file.
    fn read(&self, path: &str) -> io::Result<String>;
    /// The names of a directory's entries, sorted.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// The target of a symbolic link, as stored (often relative).
    fn read_link(&self, path: &str) -> io::Result<String>;
    /// Replaces the content of a (sysfs or procfs) file.
    fn write(&self, path: &str, value: &str) -> io::Result<()>;
    fn rlimit(&self, resource: Resource) -> io::Result<Rlimit>;
    /// Sets the soft limit of this process, keeping the hard one.
    fn set_soft_rlimit(&self, resource: Resource, soft: Option<u64>) -> io::Result<()>;
    /// Whether writes to /sys and /proc/sys can be expected to work (effective uid 0).
    fn is_root(&self) -> bool;
}

/// The machine we run on. `root` prefixes every path (normally "/"), so that the command-line
/// tests can point the real binary at a fabricated tree.
pub struct RealHost {
    root: PathBuf,
}

impl RealHost {
    pub fn new(root: PathBuf) -> RealHost {
        RealHost { root }
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn libc_resource(resource: Resource) -> libc::__rlimit_resource_t {
    match resource {
        Resource::LockedMemory => libc::RLIMIT_MEMLOCK,
        Resource::OpenFiles => libc::RLIMIT_NOFILE,
    }
}

fn from_rlim(value: libc::rlim_t) -> Option<u64> {
    (value != libc::RLIM_INFINITY).then_some(value)
}

fn to_rlim(value: Option<u64>) -> libc::rlim_t {
    value.unwrap_or(libc::RLIM_INFINITY)
}

impl Host for RealHost {
    fn read(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(self.at(path))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.at(dir))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read_link(&self, path: &str) -> io::Result<String> {
        Ok(std::fs::read_link(self.at(path))?
            .to_string_lossy()
            .into_owned())
    }

    fn write(&self, path: &str, value: &str) -> io::Result<()> {
        // sysfs and procfs take one write(2) per value, as `echo value > file` does it; the
        // truncation matters only for the plain files of a fabricated tree.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.at(path))?;
        file.write_all(value.as_bytes())
    }

    fn rlimit(&self, resource: Resource) -> io::Result<Rlimit> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills a struct we own.
        if unsafe { libc::getrlimit(libc_resource(resource), &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rlimit {
            soft: from_rlim(limit.rlim_cur),
            hard: from_rlim(limit.rlim_max),
        })
    }

    fn set_soft_rlimit(&self, resource: Resource, soft: Option<u64>) -> io::Result<()> {
        let current = self.rlimit(resource)?;
        let limit = libc::rlimit {
            rlim_cur: to_rlim(soft),
            rlim_max: to_rlim(current.hard),
        };
        // SAFETY: setrlimit reads a struct we own.
        if unsafe { libc::setrlimit(libc_resource(resource), &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn is_root(&self) -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }
}

/// A fabricated host for tests: files and links in maps, writes recorded, limits in a map.
#[derive(Default)]
pub struct FakeHost {
    files: RefCell<BTreeMap<String, String>>,
    links: BTreeMap<String, String>,
    /// Paths whose writes fail (as a kernel refusing an IRQ move does).
    refuse_writes: BTreeSet<String>,
    limits: RefCell<BTreeMap<Resource, Rlimit>>,
    pub root: bool,
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost {
            root: true,
            ..FakeHost::default()
        }
    }

    pub fn file(mut self, path: &str, content: &str) -> FakeHost {
        self.files.get_mut().insert(path.into(), content.into());
        self
    }

    pub fn link(mut self, path: &str, target: &str) -> FakeHost {
        self.links.insert(path.into(), target.into());
        self
    }

    pub fn refuse_write(mut self, path: &str) -> FakeHost {
        self.refuse_writes.insert(path.into());
        self
    }

    pub fn limit(self, resource: Resource, soft: Option<u64>, hard: Option<u64>) -> FakeHost {
        self.limits
            .borrow_mut()
            .insert(resource, Rlimit { soft, hard });
        self
    }

    /// The content of a file now, after any writes.
    pub fn content(&self, path: &str) -> Option<String> {
        self.files.borrow().get(path).cloned()
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: not found"))
}

impl Host for FakeHost {
    fn read(&self, path: &str) -> io::Result<String> {
        self.content(path).ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let files = self.files.borrow();
        let names: BTreeSet<String> = files
            .keys()
            .chain(self.links.keys())
            .filter_map(|path| path.strip_prefix(&prefix))
            .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
            .collect();
        if names.is_empty() {
            return Err(not_found(dir));
        }
        Ok(names.into_iter().collect())
    }

    fn read_link(&self, path: &str) -> io::Result<String> {
        self.links.get(path).cloned().ok_or_else(|| not_found(path))
    }

    fn write(&self, path: &str, value: &str) -> io::Result<()> {
        if self.refuse_writes.contains(path) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let mut files = self.files.borrow_mut();
        let slot = files.get_mut(path).ok_or_else(|| not_found(path))?;
        *slot = format!("{value}\n");
        Ok(())
    }

    fn rlimit(&self, resource: Resource) -> io::Result<Rlimit> {
        self.limits
            .borrow()
            .get(&resource)
            .copied()
            .ok_or_else(|| not_found("rlimit"))
    }

    fn set_soft_rlimit(&self, resource: Resource, soft: Option<u64>) -> io::Result<()> {
        let mut limits = self.limits.borrow_mut();
        let limit = limits
            .get_mut(&resource)
            .ok_or_else(|| not_found("rlimit"))?;
        let within = match (soft, limit.hard) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(soft), Some(hard)) => soft <= hard,
        };
        if !within {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        limit.soft = soft;
        Ok(())
    }

    fn is_root(&self) -> bool {
        self.root
    }
}
