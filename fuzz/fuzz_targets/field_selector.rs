//! Field selectors from `?fieldSelector=`: parsing and the per-kind check never panic, and
//! matching works on any object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|input: &str| {
    let Ok(selector) = krust_api::fields::Selector::parse(input) else { return };
    for (group, kind) in [("", "Pod"), ("", "Event"), ("", "Node"), ("batch", "Job"), ("apps", "Deployment")] {
        if let Ok(checked) = selector.for_kind(group, kind) {
            let object = json!({"metadata": {"name": input, "namespace": "default"},
                                "spec": {"nodeName": input}, "status": {"phase": "Running"}});
            let _ = checked.matches_object(group, kind, &object);
        }
    }
});
