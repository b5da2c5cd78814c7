//! raft-rs logs through `slog`; this drain hands its records to `tracing`, with the group id,
//! so that Raft's own events (elections, conflicts, snapshots) land in the broker's log. Its
//! INFO events come one per group per election, so they are DEBUG here; the replica logs a
//! change of leader itself.

use std::fmt::Write as _;

use slog::{Drain, Level, OwnedKVList, Record, KV};

use super::message::GroupId;

/// The logger a replica of `group` gives raft-rs.
pub fn for_group(group: GroupId) -> slog::Logger {
    slog::Logger::root(TracingDrain { group }.fuse(), slog::o!())
}

struct TracingDrain {
    group: GroupId,
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let enabled = match record.level() {
            Level::Critical | Level::Error => tracing::enabled!(tracing::Level::ERROR),
            Level::Warning => tracing::enabled!(tracing::Level::WARN),
            Level::Info | Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            Level::Trace => tracing::enabled!(tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut text = record.msg().to_string();
        let mut pairs = Pairs(&mut text);
        // Formatting into a String cannot fail.
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let group = self.group;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(group, "raft: {text}"),
            Level::Warning => tracing::warn!(group, "raft: {text}"),
            Level::Info | Level::Debug => tracing::debug!(group, "raft: {text}"),
            Level::Trace => tracing::trace!(group, "raft: {text}"),
        }
        Ok(())
    }
}

/// Appends ` key=value` for each pair of a record.
struct Pairs<'a>(&'a mut String);

impl slog::Serializer for Pairs<'_> {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}
