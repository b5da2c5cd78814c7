//! The line of produce batches at one partition: they take their offsets in the order they
//! reached it (the order of a connection's pipelined produces, of an idempotent producer's
//! sequence numbers), also when one of them waits for its batch to be recompressed off the
//! shard (`compression.type`, see `produce`). A produce that waits takes a place in line,
//! and so does every produce that arrives while a place is taken; each goes on once the
//! place before it is done (its batch staged or proposed, or refused). With no place taken,
//! a produce goes straight on and the line costs one look.
//!
//! Per-shard: owned by its partition.

use std::cell::RefCell;
use std::rc::Rc;

use crate::sync::Latch;

#[derive(Default)]
pub struct Line {
    /// The latch of the last place taken; raised once that place is done.
    last: RefCell<Option<Rc<Latch>>>,
}

/// A place in line: done when dropped.
pub struct Place {
    done: Rc<Latch>,
    before: Option<Rc<Latch>>,
}

impl Line {
    /// Whether a produce arriving now may go straight on: no place before it is still taken.
    pub fn is_clear(&self) -> bool {
        self.last
            .borrow()
            .as_ref()
            .is_none_or(|last| last.is_raised())
    }

    /// The next place, behind every place taken so far.
    pub fn take_place(&self) -> Place {
        let done = Rc::new(Latch::default());
        let before = self.last.replace(Some(done.clone()));
        Place {
            done,
            before: before.filter(|latch| !latch.is_raised()),
        }
    }
}

impl Place {
    /// Completes once every place before this one is done.
    pub async fn turn(&self) {
        if let Some(before) = &self.before {
            before.wait().await;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.done.raise();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ThreadExecutor;

    /// Places come in the order they were taken, whatever order their owners get ready in;
    /// a line whose places are all done is clear again.
    #[test]
    fn places_go_in_the_order_taken() {
        ThreadExecutor::new().run(async {
            let line = Rc::new(Line::default());
            assert!(line.is_clear());
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            // The first place's owner is the slowest to get ready.
            for (index, ready_after) in [(0, 3), (1, 0), (2, 1)] {
                let place = line.take_place();
                let order = order.clone();
                tasks.push(crate::runtime::spawn_local(async move {
                    for _ in 0..ready_after {
                        crate::runtime::yield_now().await;
                    }
                    place.turn().await;
                    order.borrow_mut().push(index);
                }));
            }
            assert!(!line.is_clear());
            for task in tasks {
                task.await;
            }
            assert_eq!(*order.borrow(), [0, 1, 2]);
            assert!(line.is_clear());
        });
    }
}
