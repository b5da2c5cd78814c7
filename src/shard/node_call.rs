//! Transaction markers for partitions another node leads: a transaction coordinator (or a
//! group's, for `__consumer_offsets`) on one node ends transactions in partitions wherever
//! they are led, so the marker travels over the node-to-node transport to shard 0 of the
//! leader's node, which writes it as WriteTxnMarkers would (`Shard::write_txn_marker_here`,
//! never forwarding again) and answers with the error code. No answer within
//! `NODE_CALL_TIMEOUT_MS` is NOT_LEADER_OR_FOLLOWER, which the coordinator retries like any
//! other refusal.
//!
//! Payload: kind (1 byte, `MARKER` or `MARKER_ANSWER`), call id (8, big-endian); a call then
//! carries the topic (u16 length and UTF-8), partition (i32), producer id (i64), producer
//! epoch (i16), coordinator epoch (i32) and the result (1 byte, 1 commit); an answer the
//! error code (i16).

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{select, Either};
use kafka_protocol::ResponseError;

use super::Shard;
use crate::ids::{NodeId, PartitionId, ShardId};
use crate::limits;
use crate::partition::{TopicPartition, WriteMarkerInput, WriteMarkerOutput};
use crate::protocol::control::TxnMarker;
use crate::runtime;
use crate::transport::{Address, Transport};

/// Payload kinds (controller calls use 0x10 and 0x11, replication's kinds lie below 0x10).
const MARKER: u8 = 0x12;
const MARKER_ANSWER: u8 = 0x13;

/// Whether a node-to-node payload is a forwarded marker or its answer.
pub fn is_marker_payload(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(&MARKER) | Some(&MARKER_ANSWER))
}

fn encode_marker(id: u64, input: &WriteMarkerInput) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(MARKER);
    out.put_u64(id);
    let topic = input.tp.topic.as_bytes();
    out.put_u16(topic.len() as u16);
    out.put_slice(topic);
    out.put_i32(input.tp.partition.get());
    out.put_i64(input.marker.producer_id);
    out.put_i16(input.marker.producer_epoch);
    out.put_i32(input.marker.coordinator_epoch);
    out.put_u8(u8::from(input.marker.commit));
    out.freeze()
}

/// A forwarded marker's input, or None when the payload does not decode.
fn decode_marker(mut payload: Bytes) -> Option<WriteMarkerInput> {
    if payload.remaining() < 2 {
        return None;
    }
    let len = payload.get_u16() as usize;
    if payload.remaining() != len + 4 + 8 + 2 + 4 + 1 {
        return None;
    }
    let topic = String::from_utf8(payload.split_to(len).to_vec()).ok()?;
    let partition = PartitionId(payload.get_i32());
    let marker = TxnMarker {
        producer_id: payload.get_i64(),
        producer_epoch: payload.get_i16(),
        coordinator_epoch: payload.get_i32(),
        commit: payload.get_u8() == 1,
    };
    Some(WriteMarkerInput {
        tp: TopicPartition { topic, partition },
        marker,
    })
}

impl Shard {
    /// Writes `input`'s marker on the node that leads its partition: here, or forwarded.
    pub(super) async fn write_marker_on_node(
        self: &Rc<Self>,
        node: NodeId,
        input: WriteMarkerInput,
    ) -> WriteMarkerOutput {
        let refused = WriteMarkerOutput {
            error_code: ResponseError::NotLeaderOrFollower.code(),
        };
        let Some(cluster) = self.cluster.get() else {
            return refused;
        };
        let id = cluster.next_call_id();
        let (answer, answered) = oneshot::channel();
        cluster.markers.borrow_mut().insert(id, answer);
        let to = Address {
            node,
            shard: ShardId(0),
        };
        cluster.transport.send(to, encode_marker(id, &input));
        let timeout = runtime::sleep(Duration::from_millis(limits::NODE_CALL_TIMEOUT_MS));
        let answer = match select(answered, Box::pin(timeout)).await {
            Either::Left((Ok(error_code), _)) => WriteMarkerOutput { error_code },
            _ => refused,
        };
        cluster.markers.borrow_mut().remove(&id);
        answer
    }

    /// A forwarded marker or an answer from another node; anything that does not decode is
    /// dropped like a lost payload.
    pub(super) fn receive_marker_payload(self: &Rc<Self>, from: Address, mut payload: Bytes) {
        if payload.len() < 9 {
            return;
        }
        let kind = payload.get_u8();
        let id = payload.get_u64();
        match kind {
            MARKER => {
                let Some(input) = decode_marker(payload) else {
                    return;
                };
                let shard = self.clone();
                runtime::spawn_into(self.queues.requests, async move {
                    let output = shard.write_txn_marker_here(input).await;
                    if let Some(cluster) = shard.cluster.get() {
                        let mut answer = BytesMut::new();
                        answer.put_u8(MARKER_ANSWER);
                        answer.put_u64(id);
                        answer.put_i16(output.error_code);
                        cluster.transport.send(from, answer.freeze());
                    }
                });
            }
            MARKER_ANSWER if payload.remaining() == 2 => {
                let error_code = payload.get_i16();
                let waiting = self
                    .cluster
                    .get()
                    .and_then(|cluster| cluster.markers.borrow_mut().remove(&id));
                if let Some(waiting) = waiting {
                    let _ = waiting.send(error_code);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_garbage_is_dropped() {
        let input = WriteMarkerInput {
            tp: TopicPartition {
                topic: "orders".to_string(),
                partition: PartitionId(3),
            },
            marker: TxnMarker {
                producer_id: 42,
                producer_epoch: 7,
                coordinator_epoch: 9,
                commit: true,
            },
        };
        let mut encoded = encode_marker(5, &input);
        assert!(is_marker_payload(&encoded));
        assert_eq!(encoded.get_u8(), MARKER);
        assert_eq!(encoded.get_u64(), 5);
        let decoded = decode_marker(encoded.clone()).expect("decodes");
        assert_eq!(decoded.tp, input.tp);
        assert_eq!(decoded.marker, input.marker);
        for len in 0..encoded.len() {
            assert!(decode_marker(encoded.slice(..len)).is_none());
        }
    }
}
