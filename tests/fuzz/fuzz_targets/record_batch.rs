//! cargo-fuzz target: see `corelog::fuzzing::record_batch_input` for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corelog::fuzzing::record_batch_input(data));
