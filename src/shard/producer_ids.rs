//! Producer ids for InitProducerId: each shard takes ids from a block the controller (shard 0)
//! hands it, so ids are unique across shards, and the controller records every block in the
//! metadata log before handing it out, so they stay unique across restarts (ids of a block
//! not used up before a restart are skipped, as in Kafka).
//!
//! Per-shard: the current block lives in its `Shard`.

use std::cell::Cell;
use std::rc::Rc;

use super::Shard;

/// The ids `[next, end)` this shard may still hand out.
#[derive(Default)]
pub struct ProducerIdBlock {
    next: Cell<i64>,
    end: Cell<i64>,
}

impl ProducerIdBlock {
    fn take(&self) -> Option<i64> {
        let next = self.next.get();
        (next < self.end.get()).then(|| {
            self.next.set(next + 1);
            next
        })
    }
}

impl Shard {
    /// A producer id never handed out before, by any shard, in any run.
    pub async fn allocate_producer_id(self: &Rc<Self>) -> Result<i64, String> {
        if let Some(id) = self.producer_ids.take() {
            return Ok(id);
        }
        let (first, end) = self.producer_id_block().await?;
        assert!(first < end, "the controller hands out non-empty blocks");
        // Another task may have refilled the block meanwhile: keep whichever has more left,
        // never reusing an id.
        let block = &self.producer_ids;
        if end - (first + 1) > block.end.get() - block.next.get() {
            block.next.set(first + 1);
            block.end.set(end);
        }
        Ok(first)
    }
}
