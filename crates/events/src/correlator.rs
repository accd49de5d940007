//! Upstream's event correlator (client-go's `EventCorrelator`), without the API calls: it
//! decides, for each event a component records, whether to write a new Event, to bump the
//! count of one already written, or to drop it.
//!
//! - **Aggregation**: events alike but for their message (same source, object, type and
//!   reason) are counted per 10-minute window; from the 10th distinct message on, they fold
//!   into one Event whose message reads `(combined from similar events): <latest message>`.
//! - **Deduplication**: an event identical to one already written bumps that Event's `count`
//!   (and its `lastTimestamp`, and its message for a combined one).
//! - **Spam filter**: each source and object has a token bucket of 25 events, refilled with one
//!   every 5 minutes; events beyond it are dropped.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Distinct messages before alike events are combined (upstream's `defaultAggregateMaxEvents`).
const AGGREGATE_MAX_EVENTS: usize = 10;
/// How long alike events count toward combining (`defaultAggregateIntervalInSeconds`).
const AGGREGATE_INTERVAL: Duration = Duration::from_secs(600);
/// Events a source may record about one object at once (`defaultSpamBurst`).
const SPAM_BURST: f64 = 25.0;
/// One more every 5 minutes (`defaultSpamQPS`).
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Entries each cache keeps before it starts afresh (upstream's LRU size).
const CAPACITY: usize = 4096;
/// The prefix of a combined event's message.
pub const COMBINED: &str = "(combined from similar events): ";

/// What identifies an event, as the correlator keys it.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub component: &'a str,
    pub host: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub api_version: &'a str,
    pub event_type: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
}

impl Facts<'_> {
    /// The source and the object: the spam filter's key.
    fn source_object(&self) -> String {
        [
            self.component,
            self.host,
            self.kind,
            self.namespace,
            self.name,
            self.uid,
            self.api_version,
        ]
        .join("\0")
    }

    /// Alike events: everything but the message.
    fn aggregate(&self) -> String {
        format!("{}\0{}\0{}", self.source_object(), self.event_type, self.reason)
    }

    /// This very event.
    fn exact(&self) -> String {
        format!("{}\0{}", self.aggregate(), self.message)
    }
}

/// An Event already written, that repeats update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub namespace: String,
    pub name: String,
    pub count: i32,
}

/// The correlator's decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The key to remember the written Event under ([`Correlator::written`]).
    pub key: String,
    /// The message to write (combined events say so).
    pub message: String,
    /// The Event to update, when this one repeats it.
    pub repeats: Option<Written>,
}

#[derive(Debug)]
struct Aggregate {
    messages: HashSet<String>,
    last: Instant,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The correlator's memory; one per event writer.
#[derive(Debug, Default)]
pub struct Correlator {
    aggregates: HashMap<String, Aggregate>,
    written: HashMap<String, Written>,
    buckets: HashMap<String, Bucket>,
}

impl Correlator {
    /// Decides what to do with an event recorded at `now`; `None` drops it (spam).
    pub fn correlate(&mut self, facts: &Facts<'_>, now: Instant) -> Option<Decision> {
        let (key, message) = self.aggregate(facts, now);
        if !self.allow(facts, now) {
            return None;
        }
        let repeats = self.written.get(&key).cloned();
        Some(Decision { key, message, repeats })
    }

    /// Remembers the Event written for a decision's key (a new one, or a repeat's new count).
    pub fn written(&mut self, key: String, written: Written) {
        if self.written.len() >= CAPACITY && !self.written.contains_key(&key) {
            self.written.clear();
        }
        self.written.insert(key, written);
    }

    /// The key and message an event is written under: its own, or its alike events' combined one.
    fn aggregate(&mut self, facts: &Facts<'_>, now: Instant) -> (String, String) {
        let key = facts.aggregate();
        if self.aggregates.len() >= CAPACITY && !self.aggregates.contains_key(&key) {
            self.aggregates.clear();
        }
        let record = self
            .aggregates
            .entry(key.clone())
            .or_insert_with(|| Aggregate { messages: HashSet::new(), last: now });
        if now.saturating_duration_since(record.last) > AGGREGATE_INTERVAL {
            record.messages.clear();
        }
        record.messages.insert(facts.message.to_owned());
        record.last = now;
        if record.messages.len() < AGGREGATE_MAX_EVENTS {
            return (facts.exact(), facts.message.to_owned());
        }
        // Keep the set at its bound: drop one message (any), as upstream does.
        if let Some(any) = record.messages.iter().next().cloned() {
            record.messages.remove(&any);
        }
        (key, format!("{COMBINED}{}", facts.message))
    }

