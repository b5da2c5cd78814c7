//! cargo-fuzz target: see `corelog::fuzzing::sasl_exchange` for the input format and the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corelog::fuzzing::sasl_exchange(data));
