//! `/version`: the Kubernetes version krust serves. kubectl's dispatcher picks its client
//! version from `minor`, and clients read `gitVersion` as semver.

use serde::Serialize;

pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "35";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub major: String,
    pub minor: String,
    pub emulation_major: String,
    pub emulation_minor: String,
    pub min_compatibility_major: String,
    pub min_compatibility_minor: String,
    pub git_version: String,
    pub git_commit: String,
    pub git_tree_state: String,
    pub build_date: String,
    pub go_version: String,
    pub compiler: String,
    pub platform: String,
}

impl VersionInfo {
    pub fn current() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Self {
            major: KUBERNETES_MAJOR.into(),
            minor: KUBERNETES_MINOR.into(),
            emulation_major: KUBERNETES_MAJOR.into(),
            emulation_minor: KUBERNETES_MINOR.into(),
            min_compatibility_major: KUBERNETES_MAJOR.into(),
            min_compatibility_minor: "34".into(),
            git_version: format!(
                "v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+krust.{}",
                env!("CARGO_PKG_VERSION")
            ),
            git_commit: option_env!("KRUST_GIT_COMMIT").unwrap_or("unknown").into(),
            git_tree_state: "clean".into(),
            build_date: option_env!("KRUST_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z").into(),
            // Clients require the field; krust is not built with Go.
            go_version: "none".into(),
            compiler: "rustc".into(),
            platform: format!("{}/{arch}", std::env::consts::OS),
        }
    }
}
