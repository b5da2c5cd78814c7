//! The order in which the requests of one connection take effect.
//!
//! Kafka mutes a connection while one of its requests is in progress, so the requests of a
//! connection take effect one at a time, in arrival order; clients rely on it (librdkafka
//! pipelines its final OffsetCommit with LeaveGroup, and the commit must land while the
//! member is still in the group). corelog overlaps only what cannot tell the difference:
//! produce requests that follow each other, the pipelined hot path, whose appends still
//! happen in arrival order (each partition's owner takes them in the order they were sent).
//! Every other request starts only when everything before it on the connection is done, and
//! everything after it waits for it.
//!
//! Per-shard: lives with its connection's reader.

use std::rc::Rc;

use crate::sync::Latch;

/// The connection's turns so far. Holds at most one latch per request still running.
#[derive(Default)]
pub struct RequestOrder {
    /// The last request that may not overlap anything, while it may still be running.
    last_exclusive: Option<Rc<Latch>>,
    /// Overlapping requests admitted since then and not known to be done.
    overlapping: Vec<Rc<Latch>>,
}

/// A request's place in its connection's order: what it waits for before it starts, and
/// the latch it raises when done (also when dropped unfinished, so a cancelled handler never
/// holds up the requests behind it).
pub struct Turn {
    wait_for: Vec<Rc<Latch>>,
    done: Rc<Latch>,
}

impl RequestOrder {
    /// Admits the next request. `overlaps`: it may run beside the overlapping requests
    /// before it (produce after produce); it always waits for the last exclusive one.
    pub fn admit(&mut self, overlaps: bool) -> Turn {
        let done = Rc::new(Latch::default());
        self.overlapping.retain(|latch| !latch.is_raised());
        let mut wait_for: Vec<Rc<Latch>> = self
            .last_exclusive
            .iter()
            .filter(|latch| !latch.is_raised())
            .cloned()
            .collect();
        if overlaps {
            self.overlapping.push(done.clone());
        } else {
            wait_for.append(&mut self.overlapping);
            self.last_exclusive = Some(done.clone());
        }
        Turn { wait_for, done }
    }
}

impl Turn {
    /// The latch raised when this request is done.
    pub fn done(&self) -> Rc<Latch> {
        self.done.clone()
    }

    /// Waits until every request this one must follow is done.
    pub async fn wait(&self) {
        for latch in &self.wait_for {
            latch.wait().await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.done.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn ready(turn: &Turn) -> bool {
        Box::pin(turn.wait()).now_or_never().is_some()
    }

    /// Produce after produce overlaps; anything else waits for all before it, and what comes
    /// after waits for it; a turn dropped unfinished releases those behind it.
    #[test]
    fn exclusive_requests_wait_for_everything_before_them() {
        let mut order = RequestOrder::default();
        let produce_1 = order.admit(true);
        let produce_2 = order.admit(true);
        assert!(ready(&produce_1) && ready(&produce_2), "produces overlap");
        let commit = order.admit(false);
        assert!(!ready(&commit), "waits for both produces");
        drop(produce_1);
        assert!(!ready(&commit), "one produce still runs");
        drop(produce_2);
        assert!(ready(&commit));
        let leave = order.admit(false);
        let produce_3 = order.admit(true);
        assert!(
            !ready(&leave) && !ready(&produce_3),
            "both wait for the commit"
        );
        drop(commit);
        assert!(ready(&leave));
        assert!(!ready(&produce_3), "waits for the leave");
        drop(leave);
        assert!(ready(&produce_3));
    }

    /// Latches of finished requests are let go, so a connection that only produces holds
    /// no more than its requests still running.
    #[test]
    fn finished_turns_are_forgotten() {
        let mut order = RequestOrder::default();
        for _ in 0..1_000 {
            drop(order.admit(true));
        }
        let _running = order.admit(true);
        assert_eq!(order.overlapping.len(), 1);
    }
}
