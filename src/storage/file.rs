//! The only code in storage that touches glommio's file APIs.
//!
//! `SegmentFile` is a thin wrapper over an O_DIRECT `DmaFile` with the handful of operations
//! the log uses, so that tests can inject faults here (`faults`, checked at the start of
//! every write, sync, read and truncate) and a later change can move to another io_uring
//! runtime without touching the log logic. Writes must be aligned to
//! `limits::DIO_ALIGNMENT_BYTES` in position and length; reads may be unaligned. Every path
//! reaches glommio absolute (see `absolute`).

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::limits::DIO_ALIGNMENT_BYTES;
use crate::metrics::Histogram;
use crate::storage::faults::{self, FaultOp};

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

fn to_io(error: glommio::GlommioError<()>) -> io::Error {
    error.into()
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

fn check_written(written: usize, expected: usize) -> io::Result<()> {
    if written != expected {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short direct write: {written} of {expected} bytes"),
        ));
    }
    Ok(())
}

/// One open direct-I/O file. Clones share the descriptor; it closes with the last clone.
#[derive(Clone)]
pub struct SegmentFile {
    file: Rc<DmaFile>,
}

impl SegmentFile {
    /// Opens `path` read-write, creating it empty if missing.
    pub async fn open_or_create(path: &Path) -> io::Result<SegmentFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(absolute(path)?)
            .await
            .map_err(to_io)?;
        Ok(SegmentFile {
            file: Rc::new(file),
        })
    }

    /// Opens an existing file read-only.
    pub async fn open_read_only(path: &Path) -> io::Result<SegmentFile> {
        let file = DmaFile::open(absolute(path)?).await.map_err(to_io)?;
        Ok(SegmentFile {
            file: Rc::new(file),
        })
    }

    /// Writes `data` (aligned position, length a multiple of the alignment) at `position`.
    pub async fn write_aligned(&self, position: u64, data: &[u8]) -> io::Result<()> {
        let mut buffer = self.alloc_buffer(data.len());
        buffer.as_bytes_mut().copy_from_slice(data);
        self.write_buffer(position, buffer).await
    }

    /// A buffer for `write_buffer`, from the executor's registered-buffer pool when it has
    /// room. Its contents are undefined: the caller fills all of it.
    pub fn alloc_buffer(&self, length: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(length)
    }

    /// Writes all of `buffer` (aligned position, length a multiple of the alignment).
    pub async fn write_buffer(&self, position: u64, buffer: DmaBuffer) -> io::Result<()> {
        assert_eq!(position % DIO_ALIGNMENT_BYTES as u64, 0);
        assert_eq!(buffer.len() % DIO_ALIGNMENT_BYTES, 0);
        self.injected_fault(FaultOp::Write).await?;
        let expected = buffer.len();
        let written = self.file.write_at(buffer, position).await.map_err(to_io)?;
        check_written(written, expected)
    }

    /// Writes `length` zero bytes (at most `ZEROS_BYTES`, aligned) at `position`, from the
    /// executor's shared block of zeros: no allocation, no fill.
    pub async fn write_zeros(&self, position: u64, length: usize) -> io::Result<()> {
        assert_eq!(position % DIO_ALIGNMENT_BYTES as u64, 0);
        assert!(length <= ZEROS_BYTES && length % DIO_ALIGNMENT_BYTES == 0);
        self.injected_fault(FaultOp::Write).await?;
        let zeros = ZEROS.with(|zeros| {
            zeros
                .get_or_init(|| {
                    let mut buffer = self.file.alloc_dma_buffer(ZEROS_BYTES);
                    buffer.as_bytes_mut().fill(0);
                    Rc::new(buffer)
                })
                .clone()
        });
        if length == ZEROS_BYTES {
            let written = self
                .file
                .write_rc_at(zeros, position)
                .await
                .map_err(to_io)?;
            return check_written(written, length);
        }
        let mut buffer = self.alloc_buffer(length);
        buffer
            .as_bytes_mut()
            .copy_from_slice(&zeros.as_bytes()[..length]);
        self.write_buffer(position, buffer).await
    }

    /// Reads up to `length` bytes at `position`; fewer only at the end of the file.
    pub async fn read(&self, position: u64, length: usize) -> io::Result<Vec<u8>> {
        self.injected_fault(FaultOp::Read).await?;
        let result = self.file.read_at(position, length).await.map_err(to_io)?;
        Ok(result.to_vec())
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
        let result = self.file.read_at(position, length).await.map_err(to_io)?;
        out.extend_from_slice(&result);
        Ok(result.len())
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        self.injected_fault(FaultOp::Sync).await?;
        let started = Instant::now();
        let result = self.file.fdatasync().await.map_err(to_io);
        SYNC_SECONDS.with(|histogram| histogram.borrow_mut().record(started.elapsed()));
        result
    }

    pub async fn truncate(&self, size: u64) -> io::Result<()> {
        self.injected_fault(FaultOp::Truncate).await?;
        self.file.truncate(size).await.map_err(to_io)
    }

    pub async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(to_io)
    }

    /// The error a test armed for `op` on this file (see `faults`); free when none is armed.
    async fn injected_fault(&self, op: FaultOp) -> io::Result<()> {
        let path = || self.file.path().map(|path| path.to_path_buf());
        if let Some(delay) = faults::check(op, path)? {
            glommio::timer::sleep(delay).await;
        }
        Ok(())
    }

    /// Closes the descriptor if this is the last clone; otherwise the last clone closes it.
    pub async fn close(self) -> io::Result<()> {
        self.file.close_rc().await.map_err(to_io)?;
        Ok(())
    }
}

/// Makes a directory entry change (create, rename, unlink) durable.
pub async fn sync_directory(path: &Path) -> io::Result<()> {
    let directory = glommio::io::Directory::open(absolute(path)?)
        .await
        .map_err(to_io)?;
    directory.sync().await.map_err(to_io)?;
    directory.close().await.map_err(to_io)
}

pub async fn remove_file(path: &Path) -> io::Result<()> {
    glommio::io::remove(absolute(path)?).await.map_err(to_io)
}

pub async fn rename(from: &Path, to: &Path) -> io::Result<()> {
    glommio::io::rename(absolute(from)?, absolute(to)?)
        .await
        .map_err(to_io)
}

/// glommio decides from the first `DmaFile` a shard opens on a device whether reads use
/// io_uring polling, and an empty read-write file makes later reads fail (os error 95). So
/// before anything else, open a non-empty probe file read-only on the data device.
pub async fn prime_device(data_dir: &Path) -> io::Result<()> {
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
