//! Batches shared by the benchmarks.

use bytes::{Bytes, BytesMut};
use corelog::protocol::record_batch::{encode_plain_batch, PlainRecord};
use kafka_protocol::records::Compression;

/// One uncompressed v2 batch of 16 records of 1000 bytes (about 16 KiB).
pub fn batch_16_kib() -> BytesMut {
    let records = (0..16).map(|i| PlainRecord {
        timestamp: 1_700_000_000_000 + i,
        key: None,
        value: Some(Bytes::from(vec![b'x'; 1000])),
    });
    encode_plain_batch(records, Compression::None).unwrap()
}
