//! The Raft log of one replica as raft-rs sees it: a window over the partition's log.
//!
//! Entry `i` is the `i`-th batch after the window's base (see `entries`), so the window
//! keeps, per entry, the raft-rs view of it (its term, type and data, which for a client
//! batch is the stamped batch itself, shared with the log's bytes) and the offset where it
//! ends. Below the window lies the base: the index, term and end offset of the last entry
//! before it, which is what a snapshot says ("my log equals yours up to offset O, index I,
//! term T", with the configuration as of I; corelog's snapshots carry a position, never
//! state). The window moves up once its entries are applied (and, on a leader, matched by
//! every follower or past the budget), and a follower that needs an entry below it is sent
//! such a snapshot. (A snapshot of a later index would leave a follower whose log restarts
//! at the leader's log start without the batches between that start and the index.)
//!
//! The anchor is the durable part: the base, the HardState (term and vote, which must be on
//! disk before any message that depends on them leaves; the commit index, written with
//! them, may lag) and the configuration (ConfState) as of the base with each change applied
//! after it, in a side file `raft-anchor` beside the segments. The commit index saved is the
//! applied one, so that a restart applies every configuration change after it again.
//! Opening reads it and rebuilds the window from the log's batches after the base.
//!
//! Per-shard: lives on the shard that owns the partition.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError as RaftStorageError};
use serde::{Deserialize, Serialize};

use super::entries;
use crate::ids::Offset;
use crate::storage::{batch_meta, side_file, StorageError};

/// The anchor's name in the partition directory.
pub const ANCHOR_FILE: &str = "raft-anchor";
/// An anchor larger than this is not ours.
const ANCHOR_BYTES_MAX: u64 = 64 * 1024;

/// The durable part of a replica's Raft state (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub base_index: u64,
    pub base_term: u64,
    pub base_end: Offset,
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    /// The configuration as of the base (an anchor written before configuration changes
    /// existed holds the current one here, which no change followed).
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
    /// Each configuration change applied after the base, by entry index, as it left the
    /// configuration.
    #[serde(default)]
    pub conf_changes: Vec<(u64, Conf)>,
    /// Set while the log, restarted at this offset (a peer's log start) to be made equal to
    /// the leader's up to `base_end`, has not reached it: opening then goes on copying.
    #[serde(default)]
    pub restarted_at: Option<Offset>,
}

/// A configuration as the anchor stores it (raft-rs's ConfState).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conf {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub voters_outgoing: Vec<u64>,
    pub learners_next: Vec<u64>,
    pub auto_leave: bool,
}

impl From<&ConfState> for Conf {
    fn from(conf: &ConfState) -> Conf {
        Conf {
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            learners_next: conf.learners_next.clone(),
            auto_leave: conf.auto_leave,
        }
    }
}

impl From<&Conf> for ConfState {
    fn from(conf: &Conf) -> ConfState {
        ConfState {
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            learners_next: conf.learners_next.clone(),
            auto_leave: conf.auto_leave,
            ..Default::default()
        }
    }
}

impl Anchor {
    /// A new replica's anchor: nothing before the log start, the given voters.
    pub fn new(log_start: Offset, voters: Vec<u64>) -> Anchor {
        Anchor {
            base_end: log_start,
            voters,
            ..Default::default()
        }
    }

    pub async fn load(dir: &Path) -> Result<Option<Anchor>, StorageError> {
        let Some(bytes) = side_file::read(&dir.join(ANCHOR_FILE), ANCHOR_BYTES_MAX).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| StorageError::Corrupt(format!("{ANCHOR_FILE}: {error}")))
    }

    pub async fn write(&self, dir: &Path) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(self).expect("an anchor serializes");
        side_file::replace(&dir.join(ANCHOR_FILE), &bytes).await?;
        Ok(())
    }

    fn base_conf(&self) -> ConfState {
        ConfState {
            voters: self.voters.clone(),
            learners: self.learners.clone(),
            voters_outgoing: self.voters_outgoing.clone(),
            learners_next: self.learners_next.clone(),
            auto_leave: self.auto_leave,
            ..Default::default()
        }
    }
}

/// One entry of the window: raft-rs's view of it, and the offset after its batch.
#[derive(Debug, Clone)]
struct Slot {
    entry: Entry,
    end: Offset,
}

