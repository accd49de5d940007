//! core/v1 Events about the objects components act on (client-go's legacy event recorder, the
//! one `kubectl describe` shows): written in the background so that a slow API server never
//! stalls a controller, dropped when the buffer is full, and passed through upstream's event
//! correlator ([`correlator`]): repeats folded into one with a growing `count`, alike events
//! combined, spam dropped.

pub mod correlator;

use std::time::Instant;

use correlator::{Correlator, Facts, Written};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Upstream's `Normal` and `Warning` event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug)]
struct Record {
    component: std::sync::Arc<str>,
    host: Option<std::sync::Arc<str>>,
    object: ObjectReference,
    event_type: EventType,
    reason: String,
    message: String,
}

/// Hands events to the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Record>,
    component: std::sync::Arc<str>,
    host: Option<std::sync::Arc<str>>,
}

impl EventRecorder {
    /// A recorder whose events say `component` is their source, and the task that writes them
    /// (it ends on `shutdown`).
    pub fn new(
        client: kube::Client,
        component: &str,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, mut rx) = mpsc::channel::<Record>(1000);
        let task = async move {
            let mut correlator = Correlator::default();
            loop {
                let record = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = rx.recv() => match r { Some(r) => r, None => return },
                };
                write(&client, &mut correlator, record).await;
            }
        };
        (Self { tx, component: component.into(), host: None }, task)
    }

    /// The same writer, with events saying `component` is their source (upstream names each
    /// controller's events, e.g. `replicaset-controller`).
    pub fn for_component(&self, component: &str) -> Self {
        Self { tx: self.tx.clone(), component: component.into(), host: self.host.clone() }
    }

    /// The same writer, with events naming `host` as the node they come from (the kubelet's).
    pub fn for_host(&self, host: &str) -> Self {
        Self { tx: self.tx.clone(), component: self.component.clone(), host: Some(host.into()) }
    }

    /// Records an event about `object`.
    pub fn record<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record_ref(object_reference(object), event_type, reason, message);
    }

    /// Records an event about the object `object` refers to.
    pub fn record_ref(
        &self,
        object: ObjectReference,
        event_type: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let record = Record {
            component: self.component.clone(),
            host: self.host.clone(),
            object,
            event_type,
            reason: reason.to_owned(),
            message: message.into(),
        };
        if let Err(e) = self.tx.try_send(record) {
            tracing::debug!(error = %e, "event dropped");
        }
    }
}

/// A reference to `object` as events name it.
pub fn object_reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}

async fn write(client: &kube::Client, correlator: &mut Correlator, record: Record) {
    let component = &*record.component;
    let o = &record.object;
    let namespace =
        o.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
    let facts = Facts {
        component,
        host: record.host.as_deref().unwrap_or_default(),
        kind: o.kind.as_deref().unwrap_or_default(),
        namespace: &namespace,
        name: o.name.as_deref().unwrap_or_default(),
        uid: o.uid.as_deref().unwrap_or_default(),
        api_version: o.api_version.as_deref().unwrap_or_default(),
        event_type: record.event_type.as_str(),
        reason: &record.reason,
        message: &record.message,
    };
    let Some(decision) = correlator.correlate(&facts, Instant::now()) else {
        tracing::debug!(reason = %record.reason, "event dropped by the spam filter");
        return;
    };
    let now = Time(Timestamp::now());
    if let Some(written) = decision.repeats {
        let count = written.count + 1;
        let patch = json!({"count": count, "lastTimestamp": now, "message": decision.message});
        let api: Api<Event> = Api::namespaced(client.clone(), &written.namespace);
        if api.patch(&written.name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
            correlator.written(decision.key, Written { count, ..written });
            return;
        }
        // Gone (expired or deleted): written anew below.
    }
    let name =
        format!("{}.{:x}", o.name.as_deref().unwrap_or_default(), Timestamp::now().as_nanosecond());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: record.object.clone(),
        reason: Some(record.reason),
        message: Some(decision.message),
        type_: Some(record.event_type.as_str().into()),
        source: Some(EventSource {
            component: Some(component.to_owned()),
            host: record.host.as_deref().map(str::to_owned),
        }),
        reporting_component: Some(component.to_owned()),
        reporting_instance: Some(component.to_owned()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => correlator.written(decision.key, Written { namespace, name, count: 1 }),
        Err(e) => tracing::debug!(error = %e, "cannot record event"),
    }
}
