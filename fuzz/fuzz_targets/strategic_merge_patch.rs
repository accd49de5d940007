//! Strategic merge patch: any JSON object patched by any JSON patch never panics (errors are
//! fine: they become 422/400 answers).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    // Two JSON documents separated by a NUL byte: the object, then the patch.
    let mut parts = input.splitn(2, |b| *b == 0);
    let (Some(original), Some(patch)) = (parts.next(), parts.next()) else { return };
    let (Ok(mut original), Ok(patch)) =
        (serde_json::from_slice::<Value>(original), serde_json::from_slice::<Value>(patch))
    else {
        return;
    };
    let _ = krust_api::strategic::apply(&mut original, &patch);
});
