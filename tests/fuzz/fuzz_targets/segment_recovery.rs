//! cargo-fuzz target: see `corelog::fuzzing::segment_recovery` for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corelog::fuzzing::segment_recovery(data));
