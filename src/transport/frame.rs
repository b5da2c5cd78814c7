//! The node-to-node wire format: a hello that names both ends of a link, its answer, and
//! frames that carry a batch of payloads.
//!
//! All integers are big-endian. A link is one TCP connection that carries payloads one way,
//! from a shard of one node to a shard of another:
//!
//! - hello (dialer to acceptor, `HELLO_BYTES`): magic `CLGH`, version u16, from node i32,
//!   from shard u16, to node i32, to shard u16;
//! - answer (acceptor to dialer, `ANSWER_BYTES`): magic `CLGA`, version u16, status u16; the
//!   dialer sends nothing before an accepting answer, so the acceptor can hand the socket to
//!   the shard it names with no bytes of a frame already read;
//! - frames (dialer to acceptor): length u32 (the bytes after it), payload count u32, then
//!   per payload its length u32 and its bytes.
//!
//! Decoding never trusts a length: every one is checked against what is left and against
//! the limits, and a malformed frame ends the link.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::ids::{NodeId, ShardId};
use crate::limits::{CLUSTER_FRAME_BYTES_MAX, CLUSTER_PAYLOAD_BYTES_MAX};

pub const HELLO_MAGIC: [u8; 4] = *b"CLGH";
pub const ANSWER_MAGIC: [u8; 4] = *b"CLGA";
pub const VERSION: u16 = 1;
pub const HELLO_BYTES: usize = 4 + 2 + 4 + 2 + 4 + 2;
pub const ANSWER_BYTES: usize = 4 + 2 + 2;
/// The length prefix and the payload count.
pub const FRAME_HEADER_BYTES: usize = 8;
const PAYLOAD_HEADER_BYTES: usize = 4;

/// One end of a link: a shard of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub node: NodeId,
    pub shard: ShardId,
}

/// What a dialer says first: who it is and which shard it wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub from: Address,
    pub to: Address,
}

/// The acceptor's answer to a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Answer {
    Accepted = 0,
    /// The hello names another node: the dialer's peer list is wrong.
    WrongNode = 1,
    /// The hello names a shard this node does not have.
    NoSuchShard = 2,
    /// The hello speaks a version this node does not.
    UnsupportedVersion = 3,
}

/// Why bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a corelog cluster hello or answer")]
    BadMagic,
    #[error("cluster protocol version {0} is not supported")]
    Version(u16),
    #[error("a frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("a frame's payloads do not add up to its length")]
    Malformed,
    #[error("unknown answer status {0}")]
    UnknownAnswer(u16),
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        const _: () = assert!(crate::limits::SHARDS_MAX <= u16::MAX as usize);
        let mut out = [0; HELLO_BYTES];
        let mut buf = &mut out[..];
        buf.put_slice(&HELLO_MAGIC);
        buf.put_u16(VERSION);
        buf.put_i32(self.from.node.get());
        buf.put_u16(self.from.shard.get() as u16);
        buf.put_i32(self.to.node.get());
        buf.put_u16(self.to.shard.get() as u16);
        out
    }

    /// Decodes a hello; a version this node does not speak is `Version` (answer it so).
    pub fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Hello, FrameError> {
        let mut buf = &bytes[..];
        if buf[..4] != HELLO_MAGIC {
            return Err(FrameError::BadMagic);
        }
        buf.advance(4);
        let version = buf.get_u16();
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let address = |buf: &mut &[u8]| Address {
            node: NodeId(buf.get_i32()),
            shard: ShardId(usize::from(buf.get_u16())),
        };
        let from = address(&mut buf);
        let to = address(&mut buf);
        Ok(Hello { from, to })
    }
}

impl Answer {
    pub fn encode(self) -> [u8; ANSWER_BYTES] {
        let mut out = [0; ANSWER_BYTES];
        let mut buf = &mut out[..];
        buf.put_slice(&ANSWER_MAGIC);
        buf.put_u16(VERSION);
        buf.put_u16(self as u16);
        out
    }

    pub fn decode(bytes: &[u8; ANSWER_BYTES]) -> Result<Answer, FrameError> {
        let mut buf = &bytes[..];
        if buf[..4] != ANSWER_MAGIC {
            return Err(FrameError::BadMagic);
        }
        buf.advance(4);
        let version = buf.get_u16();
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        match buf.get_u16() {
            0 => Ok(Answer::Accepted),
            1 => Ok(Answer::WrongNode),
            2 => Ok(Answer::NoSuchShard),
            3 => Ok(Answer::UnsupportedVersion),
            other => Err(FrameError::UnknownAnswer(other)),
        }
    }
}

