//! Static pods (upstream's file pod source and mirror pods): every manifest in
//! `--pod-manifest-path` (YAML or JSON, one Pod each) runs on this node without the scheduler,
//! as `<name>-<node>`; the API shows it as a mirror pod (annotation `kubernetes.io/config.mirror`,
//! owned by the Node) that the kubelet re-creates when it is deleted, replaces when the manifest
//! changes, and removes with the manifest. kubeadm's control plane runs this way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

/// One manifest, ready to be mirrored.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticPod {
    pub file: PathBuf,
    pub pod: Pod,
    pub hash: String,
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The mirror pod for `manifest` on `node`: upstream's naming, annotations and owner.
pub fn mirror(manifest: &Pod, raw: &[u8], node: &Node) -> StaticPod {
    let node_name = node.name_any();
    let hash = format!("{:016x}", fnv64(&[raw, node_name.as_bytes()].concat()));
    let mut pod = manifest.clone();
    let name = format!("{}-{node_name}", manifest.name_any());
    pod.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name),
        namespace: Some(manifest.namespace().unwrap_or_else(|| "default".into())),
        labels: manifest.metadata.labels.clone(),
        annotations: Some({
            let mut a: BTreeMap<String, String> =
                manifest.metadata.annotations.clone().unwrap_or_default();
            a.insert(MIRROR_ANNOTATION.into(), hash.clone());
            a.insert(HASH_ANNOTATION.into(), hash.clone());
            a.insert(SOURCE_ANNOTATION.into(), "file".into());
            a
        }),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: node_name.clone(),
            uid: node.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        ..Default::default()
    };
    let spec = pod.spec.get_or_insert_default();
    spec.node_name = Some(node_name);
    pod.status = None;
    StaticPod { file: PathBuf::new(), pod, hash }
}

/// The manifests in `dir`, skipping (and logging) files that are not a Pod.
pub fn read_manifests(dir: &Path) -> Vec<(PathBuf, Pod, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if !matches!(ext, "yaml" | "yml" | "json")
            || file.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let Ok(raw) = std::fs::read(&file) else { continue };
        let parsed: Result<Pod, String> = if ext == "json" {
            serde_json::from_slice(&raw).map_err(|e| e.to_string())
        } else {
            std::str::from_utf8(&raw)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_saphyr::from_str(text).map_err(|e| e.to_string()))
        };
        match parsed {
            Ok(pod) if pod.metadata.name.as_deref().is_some_and(|n| !n.is_empty()) => {
                out.push((file, pod, raw))
            }
            Ok(_) => tracing::warn!(file = %file.display(), "static pod manifest without a name"),
            Err(e) => tracing::warn!(file = %file.display(), error = %e, "not a pod manifest"),
        }
    }
    out
}

/// Keeps the mirror pods of `dir`'s manifests in the API until `stop`, checking every `period`.
pub async fn run(
    client: kube::Client,
    node_name: String,
    dir: PathBuf,
    period: Duration,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let node = match nodes.get_opt(&node_name).await {
            Ok(Some(node)) => node,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the node for static pods");
                continue;
            }
        };
        if let Err(e) = sync(&client, &node, &dir).await {
            tracing::info!(error = %e, "static pods: sync failed; retrying");
        }
    }
}

async fn sync(client: &kube::Client, node: &Node, dir: &Path) -> Result<(), kube::Error> {
    let wanted: Vec<StaticPod> = read_manifests(dir)
        .into_iter()
        .map(|(file, pod, raw)| StaticPod { file, ..mirror(&pod, &raw, node) })
        .collect();
    let all: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", node.name_any());
    let existing = all.list(&ListParams::default().fields(&selector)).await?;
    let mut mirrors: HashMap<(String, String), Pod> = existing
        .items
        .into_iter()
        .filter(|p| p.annotations().contains_key(MIRROR_ANNOTATION))
        .map(|p| ((p.namespace().unwrap_or_default(), p.name_any()), p))
        .collect();
    for s in &wanted {
        let key = (s.pod.namespace().unwrap_or_default(), s.pod.name_any());
        let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
        match mirrors.remove(&key) {
            Some(current) if current.annotations().get(MIRROR_ANNOTATION) == Some(&s.hash) => {
                if current.metadata.deletion_timestamp.is_some() {
                    // Deleted by someone: it will be re-created once gone.
                    continue;
                }
            }
            Some(_) => {
                // The manifest changed: replace the pod.
                api.delete(&key.1, &DeleteParams::default()).await?;
            }
            None => {
                if let Err(e) = api.create(&PostParams::default(), &s.pod).await
                    && !matches!(&e, kube::Error::Api(s) if s.code == 409)
                {
                    tracing::warn!(file = %s.file.display(), error = %e, "cannot create the mirror pod");
                }
            }
        }
    }
    // Mirrors whose manifest is gone.
    for ((ns, name), pod) in mirrors {
        if pod.metadata.deletion_timestamp.is_none() {
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            api.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_named_after_the_node_and_owned_by_it() {
        let manifest: Pod = serde_saphyr::from_str(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - name: etcd\n    image: etcd\n",
        )
        .expect("manifest");
        let node = Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("cp1".into()),
                uid: Some("node-uid".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let m = mirror(&manifest, b"raw", &node);
        assert_eq!(m.pod.name_any(), "etcd-cp1");
        assert_eq!(m.pod.namespace().as_deref(), Some("kube-system"));
        assert_eq!(m.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("cp1"));
        assert_eq!(m.pod.annotations().get(MIRROR_ANNOTATION), Some(&m.hash));
        let owner = &m.pod.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "node-uid"));
        // Another manifest, another hash.
        assert_ne!(mirror(&manifest, b"other", &node).hash, m.hash);
    }
}
