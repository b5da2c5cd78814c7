//! The leader-epoch history of a partition: the offset at which each epoch's batches begin.
//!
//! Every batch carries the epoch of the leader that appended it (partitionLeaderEpoch; the
//! Raft term in a cluster), and epochs never decrease along the log, so the history is a
//! short list of (epoch, start offset) pairs, ascending in both. It answers
//! OffsetForLeaderEpoch (where an epoch ended, so that a client or follower truncates what
//! a later leader did not keep) and says which epoch wrote an offset.
//!
//! The history is checkpointed beside the segments (`leader-epoch-checkpoint`, Kafka's text
//! format) before the first batch of a new epoch can become durable, so after a crash the
//! checkpoint holds every epoch of the durable log, and perhaps one beyond its end, which
//! opening cuts off. A log without a checkpoint (written before the history existed) gets
//! one from its first and last batches when their epochs agree, which they always do for
//! logs of a single node; otherwise from a scan of its batch headers.

use std::path::Path;

use crate::ids::{LeaderEpoch, Offset};
use crate::protocol::record_batch;
use crate::storage::{side_file, Log, StorageError};

/// The checkpoint's name in the partition directory, as in Kafka.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: u32 = 0;
/// A checkpoint of more bytes than this is not ours (epochs change once per election).
const CHECKPOINT_BYTES_MAX: u64 = 1024 * 1024;
/// How much of the log one read of a rebuilding scan takes.
const SCAN_READ_BYTES: usize = 1024 * 1024;