    /// The spam filter: a token from the source and object's bucket, if one is left.
    fn allow(&mut self, facts: &Facts<'_>, now: Instant) -> bool {
        let key = facts.source_object();
        if self.buckets.len() >= CAPACITY && !self.buckets.contains_key(&key) {
            self.buckets.clear();
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket { tokens: SPAM_BURST, last: now });
        let refill =
            now.saturating_duration_since(bucket.last).as_secs_f64() / SPAM_REFILL.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(SPAM_BURST);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(name: &'a str, reason: &'a str, message: &'a str) -> Facts<'a> {
        Facts {
            component: "kubelet",
            host: "n1",
            kind: "Pod",
            namespace: "default",
            name,
            uid: "u1",
            api_version: "v1",
            event_type: "Warning",
            reason,
            message,
        }
    }

    /// Writes what the correlator decides, as the writer does; returns the written Event.
    fn record(c: &mut Correlator, f: &Facts<'_>, now: Instant) -> Option<(Written, String)> {
        let decision = c.correlate(f, now)?;
        let written = match decision.repeats {
            Some(mut w) => {
                w.count += 1;
                w
            }
            None => Written {
                namespace: f.namespace.into(),
                name: format!("{}.{}", f.name, c.written.len()),
                count: 1,
            },
        };
        c.written(decision.key, written.clone());
        Some((written, decision.message))
    }

    #[test]
    fn an_identical_event_bumps_the_count_of_the_one_written() {
        let mut c = Correlator::default();
        let now = Instant::now();
        let f = facts("p", "BackOff", "Back-off restarting failed container");
        let (first, _) = record(&mut c, &f, now).expect("written");
        let (second, message) = record(&mut c, &f, now).expect("written");
        assert_eq!(second.name, first.name);
        assert_eq!(second.count, 2);
        assert_eq!(message, "Back-off restarting failed container");
        // Another reason is another event.
        let (other, _) = record(&mut c, &facts("p", "Failed", "x"), now).expect("written");
        assert_ne!(other.name, first.name);
        assert_eq!(other.count, 1);
    }

    #[test]
    fn the_tenth_distinct_message_is_combined_and_later_ones_join_it() {
        let mut c = Correlator::default();
        let now = Instant::now();
        let messages: Vec<String> = (0..12).map(|i| format!("probe failed: {i}")).collect();
        let mut written = Vec::new();
        for m in &messages {
            written.push(record(&mut c, &facts("p", "Unhealthy", m), now).expect("written"));
        }
        for (w, m) in written.iter().take(9) {
            assert_eq!(w.count, 1);
            assert!(!m.starts_with(COMBINED), "{m}");
        }
        let (combined, message) = &written[9];
        assert_eq!(message, "(combined from similar events): probe failed: 9");
        assert_eq!(combined.count, 1);
        // The 11th and 12th update the combined event, with their own message.
        assert_eq!(written[10].0.name, combined.name);
        assert_eq!(written[10].0.count, 2);
        assert_eq!(written[11].0.count, 3);
        assert_eq!(written[11].1, "(combined from similar events): probe failed: 11");
    }

    #[test]
    fn alike_events_further_apart_than_ten_minutes_are_not_combined() {
        let mut c = Correlator::default();
        let start = Instant::now();
        for i in 0..9 {
            record(&mut c, &facts("p", "Unhealthy", &format!("m{i}")), start);
        }
        let later = start + AGGREGATE_INTERVAL + Duration::from_secs(1);
        let (_, message) = record(&mut c, &facts("p", "Unhealthy", "m9"), later).expect("written");
        assert_eq!(message, "m9", "the window started afresh");
    }

    #[test]
    fn a_source_gets_25_events_about_an_object_then_one_per_five_minutes() {
        let mut c = Correlator::default();
        let now = Instant::now();
        let reasons: Vec<String> = (0..30).map(|i| format!("Reason{i}")).collect();
        let allowed =
            reasons.iter().filter(|r| record(&mut c, &facts("p", r, "m"), now).is_some()).count();
        assert_eq!(allowed, 25);
        // Another object has its own bucket.
        assert!(record(&mut c, &facts("q", "Reason0", "m"), now).is_some());
        // Five minutes later one more is allowed, and only one.
        let later = now + SPAM_REFILL;
        assert!(record(&mut c, &facts("p", "Late1", "m"), later).is_some());
        assert!(record(&mut c, &facts("p", "Late2", "m"), later).is_none());
    }
}
