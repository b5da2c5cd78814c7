//! `corelog group reset-offsets`: plans new committed offsets for some partitions of one topic
//! and, with `--execute`, commits them as an admin (generation -1, no member id).
//!
//! As in Kafka's tool, the default is a dry run that prints the plan. Targets are clamped to
//! the partition's [log start, log end] range, so a reset never points outside the log. A
//! broker accepts such a commit only for a group without members; its refusal is reported
//! with the Kafka error and what to do about it.

use anyhow::{anyhow, bail};
use clap::{ArgGroup, Args};

use crate::client::admin::Admin;
use crate::client::groups::CommittedOffset;
use crate::topic::render::print_table;

/// Kafka error codes a member-less commit gets from a group that has members.
const ERRORS_OF_ACTIVE_GROUP: &[&str] = &[
    "UnknownMemberId (25)",
    "IllegalGeneration (22)",
    "RebalanceInProgress (27)",
];

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target").required(true).multiple(false)))]
pub struct ResetArgs {
    pub group: String,
    /// The topic whose offsets are reset.
    #[arg(long)]
    pub topic: String,
    /// Only these partitions (comma-separated); all of the topic's by default.
    #[arg(long, value_delimiter = ',')]
    pub partitions: Vec<i32>,
    /// Reset to the log start offset.
    #[arg(long, group = "target")]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long, group = "target")]
    pub to_latest: bool,
    /// Reset to this offset (clamped to the log's range).
    #[arg(long, group = "target", value_name = "OFFSET")]
    pub to_offset: Option<i64>,
    /// Reset to the first record at or after this time: RFC 3339
    /// (2024-05-01T12:00:00Z, 2024-05-01T14:00:00+02:00) or epoch milliseconds.
    #[arg(long, group = "target", value_name = "TIME", value_parser = parse_datetime)]
    pub to_datetime: Option<i64>,
    /// Move the committed offsets by N (negative: back).
    #[arg(
        long,
        group = "target",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub shift_by: Option<i64>,
    /// Commit the new offsets; without it the plan is only printed.
    #[arg(long)]
    pub execute: bool,
}

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    Offset(i64),
    /// Epoch milliseconds.
    Datetime(i64),
    Shift(i64),
}

impl ResetArgs {
    fn target(&self) -> ResetTarget {
        if self.to_earliest {
            ResetTarget::Earliest
        } else if let Some(offset) = self.to_offset {
            ResetTarget::Offset(offset)
        } else if let Some(time) = self.to_datetime {
            ResetTarget::Datetime(time)
        } else if let Some(shift) = self.shift_by {
            ResetTarget::Shift(shift)
        } else {
            ResetTarget::Latest
        }
    }
}

/// One partition of the plan.
struct Planned {
    partition: i32,
    current: Option<i64>,
    new: i64,
}

pub fn run(admin: &mut Admin, args: &ResetArgs) -> anyhow::Result<()> {
    let (group, topic) = (args.group.as_str(), args.topic.as_str());
    let partitions = match args.partitions.as_slice() {
        [] => {
            let count = admin
                .partition_count(topic)?
                .ok_or_else(|| anyhow!("topic {topic:?}: UnknownTopicOrPartition (3)"))?;
            (0..count).collect()
        }
        some => some.to_vec(),
    };
    let mut coordinator = admin.coordinator(group)?;
    let plan = plan(admin, &mut coordinator, args, &partitions)?;
    print_plan(topic, &plan);
    let described = coordinator.describe_group(group)?;
    if !args.execute {
        if !described.members.is_empty() {
            eprintln!(
                "warning: group {group} has {} member(s) (state {}); --execute will be refused \
                 until they leave",
                described.members.len(),
                described.state
            );
        }
        println!("dry run: nothing committed; add --execute to commit these offsets");
        return Ok(());
    }
    let offsets: Vec<CommittedOffset> = plan
        .iter()
        .map(|p| CommittedOffset {
            topic: topic.to_string(),
            partition: p.partition,
            offset: p.new,
        })
        .collect();
    if let Err(error) = coordinator.commit_offsets(group, &offsets) {
        let text = format!("{error:#}");
        if ERRORS_OF_ACTIVE_GROUP
            .iter()
            .any(|code| text.contains(code))
        {
            bail!(
                "{text}\ngroup {group} is {} with {} member(s): offsets can only be reset while \
                 the group has no members; stop its consumers first",
                described.state,
                described.members.len()
            );
        }
        return Err(error);
    }
    println!(
        "committed new offsets of group {group} for {} partition(s)",
        plan.len()
    );
    Ok(())
}

