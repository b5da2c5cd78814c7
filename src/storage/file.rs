//! The only code in storage that touches glommio's file APIs, or the file system at all.
//!
//! `SegmentFile` is a thin wrapper over an O_DIRECT `DmaFile` with the handful of operations
//! the log uses, so that tests can inject faults here (`faults`, checked at the start of
//! every write, sync, read and truncate) and a later change can move to another io_uring
//! runtime without touching the log logic. Writes must be aligned to
//! `limits::DIO_ALIGNMENT_BYTES` in position and length; reads may be unaligned. Every path
//! reaches glommio absolute (see `absolute`).
//!
//! The same calls reach a simulated disk instead when the path lies under one mounted on this
//! thread (`sim_disk`): the file is then `Backend::Simulated`, and the directory operations
//! below (create, list, stat, rename, remove, sync) go to the disk too. A path under no
//! mount costs one look at an empty thread-local list, at open and directory operations only.
//!
//! Errors keep the OS error code the device gave (`to_io`), wrapped with the operation and
//! path; `os_error` reads it back. The log tells a full device (which it survives) from
//! every other failure (which fences it) by that code alone.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::limits::DIO_ALIGNMENT_BYTES;
use crate::metrics::Histogram;
use crate::storage::faults::{self, FaultOp};
use crate::storage::sim_disk::{self, SimFile};

/// Size of the shared block of zeros that pre-writing writes from.
pub const ZEROS_BYTES: usize = 256 * 1024;

const _: () = assert!(ZEROS_BYTES % DIO_ALIGNMENT_BYTES == 0);

thread_local! {
    /// One block of zeros per executor, written by reference as often as needed.
    static ZEROS: OnceCell<Rc<DmaBuffer>> = const { OnceCell::new() };
    /// How long each fdatasync of a log file on this executor took (`/metrics`); per thread,
    /// so per shard, like every other counter.
    static SYNC_SECONDS: RefCell<Histogram> = RefCell::new(Histogram::default());
}

/// The fdatasync latencies of this executor's log files so far.
pub fn sync_latencies() -> Histogram {
    SYNC_SECONDS.with(|histogram| histogram.borrow().clone())
}

/// A failed file operation as glommio reports it: what was done to which file, and the OS
/// error. It travels as the inner error of an `io::Error` (see `to_io`), so that the OS error
/// code survives beside the context; `os_error` finds it there.
#[derive(Debug)]
struct FileOpError {
    op: &'static str,
    path: Option<PathBuf>,
    source: io::Error,
}

impl fmt::Display for FileOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} {}: {}", self.op, path.display(), self.source),
            None => write!(f, "{}: {}", self.op, self.source),
        }
    }
}

impl std::error::Error for FileOpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// glommio's own `From<GlommioError> for io::Error` rebuilds an `EnhancedIoError` (every
/// failed file operation) from its kind and text only, dropping the errno: a real ENOSPC then
/// looks like any other error and fenced the log for good. Here the original error is kept.
fn to_io(error: glommio::GlommioError<()>) -> io::Error {
    match error {
        glommio::GlommioError::IoError(error) => error,
        glommio::GlommioError::EnhancedIoError {
            source, op, path, ..
        } => io::Error::new(source.kind(), FileOpError { op, path, source }),
        other => other.into(),
    }
}

/// The OS error code behind `error`: its own, or that of the first `io::Error` found among
/// its inner errors (`to_io` puts the one from the device there). Every errno check of a
/// storage error goes through this, never `raw_os_error` alone.
pub fn os_error(error: &io::Error) -> Option<i32> {
    if let Some(code) = error.raw_os_error() {
        return Some(code);
    }
    let mut inner = error
        .get_ref()
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    while let Some(error) = inner {
        if let Some(error) = error.downcast_ref::<io::Error>() {
            return os_error(error);
        }
        inner = error.source();
    }
    None
}

/// A full device or an exhausted quota.
pub fn is_out_of_space(error: &io::Error) -> bool {
    matches!(os_error(error), Some(libc::ENOSPC | libc::EDQUOT))
}

/// `path` made absolute against the working directory. glommio opens directories, and stats
/// files by the path they were opened with, relative to no directory (dirfd -1), where a
/// relative path fails with EBADF. The broker's data directory is absolute from the start
/// (`Config::resolve`); this keeps every other caller of this layer from meeting that.
fn absolute(path: &Path) -> io::Result<Cow<'_, Path>> {
    if path.is_absolute() {
        return Ok(Cow::Borrowed(path));
    }
    std::path::absolute(path).map(Cow::Owned)
}

fn short_write(written: usize, expected: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::WriteZero,
        format!("short direct write: {written} of {expected} bytes"),
    )
}

/// One open direct-I/O file. Clones share the descriptor; it closes with the last clone.
#[derive(Clone)]
pub struct SegmentFile {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Direct(Rc<DmaFile>),
    Simulated(SimFile),
}

