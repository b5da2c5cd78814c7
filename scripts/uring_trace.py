#!/usr/bin/env python3
"""Where a flush waits: io_uring operation latencies of a running broker, from kernel tracepoints.

    perf record -e io_uring:io_uring_submit_req,io_uring:io_uring_complete -p PID -- sleep 2
    perf script > trace.txt
    python3 scripts/uring_trace.py trace.txt

For every operation the broker submitted, the time from submission to the kernel posting its
completion, per opcode (WRITE_FIXED is a segment write, FSYNC an fdatasync, POLL_ADD a socket
waiting to be readable or writable). Then the gap the kernel cannot explain: from a segment
write's completion to the submission of the fdatasync that follows it, which is the time the
executor took to notice the completion, run the flush task and hand the sync to the kernel.
The tracepoints do not name the file, so with several partitions flushing a sync may follow
another partition's write: read the gap as an estimate. On a machine where both are small, a flush costs what the device costs.
"""

import argparse
import collections
import re
import sys

EVENT = re.compile(
    r"\s*(?P<comm>.+?)\s+(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<time>[\d.]+):\s+"
    r"io_uring:(?P<event>\w+): ring \S+, req (?P<req>\S+), user_data \S+?,"
    r"(?: opcode (?P<opcode>\w+))?"
)


def percentiles(values):
    values = sorted(values)
    n = len(values)
    pick = lambda q: values[min(n - 1, int(n * q))]
    return f"n={n:7} p50={pick(0.5):7.0f} p90={pick(0.9):7.0f} p99={pick(0.99):7.0f} " \
           f"mean={sum(values) / n:7.0f} us"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", help="output of `perf script` (see the module docstring)")
    args = parser.parse_args()
    submitted = {}
    latencies = collections.defaultdict(list)
    last_write_done = None
    gaps = []
    with open(args.trace) as trace:
        for line in trace:
            event = EVENT.match(line)
            if not event:
                continue
            at = float(event["time"])
            if event["event"] == "io_uring_submit_req":
                opcode = event["opcode"]
                submitted[event["req"]] = (at, opcode)
                if opcode == "FSYNC" and last_write_done is not None:
                    gaps.append((at - last_write_done) * 1e6)
                    last_write_done = None
            elif event["event"] == "io_uring_complete" and event["req"] in submitted:
                start, opcode = submitted.pop(event["req"])
                latencies[opcode].append((at - start) * 1e6)
                if opcode == "WRITE_FIXED":
                    last_write_done = at
    if not latencies:
        sys.exit("no io_uring submit/complete pairs in the trace")
    print("submission to completion, by opcode:")
    for opcode, values in sorted(latencies.items(), key=lambda item: str(item[0])):
        print(f"  {str(opcode):14} {percentiles(values)}")
    if gaps:
        print(f"segment write completed -> next fdatasync submitted: {percentiles(gaps)}")


if __name__ == "__main__":
    main()
