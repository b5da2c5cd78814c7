//! `Host`: what the transaction coordinator needs from the shard it runs on. It builds on the
//! group coordinator's handle (the shard's table, local partitions, appends, task queue) and
//! adds the transaction state, producer ids, and markers; the shard implements both, so
//! `shard` imports `txn` and not the other way round.

use crate::ids::ShardId;
use std::future::Future;
use std::rc::Rc;

use super::{Coordinator, TxnCall, TxnReply};
use crate::partition::{WriteMarkerInput, WriteMarkerOutput};

pub trait Host: crate::group::Host {
    /// The transaction state of this shard.
    fn transactions(&self) -> &Coordinator;

    /// Runs `call` on the transaction coordinator of shard `shard`; None when that shard is
    /// gone.
    fn call_txn_coordinator(
        &self,
        shard: ShardId,
        call: TxnCall,
    ) -> impl Future<Output = Option<TxnReply>>;

    /// A producer id never handed out before.
    fn new_producer_id(self: &Rc<Self>) -> impl Future<Output = Result<i64, String>>;

    /// Writes a transaction marker to its partition, wherever it is owned; answers once it
    /// is durable (committed, on a replicated partition).
    fn write_marker(
        self: &Rc<Self>,
        input: WriteMarkerInput,
    ) -> impl Future<Output = WriteMarkerOutput>;
}