/// A buffer for `SegmentFile::write_buffer`: DMA memory for a direct file.
pub enum WriteBuffer {
    Direct(DmaBuffer),
    Simulated(Vec<u8>),
}

impl WriteBuffer {
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            WriteBuffer::Direct(buffer) => buffer.as_bytes_mut(),
            WriteBuffer::Simulated(buffer) => buffer,
        }
    }

    fn len(&self) -> usize {
        match self {
            WriteBuffer::Direct(buffer) => buffer.len(),
            WriteBuffer::Simulated(buffer) => buffer.len(),
        }
    }
}

impl SegmentFile {
    /// Opens `path` read-write, creating it empty if missing.
    pub async fn open_or_create(path: &Path) -> io::Result<SegmentFile> {
        if let Some(disk) = sim_disk::disk_for(path) {
            return Ok(Self::simulated(disk.open(path, true)?));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(absolute(path)?)
            .await
            .map_err(to_io)?;
        Ok(Self::direct(file))
    }

    /// Opens an existing file read-only.
    pub async fn open_read_only(path: &Path) -> io::Result<SegmentFile> {
        if let Some(disk) = sim_disk::disk_for(path) {
            return Ok(Self::simulated(disk.open(path, false)?));
        }
        let file = DmaFile::open(absolute(path)?).await.map_err(to_io)?;
        Ok(Self::direct(file))
    }

    fn direct(file: DmaFile) -> SegmentFile {
        SegmentFile {
            backend: Backend::Direct(Rc::new(file)),
        }
    }

    fn simulated(file: SimFile) -> SegmentFile {
        SegmentFile {
            backend: Backend::Simulated(file),
        }
    }

    /// Writes `data` (aligned position, length a multiple of the alignment) at `position`.
    pub async fn write_aligned(&self, position: u64, data: &[u8]) -> io::Result<()> {
        let mut buffer = self.alloc_buffer(data.len());
        buffer.as_bytes_mut().copy_from_slice(data);
        self.write_buffer(position, buffer).await
    }

    /// A buffer for `write_buffer`, from the executor's registered-buffer pool when it has
    /// room. Its contents are undefined: the caller fills all of it.
    pub fn alloc_buffer(&self, length: usize) -> WriteBuffer {
        match &self.backend {
            Backend::Direct(file) => WriteBuffer::Direct(file.alloc_dma_buffer(length)),
            Backend::Simulated(_) => WriteBuffer::Simulated(vec![0; length]),
        }
    }

    /// Writes all of `buffer` (aligned position, length a multiple of the alignment).
    pub async fn write_buffer(&self, position: u64, buffer: WriteBuffer) -> io::Result<()> {
        assert_eq!(position % DIO_ALIGNMENT_BYTES as u64, 0);
        assert_eq!(buffer.len() % DIO_ALIGNMENT_BYTES, 0);
        self.injected_fault(FaultOp::Write).await?;
        match (&self.backend, buffer) {
            (Backend::Direct(file), WriteBuffer::Direct(buffer)) => {
                write_all(file, position, Rc::new(buffer)).await
            }
            (Backend::Simulated(file), WriteBuffer::Simulated(buffer)) => {
                file.write(position, &buffer)
            }
            _ => unreachable!("a buffer is written to the kind of file that gave it"),
        }
    }

    /// Writes `length` zero bytes (at most `ZEROS_BYTES`, aligned) at `position`, from the
    /// executor's shared block of zeros: no allocation, no fill.
    pub async fn write_zeros(&self, position: u64, length: usize) -> io::Result<()> {
        assert_eq!(position % DIO_ALIGNMENT_BYTES as u64, 0);
        assert!(length <= ZEROS_BYTES && length % DIO_ALIGNMENT_BYTES == 0);
        self.injected_fault(FaultOp::Write).await?;
        let file = match &self.backend {
            Backend::Direct(file) => file,
            Backend::Simulated(file) => return file.write(position, &vec![0; length]),
        };
        let zeros = ZEROS.with(|zeros| {
            zeros
                .get_or_init(|| {
                    let mut buffer = file.alloc_dma_buffer(ZEROS_BYTES);
                    buffer.as_bytes_mut().fill(0);
                    Rc::new(buffer)
                })
                .clone()
        });
        if length == ZEROS_BYTES {
            return write_all(file, position, zeros).await;
        }
        let mut buffer = file.alloc_dma_buffer(length);
        buffer
            .as_bytes_mut()
            .copy_from_slice(&zeros.as_bytes()[..length]);
        write_all(file, position, Rc::new(buffer)).await
    }

    /// Reads up to `length` bytes at `position`; fewer only at the end of the file.
    pub async fn read(&self, position: u64, length: usize) -> io::Result<Vec<u8>> {
        self.injected_fault(FaultOp::Read).await?;
        match &self.backend {
            Backend::Direct(file) => {
                let result = file.read_at(position, length).await.map_err(to_io)?;
                Ok(result.to_vec())
            }
            Backend::Simulated(file) => file.read(position, length),
        }
    }

    /// Reads up to `length` bytes at `position` and appends them to `out` (one copy, out of
    /// the DMA buffer). Returns how many bytes came: fewer only at the end of the file.
    pub async fn read_append(
        &self,
        position: u64,
        length: usize,
        out: &mut bytes::BytesMut,
    ) -> io::Result<usize> {
        self.injected_fault(FaultOp::Read).await?;
        match &self.backend {
            Backend::Direct(file) => {
                let result = file.read_at(position, length).await.map_err(to_io)?;
                out.extend_from_slice(&result);
                Ok(result.len())
            }
            Backend::Simulated(file) => {
                let result = file.read(position, length)?;
                out.extend_from_slice(&result);
                Ok(result.len())
            }
        }
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        self.injected_fault(FaultOp::Sync).await?;
        let started = Instant::now();
        let result = match &self.backend {
            Backend::Direct(file) => file.fdatasync().await.map_err(to_io),
            Backend::Simulated(file) => {
                simulated_sync_latency(file.sync_latency()).await;
                file.sync()
            }
        };
        SYNC_SECONDS.with(|histogram| histogram.borrow_mut().record(started.elapsed()));
        result
    }

    pub async fn truncate(&self, size: u64) -> io::Result<()> {
        self.injected_fault(FaultOp::Truncate).await?;
        match &self.backend {
            Backend::Direct(file) => file.truncate(size).await.map_err(to_io),
            Backend::Simulated(file) => file.truncate(size),
        }
    }

    pub async fn size(&self) -> io::Result<u64> {
        match &self.backend {
            Backend::Direct(file) => file.file_size().await.map_err(to_io),
            Backend::Simulated(file) => file.size(),
        }
    }

    /// The error a test armed for `op` on this file (see `faults`); free when none is armed.
    async fn injected_fault(&self, op: FaultOp) -> io::Result<()> {
        let path = || match &self.backend {
            Backend::Direct(file) => file.path().map(|path| path.to_path_buf()),
            Backend::Simulated(file) => Some(file.path().to_path_buf()),
        };
        if let Some(delay) = faults::check(op, path)? {
            glommio::timer::sleep(delay).await;
        }
        Ok(())
    }

    /// Closes the descriptor if this is the last clone; otherwise the last clone closes it.
    pub async fn close(self) -> io::Result<()> {
        if let Backend::Direct(file) = self.backend {
            file.close_rc().await.map_err(to_io)?;
        }
        Ok(())
    }
}

/// Writes all of `buffer` at `position`. A write the kernel cut short (a device that ran out
/// of room midway may report the bytes it took instead of an error) goes on from where it
/// stopped, so that the cause comes back with its errno as the next write's error, never as
/// an errno-less short write that would fence the log.
async fn write_all(file: &DmaFile, position: u64, buffer: Rc<DmaBuffer>) -> io::Result<()> {
    let expected = buffer.len();
    let mut written = file
        .write_rc_at(buffer.clone(), position)
        .await
        .map_err(to_io)?;
    let mut done = written;
    while done < expected {
        if written == 0 || done % DIO_ALIGNMENT_BYTES != 0 {
            return Err(short_write(done, expected));
        }
        // Rare: a copy of the rest, since a DMA buffer cannot be written from an offset.
        let mut rest = file.alloc_dma_buffer(expected - done);
        rest.as_bytes_mut()
            .copy_from_slice(&buffer.as_bytes()[done..]);
        let at = position + done as u64;
        written = file.write_at(rest, at).await.map_err(to_io)?;
        done += written;
    }
    Ok(())
}

/// Makes a directory entry change (create, rename, unlink) durable.
/// A simulated disk's sync takes its time on the `runtime::clock` (see `sim_disk`).
async fn simulated_sync_latency(latency: std::time::Duration) {
    if !latency.is_zero() {
        crate::runtime::clock::sleep(latency).await;
    }
}

pub async fn sync_directory(path: &Path) -> io::Result<()> {
    if let Some(disk) = sim_disk::disk_for(path) {
        simulated_sync_latency(disk.sync_latency()).await;
        return disk.sync_directory(path);
    }
    let directory = glommio::io::Directory::open(absolute(path)?)
        .await
        .map_err(to_io)?;
    directory.sync().await.map_err(to_io)?;
    directory.close().await.map_err(to_io)
}

pub async fn remove_file(path: &Path) -> io::Result<()> {
    if let Some(disk) = sim_disk::disk_for(path) {
        return disk.remove_file(path);
    }
    glommio::io::remove(absolute(path)?).await.map_err(to_io)
}

pub async fn rename(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(disk) = sim_disk::disk_for(from) {
        return disk.rename(from, to);
    }
    glommio::io::rename(absolute(from)?, absolute(to)?)
        .await
        .map_err(to_io)
}

/// Creates `dir` and its missing parents.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    match sim_disk::disk_for(dir) {
        Some(disk) => disk.create_dir_all(dir),
        None => std::fs::create_dir_all(dir),
    }
}

