//! cargo-fuzz target: see `corelog::fuzzing::request_body` for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corelog::fuzzing::request_body(data));
