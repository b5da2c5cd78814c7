//! A simulated disk for tests: files in memory that remember what was synced, so that a
//! crash loses what was not (and may tear it), and a power cut fails every operation from a
//! chosen one on.
//!
//! A disk is mounted at a root path on the executor's thread (`SimDisk::mount`); from then on
//! every file and directory operation of `file` on a path under that root goes to it instead
//! of the device, so that the real log, recovery and partition code run on it unchanged.
//! Nothing on the real file system is touched under the root. The model, per file: `current`
//! is what reads see, `durable` what survives a crash; `fdatasync` makes `current` durable;
//! bytes written since the last sync survive a crash sector by sector, each one or not, as
//! the seeded crash decides (a torn write). Names: creating, renaming or removing a file
//! changes what lookups see at once, and what survives a crash only when its directory is
//! synced. Directories themselves are durable as soon as they are made (the broker creates
//! them once, before anything is written in them).
//!
//! Per-thread: a disk lives on the executor that mounted it; it is not `Send`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::seeded::Seeded;

/// The unit a crash keeps or loses of a write not yet synced.
const SECTOR_BYTES: u64 = 512;

thread_local! {
    /// Disks by root. Dead disks (`crash_into`) stay mounted, so that their old process's
    /// tasks keep failing there; finding one costs a lookup per level of the path.
    static MOUNTED: RefCell<BTreeMap<PathBuf, Rc<SimDisk>>> = const { RefCell::new(BTreeMap::new()) };
}

/// The disk mounted at a root that holds `path`, if any.
pub(super) fn disk_for(path: &Path) -> Option<Rc<SimDisk>> {
    MOUNTED.with(|mounted| {
        let mounted = mounted.borrow();
        if mounted.is_empty() {
            return None;
        }
        path.ancestors()
            .find_map(|ancestor| mounted.get(ancestor))
            .cloned()
    })
}

#[derive(Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges written since the last sync: what a crash may keep, sector by sector.
    unsynced: Vec<(u64, u64)>,
}

type Shared = Rc<RefCell<FileData>>;

#[derive(Default)]
struct Inner {
    /// What lookups see now.
    names: BTreeMap<PathBuf, Shared>,
    /// What a crash leaves: the names as of each directory's last sync.
    durable_names: BTreeMap<PathBuf, Shared>,
    dirs: BTreeSet<PathBuf>,
    /// Operations left before the power is cut: from then on every one fails with EIO.
    operations_left: Option<u64>,
    /// Operations done since the mount or the last crash.
    operations: u64,
    /// How long a file or directory sync takes, in the `runtime::clock`'s time.
    sync_latency: std::time::Duration,
}

/// One simulated disk. Per-thread (see the module doc).
pub struct SimDisk {
    root: PathBuf,
    inner: RefCell<Inner>,
}

impl SimDisk {
    /// Mounts an empty disk at `root` (absolute) on this thread.
    pub fn mount(root: &Path) -> Rc<SimDisk> {
        assert!(
            root.is_absolute(),
            "a simulated disk is mounted at an absolute path"
        );
        let disk = Rc::new(SimDisk {
            root: root.to_path_buf(),
            inner: RefCell::default(),
        });
        disk.inner.borrow_mut().dirs.insert(root.to_path_buf());
        MOUNTED.with(|mounted| {
            let previous = mounted
                .borrow_mut()
                .insert(root.to_path_buf(), disk.clone());
            assert!(previous.is_none(), "one disk per root");
        });
        disk
    }

    /// Unmounts this disk from the thread: paths under its root reach the device again.
    pub fn unmount(self: &Rc<Self>) {
        MOUNTED.with(|mounted| {
            let mut mounted = mounted.borrow_mut();
            if mounted
                .get(&self.root)
                .is_some_and(|disk| Rc::ptr_eq(disk, self))
            {
                mounted.remove(&self.root);
            }
        });
    }

    /// Cuts the power after `operations` more operations: that one and every later one
    /// fails with EIO until `crash`.
    pub fn cut_power_after(&self, operations: u64) {
        self.inner.borrow_mut().operations_left = Some(operations);
    }

    /// Makes every sync take `latency` of the `runtime::clock`'s time before it makes
    /// anything durable, so that a simulated crash can fall between a write and its sync.
    pub fn set_sync_latency(&self, latency: std::time::Duration) {
        self.inner.borrow_mut().sync_latency = latency;
    }

