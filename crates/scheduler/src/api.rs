//! The scheduler's writes, all through the Kubernetes API: `pods/binding`, the `PodScheduled`
//! condition on `pods/status`, and core/v1 Events. Nothing else is ever written.

use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Binding, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Posts the Binding of `pod` to `node` (upstream's DefaultBinder).
pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let _: serde_json::Value =
        api.create_subresource("binding", name, &PostParams::default(), &binding).await?;
    Ok(())
}

/// Sets `PodScheduled=False` with `reason` and `message`, unless the pod already says exactly
/// that (upstream's `updatePod`, a strategic merge patch of `pods/status`).
pub async fn set_unschedulable_condition(
    client: &kube::Client,
    pod: &Pod,
    reason: &str,
    message: &str,
) -> Result<(), kube::Error> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    }) {
        return Ok(());
    }
    // The transition time moves only when the status changes.
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.clone(),
        _ => None,
    }
    .unwrap_or(Time(Timestamp::now()));
    let patch = json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }]
        }
    });
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    Ok(())
}

/// One event about a pod.
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub pod: Arc<Pod>,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// Records events in the background so that a slow API server never stalls scheduling; when
/// the buffer is full events are dropped, as upstream's event broadcaster does.
#[derive(Debug, Clone)]
pub(crate) struct EventRecorder {
    tx: mpsc::Sender<PodEvent>,
}

impl EventRecorder {
    /// The recorder and the task that writes its events (it ends on `shutdown`).
    pub fn new(
        client: kube::Client,
        component: &str,
        shutdown: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(1000);
        let component = component.to_owned();
        let instance = format!("{component}-{}", hostname());
        let task = async move {
            let stream = tokio_stream_from(rx)
                .map(|event| {
                    write_event(client.clone(), component.clone(), instance.clone(), event)
                })
                .buffer_unordered(16)
                .for_each(|_| async {});
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = stream => {}
            }
        };
        (Self { tx }, task)
    }

    pub fn record(&self, event: PodEvent) {
        if let Err(e) = self.tx.try_send(event) {
            tracing::debug!(error = %e, "event dropped");
        }
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "krust".into())
}

async fn write_event(client: kube::Client, component: String, instance: String, event: PodEvent) {
    let pod = &event.pod;
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now();
    let object = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(event.reason.into()),
        message: Some(event.message),
        type_: Some(if event.warning { "Warning" } else { "Normal" }.into()),
        action: Some(event.action.into()),
        source: Some(EventSource { component: Some(component.clone()), host: None }),
        reporting_component: Some(component),
        reporting_instance: Some(instance),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client, &namespace);
    if let Err(e) = api.create(&PostParams::default(), &object).await {
        tracing::debug!(error = %e, "cannot record event");
    }
}