/// Removes `dir` and everything in it.
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    match sim_disk::disk_for(dir) {
        Some(disk) => disk.remove_dir_all(dir),
        None => std::fs::remove_dir_all(dir),
    }
}

/// The names of the entries of `dir`.
pub fn list_dir(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    if let Some(disk) = sim_disk::disk_for(dir) {
        return disk.list_dir(dir);
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name());
    }
    Ok(names)
}

/// The length of the file at `path` (following links), or None when there is none.
pub fn file_len(path: &Path) -> io::Result<Option<u64>> {
    if let Some(disk) = sim_disk::disk_for(path) {
        return Ok(disk.file_len(path));
    }
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(Some(metadata.len())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The size of the file system holding `dir` and the bytes of it an unprivileged writer may
/// still use, as `df` reports them (one `statvfs`, which reads no disk).
pub fn disk_space(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    // SAFETY: `path` is a NUL-terminated string and `stats` a statvfs the call fills.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let block = stats.f_frsize as u64;
    Ok((stats.f_blocks as u64 * block, stats.f_bavail as u64 * block))
}

/// Whether nothing (not even a dangling link) is at `path`.
pub fn is_missing(path: &Path) -> bool {
    if let Some(disk) = sim_disk::disk_for(path) {
        return disk.file_len(path).is_none() && !disk.is_dir(path);
    }
    matches!(std::fs::symlink_metadata(path), Err(error) if error.kind() == io::ErrorKind::NotFound)
}

/// glommio decides from the first `DmaFile` a shard opens on a device whether reads use
/// io_uring polling, and an empty read-write file makes later reads fail (os error 95). So
/// before anything else, open a non-empty probe file read-only on the data device.
pub async fn prime_device(data_dir: &Path) -> io::Result<()> {
    if sim_disk::disk_for(data_dir).is_some() {
        return create_dir_all(data_dir);
    }
    std::fs::create_dir_all(data_dir)?;
    let probe = data_dir.join(".corelog-device-probe");
    let needs_probe = std::fs::metadata(&probe)
        .map(|m| m.len() < 4096)
        .unwrap_or(true);
    if needs_probe {
        // Buffered std I/O on purpose: no DmaFile may be opened before the probe exists.
        std::fs::write(&probe, vec![0u8; DIO_ALIGNMENT_BYTES])?;
        std::fs::File::open(&probe)?.sync_all()?;
    }
    let file = SegmentFile::open_read_only(&probe).await?;
    file.read(0, DIO_ALIGNMENT_BYTES).await?;
    file.close().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed file operation from glommio keeps its OS error code (glommio's own conversion
    /// drops it) and says what was done to which file.
    #[test]
    fn runtime_errors_keep_their_os_error_code() {
        let error = to_io(glommio::GlommioError::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::ENOSPC),
            op: "Writing",
            path: Some(PathBuf::from("/data/t-0/00000000000000000000.log")),
            fd: Some(7),
        });
        assert_eq!(os_error(&error), Some(libc::ENOSPC));
        assert!(is_out_of_space(&error));
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        let text = error.to_string();
        assert!(
            text.contains("Writing /data/t-0/00000000000000000000.log") && text.contains("28"),
            "{text}"
        );
        let glommio_own: io::Error = glommio::GlommioError::<()>::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::ENOSPC),
            op: "Writing",
            path: None,
            fd: None,
        }
        .into();
        assert_eq!(glommio_own.raw_os_error(), None, "why `to_io` exists");
    }

    /// The code is found through any depth of wrapping, and only an OS code counts.
    #[test]
    fn os_error_looks_through_inner_errors() {
        let plain = io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(is_out_of_space(&plain));
        let wrapped = io::Error::other(io::Error::new(
            io::ErrorKind::StorageFull,
            io::Error::from_raw_os_error(libc::ENOSPC),
        ));
        assert_eq!(os_error(&wrapped), Some(libc::ENOSPC));
        let eio = to_io(glommio::GlommioError::EnhancedIoError {
            source: io::Error::from_raw_os_error(libc::EIO),
            op: "Syncing",
            path: None,
            fd: None,
        });
        assert_eq!(os_error(&eio), Some(libc::EIO));
        assert!(!is_out_of_space(&eio));
        assert_eq!(os_error(&short_write(4096, 8192)), None);
        assert_eq!(os_error(&io::Error::other("no code")), None);
    }
}