/// See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    /// (epoch, first offset of its batches), ascending in both.
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl EpochHistory {
    /// The newest epoch and where it began.
    pub fn latest(&self) -> Option<(LeaderEpoch, Offset)> {
        self.entries.last().copied()
    }

    /// The epoch that wrote `offset` (the latest for the log end): the last one to begin at
    /// or before it; unknown for an empty history.
    pub fn epoch_at(&self, offset: Offset) -> LeaderEpoch {
        let begun = self
            .entries
            .iter()
            .rev()
            .find(|(_, start)| *start <= offset);
        begun
            .or(self.entries.first())
            .map_or(LeaderEpoch::UNKNOWN, |(epoch, _)| *epoch)
    }

    /// Records that a batch of `epoch` was appended at `offset`. Returns whether the history
    /// changed (a new epoch), in which case it must be checkpointed before that batch can be
    /// durable. An epoch older than the latest is refused: the log never goes back in epochs.
    pub fn assign(&mut self, epoch: LeaderEpoch, offset: Offset) -> bool {
        assert!(epoch >= LeaderEpoch(0), "batches carry a known epoch");
        if let Some((latest, start)) = self.latest() {
            assert!(
                epoch >= latest,
                "epoch {epoch} appended after epoch {latest}"
            );
            if epoch == latest {
                return false;
            }
            assert!(offset >= start, "offsets grow along the log");
        }
        // An epoch that began where this one begins wrote nothing: it is replaced.
        while self
            .entries
            .last()
            .is_some_and(|(_, start)| *start >= offset)
        {
            self.entries.pop();
        }
        self.entries.push((epoch, offset));
        true
    }

    /// After the log was cut back to end at `end`: forgets the epochs that began at or past it.
    pub fn truncate_from(&mut self, end: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(_, start)| *start < end);
        self.entries.len() != before
    }

    /// After the log start moved to `start`: forgets the epochs wholly below it and starts
    /// the one that holds it there.
    pub fn truncate_before(&mut self, start: Offset) -> bool {
        let holding = self.entries.iter().rposition(|(_, begin)| *begin <= start);
        let Some(holding) = holding else {
            return false;
        };
        let changed = holding > 0 || self.entries[0].1 != start;
        self.entries.drain(..holding);
        self.entries[0].1 = start;
        changed
    }

    /// OffsetForLeaderEpoch for `requested`, on a log whose readable end is `end`: the largest
    /// epoch not above it and the offset where that epoch ended (the start of the next one,
    /// or `end` for the latest). Unknown (-1, -1) when the history is empty, the request is
    /// -1, or the epoch is newer than any here; an epoch older than all of them ends where
    /// the first one begins.
    pub fn end_offset_for(&self, requested: LeaderEpoch, end: Offset) -> (LeaderEpoch, Offset) {
        const UNKNOWN: (LeaderEpoch, Offset) = (LeaderEpoch::UNKNOWN, Offset::NONE);
        let Some((latest, _)) = self.latest() else {
            return UNKNOWN;
        };
        if requested == LeaderEpoch::UNKNOWN || requested > latest {
            return UNKNOWN;
        }
        if requested == latest {
            return (latest, end);
        }
        let higher = self
            .entries
            .iter()
            .position(|(epoch, _)| *epoch > requested)
            .expect("the latest epoch is higher");
        let ended_at = self.entries[higher].1;
        match higher.checked_sub(1) {
            Some(floor) => (self.entries[floor].0, ended_at),
            None => (requested, ended_at),
        }
    }

    /// Kafka's checkpoint text: the version, the count, then "epoch offset" per line.
    pub fn encode(&self) -> String {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        text
    }

    pub fn decode(text: &str) -> Result<EpochHistory, String> {
        let mut lines = text.lines();
        let mut number = |what: &str| -> Result<i64, String> {
            let line = lines.next().ok_or(format!("no {what}"))?;
            line.trim()
                .parse()
                .map_err(|_| format!("bad {what}: {line:?}"))
        };
        let version = number("version")?;
        if version != i64::from(CHECKPOINT_VERSION) {
            return Err(format!("unknown version {version}"));
        }
        let count = number("count")?;
        let mut history = EpochHistory::default();
        for _ in 0..count {
            let line = lines.next().ok_or("fewer entries than counted")?;
            let mut fields = line.split_whitespace().map(str::parse::<i64>);
            let (Some(Ok(epoch)), Some(Ok(start)), None) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("bad entry {line:?}"));
            };
            let epoch = i32::try_from(epoch).map_err(|_| format!("bad epoch {epoch}"))?;
            let ascending = history
                .latest()
                .is_none_or(|(last, begin)| LeaderEpoch(epoch) > last && Offset(start) >= begin);
            if epoch < 0 || start < 0 || !ascending {
                return Err(format!("entry {line:?} out of order"));
            }
            history.entries.push((LeaderEpoch(epoch), Offset(start)));
        }
        if lines.next().is_some_and(|line| !line.trim().is_empty()) {
            return Err("more entries than counted".into());
        }
        Ok(history)
    }

    /// Durably replaces the checkpoint in `dir`.
    pub async fn write(&self, dir: &Path) -> std::io::Result<()> {
        side_file::replace(&dir.join(CHECKPOINT_FILE), self.encode().as_bytes()).await
    }

    /// The history of an opened log: its checkpoint cut to the log, or rebuilt from the log
    /// (and checkpointed) when there is none or it cannot be read.
    pub async fn load(log: &Log) -> Result<EpochHistory, StorageError> {
        let path = log.dir().join(CHECKPOINT_FILE);
        let read = side_file::read(&path, CHECKPOINT_BYTES_MAX).await?;
        let decoded = read.map(|bytes| {
            std::str::from_utf8(&bytes)
                .map_err(|_| "not text".to_string())
                .and_then(EpochHistory::decode)
        });
        let mut history = match decoded {
            Some(Ok(history)) => history,
            unreadable => {
                if let Some(Err(reason)) = unreadable {
                    let path = path.display();
                    tracing::warn!(%path, %reason, "rebuilding an unreadable leader-epoch checkpoint");
                }
                let history = rebuild(log).await?;
                if history.latest().is_some() {
                    history.write(log.dir()).await?;
                }
                return Ok(history);
            }
        };
        history.truncate_from(log.durable_end_offset());
        history.truncate_before(log.log_start_offset());
        Ok(history)
    }
}

