//! Query parameters of resource requests, read leniently like upstream (unknown ones ignored)
//! but with upstream's errors for malformed values.

use crate::status::Status;

#[derive(Debug, Default, Clone)]
pub struct Params {
    pub watch: bool,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub limit: Option<u64>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
    pub send_initial_events: Option<bool>,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force` of an apply patch: take the fields other managers hold.
    pub force: bool,
    pub field_validation: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub orphan_dependents: Option<bool>,
    /// The query as sent (for subresources with options of their own, such as `pods/log`).
    pub raw_query: Option<String>,
}

fn boolean(name: &str, value: &str) -> Result<bool, Status> {
    match value {
        "" | "true" | "1" | "True" | "TRUE" | "t" | "T" => Ok(true),
        "false" | "0" | "False" | "FALSE" | "f" | "F" => Ok(false),
        _ => Err(Status::bad_request(format!("invalid boolean value {value:?} for {name}"))),
    }
}

fn integer<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, Status> {
    value.parse().map_err(|_| Status::bad_request(format!("invalid value {value:?} for {name}")))
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Self, Status> {
        let mut p = Params::default();
        let Some(query) = query else { return Ok(p) };
        p.raw_query = Some(query.to_owned());
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.as_ref();
            match key.as_ref() {
                "watch" => p.watch = boolean("watch", value)?,
                "labelSelector" => p.label_selector = Some(value.to_owned()),
                "fieldSelector" => p.field_selector = Some(value.to_owned()),
                "limit" => {
                    let limit: i64 = integer("limit", value)?;
                    p.limit = (limit > 0).then_some(limit as u64);
                }
                "continue" if !value.is_empty() => p.continue_token = Some(value.to_owned()),
                "resourceVersion" if !value.is_empty() => {
                    p.resource_version = Some(value.to_owned())
                }
                "resourceVersionMatch" if !value.is_empty() => {
                    p.resource_version_match = Some(value.to_owned());
                }
                "timeoutSeconds" => p.timeout_seconds = Some(integer("timeoutSeconds", value)?),
                "allowWatchBookmarks" => {
                    p.allow_watch_bookmarks = boolean("allowWatchBookmarks", value)?
                }
                "sendInitialEvents" => {
                    p.send_initial_events = Some(boolean("sendInitialEvents", value)?)
                }
                "dryRun" => {
                    if value != "All" {
                        return Err(Status::bad_request(format!(
                            "Invalid dry run value: {value:?} (only \"All\" is supported)"
                        )));
                    }
                    p.dry_run = true;
                }
                "fieldManager" => p.field_manager = Some(value.to_owned()),
                "force" => p.force = boolean("force", value)?,
                "fieldValidation" => {
                    if !matches!(value, "" | "Strict" | "Warn" | "Ignore") {
                        return Err(Status::bad_request(format!(
                            "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {value:?}"
                        )));
                    }
                    p.field_validation = Some(value.to_owned());
                }
                "propagationPolicy" => p.propagation_policy = Some(value.to_owned()),
                "gracePeriodSeconds" => {
                    p.grace_period_seconds = Some(integer("gracePeriodSeconds", value)?)
                }
                "orphanDependents" => {
                    p.orphan_dependents = Some(boolean("orphanDependents", value)?)
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubectl_queries() {
        let p =
            Params::parse(Some("limit=500&labelSelector=app%3Dweb&watch=true&resourceVersion=12"))
                .expect("parses");
        assert_eq!(p.limit, Some(500));
        assert_eq!(p.label_selector.as_deref(), Some("app=web"));
        assert!(p.watch);
        assert_eq!(p.resource_version.as_deref(), Some("12"));
        assert!(Params::parse(Some("dryRun=Maybe")).is_err());
        assert!(Params::parse(Some("limit=x")).is_err());
    }
}
