//! What a request asks for, read from its method, path and query the way upstream's
//! `RequestInfoFactory` reads them: API group and version, namespace, resource, name,
//! subresource and the Kubernetes verb.

use axum::http::Method;

/// A request for a resource (everything under `/api/v1` and `/apis/<group>/<version>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// What follows `proxy/` (`nodes/<name>/proxy/stats/summary` → `stats/summary`).
    pub subpath: Option<String>,
    pub verb: Verb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// How a path under the API prefixes reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api` or `/apis`.
    Root {
        legacy: bool,
    },
    /// `/apis/<group>`.
    Group {
        group: String,
    },
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(ResourceRequest),
}

/// Subresources of a namespace object, which must not be read as a resource inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses `path` (without query) for `method`; `watch` is the `watch` query parameter.
/// `None` for paths outside `/api` and `/apis`.
pub fn parse(method: &Method, path: &str, watch_param: bool) -> Option<ApiPath> {
    let mut parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version) = match parts.first().copied() {
        Some("api") if parts.len() == 1 => return Some(ApiPath::Root { legacy: true }),
        Some("apis") if parts.len() == 1 => return Some(ApiPath::Root { legacy: false }),
        Some("api") => {
            let version = parts[1].to_owned();
            parts.drain(..2);
            (String::new(), version)
        }
        Some("apis") if parts.len() == 2 => {
            return Some(ApiPath::Group { group: parts[1].to_owned() });
        }
        Some("apis") => {
            let gv = (parts[1].to_owned(), parts[2].to_owned());
            parts.drain(..3);
            gv
        }
        _ => return None,
    };
    if parts.is_empty() || parts == [""] {
        return Some(ApiPath::GroupVersion { group, version });
    }
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }

    // The deprecated `/api/v1/watch/...` form.
    let mut watch = watch_param;
    if parts[0] == "watch" {
        watch = true;
        parts.remove(0);
        if parts.is_empty() {
            return None;
        }
    }

    let mut namespace = None;
    if parts[0] == "namespaces" && parts.len() > 1 {
        namespace = Some(parts[1].to_owned());
        if parts.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&parts[2]) {
            parts.drain(..2);
        }
    }
    let mut subpath = None;
    if parts.len() > 3 && parts[2] == "proxy" {
        subpath = Some(parts[3..].join("/"));
        parts.truncate(3);
    }
    if parts.len() > 3 {
        return None;
    }
    let resource = parts[0].to_owned();
    let name = parts.get(1).map(|s| (*s).to_owned());
    let subresource = parts.get(2).map(|s| (*s).to_owned());

    let verb = match *method {
        Method::GET | Method::HEAD if watch => Verb::Watch,
        Method::GET | Method::HEAD if name.is_some() => Verb::Get,
        Method::GET | Method::HEAD => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE if name.is_some() => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => return None,
    };
    Some(ApiPath::Resource(ResourceRequest {
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
        subpath,
        verb,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str) -> ResourceRequest {
        match parse(&method, path, false) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_scoped() {
        let r = res(Method::GET, "/api/v1/namespaces/default/pods/p1");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.verb),
            ("pods", Some("p1"), Verb::Get)
        );

        let r = res(Method::GET, "/api/v1/namespaces/default");
        assert_eq!((r.resource.as_str(), r.name.as_deref()), ("namespaces", Some("default")));
        assert_eq!(r.namespace.as_deref(), Some("default"));

        let r = res(Method::PUT, "/api/v1/namespaces/ns1/finalize");
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("namespaces", Some("ns1"), Some("finalize"))
        );

        let r = res(Method::GET, "/apis/apps/v1/deployments");
        assert_eq!((r.group.as_str(), r.namespace, r.verb), ("apps", None, Verb::List));

        let r = res(Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/d/scale");
        assert_eq!(r.subresource.as_deref(), Some("scale"));
        assert_eq!(r.verb, Verb::Patch);
    }

    #[test]
    fn verbs() {
        assert_eq!(res(Method::DELETE, "/api/v1/namespaces/a/pods").verb, Verb::DeleteCollection);
        assert_eq!(res(Method::DELETE, "/api/v1/namespaces/a/pods/x").verb, Verb::Delete);
        assert_eq!(res(Method::POST, "/api/v1/namespaces/a/pods").verb, Verb::Create);
        assert_eq!(res(Method::GET, "/api/v1/watch/namespaces/a/pods").verb, Verb::Watch);
        match parse(&Method::GET, "/api/v1/pods", true) {
            Some(ApiPath::Resource(r)) => assert_eq!(r.verb, Verb::Watch),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn roots() {
        assert_eq!(parse(&Method::GET, "/api", false), Some(ApiPath::Root { legacy: true }));
        assert_eq!(
            parse(&Method::GET, "/apis/apps", false),
            Some(ApiPath::Group { group: "apps".into() })
        );
        assert_eq!(
            parse(&Method::GET, "/api/v1", false),
            Some(ApiPath::GroupVersion { group: String::new(), version: "v1".into() })
        );
        assert_eq!(parse(&Method::GET, "/healthz", false), None);
        assert_eq!(parse(&Method::GET, "/api/v1/a/b/c/d", false), None);
    }
}
