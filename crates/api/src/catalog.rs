//! The resource catalog: every resource the API server serves, with what discovery needs
//! (group, version, kind, plural, singular, scope, verbs, short names, categories,
//! subresources) and where objects live in the store. The API server is a generic machine
//! driven by this table; a kind-specific branch elsewhere needs a reason.

use std::collections::HashSet;

/// Verbs of an ordinary read-write resource.
pub const ALL_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// One subresource of a resource, as discovery lists it (`pods/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    /// The path segment: `status`, `scale`, `binding`, `eviction`, `log`, ...
    pub name: &'static str,
    /// Kind of the object the subresource takes or returns (`Scale`, `Binding`, `Eviction`).
    pub kind: &'static str,
    /// Group and version of that kind when they differ from the parent's (`policy`, `v1` for
    /// `pods/eviction`; `autoscaling`, `v1` for `deployments/scale`).
    pub group: Option<&'static str>,
    pub version: Option<&'static str>,
    pub verbs: &'static [&'static str],
}

/// One resource in one group-version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment: `pods`, `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The group and version objects are stored in when they are not this one's (the legacy
    /// `extensions/v1beta1` forms are stored as `apps/v1` and `networking.k8s.io/v1`; see
    /// [`crate::convert`]).
    pub storage: Option<(&'static str, &'static str)>,
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `pods` or `deployments.apps`: how upstream names a resource in messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The store prefix of this resource's objects: `/registry/<resource>/` for the core
    /// group, `/registry/<group>/<resource>/` otherwise. Every served version of a resource
    /// shares one prefix (objects are kept in one storage version).
    pub fn store_prefix(&self) -> String {
        let group = self.storage.map_or(self.group, |(group, _)| group);
        if group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{group}/{}/", self.plural)
        }
    }

    /// The store key of one object.
    pub fn store_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.store_prefix()),
            _ => format!("{}{name}", self.store_prefix()),
        }
    }

    /// The store prefix of one namespace's objects (or all, for `None`).
    pub fn store_namespace_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.store_prefix()),
            _ => self.store_prefix(),
        }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// Every resource served, in a stable order (discovery lists groups in this order).
#[derive(Debug, Clone)]
pub struct Catalog {
    resources: Vec<Resource>,
}

impl Catalog {
    /// The built-in resources of Kubernetes 1.35.
    pub fn builtin() -> Self {
        Self { resources: BUILTIN.clone() }
    }

    /// The built-in resources followed by `custom` ones (those of CustomResourceDefinitions),
    /// which discovery lists after every built-in group, as upstream does.
    pub fn with_custom(custom: impl IntoIterator<Item = Resource>) -> Self {
        let mut resources = BUILTIN.clone();
        resources.extend(custom);
        Self { resources }
    }

    /// A built-in resource, by [`Catalog::lookup`]'s key.
    pub fn builtin_lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        BUILTIN.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The built-in resources, without a copy.
    pub fn builtin_resources() -> &'static [Resource] {
        &BUILTIN
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// The resource served at `/apis/<group>/<version>/<plural>` (`/api/v1/<plural>` for core).
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of a kind in a group-version.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// Groups in discovery order, each with its versions (preferred first).
    pub fn groups(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for r in &self.resources {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
                Some(_) => {}
                None => out.push((r.group, vec![r.version])),
            }
        }
        out
    }

    /// The preferred (first listed) version of a group, `None` for a group not served.
    pub fn preferred_version(&self, group: &str) -> Option<&'static str> {
        self.resources.iter().find(|r| r.group == group).map(|r| r.version)
    }

    /// Resolves what a user types for a resource, as kubectl does: a plural, singular or
    /// short name, or a kind (all compared ignoring ASCII case), optionally qualified by a group
    /// (`deployments.apps`, `deploy.apps`, `ingresses.networking.k8s.io`). The first match in
    /// catalog order wins, which is the preferred version of the first group that has it.
    pub fn find(&self, name: &str) -> Option<&Resource> {
        self.find_all(name).into_iter().next()
    }

    /// Every resource [`Catalog::find`] could mean, in catalog order.
    pub fn find_all(&self, name: &str) -> Vec<&Resource> {
        let matches = |r: &Resource, n: &str| {
            r.plural.eq_ignore_ascii_case(n)
                || r.singular.eq_ignore_ascii_case(n)
                || r.short_names.iter().any(|s| s.eq_ignore_ascii_case(n))
                || r.kind.eq_ignore_ascii_case(n)
        };
        let unqualified: Vec<&Resource> =
            self.resources.iter().filter(|r| matches(r, name)).collect();
        if !unqualified.is_empty() {
            return unqualified;
        }
        let Some((base, group)) = name.split_once('.') else {
            return Vec::new();
        };
        self.resources
            .iter()
            .filter(|r| r.group.eq_ignore_ascii_case(group) && matches(r, base))
            .collect()
    }

    /// Resources of one group-version, in catalog order.
    pub fn group_version(&self, group: &str, version: &str) -> Vec<&Resource> {
        self.resources.iter().filter(|r| r.group == group && r.version == version).collect()
    }
}

static BUILTIN: std::sync::LazyLock<Vec<Resource>> = std::sync::LazyLock::new(builtin::resources);

/// Strings interned for the `&'static str` fields of resources made at run time (from
/// CustomResourceDefinitions). Each distinct string is kept once for the life of the process,
/// so memory grows with the number of distinct names ever served, not with updates.
static INTERNED: std::sync::Mutex<Option<HashSet<&'static str>>> = std::sync::Mutex::new(None);
static INTERNED_LISTS: std::sync::Mutex<Option<HashSet<&'static [&'static str]>>> =
    std::sync::Mutex::new(None);

/// `s` as a `&'static str`, shared with every earlier call for an equal string.
pub fn intern(s: &str) -> &'static str {
    let mut set = INTERNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let set = set.get_or_insert_with(HashSet::new);
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A list of strings as a `&'static` slice, shared with every earlier call for an equal list.
pub fn intern_list<S: AsRef<str>>(items: &[S]) -> &'static [&'static str] {
    let interned: Vec<&'static str> = items.iter().map(|s| intern(s.as_ref())).collect();
    let mut set = INTERNED_LISTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let set = set.get_or_insert_with(HashSet::new);
    if let Some(found) = set.get(interned.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(interned.into_boxed_slice());
    set.insert(leaked);
    leaked
}

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CUSTOM_STATUS: Subresource =
    Subresource { name: "status", kind: "", group: None, version: None, verbs: GET_PATCH_UPDATE };
const CUSTOM_SCALE: Subresource = Subresource {
    name: "scale",
    kind: "Scale",
    group: Some("autoscaling"),
    version: Some("v1"),
    verbs: GET_PATCH_UPDATE,
};

/// The subresources a custom resource may have: `status` (whose kind is the resource's own,
/// filled in by discovery) and `scale` (an `autoscaling/v1` Scale).
pub fn custom_subresources(status: bool, scale: bool) -> &'static [Subresource] {
    match (status, scale) {
        (false, false) => &[],
        (true, false) => &[CUSTOM_STATUS],
        (false, true) => &[CUSTOM_SCALE],
        (true, true) => &[CUSTOM_SCALE, CUSTOM_STATUS],
    }
}

mod builtin;

#[cfg(test)]
mod tests;