/// The history of `log` from its batches: from the first and the last when they agree (every
/// batch between has their epoch), else from every batch header.
async fn rebuild(log: &Log) -> Result<EpochHistory, StorageError> {
    let (start, end) = (log.log_start_offset(), log.durable_end_offset());
    let mut history = EpochHistory::default();
    if start >= end {
        return Ok(history);
    }
    let epoch_at = |offset: Offset| async move {
        let batches = log.read(offset, 1, end).await?;
        let first = batches
            .first()
            .and_then(|batch| record_batch::header(batch));
        first
            .map(|header| LeaderEpoch(header.partition_leader_epoch.get()))
            .ok_or_else(|| StorageError::Corrupt(format!("no batch at offset {offset}")))
    };
    let (first, last) = (epoch_at(start).await?, epoch_at(end - 1).await?);
    if first == last {
        history.assign(first, start);
        return Ok(history);
    }
    let mut offset = start;
    while offset < end {
        let batches = log.read(offset, SCAN_READ_BYTES, end).await?;
        if batches.is_empty() {
            break;
        }
        for batch in &batches {
            let header = record_batch::header(batch)
                .ok_or_else(|| StorageError::Corrupt("a batch read back has no header".into()))?;
            let base = Offset(header.base_offset.get());
            history.assign(
                LeaderEpoch(header.partition_leader_epoch.get()),
                base.max(start),
            );
            offset = base + i64::from(header.last_offset_delta.get()) + 1;
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(entries: &[(i32, i64)]) -> EpochHistory {
        let mut history = EpochHistory::default();
        for (epoch, start) in entries {
            assert!(history.assign(LeaderEpoch(*epoch), Offset(*start)));
        }
        history
    }

    /// OffsetForLeaderEpoch as Kafka answers it: the latest epoch ends at the log end, an
    /// older one where the next began, one between two known epochs answers with the lower,
    /// and an unknown or newer epoch is (-1, -1).
    #[test]
    fn epochs_end_where_the_next_one_begins() {
        let history = history(&[(1, 0), (3, 10), (4, 25)]);
        let end = |epoch| {
            let (epoch, offset) = history.end_offset_for(LeaderEpoch(epoch), Offset(40));
            (epoch.get(), offset.get())
        };
        assert_eq!(end(4), (4, 40));
        assert_eq!(end(3), (3, 25));
        assert_eq!(end(2), (1, 10), "no epoch 2: epoch 1 ended at 10");
        assert_eq!(end(1), (1, 10));
        assert_eq!(end(0), (0, 0), "older than all: ends where the first began");
        assert_eq!(end(5), (-1, -1));
        assert_eq!(end(-1), (-1, -1));
        assert_eq!(
            EpochHistory::default()
                .end_offset_for(LeaderEpoch(0), Offset(5))
                .1,
            Offset::NONE
        );
    }

    /// An offset was written in the last epoch to begin at or before it; one below the
    /// history (cut off by a log start move) in the first.
    #[test]
    fn each_offset_was_written_in_the_last_epoch_begun() {
        let history = history(&[(1, 5), (3, 10), (4, 25)]);
        let at = |offset| history.epoch_at(Offset(offset)).get();
        assert_eq!([at(0), at(5), at(9), at(10), at(24)], [1, 1, 1, 3, 3]);
        assert_eq!([at(25), at(40)], [4, 4]);
        assert_eq!(
            EpochHistory::default().epoch_at(Offset(0)),
            LeaderEpoch::UNKNOWN
        );
    }

    #[test]
    fn assigning_keeps_one_entry_per_epoch_and_replaces_empty_epochs() {
        let mut history = history(&[(0, 0)]);
        assert!(
            !history.assign(LeaderEpoch(0), Offset(7)),
            "same epoch: no change"
        );
        assert!(history.assign(LeaderEpoch(2), Offset(9)));
        assert!(
            history.assign(LeaderEpoch(3), Offset(9)),
            "epoch 2 wrote nothing"
        );
        assert_eq!(history, self::history(&[(0, 0), (3, 9)]));
    }

    #[test]
    #[should_panic(expected = "appended after")]
    fn an_older_epoch_after_a_newer_one_is_a_bug() {
        history(&[(2, 0)]).assign(LeaderEpoch(1), Offset(5));
    }

    #[test]
    fn truncations_cut_both_ends() {
        let mut history = history(&[(1, 0), (3, 10), (4, 25)]);
        assert!(history.truncate_from(Offset(25)));
        assert_eq!(history, self::history(&[(1, 0), (3, 10)]));
        assert!(!history.truncate_from(Offset(26)));
        assert!(history.truncate_before(Offset(12)));
        assert_eq!(history, self::history(&[(3, 12)]));
        assert!(!history.truncate_before(Offset(12)));
        assert!(
            !history.truncate_before(Offset(5)),
            "below the start: nothing to forget"
        );
    }

    #[test]
    fn checkpoints_round_trip_in_kafkas_format_and_refuse_damage() {
        let history = history(&[(0, 0), (5, 100)]);
        assert_eq!(history.encode(), "0\n2\n0 0\n5 100\n");
        assert_eq!(EpochHistory::decode(&history.encode()), Ok(history.clone()));
        assert_eq!(EpochHistory::decode("0\n0\n"), Ok(EpochHistory::default()));
        for damaged in [
            "",
            "1\n0\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n2\n5 0\n1 5\n",
            "0\n1\n0\n",
            "0\n1\n-1 0\n",
            "0\n2\n1 9\n2 3\n",
            "0\n1\nx 1\n",
        ] {
            assert!(EpochHistory::decode(damaged).is_err(), "{damaged:?}");
        }
    }
}
