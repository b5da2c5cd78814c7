//! The records of `__transaction_state`, in Kafka's own schemas so that the topic reads the
//! same as Kafka's: `TransactionLogKey` v0 (the transactional id) and `TransactionLogValue`
//! v0 (producer id and epoch, timeout, state, partitions, last update and start times). A
//! null value is a tombstone: the id expired. Like `group::records`, encoded by hand (the
//! crate does not generate these schemas), and decoding never panics.

use bytes::{BufMut, Bytes, BytesMut};

use super::state::{Txn, TxnState};
pub use crate::group::records::RecordError;
use crate::group::records::{get_i16, get_i32, get_i64, get_string, need, put_string};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn decode_key(mut buf: &[u8]) -> Result<String, RecordError> {
    match get_i16(&mut buf)? {
        KEY_VERSION => get_string(&mut buf),
        _ => Err(RecordError("unknown transaction key version")),
    }
}

pub fn encode_value(txn: &Txn) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(txn.producer_id);
    buf.put_i16(txn.producer_epoch);
    buf.put_i32(txn.timeout_ms);
    buf.put_i8(txn.state.code());
    // Partitions grouped by topic, as Kafka writes them.
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &txn.partitions {
        match topics.last_mut() {
            Some((last, partitions)) if *last == topic.as_str() => partitions.push(*partition),
            _ => topics.push((topic, vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for partition in partitions {
            buf.put_i32(partition);
        }
    }
    buf.put_i64(txn.last_update_ms);
    buf.put_i64(txn.start_ms);
    buf.freeze()
}

/// Reads value version 0, the one written here.
pub fn decode_value(mut buf: &[u8]) -> Result<Txn, RecordError> {
    if get_i16(&mut buf)? != VALUE_VERSION {
        return Err(RecordError("unsupported transaction value version"));
    }
    let producer_id = get_i64(&mut buf)?;
    let producer_epoch = get_i16(&mut buf)?;
    let timeout_ms = get_i32(&mut buf)?;
    need(buf, 1)?;
    let code = buf[0] as i8;
    buf = &buf[1..];
    let state = TxnState::from_code(code).ok_or(RecordError("unknown transaction state"))?;
    let mut partitions = std::collections::BTreeSet::new();
    let topics = get_i32(&mut buf)?;
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut buf)?;
        let count = get_i32(&mut buf)?;
        // Each partition takes 4 bytes: a count beyond the input is malformed, not a reason
        // to loop.
        need(buf, count.max(0) as usize * 4)?;
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), get_i32(&mut buf)?));
        }
    }
    let last_update_ms = get_i64(&mut buf)?;
    let start_ms = get_i64(&mut buf)?;
    Ok(Txn {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        last_update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys and values survive the round trip; every truncation is an error, not a panic.
    #[test]
    fn round_trip_and_truncation() {
        assert_eq!(decode_key(&encode_key("my-txn")).unwrap(), "my-txn");
        let txn = Txn {
            producer_id: 42,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("a", 0), ("a", 2), ("b", 1)]
                .into_iter()
                .map(|(topic, partition)| (topic.to_string(), partition))
                .collect(),
            start_ms: 100,
            last_update_ms: 200,
        };
        let bytes = encode_value(&txn);
        assert_eq!(decode_value(&bytes).unwrap(), txn);
        for len in 0..bytes.len() {
            assert!(decode_value(&bytes[..len]).is_err());
        }
        let mut bad_state = bytes.to_vec();
        bad_state[16] = 9;
        assert!(decode_value(&bad_state).is_err());
    }

    /// The bytes Kafka's TransactionLogValue v0 schema gives for a known value.
    #[test]
    fn value_layout_is_kafkas() {
        let txn = Txn {
            producer_id: 1,
            producer_epoch: 2,
            timeout_ms: 3,
            state: TxnState::Ongoing,
            partitions: [("t".to_string(), 5)].into_iter().collect(),
            start_ms: 7,
            last_update_ms: 6,
        };
        let mut expected = vec![0, 0];
        expected.extend(1i64.to_be_bytes());
        expected.extend(2i16.to_be_bytes());
        expected.extend(3i32.to_be_bytes());
        expected.push(1);
        expected.extend(1i32.to_be_bytes());
        expected.extend([0, 1, b't']);
        expected.extend(1i32.to_be_bytes());
        expected.extend(5i32.to_be_bytes());
        expected.extend(6i64.to_be_bytes());
        expected.extend(7i64.to_be_bytes());
        assert_eq!(encode_value(&txn).to_vec(), expected);
    }
}