    pub(super) fn sync_latency(&self) -> std::time::Duration {
        self.inner.borrow().sync_latency
    }

    /// Operations done since the mount or the last crash.
    pub fn operations(&self) -> u64 {
        self.inner.borrow().operations
    }

    /// A crash and a restart: names go back to what their directories last synced, and every
    /// file to what it last synced, plus a choice of the sectors written since that `seed`
    /// decides. The power is back on afterwards. Handles opened before the crash must not be
    /// used again.
    pub fn crash(&self, seed: u64) {
        let mut coin = Seeded::new(seed);
        let mut inner = self.inner.borrow_mut();
        inner.names = inner.durable_names.clone();
        inner.operations_left = None;
        inner.operations = 0;
        let mut seen = BTreeSet::new();
        for file in inner.names.values() {
            if !seen.insert(Rc::as_ptr(file) as usize) {
                continue;
            }
            let mut file = file.borrow_mut();
            let mut survived = file.durable.clone();
            let unsynced = std::mem::take(&mut file.unsynced);
            for (start, end) in unsynced {
                let mut sector = start - start % SECTOR_BYTES;
                while sector < end {
                    let from = sector.max(start);
                    let to = (sector + SECTOR_BYTES).min(end);
                    let to = to.min(file.current.len() as u64);
                    if from < to && coin.coin() {
                        if survived.len() < to as usize {
                            survived.resize(to as usize, 0);
                        }
                        survived[from as usize..to as usize]
                            .copy_from_slice(&file.current[from as usize..to as usize]);
                    }
                    sector += SECTOR_BYTES;
                }
            }
            file.current = survived.clone();
            file.durable = survived;
        }
    }

    /// A crash (see `crash`) seen as a new process would see it: the surviving files are
    /// mounted at `root` on a new disk, and this one stays mounted, empty and without power
    /// for good, so that tasks the dead process left behind (a flush, a snapshot being
    /// written) fail there instead of writing into the new process's files.
    pub fn crash_into(&self, root: &Path, seed: u64) -> Rc<SimDisk> {
        self.crash(seed);
        let disk = SimDisk::mount(root);
        {
            let old = self.inner.borrow();
            let mut new = disk.inner.borrow_mut();
            let moved = |path: &Path| root.join(path.strip_prefix(&self.root).expect("under root"));
            for (path, data) in &old.durable_names {
                let data = data.borrow();
                let copy = FileData {
                    current: data.current.clone(),
                    durable: data.durable.clone(),
                    unsynced: Vec::new(),
                };
                let copy = Rc::new(RefCell::new(copy));
                new.names.insert(moved(path), copy.clone());
                new.durable_names.insert(moved(path), copy);
            }
            for dir in &old.dirs {
                new.dirs.insert(moved(dir));
            }
        }
        let mut old = self.inner.borrow_mut();
        *old = Inner::default();
        old.operations_left = Some(0);
        disk
    }

