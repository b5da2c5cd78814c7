//! Transaction calls on another node: a transaction coordinator (or a group's, for
//! `__consumer_offsets`) writes markers to partitions wherever they are led, and a partition
//! leader asks a producer's coordinator, wherever it is, whether a partition is in the
//! producer's transaction (`txn_gate`). Such a call travels over the node-to-node transport to
//! shard 0 of the node that leads the partition (the marker) or the coordinator's state
//! partition (the check), which runs it there (never forwarding it again) and answers with
//! an error code. No answer within `NODE_CALL_TIMEOUT_MS` is NOT_LEADER_OR_FOLLOWER for a
//! marker and COORDINATOR_NOT_AVAILABLE for a check, both retried by their callers.
//!
//! Payload: kind (1 byte), call id (8, big-endian), then for `MARKER` the topic (u16 length
//! and UTF-8), partition (i32), producer id (i64), producer epoch (i16), coordinator epoch
//! (i32) and the result (1 byte, 1 commit); for `VERIFY` the transactional id (u16 length and
//! UTF-8), producer id (i64), producer epoch (i16), topic and partition; for `ANSWER` the
//! error code (i16).

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{select, Either};

use super::Shard;
use crate::ids::{NodeId, PartitionId, ShardId};
use crate::limits;
use crate::partition::{TopicPartition, WriteMarkerInput};
use crate::protocol::control::TxnMarker;
use crate::runtime;
use crate::transport::{Address, Transport};

/// Payload kinds (controller calls use 0x10 and 0x11, replication's kinds lie below 0x10).
const MARKER: u8 = 0x12;
const ANSWER: u8 = 0x13;
const VERIFY: u8 = 0x14;

/// Whether a node-to-node payload is a node call or its answer.
pub fn is_node_call_payload(payload: &[u8]) -> bool {
    matches!(
        payload.first(),
        Some(&MARKER) | Some(&ANSWER) | Some(&VERIFY)
    )
}

/// A check that a partition is in a producer's open transaction (AddPartitionsToTxn's
/// `verify_only`), for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyInput {
    pub transactional_id: String,
    pub producer_id: i64,
    pub epoch: i16,
    pub tp: TopicPartition,
}

/// What one node asks of another.
#[derive(Debug)]
pub enum NodeCall {
    Marker(WriteMarkerInput),
    Verify(VerifyInput),
}

fn put_text(out: &mut BytesMut, text: &str) {
    out.put_u16(text.len().min(u16::MAX as usize) as u16);
    out.put_slice(&text.as_bytes()[..text.len().min(u16::MAX as usize)]);
}

fn get_text(payload: &mut Bytes) -> Option<String> {
    if payload.remaining() < 2 {
        return None;
    }
    let len = payload.get_u16() as usize;
    if payload.remaining() < len {
        return None;
    }
    String::from_utf8(payload.split_to(len).to_vec()).ok()
}

fn encode(id: u64, call: &NodeCall) -> Bytes {
    let mut out = BytesMut::new();
    match call {
        NodeCall::Marker(input) => {
            out.put_u8(MARKER);
            out.put_u64(id);
            put_text(&mut out, &input.tp.topic);
            out.put_i32(input.tp.partition.get());
            out.put_i64(input.marker.producer_id);
            out.put_i16(input.marker.producer_epoch);
            out.put_i32(input.marker.coordinator_epoch);
            out.put_u8(u8::from(input.marker.commit));
        }
        NodeCall::Verify(input) => {
            out.put_u8(VERIFY);
            out.put_u64(id);
            put_text(&mut out, &input.transactional_id);
            out.put_i64(input.producer_id);
            out.put_i16(input.epoch);
            put_text(&mut out, &input.tp.topic);
            out.put_i32(input.tp.partition.get());
        }
    }
    out.freeze()
}

