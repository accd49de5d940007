//! What the API server serves, as the garbage collector and the namespace controller need it:
//! every resource (custom ones included) at its group's preferred version, with its scope and
//! verbs, found through discovery and kept current (upstream's `RESTMapper` + deletable
//! resources). Kinds are looked up by group and kind, whatever version an owner reference
//! names: one object is the same object in every version its group serves.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use kube::api::ApiResource;
use kube::discovery::{ApiCapabilities, Discovery, Scope};

use crate::Result;

/// One served resource.
#[derive(Debug, Clone)]
pub struct Served {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Served {
    fn new(resource: ApiResource, caps: &ApiCapabilities) -> Self {
        Self {
            resource,
            namespaced: matches!(caps.scope, Scope::Namespaced),
            verbs: caps.operations.clone(),
        }
    }

    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.verbs.iter().any(|have| have == v))
    }

    /// `group/resource` (`resource` for the core group), as upstream names resources in
    /// messages.
    pub fn group_resource(&self) -> String {
        match self.resource.group.as_str() {
            "" => self.resource.plural.clone(),
            group => format!("{}.{group}", self.resource.plural),
        }
    }
}

/// The resources last discovered.
#[derive(Debug, Default)]
pub struct Resources {
    by_kind: RwLock<HashMap<(String, String), Served>>,
}

/// The group of an `apiVersion` (`apps/v1` → `apps`, `v1` → the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

impl Resources {
    /// Discovers what the API server serves now (aggregated discovery, or one request per
    /// group version from servers without it).
    pub async fn refresh(&self, client: &kube::Client) -> Result<()> {
        let discovery = match Discovery::new(client.clone()).run_aggregated().await {
            Ok(d) => d,
            Err(_) => Discovery::new(client.clone()).run().await?,
        };
        let mut by_kind = HashMap::new();
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                let key = (resource.group.clone(), resource.kind.clone());
                by_kind.insert(key, Served::new(resource, &caps));
            }
        }
        *self.by_kind.write().unwrap_or_else(PoisonError::into_inner) = by_kind;
        Ok(())
    }

    /// Every resource, in a stable order (by group, then resource).
    pub fn all(&self) -> Vec<Served> {
        let by_kind = self.by_kind.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<Served> = by_kind.values().cloned().collect();
        all.sort_by(|a, b| {
            (&a.resource.group, &a.resource.plural).cmp(&(&b.resource.group, &b.resource.plural))
        });
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_api_versions() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("stable.example.com/v1beta1"), "stable.example.com");
    }
}
