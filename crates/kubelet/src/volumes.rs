//! Pod volumes on a real node (upstream's volume manager and its in-tree plugins, reduced):
//! each volume is a directory under `<root>/pods/<uid>/volumes/<plugin>/<name>` that the
//! containers mount. emptyDir (on disk, or tmpfs for `medium: Memory`), hostPath (with its
//! type checks), and the projections — configMap, secret, downwardAPI, projected — written
//! the way upstream's atomic writer does: files in a timestamped directory, `..data` a symlink
//! to it swapped in one rename, the visible names symlinks through `..data`; so a reader never
//! sees half an update, and an update of the object reaches running containers.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath, Pod,
    Secret, SecretProjection, Volume, VolumeProjection,
};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::ResourceExt as _;

use crate::runtime::Mount;

/// Why a volume cannot be set up (the pod waits in `ContainerCreating` with an event).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// upstream's `FailedMount` message body.
    #[error("{0}")]
    Failed(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

type Result<T> = std::result::Result<T, VolumeError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { path: path.to_owned(), source }
}

/// The pod's volumes directory.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// One file a projection writes: relative path, content, mode.
type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// Sets up (or refreshes) every volume of `pod`; returns each volume's host path by name.
pub async fn setup(
    client: &kube::Client,
    root: &Path,
    pod: &Pod,
    host_ip: &str,
) -> Result<BTreeMap<String, PathBuf>> {
    let uid = pod.uid().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let base = pod_dir(root, &uid).join("volumes");
    let mut paths = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = setup_one(client, &base, &namespace, pod, volume, host_ip).await?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

async fn setup_one(
    client: &kube::Client,
    base: &Path,
    namespace: &str,
    pod: &Pod,
    volume: &Volume,
    host_ip: &str,
) -> Result<PathBuf> {
    let dir = |plugin: &str| base.join(plugin).join(&volume.name);
    if let Some(host) = &volume.host_path {
        return host_path(&host.path, host.type_.as_deref().unwrap_or(""));
    }
    if let Some(empty) = &volume.empty_dir {
        let path = dir("kubernetes.io~empty-dir");
        std::fs::create_dir_all(&path).map_err(io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
            .map_err(io(&path))?;
        if empty.medium.as_deref() == Some("Memory") && !is_mountpoint(&path) {
            let mut command = tokio::process::Command::new("mount");
            command.args(["-t", "tmpfs", "-o", "mode=0777"]);
            if let Some(limit) =
                empty.size_limit.as_ref().and_then(|q| krust_api::quantity::parse(&q.0).ok())
            {
                command.arg("-o").arg(format!("size={}", limit.value()));
            }
            let out = command.arg("tmpfs").arg(&path).output().await.map_err(io(&path))?;
            if !out.status.success() {
                return Err(VolumeError::Failed(format!(
                    "cannot mount tmpfs for emptyDir {}: {}",
                    volume.name,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        return Ok(path);
    }
    // Each projecting volume is a projected volume of one source.
    let one = |source: VolumeProjection| vec![source];
    let (plugin, sources, default_mode) = if let Some(cm) = &volume.config_map {
        let source = ConfigMapProjection {
            name: cm.name.clone(),
            items: cm.items.clone(),
            optional: cm.optional,
        };
        let source = VolumeProjection { config_map: Some(source), ..Default::default() };
        ("kubernetes.io~configmap", one(source), cm.default_mode)
    } else if let Some(secret) = &volume.secret {
        let source = SecretProjection {
            name: secret.secret_name.clone().unwrap_or_default(),
            items: secret.items.clone(),
            optional: secret.optional,
        };
        let source = VolumeProjection { secret: Some(source), ..Default::default() };
        ("kubernetes.io~secret", one(source), secret.default_mode)
    } else if let Some(downward) = &volume.downward_api {
        let source = DownwardAPIProjection { items: downward.items.clone() };
        let source = VolumeProjection { downward_api: Some(source), ..Default::default() };
        ("kubernetes.io~downward-api", one(source), downward.default_mode)
    } else if let Some(projected) = &volume.projected {
        (
            "kubernetes.io~projected",
            projected.sources.clone().unwrap_or_default(),
            projected.default_mode,
        )
    } else {
        return Err(VolumeError::Failed(format!(
            "volume {:?}: this kind of volume is not supported yet",
            volume.name
        )));
    };
    let mut files = Files::new();
    for source in &sources {
        files.extend(projection(client, namespace, pod, source, default_mode, host_ip).await?);
    }
    let path = dir(plugin);
    write_atomically(&path, &files)?;
    Ok(path)
}

async fn projection(
    client: &kube::Client,
    namespace: &str,
    pod: &Pod,
    source: &VolumeProjection,
    default_mode: Option<i32>,
    host_ip: &str,
) -> Result<Files> {
    // configMap and secret: a key→bytes map through `items`.
    let keyed = if let Some(cm) = &source.config_map {
        let data = config_map_data(client, namespace, &cm.name).await?;
        Some(("configmap", &cm.name, cm.items.as_deref(), cm.optional, data))
    } else if let Some(secret) = &source.secret {
        let data = secret_data(client, namespace, &secret.name).await?;
        Some(("secret", &secret.name, secret.items.as_deref(), secret.optional, data))
    } else {
        None
    };
    if let Some((kind, name, items, optional, data)) = keyed {
        return match data {
            Some(data) => select(kind, name, data, items, default_mode),
            None if optional == Some(true) => Ok(Files::new()),
            None => Err(VolumeError::Failed(format!("{kind} \"{name}\" not found"))),
        };
    }
    if let Some(downward) = &source.downward_api {
        return downward_files(
            pod,
            downward.items.as_deref().unwrap_or_default(),
            default_mode,
            host_ip,
        );
    }
    if source.service_account_token.is_some() {
        return Err(VolumeError::Failed(
            "serviceAccountToken projections are not supported yet".into(),
        ));
    }
    Ok(Files::new())
}

fn mode(item: Option<i32>, default: Option<i32>) -> u32 {
    u32::try_from(item.or(default).unwrap_or(0o644)).unwrap_or(0o644)
}

/// `data` filtered through `items` (all keys when none), as files.
fn select(
    kind: &str,
    name: &str,
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<Files> {
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, (v, mode(None, default_mode)))).collect()),
        Some(items) => items
            .iter()
            .map(|item| {
                let value = data.get(&item.key).cloned().ok_or_else(|| {
                    VolumeError::Failed(match kind {
                        "secret" => format!(
                            "references non-existent secret key: {} (secret {name})",
                            item.key
                        ),
                        _ => format!("configmap references non-existent config key: {}", item.key),
                    })
                })?;
                Ok((item.path.clone(), (value, mode(item.mode, default_mode))))
            })
            .collect(),
    }
}

/// A ConfigMap's data and binaryData, if it exists.
async fn config_map_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| VolumeError::Failed(e.to_string()))?;
    Ok(found.map(|cm| {
        let mut data: BTreeMap<String, Vec<u8>> =
            cm.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        data.extend(cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
        data
    }))
}

/// A Secret's data (and stringData), if it exists.
async fn secret_data(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.map_err(|e| VolumeError::Failed(e.to_string()))?;
    Ok(found.map(|secret| {
        let mut data: BTreeMap<String, Vec<u8>> =
            secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        data.extend(
            secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())),
        );
        data
    }))
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    host_ip: &str,
) -> Result<Files> {
    items
        .iter()
        .map(|item| {
            let value = if let Some(field) = &item.field_ref {
                crate::env::pod_field(pod, &field.field_path, host_ip)
                    .map_err(VolumeError::Failed)?
            } else if let Some(resource) = &item.resource_field_ref {
                crate::env::resource_field(pod, resource, None).map_err(VolumeError::Failed)?
            } else {
                String::new()
            };
            Ok((item.path.clone(), (value.into_bytes(), mode(item.mode, default_mode))))
        })
        .collect()
}

fn host_path(path: &str, kind: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    let fail = |what: &str| {
        Err(VolumeError::Failed(format!("hostPath type check failed: {path} is not a {what}")))
    };
    match kind {
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&p).map_err(io(&p))?;
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::OpenOptions::new().create(true).append(true).open(&p).map_err(io(&p))?;
        }
        "Directory" if !meta.as_ref().is_ok_and(std::fs::Metadata::is_dir) => {
            return fail("directory");
        }
        "File" if !meta.as_ref().is_ok_and(std::fs::Metadata::is_file) => return fail("file"),
        "Socket" | "CharDevice" | "BlockDevice" if meta.is_err() => {
            return fail(&kind.to_lowercase());
        }
        _ => {}
    }
    Ok(p)
}

