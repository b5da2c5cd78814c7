//! A doorbell: how another thread wakes a shard without touching a `Waker` of it. The other
//! thread writes an eventfd; the shard reads it through its own io_uring, so the wake-up
//! completes like any I/O on the shard's own thread. The mesh (`mesh`) and the low-priority
//! worker (`worker`) use it.
//!
//! `rung` lets a burst of rings cost one `write(2)`: a ring writes only if the bell was
//! lowered since. No wake-up is lost as long as the shard lowers the bell *before* it looks
//! for what the ring announces, and the other thread rings *after* it made that visible.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// An eventfd and whether it has been rung since its shard last lowered it.
pub(super) struct Doorbell {
    eventfd: OwnedFd,
    rung: AtomicBool,
}

impl Doorbell {
    pub(super) fn new() -> std::io::Result<Doorbell> {
        // SAFETY: eventfd(2) with constant flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Doorbell {
            // SAFETY: a descriptor we just created and own alone.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            rung: AtomicBool::new(false),
        })
    }

    /// Rings unless already rung; callable from any thread.
    pub(super) fn ring(&self) {
        if self.rung.swap(true, Ordering::SeqCst) {
            return;
        }
        self.write();
    }

    /// Rings even if already rung (to wake a reader for a reason of its own, such as closing).
    pub(super) fn ring_again(&self) {
        self.rung.store(true, Ordering::SeqCst);
        self.write();
    }

    /// Lowered by the shard before it looks for what a ring announces.
    pub(super) fn lower(&self) {
        self.rung.store(false, Ordering::SeqCst);
    }

    fn write(&self) {
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64 to a descriptor this doorbell owns.
            let written = unsafe {
                libc::write(
                    self.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            if written == 8 {
                return;
            }
            let error = std::io::Error::last_os_error();
            // The counter cannot overflow (it is read after every ring), so only a signal
            // can interrupt the write; anything else is a broken descriptor.
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::Interrupted,
                "ringing a shard's doorbell failed: {error}"
            );
        }
    }
}

/// Reads a doorbell through the shard's own io_uring, so that a ring wakes the shard as a
/// completed read, on its own thread.
pub(super) struct DoorbellReader {
    file: glommio::io::BufferedFile,
}

impl DoorbellReader {
    pub(super) fn new(doorbell: &Doorbell) -> DoorbellReader {
        let duplicate = doorbell
            .eventfd
            .try_clone()
            .expect("duplicate a shard's doorbell descriptor")
            .into_raw_fd();
        // SAFETY: a fresh duplicate of the descriptor, which the file takes over and closes.
        let file = unsafe { glommio::io::BufferedFile::from_raw_fd(duplicate) };
        DoorbellReader { file }
    }

    /// Waits until the doorbell has been rung since the last wait, and lowers its counter.
    pub(super) async fn wait(&self) {
        if let Err(error) = self.file.read_at(0, std::mem::size_of::<u64>()).await {
            panic!("reading a shard's doorbell failed: {error}");
        }
    }

    pub(super) async fn close(self) {
        if let Err(error) = self.file.close().await {
            tracing::warn!(%error, "closing a shard's doorbell failed");
        }
    }
}
