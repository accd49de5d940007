//! Expectations (client-go's `ControllerExpectations` / `UIDTrackingControllerExpectations`):
//! what a controller is still waiting to see in its caches after its own creates and deletes,
//! so that it never creates or deletes twice while the watch catches up.
//!
//! A controller records how many creations and which deletions it asked for before it issues
//! them; its informer handlers mark them observed; it acts on a key again only once every
//! expectation is observed, or after [`EXPECTATIONS_TIMEOUT`] (a lost watch event must not
//! stall it forever).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::ObjectKey;

/// Upstream's `ExpectationsTimeout`.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    adds: i64,
    /// The keys of the objects whose deletion is still to be observed.
    deletes: HashSet<ObjectKey>,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct Expectations {
    by_controller: Mutex<HashMap<ObjectKey, Expected>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<ObjectKey, Expected>) -> R) -> R {
        f(&mut self.by_controller.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether the controller `key` may act: it expects nothing, everything it expected was
    /// observed, or its expectations are older than [`EXPECTATIONS_TIMEOUT`].
    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        self.with(|map| match map.get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > EXPECTATIONS_TIMEOUT
            }
        })
    }

    /// Replaces `key`'s expectations with `adds` creations.
    pub fn expect_creations(&self, key: &ObjectKey, adds: usize) {
        self.with(|map| {
            map.insert(
                key.clone(),
                Expected {
                    adds: i64::try_from(adds).unwrap_or(i64::MAX),
                    deletes: HashSet::new(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// Replaces `key`'s expectations with the deletion of `objects`.
    pub fn expect_deletions(&self, key: &ObjectKey, objects: impl IntoIterator<Item = ObjectKey>) {
        self.with(|map| {
            map.insert(
                key.clone(),
                Expected { adds: 0, deletes: objects.into_iter().collect(), since: Instant::now() },
            );
        });
    }

    /// One creation seen (or one that will never happen: the create failed).
    pub fn creation_observed(&self, key: &ObjectKey) {
        self.with(|map| {
            if let Some(e) = map.get_mut(key) {
                e.adds -= 1;
            }
        });
    }

    /// The deletion of `object` seen (or it will never happen: the delete failed).
    pub fn deletion_observed(&self, key: &ObjectKey, object: &ObjectKey) {
        self.with(|map| {
            if let Some(e) = map.get_mut(key) {
                e.deletes.remove(object);
            }
        });
    }

    /// Forgets `key` (the controller object is gone).
    pub fn delete(&self, key: &ObjectKey) {
        self.with(|map| {
            map.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_create_and_delete_is_observed() {
        let e = Expectations::new();
        let rs = ObjectKey::namespaced("ns", "rs");
        assert!(e.satisfied(&rs));
        e.expect_creations(&rs, 2);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        assert!(e.satisfied(&rs));

        let (a, b) = (ObjectKey::namespaced("ns", "a"), ObjectKey::namespaced("ns", "b"));
        e.expect_deletions(&rs, [a.clone(), b.clone()]);
        e.deletion_observed(&rs, &a);
        // The same deletion seen twice counts once.
        e.deletion_observed(&rs, &a);
        assert!(!e.satisfied(&rs));
        e.deletion_observed(&rs, &b);
        assert!(e.satisfied(&rs));
        e.delete(&rs);
        assert!(e.satisfied(&rs));
    }
}