fn is_mountpoint(path: &Path) -> bool {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_ref()))
}

/// Writes `files` into `dir` as upstream's atomic writer does. Unchanged content is left
/// alone (no new generation), so calling it on every resync is cheap.
pub fn write_atomically(dir: &Path, files: &Files) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link)
        && same_content(&dir.join(&current), files)
    {
        return Ok(());
    }
    for path in files.keys() {
        if path.split('/').any(|c| c.is_empty() || c == ".." || c.starts_with(".."))
            || path.starts_with('/')
        {
            return Err(VolumeError::Failed(format!("invalid path in volume: {path:?}")));
        }
    }
    let now = Timestamp::now();
    let generation = format!("..{}", now.strftime("%Y_%m_%d_%H_%M_%S.%f"));
    let new_dir = dir.join(&generation);
    std::fs::create_dir_all(&new_dir).map_err(io(&new_dir))?;
    for (path, (content, mode)) in files {
        let file = new_dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&file, content).map_err(io(&file))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode & 0o7777))
            .map_err(io(&file))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&generation, &tmp_link).map_err(io(&tmp_link))?;
    std::fs::rename(&tmp_link, &data_link).map_err(io(&data_link))?;
    // The visible names: one symlink per top-level component, through `..data`.
    let wanted: std::collections::BTreeSet<String> =
        files.keys().filter_map(|p| p.split('/').next().map(str::to_owned)).collect();
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).map_err(io(&link))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(std::result::Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !wanted.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn same_content(current: &Path, files: &Files) -> bool {
    let mut count = 0usize;
    let mut stack = vec![current.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { return false };
        for entry in entries.filter_map(std::result::Result::ok) {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                count += 1;
            }
        }
    }
    count == files.len()
        && files.iter().all(|(path, (content, mode))| {
            let p = current.join(path);
            std::fs::read(&p).is_ok_and(|c| &c == content)
                && std::fs::metadata(&p)
                    .is_ok_and(|m| m.permissions().mode() & 0o7777 == mode & 0o7777)
        })
}

