//! The records of `__consumer_offsets`, in Kafka's own key and value schemas, so that the
//! topic reads the same as Kafka's: `OffsetCommitKey` (key version 1) with `OffsetCommitValue`
//! v3, and `GroupMetadataKey` (key version 2) with `GroupMetadataValue` v3. A record with a
//! null value is a tombstone for its key. `kafka-protocol` 0.17 does not generate these
//! schemas (they live in Kafka's coordinator module), so they are encoded here by hand.
//!
//! Decoding never panics: bytes read back from disk that do not parse give an error, and the
//! loader skips the record.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// The key of a record in `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// One committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member of a group as stored with the group's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership after a completed rebalance (or the group going empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed internal record: {0}")]
pub struct RecordError(pub &'static str);

pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
            put_string(&mut buf, group);
            put_string(&mut buf, topic);
            buf.put_i32(*partition);
        }
        RecordKey::Group { group } => {
            buf.put_i16(GROUP_METADATA_KEY_VERSION);
            put_string(&mut buf, group);
        }
    }
    buf.freeze()
}

pub fn decode_key(mut buf: &[u8]) -> Result<RecordKey, RecordError> {
    match get_i16(&mut buf)? {
        0 | 1 => Ok(RecordKey::Offset {
            group: get_string(&mut buf)?,
            topic: get_string(&mut buf)?,
            partition: get_i32(&mut buf)?,
        }),
        2 => Ok(RecordKey::Group {
            group: get_string(&mut buf)?,
        }),
        _ => Err(RecordError("unknown key version")),
    }
}

pub fn encode_offset(value: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp_ms);
    buf.freeze()
}

/// Reads value versions 1-3 (those Kafka wrote before the flexible v4).
pub fn decode_offset(mut buf: &[u8]) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut buf)?;
    if !(1..=3).contains(&version) {
        return Err(RecordError("unsupported offset value version"));
    }
    let offset = get_i64(&mut buf)?;
    let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp_ms = get_i64(&mut buf)?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

pub fn encode_group(value: &GroupValue) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type);
    buf.put_i32(value.generation);
    put_nullable(&mut buf, value.protocol.as_deref());
    put_nullable(&mut buf, value.leader.as_deref());
    buf.put_i64(value.state_timestamp_ms);
    buf.put_i32(value.members.len() as i32);
    for member in &value.members {
        put_string(&mut buf, &member.member_id);
        put_nullable(&mut buf, member.instance_id.as_deref());
        put_string(&mut buf, &member.client_id);
        put_string(&mut buf, &member.client_host);
        buf.put_i32(member.rebalance_timeout_ms);
        buf.put_i32(member.session_timeout_ms);
        put_bytes(&mut buf, &member.subscription);
        put_bytes(&mut buf, &member.assignment);
    }
    buf.freeze()
}

/// Reads value version 3, the one this broker writes.
pub fn decode_group(mut buf: &[u8]) -> Result<GroupValue, RecordError> {
    if get_i16(&mut buf)? != GROUP_METADATA_VALUE_VERSION {
        return Err(RecordError("unsupported group value version"));
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_nullable(&mut buf)?;
    let leader = get_nullable(&mut buf)?;
    let state_timestamp_ms = get_i64(&mut buf)?;
    let count = get_i32(&mut buf)?;
    // Each member takes at least 28 bytes, so a count beyond that is corrupt, not allocated.
    if count < 0 || count as usize > buf.len() / 28 {
        return Err(RecordError("bad member count"));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        members.push(MemberValue {
            member_id: get_string(&mut buf)?,
            instance_id: get_nullable(&mut buf)?,
            client_id: get_string(&mut buf)?,
            client_host: get_string(&mut buf)?,
            rebalance_timeout_ms: get_i32(&mut buf)?,
            session_timeout_ms: get_i32(&mut buf)?,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

pub(crate) fn put_string(buf: &mut BytesMut, text: &str) {
    let len = text.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&text.as_bytes()[..len]);
}

fn put_nullable(buf: &mut BytesMut, text: Option<&str>) {
    match text {
        Some(text) => put_string(buf, text),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

pub(crate) fn need(buf: &[u8], len: usize) -> Result<(), RecordError> {
    if buf.len() < len {
        return Err(RecordError("truncated"));
    }
    Ok(())
}

pub(crate) fn get_i16(buf: &mut &[u8]) -> Result<i16, RecordError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}

pub(crate) fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

pub(crate) fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_nullable(buf: &mut &[u8]) -> Result<Option<String>, RecordError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    need(buf, len as usize)?;
    let text = std::str::from_utf8(&buf[..len as usize])
        .map_err(|_| RecordError("string is not UTF-8"))?
        .to_string();
    buf.advance(len as usize);
    Ok(Some(text))
}

pub(crate) fn get_string(buf: &mut &[u8]) -> Result<String, RecordError> {
    get_nullable(buf)?.ok_or(RecordError("null string"))
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, RecordError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    need(buf, len as usize)?;
    let bytes = Bytes::copy_from_slice(&buf[..len as usize]);
    buf.advance(len as usize);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys, offset values and group values survive the round trip, and truncated input is
    /// an error at every length rather than a panic.
    #[test]
    fn round_trip_and_truncation() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        let offset = OffsetValue {
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp_ms: 7,
        };
        assert_eq!(decode_offset(&encode_offset(&offset)).unwrap(), offset);
        let group = GroupValue {
            protocol_type: "consumer".into(),
            generation: 2,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberValue {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::from_static(b"a"),
            }],
        };
        let bytes = encode_group(&group);
        assert_eq!(decode_group(&bytes).unwrap(), group);
        for len in 0..bytes.len() {
            assert!(decode_group(&bytes[..len]).is_err());
        }
    }
}
