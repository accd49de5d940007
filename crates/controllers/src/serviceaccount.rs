//! The ServiceAccount controller (upstream's `serviceaccounts-controller`): every active
//! namespace has a `default` ServiceAccount, put back if deleted; terminating namespaces get none.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt as _;
use kube::api::{Api, PostParams};
use tokio::task::JoinSet;

use crate::{Change, Context, Informer, ObjectKey, Result, WorkQueue};

const DEFAULT: &str = "default";

struct Controller {
    client: kube::Client,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    queue: Arc<WorkQueue<ObjectKey>>,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        namespaces: ctx.informers.get::<Namespace>(),
        accounts: ctx.informers.get::<ServiceAccount>(),
        queue: WorkQueue::new(),
    });
    let c = controller.clone();
    controller.namespaces.add_handler(move |change| {
        if !matches!(change, Change::Deleted(_)) {
            c.queue.add(ObjectKey::cluster(&change.object().name_any()));
        }
    });
    let c = controller.clone();
    controller.accounts.add_handler(move |change| {
        if let Change::Deleted(sa) = change
            && sa.name_any() == DEFAULT
        {
            c.queue.add(ObjectKey::cluster(&sa.namespace().unwrap_or_default()));
        }
    });
    let workers = ctx.config.workers;
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.namespaces.wait_synced().await;
        controller.accounts.wait_synced().await;
        let c = controller.clone();
        crate::run_workers("serviceaccount", controller.queue.clone(), workers, stop, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    });
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let Some(ns) = self.namespaces.get(key) else { return Ok(()) };
        let active = crate::namespace::is_active(&ns);
        if !active || self.accounts.get(&ObjectKey::namespaced(&key.name, DEFAULT)).is_some() {
            return Ok(());
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.name);
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT.into()), ..Default::default() },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => Ok(()),
            // Already there (the cache lags), or the namespace started terminating.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 || s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