/// Removes the pod's volume directories (tmpfs unmounted first); host paths are the host's.
pub async fn teardown(root: &Path, uid: &str) {
    let dir = pod_dir(root, uid);
    let empty = dir.join("volumes").join("kubernetes.io~empty-dir");
    if let Ok(entries) = std::fs::read_dir(&empty) {
        for entry in entries.filter_map(std::result::Result::ok) {
            if is_mountpoint(&entry.path()) {
                let _ = tokio::process::Command::new("umount").arg(entry.path()).status().await;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The container's mounts of the pod's volumes.
pub fn mounts(
    container: &k8s_openapi::api::core::v1::Container,
    volumes: &BTreeMap<String, PathBuf>,
) -> std::result::Result<Vec<Mount>, String> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            let base = volumes
                .get(&m.name)
                .ok_or_else(|| format!("volumeMount {:?} names no volume of the pod", m.name))?;
            let host_path = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
                        return Err(format!("invalid subPath {sub:?}"));
                    }
                    let p = base.join(sub);
                    if !p.exists() {
                        std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                    }
                    p
                }
                None => base.clone(),
            };
            Ok(Mount {
                container_path: m.mount_path.clone(),
                host_path,
                read_only: m.read_only == Some(true),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (v.as_bytes().to_vec(), 0o644))).collect()
    }

    #[test]
    fn atomic_writes_swap_generations_and_drop_removed_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        write_atomically(&vol, &files(&[("index.html", "one"), ("conf/a.txt", "A")]))
            .expect("write");
        assert_eq!(std::fs::read_to_string(vol.join("index.html")).expect("read"), "one");
        assert_eq!(std::fs::read_to_string(vol.join("conf/a.txt")).expect("read"), "A");
        let first = std::fs::read_link(vol.join("..data")).expect("..data");
        assert_eq!(
            std::fs::read_link(vol.join("index.html")).expect("link"),
            Path::new("..data/index.html")
        );
        // The same content: no new generation.
        write_atomically(&vol, &files(&[("index.html", "one"), ("conf/a.txt", "A")]))
            .expect("rewrite");
        assert_eq!(std::fs::read_link(vol.join("..data")).expect("..data"), first);
        // New content: a new generation, the old one and the removed key gone.
        std::thread::sleep(std::time::Duration::from_millis(2));
        write_atomically(&vol, &files(&[("index.html", "two")])).expect("update");
        assert_eq!(std::fs::read_to_string(vol.join("index.html")).expect("read"), "two");
        assert!(!vol.join("conf").exists());
        assert!(!vol.join(&first).exists());
        assert!(write_atomically(&vol, &files(&[("../escape", "x")])).is_err());
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing");
        let missing = missing.to_str().expect("utf8");
        assert!(host_path(missing, "Directory").is_err());
        assert!(host_path(missing, "DirectoryOrCreate").is_ok());
        assert!(Path::new(missing).is_dir());
        assert!(host_path(missing, "File").is_err());
        let file = dir.path().join("f");
        let file = file.to_str().expect("utf8");
        host_path(file, "FileOrCreate").expect("created");
        assert!(host_path(file, "File").is_ok());
    }
}