    /// Counts one operation; fails it if the power is cut.
    fn operate(&self) -> io::Result<()> {
        let mut inner = self.inner.borrow_mut();
        inner.operations += 1;
        match &mut inner.operations_left {
            Some(0) => Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(left) => {
                *left -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn not_found(path: &Path) -> io::Error {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: no such simulated file", path.display()),
        )
    }

    fn parent_exists(inner: &Inner, path: &Path) -> bool {
        path.parent().is_some_and(|dir| inner.dirs.contains(dir))
    }

    pub(super) fn open(self: &Rc<Self>, path: &Path, create: bool) -> io::Result<SimFile> {
        self.operate()?;
        let mut inner = self.inner.borrow_mut();
        let data = match inner.names.get(path) {
            Some(data) => data.clone(),
            None if create && Self::parent_exists(&inner, path) => {
                let data = Shared::default();
                inner.names.insert(path.to_path_buf(), data.clone());
                data
            }
            None => return Err(Self::not_found(path)),
        };
        Ok(SimFile {
            disk: self.clone(),
            path: path.to_path_buf(),
            data,
        })
    }

    pub(super) fn sync_directory(&self, dir: &Path) -> io::Result<()> {
        self.operate()?;
        let mut inner = self.inner.borrow_mut();
        let Inner {
            names,
            durable_names,
            ..
        } = &mut *inner;
        durable_names.retain(|path, _| path.parent() != Some(dir));
        for (path, data) in names.iter() {
            if path.parent() == Some(dir) {
                durable_names.insert(path.clone(), data.clone());
            }
        }
        Ok(())
    }

    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.operate()?;
        let removed = self.inner.borrow_mut().names.remove(path);
        removed.map(|_| ()).ok_or_else(|| Self::not_found(path))
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.operate()?;
        let mut inner = self.inner.borrow_mut();
        if inner.dirs.contains(from) {
            // A directory (a partition being deleted): moved with everything in it, durably.
            let moved: Vec<PathBuf> = inner
                .dirs
                .iter()
                .filter(|dir| dir.starts_with(from))
                .cloned()
                .collect();
            for dir in moved {
                inner.dirs.remove(&dir);
                let renamed = to.join(dir.strip_prefix(from).expect("under from"));
                inner.dirs.insert(renamed);
            }
            let Inner {
                names,
                durable_names,
                ..
            } = &mut *inner;
            for map in [names, durable_names] {
                let moved: Vec<PathBuf> = map
                    .keys()
                    .filter(|path| path.starts_with(from))
                    .cloned()
                    .collect();
                for path in moved {
                    let data = map.remove(&path).expect("listed");
                    map.insert(to.join(path.strip_prefix(from).expect("under from")), data);
                }
            }
            return Ok(());
        }
        let data = inner
            .names
            .remove(from)
            .ok_or_else(|| Self::not_found(from))?;
        inner.names.insert(to.to_path_buf(), data);
        Ok(())
    }

    pub(super) fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.operate()?;
        let mut inner = self.inner.borrow_mut();
        for ancestor in dir
            .ancestors()
            .take_while(|path| path.starts_with(&self.root))
        {
            inner.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    pub(super) fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.operate()?;
        let mut inner = self.inner.borrow_mut();
        if !inner.dirs.contains(dir) {
            return Err(Self::not_found(dir));
        }
        inner.dirs.retain(|path| !path.starts_with(dir));
        inner.names.retain(|path, _| !path.starts_with(dir));
        inner.durable_names.retain(|path, _| !path.starts_with(dir));
        Ok(())
    }

    /// The names of the files and directories directly in `dir`.
    pub(super) fn list_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let inner = self.inner.borrow();
        if !inner.dirs.contains(dir) {
            return Err(Self::not_found(dir));
        }
        let files = inner.names.keys().filter(|path| path.parent() == Some(dir));
        let dirs = inner.dirs.iter().filter(|path| path.parent() == Some(dir));
        let names = files.chain(dirs).filter_map(|path| path.file_name());
        Ok(names.map(|name| name.to_os_string()).collect())
    }

    /// The length of the file at `path`, or None if there is none.
    pub(super) fn file_len(&self, path: &Path) -> Option<u64> {
        let inner = self.inner.borrow();
        inner
            .names
            .get(path)
            .map(|data| data.borrow().current.len() as u64)
    }

    pub(super) fn is_dir(&self, path: &Path) -> bool {
        self.inner.borrow().dirs.contains(path)
    }
}

/// An open simulated file. Clones share it.
#[derive(Clone)]
pub(super) struct SimFile {
    disk: Rc<SimDisk>,
    path: PathBuf,
    data: Shared,
}

impl SimFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, position: u64, bytes: &[u8]) -> io::Result<()> {
        self.disk.operate()?;
        let mut data = self.data.borrow_mut();
        let end = position as usize + bytes.len();
        if data.current.len() < end {
            data.current.resize(end, 0);
        }
        data.current[position as usize..end].copy_from_slice(bytes);
        data.unsynced.push((position, end as u64));
        Ok(())
    }

    pub fn read(&self, position: u64, length: usize) -> io::Result<Vec<u8>> {
        self.disk.operate()?;
        let data = self.data.borrow();
        let start = (position as usize).min(data.current.len());
        let end = (start + length).min(data.current.len());
        Ok(data.current[start..end].to_vec())
    }

    pub fn sync_latency(&self) -> std::time::Duration {
        self.disk.sync_latency()
    }

    pub fn sync(&self) -> io::Result<()> {
        self.disk.operate()?;
        let mut data = self.data.borrow_mut();
        data.durable = data.current.clone();
        data.unsynced.clear();
        Ok(())
    }

    pub fn truncate(&self, size: u64) -> io::Result<()> {
        self.disk.operate()?;
        self.data.borrow_mut().current.resize(size as usize, 0);
        Ok(())
    }

    pub fn size(&self) -> io::Result<u64> {
        self.disk.operate()?;
        Ok(self.data.borrow().current.len() as u64)
    }
}