/// See the module documentation.
#[derive(Debug)]
pub struct Window {
    base_index: u64,
    base_term: u64,
    /// The offset where the window's first entry begins.
    base_end: Offset,
    slots: VecDeque<Slot>,
    /// Bytes of entry data the window holds.
    bytes: u64,
    hard_state: HardState,
    /// The configuration as of the base: what a snapshot of the base carries.
    base_conf: ConfState,
    /// Each configuration change applied after the base, by entry index, as it left the
    /// configuration: the last is the configuration as of `applied`.
    conf_changes: VecDeque<(u64, ConfState)>,
    /// The last entry applied (its configuration change, if any, is in `conf_changes`).
    applied: u64,
    /// Where the base must move for a snapshot to reach a replica the base's configuration
    /// does not have yet (a learner just added): see `WindowStorage::snapshot`.
    base_wanted: Option<u64>,
    /// See `Anchor::restarted_at`.
    restarted_at: Option<Offset>,
    /// The log's start, as the replica last said: a snapshot carries it.
    log_start: Offset,
}

impl Window {
    /// The window of a log from the anchor: `batches` are the log's batches from the
    /// anchor's base end to the log end, in order.
    pub fn rebuild(anchor: &Anchor, batches: &[Bytes]) -> Result<Window, StorageError> {
        let mut window = Window {
            base_index: anchor.base_index,
            base_term: anchor.base_term,
            base_end: anchor.base_end,
            slots: VecDeque::new(),
            bytes: 0,
            hard_state: HardState::default(),
            base_conf: anchor.base_conf(),
            conf_changes: (anchor.conf_changes.iter())
                .filter(|(index, _)| *index > anchor.base_index)
                .map(|(index, conf)| (*index, conf.into()))
                .collect(),
            applied: 0,
            base_wanted: None,
            restarted_at: anchor.restarted_at,
            log_start: Offset::ZERO,
        };
        for batch in batches {
            let index = window.last_index() + 1;
            let entry = entries::from_batch(index, batch)
                .map_err(|error| StorageError::Corrupt(format!("raft entry {index}: {error}")))?;
            let meta = batch_meta(batch).map_err(StorageError::Corrupt)?;
            if meta.base_offset != window.end_offset() {
                return Err(StorageError::Corrupt(format!(
                    "raft entry {index} begins at {}, not at {}",
                    meta.base_offset,
                    window.end_offset()
                )));
            }
            window.push(entry, meta.last_offset + 1);
        }
        // The commit index is written lazily: it may lag, never lead, what the log holds.
        let commit = anchor.commit.clamp(window.base_index, window.last_index());
        window.hard_state.term = anchor.term;
        window.hard_state.vote = anchor.vote;
        window.hard_state.commit = commit;
        window.applied = commit;
        Ok(window)
    }

    pub fn anchor(&self) -> Anchor {
        let conf = &self.base_conf;
        Anchor {
            base_index: self.base_index,
            base_term: self.base_term,
            base_end: self.base_end,
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            // The configuration is the applied one: a restart applies again what follows.
            commit: self.applied.min(self.last_index()),
            voters: conf.voters.clone(),
            learners: conf.learners.clone(),
            voters_outgoing: conf.voters_outgoing.clone(),
            learners_next: conf.learners_next.clone(),
            auto_leave: conf.auto_leave,
            conf_changes: (self.conf_changes.iter())
                .map(|(index, conf)| (*index, conf.into()))
                .collect(),
            restarted_at: self.restarted_at,
        }
    }

    pub fn first_index(&self) -> u64 {
        self.base_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.base_index + self.slots.len() as u64
    }

    /// The term of the last entry (of the base when the window is empty).
    pub fn last_term(&self) -> u64 {
        self.slots
            .back()
            .map_or(self.base_term, |slot| slot.entry.term)
    }

    pub fn base_index(&self) -> u64 {
        self.base_index
    }

    /// The offset after the last entry: the log end.
    pub fn end_offset(&self) -> Offset {
        self.slots.back().map_or(self.base_end, |slot| slot.end)
    }

    /// The offset after entry `index`, which is the base or in the window.
    pub fn end_of(&self, index: u64) -> Offset {
        assert!(
            (self.base_index..=self.last_index()).contains(&index),
            "entry {index} outside the window {}..={}",
            self.base_index,
            self.last_index()
        );
        match index - self.base_index {
            0 => self.base_end,
            position => self.slots[position as usize - 1].end,
        }
    }

    /// The last entry that ends at or before `offset` (the base if none in the window does):
    /// where the base may move when the log start moves to `offset`.
    pub fn last_ending_by(&self, offset: Offset) -> u64 {
        let count = self.slots.partition_point(|slot| slot.end <= offset);
        self.base_index + count as u64
    }

