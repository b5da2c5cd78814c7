//! Offline damage between two runs of the broker: a torn write after the last segment's end
//! and lost index files cost no acknowledged message, and produce continues at the offset
//! after the last acknowledged one.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::records::Compression;

const TOPIC: &str = "damage";
const BATCHES: usize = 40;
const RECORDS_PER_BATCH: usize = 5;

fn make_batch(batch: usize) -> Bytes {
    let values: Vec<Vec<u8>> = (0..RECORDS_PER_BATCH)
        .map(|record| {
            let mut value: Vec<u8> = format!("batch {batch} record {record}").into();
            value.resize(200, b'.');
            value
        })
        .collect();
    let values: Vec<&[u8]> = values.iter().map(|value| &value[..]).collect();
    record_batch(&values, 1_700_000_000_000 + batch as i64, Compression::None)
}

/// Every batch of partition 0 from offset 0 to the high watermark by raw Fetch, and the high
/// watermark.
fn fetch_all(conn: &mut RawConn) -> (Vec<Bytes>, i64) {
    let mut batches = Vec::new();
    let mut offset = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = fetch_request(TOPIC, 0, offset, 0, 1, 1 << 20);
        let response: FetchResponse = conn.request(&request, 12);
        let data = single_partition(&response);
        assert_eq!(data.error_code, 0, "fetch at {offset}");
        if offset >= data.high_watermark {
            return (batches, data.high_watermark);
        }
        let records = data.records.clone().unwrap_or_default();
        let (infos, _) = parse_batches(&records);
        assert!(
            !infos.is_empty() && Instant::now() < deadline,
            "no progress at {offset}"
        );
        for info in infos {
            if info.last_offset() < offset {
                continue;
            }
            let bytes = records.slice(info.position..info.position + info.size);
            assert!(batch_crc_ok(&bytes), "bad CRC at {}", info.base_offset);
            offset = info.last_offset() + 1;
            batches.push(bytes);
        }
    }
}

/// Checks that the partition serves exactly batches `0..count` at the offsets their produce
/// was acknowledged with, records byte for byte.
fn assert_served(conn: &mut RawConn, acked: &[i64]) {
    let (served, high_watermark) = fetch_all(conn);
    assert_eq!(high_watermark, (acked.len() * RECORDS_PER_BATCH) as i64);
    assert_eq!(served.len(), acked.len(), "batches served");
    for (batch, (bytes, offset)) in served.iter().zip(acked).enumerate() {
        let (infos, _) = parse_batches(bytes);
        assert_eq!(infos[0].base_offset, *offset, "offset of batch {batch}");
        assert_eq!(
            &bytes[61..],
            &make_batch(batch)[61..],
            "records of batch {batch}"
        );
    }
}

/// Appends what a write torn by a crash leaves: the start of a batch that would follow the
/// last one, then garbage, to the block boundary.
fn append_torn_batch(segment: &Path, next_offset: i64) {
    let mut torn = make_batch(BATCHES).to_vec();
    torn[..8].copy_from_slice(&next_offset.to_be_bytes());
    torn.truncate(150);
    let length = std::fs::metadata(segment).unwrap().len() as usize + torn.len();
    torn.extend((0..length.next_multiple_of(4096) - length).map(|i| (i * 37 % 251) as u8));
    let mut file = OpenOptions::new().append(true).open(segment).unwrap();
    file.write_all(&torn).unwrap();
    file.sync_all().unwrap();
}

/// A torn write after the last segment's end plus a deleted `.index` (active segment) and
/// `.timeindex` (first, closed segment): every acknowledged message is served at its offset,
/// recovery warns about the cut, and produce continues right after the acknowledged end.
#[test]
fn acknowledged_data_survives_torn_tail_and_lost_indexes() {
    let mut broker = Broker::start(1, &[]);
    create_topic_with_configs(broker.port, TOPIC, 1, &[("segment.bytes", "16384")]);
    let mut conn = RawConn::connect(broker.port);
    let mut acked = Vec::new();
    for batch in 0..BATCHES {
        let (error, offset) = produce(&mut conn, TOPIC, 0, make_batch(batch));
        assert_eq!(error, 0, "produce of batch {batch}");
        acked.push(offset);
    }
    drop(conn);
    broker.stop();

    let dir = broker.partition_dir(TOPIC, 0);
    let (first, last) = (first_segment(&dir), last_segment(&dir));
    assert_ne!(first, last, "the log rolled at least once");
    let end = (BATCHES * RECORDS_PER_BATCH) as i64;
    append_torn_batch(&last, end);
    std::fs::remove_file(last.with_extension("index")).unwrap();
    std::fs::remove_file(first.with_extension("timeindex")).unwrap();

    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_served(&mut conn, &acked);
    let stderr = broker.stderr();
    assert!(
        stderr.contains("truncating segment at first torn or corrupt batch")
            && stderr.contains(&format!("{}", last.display())),
        "{stderr}"
    );
    let (error, offset) = produce(&mut conn, TOPIC, 0, make_batch(BATCHES));
    assert_eq!((error, offset), (0, end), "produce after recovery");
    acked.push(offset);
    drop(conn);

    broker.stop();
    broker.restart();
    let mut conn = RawConn::connect(broker.port);
    assert_served(&mut conn, &acked);
}
