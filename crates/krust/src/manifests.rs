//! Auto-deployed manifests (as k3s's `server/manifests`): every `*.yaml`, `*.yml` or
//! `*.json` file of `<data-dir>/manifests` is applied to the cluster with server-side apply
//! (field manager `krust-deploy`) when the server starts and whenever the file changes. A
//! file that fails is retried; other files go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const FIELD_MANAGER: &str = "krust-deploy";
const PERIOD: Duration = Duration::from_secs(10);

/// Applies the directory's manifests now and on every change until `stop`. The API client
/// (from `kubeconfig`) is made when there is a first file to apply: a server without manifests
/// never carries one.
pub async fn run(kubeconfig: PathBuf, dir: PathBuf, stop: CancellationToken) {
    let mut applied: HashMap<PathBuf, SystemTime> = HashMap::new();
    let mut client: Option<kube::Client> = None;
    loop {
        for (path, modified) in files(&dir) {
            if applied.get(&path) == Some(&modified) {
                continue;
            }
            let client = match &client {
                Some(client) => client,
                None => match crate::server::kube_client(&kubeconfig, FIELD_MANAGER).await {
                    Ok(made) => client.insert(made),
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "no API client for the manifests");
                        break;
                    }
                },
            };
            match apply_file(client, &path).await {
                Ok(count) => {
                    tracing::info!(file = %path.display(), objects = count, "manifest applied");
                    applied.insert(path, modified);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = format!("{e:#}"), "cannot apply manifest; retrying");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<(PathBuf, SystemTime)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .filter_map(|p| {
            let modified = std::fs::metadata(&p).and_then(|m| m.modified()).ok()?;
            Some((p, modified))
        })
        .collect();
    found.sort();
    found
}

/// Applies every object of one file; returns how many.
async fn apply_file(client: &kube::Client, path: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text)
        .with_context(|| format!("{} is not YAML", path.display()))?;
    let objects: Vec<Value> = documents
        .into_iter()
        .filter(|d| !d.is_null())
        .flat_map(|d| match d.get("kind").and_then(Value::as_str) {
            // A List's items are the objects.
            Some(k) if k.ends_with("List") => d["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![d],
        })
        .collect();
    for object in &objects {
        apply(client, object).await?;
    }
    Ok(objects.len())
}

async fn apply(client: &kube::Client, object: &Value) -> anyhow::Result<()> {
    let api_version = object["apiVersion"].as_str().context("an object has no apiVersion")?;
    let kind = object["kind"].as_str().context("an object has no kind")?;
    let name = object["metadata"]["name"].as_str().context("an object has no metadata.name")?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("the cluster serves no {kind} in {api_version}"))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
            Api::namespaced_with(client.clone(), namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .with_context(|| format!("cannot apply {kind} {name}"))?;
    Ok(())
}
