//! The root CA publisher (upstream's `root-ca-cert-publisher`): every active namespace has a
//! `kube-root-ca.crt` ConfigMap whose `ca.crt` is the cluster's CA bundle, so that pods can
//! verify the API server; put back when deleted, set right again when changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use tokio::task::JoinSet;

use crate::{Change, Context, Informer, ObjectKey, Result, WorkQueue};

pub(crate) const NAME: &str = "kube-root-ca.crt";
const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's words.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Controller {
    client: kube::Client,
    bundle: String,
    namespaces: Arc<Informer<Namespace>>,
    published: Arc<Informer<ConfigMap>>,
    queue: Arc<WorkQueue<ObjectKey>>,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let Some(bundle) = ctx.config.root_ca.clone() else {
        tracing::info!("no root CA bundle configured: kube-root-ca.crt is not published");
        return;
    };
    // Only the published ConfigMaps are followed, not every ConfigMap of the cluster.
    let published = ctx.informers.get_or_insert(NAME.to_owned(), || {
        Informer::new(
            Api::all(ctx.client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={NAME}")),
        )
    });
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        bundle,
        namespaces: ctx.informers.get::<Namespace>(),
        published,
        queue: WorkQueue::new(),
    });
    let c = controller.clone();
    controller.namespaces.add_handler(move |change| {
        if !matches!(change, Change::Deleted(_)) {
            c.queue.add(ObjectKey::cluster(&change.object().name_any()));
        }
    });
    let c = controller.clone();
    controller.published.add_handler(move |change| {
        c.queue.add(ObjectKey::cluster(&change.object().namespace().unwrap_or_default()));
    });
    let workers = ctx.config.workers;
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.namespaces.wait_synced().await;
        controller.published.wait_synced().await;
        let c = controller.clone();
        crate::run_workers("root-ca-cert-publisher", controller.queue.clone(), workers, stop, {
            move |key| {
                let c = c.clone();
                async move { c.sync(&key).await }
            }
        })
        .await
    });
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let Some(ns) = self.namespaces.get(key) else { return Ok(()) };
        let active = crate::namespace::is_active(&ns);
        if !active {
            return Ok(());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &key.name);
        let data = BTreeMap::from([(KEY.to_owned(), self.bundle.clone())]);
        let result = match self.published.get(&ObjectKey::namespaced(&key.name, NAME)) {
            None => {
                let map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(NAME.into()),
                        annotations: Some(BTreeMap::from([(
                            DESCRIPTION_ANNOTATION.to_owned(),
                            DESCRIPTION.to_owned(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &map).await.map(drop)
            }
            Some(current) => {
                let described =
                    current.annotations().get(DESCRIPTION_ANNOTATION).map(String::as_str)
                        == Some(DESCRIPTION);
                if current.data.as_ref() == Some(&data) && described {
                    return Ok(());
                }
                // Anything else in the ConfigMap goes: it holds the bundle and nothing more.
                let mut map = (*current).clone();
                map.data = Some(data);
                map.binary_data = None;
                map.annotations_mut().insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
                api.replace(NAME, &PostParams::default(), &map).await.map(drop)
            }
        };
        match result {
            Ok(()) => Ok(()),
            // The cache lags (409: its next event requeues the namespace), or the namespace
            // is terminating (403) or gone (404).
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
