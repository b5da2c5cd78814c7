//! What replicas say to each other over the transport, one payload each: a Raft message of
//! one group, or a request for a range of a replica's log (a follower catching up after a
//! snapshot) and its reply.
//!
//! Layout (big-endian): kind (1 byte; replication uses kinds below 0x10, other layers sharing
//! the transport the ones above), group id (8), then per kind
//! - `RAFT`: the raft-rs message as protobuf;
//! - `COPY_REQUEST`: request id (8), first offset (8), end offset (8);
//! - `COPY_REPLY`: request id (8), status (1: 0 = the batches follow, 1 = not available
//!   here, 2 = the requested offset is below this replica's log start, which follows (8)
//!   with the batches from the one holding it), then whole batches back to back;
//! - `QUIESCE`: term (8), commit index (8): the leader of an idle group stops its
//!   heartbeats, and its followers their election timers (see `Replica::quiesce`);
//! - `ALIVE`: nothing (group 0): the shard that sends it is up, for the quiescent groups
//!   between the two shards (see `Replicas::tick`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::ids::Offset;

/// A Raft group: one partition's replicas, or the metadata log's voters.
pub type GroupId = u64;

const RAFT: u8 = 0;
const COPY_REQUEST: u8 = 1;
const COPY_REPLY: u8 = 2;
const QUIESCE: u8 = 3;
const ALIVE: u8 = 4;
const HEADER_BYTES: usize = 9;

/// One payload between replicas.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    Raft(GroupId, Box<Message>),
    CopyRequest {
        group: GroupId,
        id: u64,
        from: Offset,
        to: Offset,
    },
    CopyReply {
        group: GroupId,
        id: u64,
        copied: Copied,
    },
    /// The group's leader in `term`, whose log and every follower's end at `commit`,
    /// quiesces.
    Quiesce {
        group: GroupId,
        term: u64,
        commit: u64,
    },
    /// The sending shard is up.
    Alive,
}

/// What a replica answers a copy request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Copied {
    /// Whole batches from the requested offset on.
    Batches(Bytes),
    /// The requested offset is below this replica's log start (DeleteRecords or retention
    /// moved it): whole batches from the one holding the log start on (none when that batch
    /// is past the requested end), for the requester to restart its log there.
    FromLogStart { log_start: Offset, batches: Bytes },
    /// This replica cannot serve the range (it has not committed it).
    Unavailable,
}

impl Envelope {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Envelope::Raft(group, message) => {
                out.put_u8(RAFT);
                out.put_u64(*group);
                let body = message.write_to_bytes().expect("a raft message encodes");
                out.extend_from_slice(&body);
            }
            Envelope::CopyRequest {
                group,
                id,
                from,
                to,
            } => {
                out.put_u8(COPY_REQUEST);
                out.put_u64(*group);
                out.put_u64(*id);
                out.put_i64(from.get());
                out.put_i64(to.get());
            }
            Envelope::CopyReply { group, id, copied } => {
                out.put_u8(COPY_REPLY);
                out.put_u64(*group);
                out.put_u64(*id);
                match copied {
                    Copied::Batches(batches) => {
                        out.put_u8(0);
                        out.extend_from_slice(batches);
                    }
                    Copied::Unavailable => out.put_u8(1),
                    Copied::FromLogStart { log_start, batches } => {
                        out.put_u8(2);
                        out.put_i64(log_start.get());
                        out.extend_from_slice(batches);
                    }
                }
            }
            Envelope::Quiesce {
                group,
                term,
                commit,
            } => {
                out.put_u8(QUIESCE);
                out.put_u64(*group);
                out.put_u64(*term);
                out.put_u64(*commit);
            }
            Envelope::Alive => {
                out.put_u8(ALIVE);
                out.put_u64(0);
            }
        }
        out.freeze()
    }

    /// The envelope in `payload`, or None if it is not one (a peer of another version, a
    /// corrupt frame): such a payload is dropped, as a lost one would be.
    pub fn decode(mut payload: Bytes) -> Option<Envelope> {
        if payload.len() < HEADER_BYTES {
            return None;
        }
        let kind = payload.get_u8();
        let group = payload.get_u64();
        match kind {
            RAFT => {
                let message = Message::parse_from_bytes(&payload).ok()?;
                Some(Envelope::Raft(group, Box::new(message)))
            }
            COPY_REQUEST if payload.len() == 24 => Some(Envelope::CopyRequest {
                group,
                id: payload.get_u64(),
                from: Offset(payload.get_i64()),
                to: Offset(payload.get_i64()),
            }),
            COPY_REPLY if payload.len() >= 9 => {
                let id = payload.get_u64();
                let copied = match payload.get_u8() {
                    0 => Copied::Batches(payload),
                    1 if payload.is_empty() => Copied::Unavailable,
                    2 if payload.len() >= 8 => Copied::FromLogStart {
                        log_start: Offset(payload.get_i64()),
                        batches: payload,
                    },
                    _ => return None,
                };
                Some(Envelope::CopyReply { group, id, copied })
            }
            QUIESCE if payload.len() == 16 => Some(Envelope::Quiesce {
                group,
                term: payload.get_u64(),
                commit: payload.get_u64(),
            }),
            ALIVE if payload.is_empty() => Some(Envelope::Alive),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    /// Every kind of envelope decodes to what was encoded; truncated or unknown payloads
    /// decode to nothing.
    #[test]
    fn envelopes_round_trip_and_garbage_is_refused() {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.to = 2;
        message.from = 1;
        message.term = 7;
        message.set_entries(
            vec![Entry {
                index: 4,
                term: 7,
                data: Bytes::from_static(b"batch"),
                ..Default::default()
            }]
            .into(),
        );
        let envelopes = [
            Envelope::Raft(5, Box::new(message)),
            Envelope::CopyRequest {
                group: 5,
                id: 9,
                from: Offset(10),
                to: Offset(20),
            },
            Envelope::CopyReply {
                group: 5,
                id: 9,
                copied: Copied::Batches(Bytes::from_static(b"bytes")),
            },
            Envelope::CopyReply {
                group: 5,
                id: 9,
                copied: Copied::Unavailable,
            },
            Envelope::CopyReply {
                group: 5,
                id: 9,
                copied: Copied::FromLogStart {
                    log_start: Offset(42),
                    batches: Bytes::from_static(b"bytes"),
                },
            },
        ];
        let envelopes = envelopes.into_iter().chain([
            Envelope::Quiesce {
                group: 5,
                term: 7,
                commit: 12,
            },
            Envelope::Alive,
        ]);
        for envelope in envelopes {
            let encoded = envelope.encode();
            assert_eq!(Envelope::decode(encoded.clone()), Some(envelope));
            assert_eq!(Envelope::decode(encoded.slice(..HEADER_BYTES - 1)), None);
        }
        assert_eq!(Envelope::decode(Bytes::from_static(&[9; 20])), None);
    }
}