/// The new offset of every partition, clamped to the log's range.
fn plan(
    admin: &mut Admin,
    coordinator: &mut Admin,
    args: &ResetArgs,
    partitions: &[i32],
) -> anyhow::Result<Vec<Planned>> {
    let (group, topic) = (args.group.as_str(), args.topic.as_str());
    let committed = coordinator.committed_offsets(group, Some((topic, partitions)))?;
    let earliest = admin.partition_offsets(topic, partitions, -2)?;
    let latest = admin.partition_offsets(topic, partitions, -1)?;
    let at_time = match args.target() {
        ResetTarget::Datetime(time) => Some(admin.partition_offsets(topic, partitions, time)?),
        _ => None,
    };
    let mut plan = Vec::with_capacity(partitions.len());
    for (index, (&(partition, start), &(_, end))) in earliest.iter().zip(&latest).enumerate() {
        let current = committed
            .iter()
            .find(|c| c.partition == partition)
            .map(|c| c.offset);
        let wanted = match args.target() {
            ResetTarget::Earliest => start,
            ResetTarget::Latest => end,
            ResetTarget::Offset(offset) => offset,
            // No record at or after the time: the log end, as Kafka's tool does.
            ResetTarget::Datetime(_) => match at_time.as_ref().map(|t| t[index].1) {
                Some(offset) if offset >= 0 => offset,
                _ => end,
            },
            ResetTarget::Shift(shift) => match current {
                Some(offset) => offset.saturating_add(shift),
                None => {
                    bail!("group {group} has no committed offset for {topic}-{partition} to shift")
                }
            },
        };
        plan.push(Planned {
            partition,
            current,
            new: wanted.clamp(start, end.max(start)),
        });
    }
    Ok(plan)
}

fn print_plan(topic: &str, plan: &[Planned]) {
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|p| {
            vec![
                topic.to_string(),
                p.partition.to_string(),
                p.current.map_or("-".to_string(), |c| c.to_string()),
                p.new.to_string(),
            ]
        })
        .collect();
    print_table(
        &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        &rows,
    );
}

/// Epoch milliseconds of `text`: digits are epoch milliseconds already, otherwise RFC 3339
/// (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`).
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("{text:?}: {e}"));
    }
    rfc3339_ms(text).ok_or_else(|| {
        format!("{text:?} is neither epoch milliseconds nor RFC 3339 (2024-05-01T12:00:00Z)")
    })
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let number = |from: usize, to: usize| -> Option<i64> {
        let part = text.get(from..to)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 20 || separators.iter().any(|&(i, c)| bytes[i] != c) {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset_minutes = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |b: &u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
            let minutes = (digit(h1)? * 10 + digit(h2)?) * 60 + digit(m1)? * 10 + digit(m2)?;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    /// RFC 3339 times with zones and fractions, and epoch milliseconds, give epoch ms.
    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("1970-01-01T00:33:20Z"), Ok(2_000_000));
        assert_eq!(
            parse_datetime("2000-03-01T00:00:00.5Z"),
            Ok(951_868_800_500)
        );
        assert_eq!(
            parse_datetime("2024-05-01T14:00:00+02:00"),
            Ok(1_714_564_800_000)
        );
        assert_eq!(
            parse_datetime("2024-05-01T07:00:00.123-05:00"),
            Ok(1_714_564_800_123)
        );
        assert_eq!(parse_datetime("1714564800000"), Ok(1_714_564_800_000));
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "x",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?}");
        }
    }
}
