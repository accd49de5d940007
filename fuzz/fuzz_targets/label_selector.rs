//! Label selectors from `?labelSelector=`: parsing never panics, and a parsed selector prints
//! back to a form that parses to the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|input: &str| {
    let Ok(selector) = krust_api::labels::Selector::parse(input) else { return };
    let mut labels = Map::new();
    labels.insert("app".into(), json!("web"));
    labels.insert("tier".into(), Value::String(input.chars().take(63).collect()));
    let verdict = selector.matches(&labels);
    let printed = selector.to_string();
    let reparsed = krust_api::labels::Selector::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(reparsed.matches(&labels), verdict, "{input:?} vs {printed:?}");
});
