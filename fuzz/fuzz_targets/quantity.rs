//! Resource quantities (`500m`, `1Gi`, `1e3`): parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let _ = krust_api::quantity::parse(input);
});
