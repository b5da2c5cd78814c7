//! Provides compression utilities for encoding records.
//!
//! This module has implementations of gzip, Snappy, as well as a noop compression format that
//! allows encoding and decoding records into a [`Record`](crate::records::Record).

use crate::protocol::buf::{ByteBuf, ByteBufMut};
use anyhow::Result;

#[cfg(feature = "gzip")]
mod gzip;
#[cfg(feature = "lz4")]
mod lz4;
mod none;
#[cfg(feature = "snappy")]
mod snappy;
#[cfg(feature = "zstd")]
mod zstd;

#[cfg(feature = "gzip")]
pub use gzip::Gzip;
#[cfg(feature = "lz4")]
pub use lz4::Lz4;
pub use none::None;
#[cfg(feature = "snappy")]
pub use snappy::Snappy;
#[cfg(feature = "zstd")]
pub use zstd::Zstd;

/// corelog patch: most bytes one batch may decompress to. Without a bound, a batch of a few
/// hundred bytes that claims (snappy) or expands (gzip, lz4, zstd) to gigabytes makes the
/// decoder allocate them, and a failed allocation aborts the process.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// corelog patch: reads `reader` to its end, refusing output over [`DECOMPRESSED_BYTES_MAX`].
// Unused when only snappy is enabled.
#[allow(dead_code)]
fn read_bounded(reader: impl std::io::Read) -> Result<bytes::Bytes> {
    use std::io::Read as _;
    let mut out = Vec::new();
    reader
        .take(DECOMPRESSED_BYTES_MAX as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > DECOMPRESSED_BYTES_MAX {
        anyhow::bail!("batch decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes");
    }
    Ok(out.into())
}

/// A trait for record compression algorithms.
pub trait Compressor<B: ByteBufMut> {
    /// Target buffer type for compression.
    type BufMut: ByteBufMut;
    /// Compresses into provided [`ByteBufMut`], with records encoded by `F` into `R`.
    fn compress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::BufMut) -> Result<R>;
}

/// A trait for record decompression algorithms.
pub trait Decompressor<B: ByteBuf> {
    /// Target buffer type for decompression.
    type Buf: ByteBuf;
    /// Decompress records from `B` mapped using `F` into `R`.
    fn decompress<R, F>(buf: &mut B, f: F) -> Result<R>
    where
        F: FnOnce(&mut Self::Buf) -> Result<R>;
}
