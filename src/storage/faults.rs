//! Test-only storage fault injection: a per-process plan of I/O errors and delays that
//! `SegmentFile` consults at the start of each write, fdatasync, read and truncate. A delay
//! stands for a slow device: it holds the one operation, the rest of the shard runs on.
//!
//! Tests arm the plan through the admin listener (`POST /faults`, only with the hidden
//! `serve --enable-fault-injection` flag) and watch the real broker answer runtime disk errors.
//! Shards are separate threads, so the plan is process-global: a `std::sync::Mutex` behind an
//! `AtomicBool`. Invariant: while nothing is armed, `check` is one relaxed atomic load and
//! never takes the lock, so the data path pays nothing in production.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Most faults one plan holds: a test needs a handful, and the text comes from the network.
const FAULTS_MAX: usize = 64;

/// Longest delay a fault may add: enough for any slow-disk test, short of a hung broker.
const DELAY_MS_MAX: u64 = 60_000;

/// The file operations a fault can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Sync,
    Read,
    Truncate,
}

impl FaultOp {
    fn parse(word: &str) -> Option<FaultOp> {
        match word {
            "write" => Some(FaultOp::Write),
            "sync" => Some(FaultOp::Sync),
            "read" => Some(FaultOp::Read),
            "truncate" => Some(FaultOp::Truncate),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FaultOp::Write => "write",
            FaultOp::Sync => "sync",
            FaultOp::Read => "read",
            FaultOp::Truncate => "truncate",
        }
    }
}

/// What an armed fault does to the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Fails it with this errno.
    Fail(i32),
    /// Starts it this much later.
    Delay(Duration),
}

/// One armed fault: `op` on files whose path contains `path_contains` gets `effect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: FaultOp,
    pub effect: Effect,
    pub path_contains: String,
    /// Calls still to fail; None fails every call until the plan is cleared.
    pub remaining: Option<u64>,
    /// Calls this fault has failed so far (for tests to check that it fired).
    pub hits: u64,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static PLAN: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

/// The first matching armed fault's effect: an error to fail the call with, or a delay to
/// wait out before it (`Ok(None)`: go ahead). `path` is asked for only when something is
/// armed.
#[inline]
pub fn check<P: AsRef<Path>>(
    op: FaultOp,
    path: impl FnOnce() -> Option<P>,
) -> io::Result<Option<Duration>> {
    if !ARMED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    match path() {
        Some(path) => check_armed(op, path.as_ref()),
        None => Ok(None),
    }
}

#[cold]
fn check_armed(op: FaultOp, path: &Path) -> io::Result<Option<Duration>> {
    let path = path.to_string_lossy();
    let mut plan = lock_plan();
    let fault = plan.iter_mut().find(|fault| {
        fault.op == op && fault.remaining != Some(0) && path.contains(fault.path_contains.as_str())
    });
    let Some(fault) = fault else {
        return Ok(None);
    };
    fault.hits += 1;
    if let Some(remaining) = &mut fault.remaining {
        *remaining -= 1;
    }
    tracing::debug!(op = op.name(), effect = ?fault.effect, %path, "injected storage fault");
    match fault.effect {
        Effect::Fail(errno) => Err(io::Error::from_raw_os_error(errno)),
        Effect::Delay(delay) => Ok(Some(delay)),
    }
}

fn lock_plan() -> std::sync::MutexGuard<'static, Vec<Fault>> {
    // A panic while holding the lock leaves a plan that is still well formed.
    PLAN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds the faults described by `text`, one per line: `<op> <effect> <path substring> [count]`,
/// e.g. `sync EIO faulty-0/ 1` or `sync 50ms slow-0/`. `op` is write, sync, read or truncate;
/// `effect` is an errno (EIO, ENOSPC, EDQUOT or a number) or a delay in milliseconds (`<n>ms`);
/// without a count the fault fires until cleared. Returns how many faults the plan holds; on
/// a parse error nothing is added.
pub fn arm(text: &str) -> Result<usize, String> {
    let mut parsed = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        parsed.push(parse_fault(line)?);
    }
    let mut plan = lock_plan();
    if plan.len() + parsed.len() > FAULTS_MAX {
        return Err(format!("at most {FAULTS_MAX} faults may be armed"));
    }
    plan.extend(parsed);
    ARMED.store(!plan.is_empty(), Ordering::Relaxed);
    Ok(plan.len())
}