    /// The entry at `index` if the window holds it.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let position = index.checked_sub(self.first_index())?;
        self.slots.get(position as usize).map(|slot| &slot.entry)
    }

    /// The term of entry `index`, which is the base or in the window.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        match index == self.base_index {
            true => Some(self.base_term),
            false => self.entry(index).map(|entry| entry.term),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The configuration as of the last applied entry.
    pub fn conf_state(&self) -> &ConfState {
        self.conf_changes
            .back()
            .map_or(&self.base_conf, |(_, conf)| conf)
    }

    /// The entry whose change made the configuration `conf_state` (the base, when no change
    /// was applied after it: the configuration is then at least that old).
    pub fn conf_index(&self) -> u64 {
        self.conf_changes
            .back()
            .map_or(self.base_index, |(index, _)| *index)
    }

    /// Where the log starts now (a snapshot tells followers).
    pub fn set_log_start(&mut self, log_start: Offset) {
        self.log_start = log_start;
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Entry `index`, being applied, changed the configuration to `conf_state`.
    pub fn set_conf_state(&mut self, index: u64, conf_state: ConfState) {
        self.conf_changes.push_back((index, conf_state));
    }

    /// The index the base must reach so that a snapshot reaches a replica that joined after
    /// it (taken: asked once per wish).
    pub fn take_base_wanted(&mut self) -> Option<u64> {
        self.base_wanted.take()
    }

    /// The log was restarted at `at` to be copied up to the base's end (None once it is).
    pub fn set_restarted_at(&mut self, at: Option<Offset>) {
        self.restarted_at = at;
    }

    /// Entries up to `index` are applied: their configuration changes are in `conf_state`.
    pub fn set_applied(&mut self, index: u64) {
        self.applied = index;
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Adds the entry after the last one, whose batch ends before `end`.
    pub fn push(&mut self, entry: Entry, end: Offset) {
        assert_eq!(entry.index, self.last_index() + 1, "entries are dense");
        assert!(end > self.end_offset(), "a batch holds an offset");
        self.bytes += entry.data.len() as u64;
        self.slots.push_back(Slot { entry, end });
    }

    /// Forgets the entries from `index` on (a conflict with the leader's log): the log is cut
    /// at the returned offset, where entry `index` began.
    pub fn truncate_from(&mut self, index: u64) -> Offset {
        assert!(
            index > self.hard_state.commit.max(self.base_index),
            "committed entry {index} is never cut"
        );
        let offset = self.end_of(index - 1);
        while self.last_index() >= index {
            let slot = self.slots.pop_back().expect("counted above");
            self.bytes -= slot.entry.data.len() as u64;
        }
        offset
    }

    /// Moves the base up to `index` (applied, and no longer needed by any follower).
    pub fn compact_to(&mut self, index: u64) {
        assert!(index <= self.last_index(), "compacting past the last entry");
        while self.base_index < index {
            let slot = self.slots.pop_front().expect("index is in the window");
            self.bytes -= slot.entry.data.len() as u64;
            self.base_index += 1;
            self.base_term = slot.entry.term;
            self.base_end = slot.end;
            while let Some((changed_at, _)) = self.conf_changes.front() {
                if *changed_at > self.base_index {
                    break;
                }
                let (_, conf) = self.conf_changes.pop_front().expect("looked at");
                self.base_conf = conf;
            }
        }
    }

    /// After a snapshot was installed: the log ends at `end`, equal to the leader's up to the
    /// snapshot's entry, and the window starts after it.
    pub fn restore(&mut self, snapshot: &Snapshot, end: Offset) {
        let metadata = snapshot.get_metadata();
        self.slots.clear();
        self.bytes = 0;
        self.base_index = metadata.index;
        self.base_term = metadata.term;
        self.base_end = end;
        self.base_conf = metadata.get_conf_state().clone();
        self.conf_changes.clear();
        self.restarted_at = None;
        self.applied = metadata.index;
        self.hard_state.commit = self.hard_state.commit.max(metadata.index);
        self.hard_state.term = self.hard_state.term.max(metadata.term);
    }

    /// A snapshot of the base: its position and the log start, as `encode_position` writes
    /// them, and the configuration as of the base (a follower applies the changes after it
    /// from entries).
    fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        snapshot.set_data(encode_position(self.base_end, self.log_start));
        let metadata = snapshot.mut_metadata();
        metadata.index = self.base_index;
        metadata.term = self.base_term;
        metadata.set_conf_state(self.base_conf.clone());
        snapshot
    }
}

/// Whether `id` is in the configuration, as a voter or a learner.
fn is_member(conf: &ConfState, id: u64) -> bool {
    let voters = conf.voters.iter().chain(&conf.voters_outgoing);
    voters.chain(&conf.learners).any(|member| *member == id)
}

