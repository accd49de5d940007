//! Node IPAM (upstream's range allocator): every node gets its own pod range
//! (`spec.podCIDR`/`spec.podCIDRs`), a `/node-cidr-mask-size` slice of the cluster CIDR, never
//! shared with another node; a deleted node's range becomes free again.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinSet;

use crate::{Change, Context, EventRecorder, EventType, Informer, ObjectKey, Result, WorkQueue};

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// The network's first address as a number.
    fn base(self) -> u32 {
        u32::from(self.address) & mask(self.prefix)
    }

    /// The `index`-th subnet of length `prefix` inside this network.
    fn subnet(self, prefix: u8, index: u32) -> Option<Cidr> {
        let bits = u32::from(prefix.checked_sub(self.prefix)?);
        if bits >= 32 || index >= (1u32 << bits) || prefix > 32 {
            return None;
        }
        let offset = index.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Some(Cidr { address: Ipv4Addr::from(self.base() | offset), prefix })
    }

    /// Which subnet of length `prefix` `other` is, if it is one of ours.
    fn index_of(self, prefix: u8, other: Cidr) -> Option<u32> {
        if other.prefix != prefix || prefix < self.prefix || prefix > 32 {
            return None;
        }
        if u32::from(other.address) & mask(self.prefix) != self.base() {
            return None;
        }
        let offset = u32::from(other.address) - self.base();
        Some(offset.checked_shr(32 - u32::from(prefix)).unwrap_or(0))
    }

    fn subnets(self, prefix: u8) -> u32 {
        match prefix.checked_sub(self.prefix) {
            Some(bits) if bits < 32 => 1u32 << bits,
            _ => 0,
        }
    }
}

fn mask(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (address, prefix) =
            s.split_once('/').ok_or_else(|| format!("invalid CIDR address: {s}"))?;
        let address: Ipv4Addr =
            address.parse().map_err(|_| format!("invalid CIDR address: {s}"))?;
        let prefix: u8 = prefix.parse().map_err(|_| format!("invalid CIDR address: {s}"))?;
        if prefix > 32 {
            return Err(format!("invalid CIDR address: {s}"));
        }
        Ok(Cidr { address, prefix })
    }
}

/// Which subnets are taken.
#[derive(Debug)]
struct Allocator {
    cluster: Cidr,
    prefix: u8,
    used: BTreeSet<u32>,
    /// Where the search for a free subnet continues (upstream's `nextCandidate`).
    next: u32,
}

impl Allocator {
    fn occupy(&mut self, cidr: Cidr) -> bool {
        match self.cluster.index_of(self.prefix, cidr) {
            Some(i) => {
                self.used.insert(i);
                true
            }
            None => false,
        }
    }

    fn release(&mut self, cidr: Cidr) {
        if let Some(i) = self.cluster.index_of(self.prefix, cidr) {
            self.used.remove(&i);
        }
    }

    fn allocate(&mut self) -> Option<Cidr> {
        let total = self.cluster.subnets(self.prefix);
        for step in 0..total {
            let i = (self.next + step) % total;
            if self.used.insert(i) {
                self.next = (i + 1) % total;
                return self.cluster.subnet(self.prefix, i);
            }
        }
        None
    }
}

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    allocator: Mutex<Allocator>,
    events: EventRecorder,
}

fn pod_cidr(node: &Node) -> Option<Cidr> {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).and_then(|c| c.parse().ok())
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let Some(cluster) = ctx.config.cluster_cidr else { return };
    let nodes = ctx.informers.get::<Node>();
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes: nodes.clone(),
        queue: WorkQueue::new(),
        allocator: Mutex::new(Allocator {
            cluster,
            prefix: ctx.config.node_cidr_mask_size,
            used: BTreeSet::new(),
            next: 0,
        }),
        events: ctx.events.for_component("cidrAllocator"),
    });
    let c = controller.clone();
    nodes.add_handler(move |change| match change {
        Change::Deleted(node) => {
            if let Some(cidr) = pod_cidr(node) {
                c.lock().release(cidr);
            }
        }
        Change::Added(node) | Change::Updated { new: node, .. } => match pod_cidr(node) {
            Some(cidr) => {
                c.lock().occupy(cidr);
            }
            None => c.queue.add(ObjectKey::of(node.as_ref())),
        },
    });
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.nodes.wait_synced().await;
        let c = controller.clone();
        // One worker: allocations are handed out in order.
        crate::run_workers("nodeipam", controller.queue.clone(), 1, stop, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    });
}

impl Controller {
    fn lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let Some(cached) = self.nodes.get(key) else { return Ok(()) };
        if pod_cidr(&cached).is_some() {
            return Ok(());
        }
        // The cache may lag behind our own last write: decide on a fresh read, and write with
        // its resourceVersion, so that a node never gets a second range.
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(node) = api.get_opt(&cached.name_any()).await? else { return Ok(()) };
        if let Some(cidr) = pod_cidr(&node) {
            self.lock().occupy(cidr);
            return Ok(());
        }
        let Some(cidr) = self.lock().allocate() else {
            self.events.record(
                &node,
                EventType::Normal,
                "CIDRNotAvailable",
                format!("Node {} status is now: CIDRNotAvailable", node.name_any()),
            );
            return Ok(());
        };
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}
        });
        match api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.lock().release(cidr);
                if crate::replicaset::is_status(&e, 404) { Ok(()) } else { Err(e.into()) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn nodes_get_distinct_ranges_and_freed_ones_come_back() {
        let mut a =
            Allocator { cluster: cidr("10.42.0.0/16"), prefix: 24, used: BTreeSet::new(), next: 0 };
        assert!(a.occupy(cidr("10.42.1.0/24")));
        assert!(!a.occupy(cidr("10.43.0.0/24")), "not ours");
        assert_eq!(a.allocate(), Some(cidr("10.42.0.0/24")));
        assert_eq!(a.allocate(), Some(cidr("10.42.2.0/24")));
        a.release(cidr("10.42.0.0/24"));
        // The search goes on from where it stopped, then wraps around.
        assert_eq!(a.allocate(), Some(cidr("10.42.3.0/24")));
        let mut small =
            Allocator { cluster: cidr("10.0.0.0/30"), prefix: 31, used: BTreeSet::new(), next: 0 };
        assert_eq!(small.allocate(), Some(cidr("10.0.0.0/31")));
        assert_eq!(small.allocate(), Some(cidr("10.0.0.2/31")));
        assert_eq!(small.allocate(), None);
    }

    #[test]
    fn cidrs_parse_and_print() {
        assert_eq!(cidr("10.42.0.0/16").to_string(), "10.42.0.0/16");
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
    }
}