fn parse_fault(line: &str) -> Result<Fault, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (op, effect, path_contains, count) = match words[..] {
        [op, effect, path] => (op, effect, path, None),
        [op, effect, path, count] => (op, effect, path, Some(count)),
        _ => {
            return Err(format!(
                "expected `<op> <errno|<n>ms> <path substring> [count]`: {line:?}"
            ))
        }
    };
    let op = FaultOp::parse(op).ok_or_else(|| format!("unknown operation {op:?}"))?;
    let effect = parse_effect(effect)?;
    let remaining = match count {
        None => None,
        Some(count) => Some(
            count
                .parse::<u64>()
                .map_err(|_| format!("bad count {count:?}"))?,
        ),
    };
    Ok(Fault {
        op,
        effect,
        path_contains: path_contains.to_string(),
        remaining,
        hits: 0,
    })
}

fn parse_effect(word: &str) -> Result<Effect, String> {
    if let Some(millis) = word.strip_suffix("ms") {
        return millis
            .parse::<u64>()
            .ok()
            .filter(|millis| *millis <= DELAY_MS_MAX)
            .map(|millis| Effect::Delay(Duration::from_millis(millis)))
            .ok_or_else(|| format!("bad delay {word:?} (0 to {DELAY_MS_MAX} ms)"));
    }
    let errno = match word {
        "EIO" => libc::EIO,
        "ENOSPC" => libc::ENOSPC,
        "EDQUOT" => libc::EDQUOT,
        number => number
            .parse::<i32>()
            .ok()
            .filter(|errno| *errno > 0)
            .ok_or_else(|| format!("unknown errno {number:?}"))?,
    };
    Ok(Effect::Fail(errno))
}

/// Removes every fault; file operations go back to the one atomic load.
pub fn clear() {
    let mut plan = lock_plan();
    plan.clear();
    ARMED.store(false, Ordering::Relaxed);
}

/// The plan as text, one fault per line: `<op> <errno|<n>ms> <path>
/// remaining=<n|until-cleared> hits=<n>`.
pub fn describe() -> String {
    lock_plan()
        .iter()
        .map(|fault| {
            let remaining = fault
                .remaining
                .map_or("until-cleared".to_string(), |n| n.to_string());
            let effect = match fault.effect {
                Effect::Fail(errno) => errno.to_string(),
                Effect::Delay(delay) => format!("{}ms", delay.as_millis()),
            };
            format!(
                "{} {effect} {} remaining={remaining} hits={}\n",
                fault.op.name(),
                fault.path_contains,
                fault.hits
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fault lines parse into operations, errnos and counts, and malformed lines are refused.
    #[test]
    fn parses_fault_lines() {
        let fault = parse_fault("sync EIO faulty-0/ 2").unwrap();
        assert_eq!(fault.op, FaultOp::Sync);
        assert_eq!(fault.effect, Effect::Fail(libc::EIO));
        assert_eq!(fault.path_contains, "faulty-0/");
        assert_eq!(fault.remaining, Some(2));
        let fault = parse_fault("write 28 x").unwrap();
        assert_eq!(
            (fault.effect, fault.remaining),
            (Effect::Fail(libc::ENOSPC), None)
        );
        let fault = parse_fault("sync 250ms slow-0/ 1").unwrap();
        assert_eq!(fault.effect, Effect::Delay(Duration::from_millis(250)));
        assert!(parse_fault("sync 99999999ms x").is_err());
        assert!(parse_fault("sync -5ms x").is_err());
        assert!(parse_fault("sync EIO").is_err());
        assert!(parse_fault("flush EIO x").is_err());
        assert!(parse_fault("sync EWHAT x").is_err());
        assert!(parse_fault("sync EIO x -1").is_err());
    }
}
