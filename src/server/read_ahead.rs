//! Reading ahead beneath TLS: rustls asks its socket for 4 KiB at a time, so a 64 KiB
//! produce request over TLS would take sixteen `recv` calls. [`ReadAhead`] answers those small
//! reads from one socket read of up to `CONNECTION_READ_CHUNK_BYTES`.
//!
//! Its buffer exists only while the client keeps data coming: it is allocated at the first
//! small read and given back when the socket has nothing more (a read would wait), so an idle
//! TLS connection holds none. Its size follows what the socket last gave (twice that, within
//! 16-64 KiB), since the buffer is zeroed each time it is made. Writes pass straight through.
//!
//! Per-connection (one per TLS stream).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};

use crate::limits;

pub struct ReadAhead<S> {
    inner: S,
    /// Read from the socket and not yet handed on: `buf[start..filled]`.
    buf: Vec<u8>,
    start: usize,
    filled: usize,
    /// Bytes the last socket read gave.
    last_read: usize,
}

/// The smallest read-ahead buffer.
const READ_AHEAD_BYTES_MIN: usize = 16 * 1024;

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> ReadAhead<S> {
        ReadAhead {
            inner,
            buf: Vec::new(),
            start: 0,
            filled: 0,
            last_read: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.start == this.filled {
            if out.len() >= limits::CONNECTION_READ_CHUNK_BYTES {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            let size = (2 * this.last_read)
                .clamp(READ_AHEAD_BYTES_MIN, limits::CONNECTION_READ_CHUNK_BYTES);
            if this.buf.len() < size {
                this.buf = vec![0; size];
            }
            match Pin::new(&mut this.inner).poll_read(cx, &mut this.buf) {
                Poll::Ready(Ok(count)) => {
                    this.start = 0;
                    this.filled = count;
                    this.last_read = count;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    // Nothing is waiting in the socket: hold no buffer while the client is
                    // quiet (a client that keeps the socket full rarely gets here).
                    this.buf = Vec::new();
                    return Poll::Pending;
                }
            }
        }
        let count = out.len().min(this.filled - this.start);
        out[..count].copy_from_slice(&this.buf[this.start..this.start + count]);
        this.start += count;
        Poll::Ready(Ok(count))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::AsyncReadExt;

    /// Small reads are answered from one larger read of the stream, in order, to the end.
    #[test]
    fn small_reads_come_from_one_read_ahead() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = ReadAhead::new(futures::io::Cursor::new(data.clone()));
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        futures::executor::block_on(async {
            loop {
                let count = reader.read(&mut piece).await.unwrap();
                if count == 0 {
                    break;
                }
                got.extend_from_slice(&piece[..count]);
            }
        });
        assert_eq!(got, data);
    }

    /// A read as large as a chunk goes straight to the stream.
    #[test]
    fn large_reads_pass_through() {
        let data = vec![7u8; 3 * limits::CONNECTION_READ_CHUNK_BYTES];
        let mut reader = ReadAhead::new(futures::io::Cursor::new(data));
        let mut big = vec![0u8; limits::CONNECTION_READ_CHUNK_BYTES];
        let count = futures::executor::block_on(reader.read(&mut big)).unwrap();
        assert_eq!(count, big.len());
        assert!(reader.buf.is_empty(), "no read-ahead buffer was needed");
    }

    /// A stream that gives `sizes` bytes per read, then waits for ever.
    struct Scripted {
        sizes: Vec<usize>,
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.sizes.is_empty() {
                return Poll::Pending;
            }
            let count = self.sizes.remove(0).min(out.len());
            out[..count].fill(1);
            Poll::Ready(Ok(count))
        }
    }

    fn read_once(reader: &mut ReadAhead<Scripted>) -> Poll<io::Result<usize>> {
        let mut piece = [0u8; 4096];
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        Pin::new(reader).poll_read(&mut cx, &mut piece)
    }

    /// A quiet client leaves no buffer behind, and the buffer grows with what the socket
    /// gives.
    #[test]
    fn the_buffer_lives_while_data_keeps_coming() {
        let mut quiet = ReadAhead::new(Scripted { sizes: vec![5000] });
        assert!(matches!(read_once(&mut quiet), Poll::Ready(Ok(4096))));
        assert!(matches!(read_once(&mut quiet), Poll::Ready(Ok(904))));
        assert!(read_once(&mut quiet).is_pending());
        assert!(quiet.buf.is_empty());

        let full = limits::CONNECTION_READ_CHUNK_BYTES;
        let mut busy = ReadAhead::new(Scripted {
            sizes: vec![full, full, full],
        });
        let mut sizes = Vec::new();
        while let Poll::Ready(Ok(_)) = read_once(&mut busy) {
            sizes.push(busy.buf.len());
        }
        assert_eq!(sizes.first(), Some(&READ_AHEAD_BYTES_MIN));
        assert_eq!(sizes.last(), Some(&full), "grown to a chunk");
        assert!(
            busy.buf.is_empty(),
            "given back once the socket has nothing more"
        );
    }
}