/// The call of a payload past its kind and id, or None when it does not decode whole.
fn decode(kind: u8, mut payload: Bytes) -> Option<NodeCall> {
    let call = match kind {
        MARKER => {
            let topic = get_text(&mut payload)?;
            if payload.remaining() != 4 + 8 + 2 + 4 + 1 {
                return None;
            }
            let partition = PartitionId(payload.get_i32());
            let marker = TxnMarker {
                producer_id: payload.get_i64(),
                producer_epoch: payload.get_i16(),
                coordinator_epoch: payload.get_i32(),
                commit: payload.get_u8() == 1,
            };
            NodeCall::Marker(WriteMarkerInput {
                tp: TopicPartition { topic, partition },
                marker,
            })
        }
        VERIFY => {
            let transactional_id = get_text(&mut payload)?;
            if payload.remaining() < 8 + 2 {
                return None;
            }
            let producer_id = payload.get_i64();
            let epoch = payload.get_i16();
            let topic = get_text(&mut payload)?;
            if payload.remaining() != 4 {
                return None;
            }
            let partition = PartitionId(payload.get_i32());
            NodeCall::Verify(VerifyInput {
                transactional_id,
                producer_id,
                epoch,
                tp: TopicPartition { topic, partition },
            })
        }
        _ => return None,
    };
    Some(call)
}

impl Shard {
    /// Runs `call` on shard 0 of `node`; the error code it answered, or None when no answer
    /// came within `NODE_CALL_TIMEOUT_MS` (or there is no cluster).
    pub(super) async fn call_node(self: &Rc<Self>, node: NodeId, call: NodeCall) -> Option<i16> {
        let cluster = self.cluster.get()?;
        let id = cluster.next_call_id();
        let (answer, answered) = oneshot::channel();
        cluster.node_calls.borrow_mut().insert(id, answer);
        let to = Address {
            node,
            shard: ShardId(0),
        };
        cluster.transport.send(to, encode(id, &call));
        let timeout = runtime::sleep(Duration::from_millis(limits::NODE_CALL_TIMEOUT_MS));
        let answer = match select(answered, Box::pin(timeout)).await {
            Either::Left((Ok(error_code), _)) => Some(error_code),
            _ => None,
        };
        cluster.node_calls.borrow_mut().remove(&id);
        answer
    }

    /// A call from another node or an answer to one of this shard's; anything that does not
    /// decode is dropped like a lost payload.
    pub(super) fn receive_node_call_payload(self: &Rc<Self>, from: Address, mut payload: Bytes) {
        if payload.len() < 9 {
            return;
        }
        let kind = payload.get_u8();
        let id = payload.get_u64();
        if kind == ANSWER {
            if payload.remaining() != 2 {
                return;
            }
            let error_code = payload.get_i16();
            let waiting = self
                .cluster
                .get()
                .and_then(|cluster| cluster.node_calls.borrow_mut().remove(&id));
            if let Some(waiting) = waiting {
                let _ = waiting.send(error_code);
            }
            return;
        }
        let Some(call) = decode(kind, payload) else {
            return;
        };
        let shard = self.clone();
        runtime::spawn_into(self.queues.requests, async move {
            let error_code = match call {
                NodeCall::Marker(input) => shard.write_txn_marker_here(input).await.error_code,
                NodeCall::Verify(input) => match shard.verify_here(input).await {
                    Ok(()) => 0,
                    Err(error) => error.code(),
                },
            };
            if let Some(cluster) = shard.cluster.get() {
                let mut answer = BytesMut::new();
                answer.put_u8(ANSWER);
                answer.put_u64(id);
                answer.put_i16(error_code);
                cluster.transport.send(from, answer.freeze());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "orders".to_string(),
            partition: PartitionId(3),
        }
    }

    /// Both calls survive the round trip; every truncation of them is dropped.
    #[test]
    fn calls_round_trip_and_garbage_is_dropped() {
        let marker = WriteMarkerInput {
            tp: tp(),
            marker: TxnMarker {
                producer_id: 42,
                producer_epoch: 7,
                coordinator_epoch: 9,
                commit: true,
            },
        };
        let verify = VerifyInput {
            transactional_id: "txn".to_string(),
            producer_id: 42,
            epoch: 7,
            tp: tp(),
        };
        for call in [NodeCall::Marker(marker), NodeCall::Verify(verify)] {
            let mut encoded = encode(5, &call);
            assert!(is_node_call_payload(&encoded));
            let kind = encoded.get_u8();
            assert_eq!(encoded.get_u64(), 5);
            match (decode(kind, encoded.clone()), &call) {
                (Some(NodeCall::Marker(got)), NodeCall::Marker(sent)) => {
                    assert_eq!((got.tp, got.marker), (sent.tp.clone(), sent.marker))
                }
                (Some(NodeCall::Verify(got)), NodeCall::Verify(sent)) => assert_eq!(&got, sent),
                other => panic!("decoded {other:?}"),
            }
            for len in 0..encoded.len() {
                assert!(decode(kind, encoded.slice(..len)).is_none());
            }
        }
    }
}