/// The bytes a frame of `payloads` takes on the wire.
pub fn frame_bytes<'a>(payloads: impl IntoIterator<Item = &'a Bytes>) -> usize {
    FRAME_HEADER_BYTES
        + payloads
            .into_iter()
            .map(|payload| PAYLOAD_HEADER_BYTES + payload.len())
            .sum::<usize>()
}

/// Encodes `payloads` as one frame. The caller keeps a frame within the limit.
pub fn encode_frame(payloads: &[Bytes]) -> BytesMut {
    let total = frame_bytes(payloads);
    assert!(
        total <= CLUSTER_FRAME_BYTES_MAX,
        "frames stay within the limit"
    );
    let mut out = BytesMut::with_capacity(total);
    out.put_u32((total - 4) as u32);
    out.put_u32(payloads.len() as u32);
    for payload in payloads {
        assert!(!payload.is_empty() && payload.len() <= CLUSTER_PAYLOAD_BYTES_MAX);
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
    }
    out
}

/// The length of the frame whose first 4 bytes are `prefix`, counting the prefix; refused
/// above the limit before anything is allocated for it.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let length = u32::from_be_bytes(prefix) as usize + 4;
    if length > CLUSTER_FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge(length));
    }
    if length < FRAME_HEADER_BYTES {
        return Err(FrameError::Malformed);
    }
    Ok(length)
}

/// Splits a whole frame (prefix included) into its payloads, which share its buffer.
pub fn decode_frame(mut frame: Bytes) -> Result<Vec<Bytes>, FrameError> {
    if frame.len() < FRAME_HEADER_BYTES
        || frame_length(frame[..4].try_into().expect("4"))? != frame.len()
    {
        return Err(FrameError::Malformed);
    }
    frame.advance(4);
    let count = frame.get_u32() as usize;
    // Each payload takes at least its header and one byte: a count above that is a lie.
    if count > frame.len() / (PAYLOAD_HEADER_BYTES + 1) {
        return Err(FrameError::Malformed);
    }
    let mut payloads = Vec::with_capacity(count);
    for _ in 0..count {
        if frame.len() < PAYLOAD_HEADER_BYTES {
            return Err(FrameError::Malformed);
        }
        let length = frame.get_u32() as usize;
        if length == 0 || length > frame.len() || length > CLUSTER_PAYLOAD_BYTES_MAX {
            return Err(FrameError::Malformed);
        }
        payloads.push(frame.split_to(length));
    }
    if !frame.is_empty() {
        return Err(FrameError::Malformed);
    }
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(node: i32, shard: usize) -> Address {
        Address {
            node: NodeId(node),
            shard: ShardId(shard),
        }
    }

    #[test]
    fn hellos_and_answers_round_trip_and_refuse_strangers() {
        let hello = Hello {
            from: address(1, 3),
            to: address(2, 0),
        };
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        let mut stranger = hello.encode();
        stranger[0] = b'X';
        assert_eq!(Hello::decode(&stranger), Err(FrameError::BadMagic));
        let mut newer = hello.encode();
        newer[5] = 2;
        assert_eq!(Hello::decode(&newer), Err(FrameError::Version(2)));
        for answer in [Answer::Accepted, Answer::WrongNode, Answer::NoSuchShard] {
            assert_eq!(Answer::decode(&answer.encode()), Ok(answer));
        }
        let mut unknown = Answer::Accepted.encode();
        unknown[7] = 9;
        assert_eq!(Answer::decode(&unknown), Err(FrameError::UnknownAnswer(9)));
    }

    #[test]
    fn frames_carry_payloads_and_refuse_every_truncation() {
        let payloads = vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"raft message"),
        ];
        let frame = encode_frame(&payloads).freeze();
        assert_eq!(frame.len(), frame_bytes(&payloads));
        assert_eq!(decode_frame(frame.clone()), Ok(payloads));
        for cut in 0..frame.len() {
            assert!(decode_frame(frame.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut longer = BytesMut::from(&frame[..]);
        longer.put_u8(0);
        assert!(decode_frame(longer.freeze()).is_err());
    }

    #[test]
    fn lengths_are_checked_before_anything_is_allocated() {
        let huge = ((CLUSTER_FRAME_BYTES_MAX) as u32).to_be_bytes();
        assert!(matches!(frame_length(huge), Err(FrameError::TooLarge(_))));
        assert_eq!(frame_length(4u32.to_be_bytes()), Ok(8));
        assert_eq!(frame_length(3u32.to_be_bytes()), Err(FrameError::Malformed));
        let mut lying = BytesMut::new();
        lying.put_u32(8);
        lying.put_u32(u32::MAX);
        lying.put_u32(0);
        assert_eq!(decode_frame(lying.freeze()), Err(FrameError::Malformed));
    }
}