/// A snapshot's data: the offset the follower's log must equal the leader's up to.
/// Then the leader's log start (8 bytes), which a follower's log start must reach where it
/// is below the position: a log-start move inside the snapshot is not applied as an entry.
/// Snapshots of earlier versions hold the position alone.
pub fn encode_position(end: Offset, log_start: Offset) -> Bytes {
    let mut data = Vec::with_capacity(16);
    data.extend_from_slice(&end.get().to_be_bytes());
    data.extend_from_slice(&log_start.get().to_be_bytes());
    Bytes::from(data)
}

pub fn decode_position(data: &[u8]) -> Option<Offset> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    matches!(data.len(), 8 | 16).then(|| Offset(i64::from_be_bytes(bytes)))
}

/// The leader's log start a snapshot carries, if it does.
pub fn decode_log_start(data: &[u8]) -> Option<Offset> {
    let bytes: [u8; 8] = data.get(8..16)?.try_into().ok()?;
    (data.len() == 16).then(|| Offset(i64::from_be_bytes(bytes)))
}

/// raft-rs's handle on a window. Shared with the replica that changes it between readies.
#[derive(Clone)]
pub struct WindowStorage(pub Rc<RefCell<Window>>);

impl raft::Storage for WindowStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let window = self.0.borrow();
        Ok(RaftState::new(
            window.hard_state.clone(),
            window.conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let window = self.0.borrow();
        if low <= window.base_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        assert!(
            high <= window.last_index() + 1,
            "entries {low}..{high} past the last {}",
            window.last_index()
        );
        let start = (low - window.first_index()) as usize;
        let end = (high - window.first_index()) as usize;
        let mut found: Vec<Entry> = window
            .slots
            .range(start..end)
            .map(|slot| slot.entry.clone())
            .collect();
        raft::util::limit_size(&mut found, max_size.into());
        Ok(found)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let window = self.0.borrow();
        if index == window.base_index {
            return Ok(window.base_term);
        }
        if index < window.base_index {
            return Err(raft::Error::Store(RaftStorageError::Compacted));
        }
        match window.entry(index) {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(RaftStorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.0.borrow().last_index())
    }

    /// A snapshot of the base, for replica `to`. A replica that joined after the base (a
    /// learner being added) is not in the base's configuration and would refuse it: the
    /// snapshot is then unavailable until the base has moved past the change that added it,
    /// which the replica's next compaction does (raft-rs asks again).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut window = self.0.borrow_mut();
        let unavailable = raft::Error::Store(RaftStorageError::SnapshotTemporarilyUnavailable);
        if window.base_index < request_index {
            return Err(unavailable);
        }
        if !is_member(&window.base_conf, to) {
            let added = window
                .conf_changes
                .iter()
                .find(|(_, conf)| is_member(conf, to));
            window.base_wanted = added.map(|(index, _)| *index);
            return Err(unavailable);
        }
        Ok(window.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    fn window() -> Window {
        let mut window = Window::rebuild(&Anchor::new(Offset(100), vec![1, 2, 3]), &[]).unwrap();
        for index in 1..=5 {
            window.push(entry(index, 1 + index / 3), Offset(100 + 10 * index as i64));
        }
        window
    }

    /// Offsets follow the entries: the base ends at the log start, each entry where its batch
    /// ends; truncation cuts the log where the first removed entry began.
    #[test]
    fn entries_map_to_the_offsets_of_their_batches() {
        let mut window = window();
        assert_eq!((window.first_index(), window.last_index()), (1, 5));
        assert_eq!(window.end_of(0), Offset(100));
        assert_eq!(window.end_of(3), Offset(130));
        assert_eq!(window.end_offset(), Offset(150));
        assert_eq!(window.last_ending_by(Offset(99)), 0);
        assert_eq!(window.last_ending_by(Offset(130)), 3);
        assert_eq!(window.last_ending_by(Offset(135)), 3);
        assert_eq!(window.last_ending_by(Offset(500)), 5);
        assert_eq!(window.truncate_from(4), Offset(130));
        assert_eq!(window.last_index(), 3);
        window.compact_to(2);
        assert_eq!((window.base_index(), window.end_of(2)), (2, Offset(120)));
        assert_eq!(window.anchor().base_term, 1);
    }

    /// raft-rs reads the window: compacted entries are refused, the base's term is known,
    /// and a snapshot names the base's position.
    #[test]
    fn raft_reads_the_window_and_snapshots_its_base() {
        let mut window = window();
        window.compact_to(2);
        let storage = WindowStorage(Rc::new(RefCell::new(window)));
        assert_eq!(storage.first_index().unwrap(), 3);
        assert_eq!(storage.last_index().unwrap(), 5);
        assert_eq!(storage.term(2).unwrap(), 1);
        assert_eq!(storage.term(5).unwrap(), 2);
        assert!(storage.term(1).is_err());
        let context = GetEntriesContext::empty(false);
        assert!(storage.entries(2, 4, None, context).is_err());
        let context = GetEntriesContext::empty(false);
        let found = storage.entries(3, 6, None, context).unwrap();
        assert_eq!(found.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4, 5]);
        let snapshot = storage.snapshot(0, 2).unwrap();
        assert_eq!(snapshot.get_metadata().index, 2);
        assert_eq!(decode_position(snapshot.get_data()), Some(Offset(120)));
        assert_eq!(decode_log_start(snapshot.get_data()), Some(Offset::ZERO));
        let older = encode_position(Offset(120), Offset(7)).slice(..8);
        assert_eq!(decode_position(&older), Some(Offset(120)));
        assert_eq!(decode_log_start(&older), None);
    }

    /// The anchor keeps what the window cannot rebuild from the log, and a commit index beyond
    /// the log (written before a crash lost the tail) is brought back to the log's end.
    #[test]
    fn the_anchor_keeps_term_vote_and_base() {
        let mut window = window();
        window.set_hard_state(HardState {
            term: 4,
            vote: 2,
            commit: 5,
            ..Default::default()
        });
        window.compact_to(1);
        let mut anchor = window.anchor();
        assert_eq!((anchor.term, anchor.vote, anchor.base_index), (4, 2, 1));
        anchor.commit = 9;
        let rebuilt = Window::rebuild(&anchor, &[]).unwrap();
        assert_eq!(rebuilt.hard_state().commit, 1);
        assert_eq!(rebuilt.conf_state().voters, vec![1, 2, 3]);
    }
}

#[cfg(test)]
mod conf_tests {
    use super::*;

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..Default::default()
        }
    }

    /// The configuration follows the applied changes, a snapshot of the base carries the
    /// configuration as of the base, and the anchor keeps both across a restart: a follower
    /// sent the snapshot applies the later changes from their entries, once each.
    #[test]
    fn snapshots_carry_the_configuration_as_of_the_base() {
        let mut window = Window::rebuild(&Anchor::new(Offset(0), vec![1, 2, 3]), &[]).unwrap();
        for index in 1..=4 {
            let entry = Entry {
                index,
                term: 1,
                ..Default::default()
            };
            window.push(entry, Offset(index as i64));
        }
        window.set_conf_state(2, voters(&[1, 2, 3, 4]));
        window.set_conf_state(4, voters(&[2, 3, 4]));
        window.set_applied(4);
        assert_eq!(window.conf_state(), &voters(&[2, 3, 4]));
        window.compact_to(3);
        let storage = WindowStorage(Rc::new(RefCell::new(window)));
        let snapshot = raft::Storage::snapshot(&storage, 0, 2).unwrap();
        assert_eq!(snapshot.get_metadata().index, 3);
        assert_eq!(
            snapshot.get_metadata().get_conf_state(),
            &voters(&[1, 2, 3, 4])
        );
        let anchor = storage.0.borrow().anchor();
        assert_eq!(
            (anchor.commit, anchor.voters.clone()),
            (4, vec![1, 2, 3, 4])
        );
        let json = serde_json::to_vec(&anchor).unwrap();
        let back: Anchor = serde_json::from_slice(&json).unwrap();
        let rebuilt = Window::rebuild(&back, &[]).unwrap();
        assert_eq!(rebuilt.conf_state(), &voters(&[2, 3, 4]));
        assert_eq!(rebuilt.base_conf, voters(&[1, 2, 3, 4]));
        // Replica 4 joined at entry 2: a snapshot of base 1 would not reach it; it waits for
        // the base to pass entry 2.
        let mut early = Window::rebuild(&back, &[]).unwrap();
        early.base_conf = voters(&[1, 2, 3]);
        early.conf_changes = VecDeque::from([(2, voters(&[1, 2, 3, 4]))]);
        let storage = WindowStorage(Rc::new(RefCell::new(early)));
        assert!(raft::Storage::snapshot(&storage, 0, 4).is_err());
        assert_eq!(storage.0.borrow_mut().take_base_wanted(), Some(2));
        assert!(raft::Storage::snapshot(&storage, 0, 3).is_ok());
    }
}
