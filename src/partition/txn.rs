//! Transactions on the owner: writing a marker (WriteTxnMarkers), the last stable offset, and
//! the aborted transactions a read_committed fetch hands its consumer.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::produce::Staged;
use super::{Partition, ProduceOutput, WriteMarkerInput, WriteMarkerOutput};
use crate::ids::Offset;
use crate::metadata::now_ms;
use crate::partition::producer_state::ProducerChange;
use crate::protocol::control::TxnMarker;
use crate::protocol::record_batch;

impl Partition {
    /// Writes a transaction marker and answers once it is durable, as Kafka's WriteTxnMarkers
    /// answers once the marker is written with acks=all.
    pub async fn write_marker(self: &Rc<Self>, input: WriteMarkerInput) -> WriteMarkerOutput {
        let batch = match self.prepare_marker(&input.marker) {
            Ok(batch) => batch,
            Err(refused) => return WriteMarkerOutput::from(refused),
        };
        let summary = record_batch::validate(&batch).expect("a marker is a valid batch");
        let staged = match self.stage(batch.as_ref().into(), &summary, None) {
            Ok((meta, ticket)) => {
                let change = ProducerChange::Marker {
                    marker: input.marker,
                    offset: meta.base_offset,
                    timestamp: meta.max_timestamp,
                };
                self.producers.borrow_mut().record(change, ticket.clone());
                Staged {
                    base_offset: meta.base_offset,
                    last_offset: meta.last_offset,
                    log_append_time_ms: -1,
                    ticket,
                }
            }
            Err(refused) => return WriteMarkerOutput::from(refused),
        };
        self.schedule_flush();
        WriteMarkerOutput::from(self.wait_durable(&staged).await)
    }

    /// The batch of a marker for this partition, once the producer state takes it (the
    /// producer's epoch, the coordinator's epoch) and the partition is online.
    pub fn prepare_marker(&self, marker: &TxnMarker) -> Result<Bytes, ProduceOutput> {
        if self.failed.get() {
            return Err(self.error(ResponseError::KafkaStorageError, "partition is offline"));
        }
        let checked = self.producers.borrow().check_marker(marker);
        checked.map_err(|error| self.producer_error(error))?;
        Ok(marker.to_batch(now_ms()).freeze())
    }

    /// The offset below which every transaction is decided and its marker below the high
    /// watermark: what a read_committed consumer may read up to.
    pub fn last_stable_offset(&self) -> Offset {
        let high_watermark = self.high_watermark();
        self.producers
            .borrow_mut()
            .last_stable_offset(high_watermark)
    }

    /// The aborted transactions a consumer reading `[from, upper)` must know, as (producer id,
    /// first offset).
    pub fn aborted_overlapping(&self, from: Offset, upper: Offset) -> Vec<(i64, Offset)> {
        self.producers.borrow().aborted_overlapping(from, upper)
    }
}

impl From<ProduceOutput> for WriteMarkerOutput {
    fn from(output: ProduceOutput) -> WriteMarkerOutput {
        WriteMarkerOutput {
            error_code: output.error_code,
        }
    }
}
