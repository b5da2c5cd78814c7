//! Test-only storage fault injection: a per-process plan of I/O errors that `SegmentFile`
//! consults at the start of each write, fdatasync, read and truncate.
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

/// Most faults one plan holds: a test needs a handful, and the text comes from the network.
const FAULTS_MAX: usize = 64;

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

/// One armed fault: `op` on files whose path contains `path_contains` fails with `errno`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub op: FaultOp,
    pub errno: i32,
    pub path_contains: String,
    /// Calls still to fail; None fails every call until the plan is cleared.
    pub remaining: Option<u64>,
    /// Calls this fault has failed so far (for tests to check that it fired).
    pub hits: u64,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static PLAN: Mutex<Vec<Fault>> = Mutex::new(Vec::new());

/// Fails the call with the first matching armed fault's errno. `path` is asked for only when
/// something is armed.
#[inline]
pub fn check<P: AsRef<Path>>(op: FaultOp, path: impl FnOnce() -> Option<P>) -> io::Result<()> {
    if !ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    match path() {
        Some(path) => check_armed(op, path.as_ref()),
        None => Ok(()),
    }
}

#[cold]
fn check_armed(op: FaultOp, path: &Path) -> io::Result<()> {
    let path = path.to_string_lossy();
    let mut plan = lock_plan();
    let fault = plan.iter_mut().find(|fault| {
        fault.op == op && fault.remaining != Some(0) && path.contains(fault.path_contains.as_str())
    });
    let Some(fault) = fault else {
        return Ok(());
    };
    fault.hits += 1;
    if let Some(remaining) = &mut fault.remaining {
        *remaining -= 1;
    }
    tracing::debug!(op = op.name(), errno = fault.errno, %path, "injected storage fault");
    Err(io::Error::from_raw_os_error(fault.errno))
}

fn lock_plan() -> std::sync::MutexGuard<'static, Vec<Fault>> {
    // A panic while holding the lock leaves a plan that is still well formed.
    PLAN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Adds the faults described by `text`, one per line: `<op> <errno> <path substring> [count]`,
/// e.g. `sync EIO faulty-0/ 1`. `op` is write, sync, read or truncate; `errno` is EIO, ENOSPC,
/// EDQUOT or a number; without a count the fault fires until cleared. Returns how many faults
/// the plan holds; on a parse error nothing is added.
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
    let (op, errno, path_contains, count) = match words[..] {
        [op, errno, path] => (op, errno, path, None),
        [op, errno, path, count] => (op, errno, path, Some(count)),
        _ => {
            return Err(format!(
                "expected `<op> <errno> <path substring> [count]`: {line:?}"
            ))
        }
    };
    let op = FaultOp::parse(op).ok_or_else(|| format!("unknown operation {op:?}"))?;
    let errno = match errno {
        "EIO" => libc::EIO,
        "ENOSPC" => libc::ENOSPC,
        "EDQUOT" => libc::EDQUOT,
        number => number
            .parse::<i32>()
            .ok()
            .filter(|errno| *errno > 0)
            .ok_or_else(|| format!("unknown errno {number:?}"))?,
    };
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
        errno,
        path_contains: path_contains.to_string(),
        remaining,
        hits: 0,
    })
}

/// Removes every fault; file operations go back to the one atomic load.
pub fn clear() {
    let mut plan = lock_plan();
    plan.clear();
    ARMED.store(false, Ordering::Relaxed);
}

/// The plan as text, one fault per line: `<op> <errno> <path> remaining=<n|until-cleared>
/// hits=<n>`.
pub fn describe() -> String {
    lock_plan()
        .iter()
        .map(|fault| {
            let remaining = fault
                .remaining
                .map_or("until-cleared".to_string(), |n| n.to_string());
            format!(
                "{} {} {} remaining={remaining} hits={}\n",
                fault.op.name(),
                fault.errno,
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
        assert_eq!(fault.errno, libc::EIO);
        assert_eq!(fault.path_contains, "faulty-0/");
        assert_eq!(fault.remaining, Some(2));
        let fault = parse_fault("write 28 x").unwrap();
        assert_eq!((fault.errno, fault.remaining), (libc::ENOSPC, None));
        assert!(parse_fault("sync EIO").is_err());
        assert!(parse_fault("flush EIO x").is_err());
        assert!(parse_fault("sync EWHAT x").is_err());
        assert!(parse_fault("sync EIO x -1").is_err());
    }
}
