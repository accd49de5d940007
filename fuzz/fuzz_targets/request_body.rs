//! Request bodies as the API server decodes them: protobuf (the `k8s\0` envelope and every
//! built-in message), JSON and YAML. Never a panic; malformed input is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = krust_apiserver::decode_protobuf_object(input, Some(("v1", "Pod")));
    let _ = krust_apiserver::decode_protobuf_object(input, None);
    let _ = serde_json::from_slice::<serde_json::Value>(input);
    let _ = serde_saphyr::from_slice::<serde_json::Value>(input);
});
