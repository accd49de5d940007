//! The in-tree plugins, one file each, and the default profile that wires them in upstream's
//! order with upstream's score weights.

pub mod balanced_allocation;
pub mod default_preemption;
pub mod image_locality;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod taint_toleration;

use std::sync::Arc;

use crate::framework::Framework;

pub use node_resources_fit::{ResourceSpec, ScoringStrategyType};

/// The knobs of the default profile.
#[derive(Debug, Clone)]
pub struct ProfileConfig {
    pub scheduler_name: String,
    /// 0: upstream's adaptive percentage (50% minus 1% per 125 nodes, at least 5%).
    pub percentage_of_nodes_to_score: u32,
    pub scoring_strategy: ScoringStrategyType,
    pub scoring_resources: Vec<ResourceSpec>,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            scheduler_name: crate::DEFAULT_SCHEDULER_NAME.into(),
            percentage_of_nodes_to_score: 0,
            scoring_strategy: ScoringStrategyType::LeastAllocated,
            scoring_resources: node_resources_fit::default_resources(),
        }
    }
}

/// Upstream's default plugin set (the ones implemented so far), in upstream's order:
/// Filter NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts,
/// NodeResourcesFit; Score weights TaintToleration 3, NodeAffinity 2, NodeResourcesFit 1,
/// NodeResourcesBalancedAllocation 1, ImageLocality 1; PostFilter DefaultPreemption.
pub fn default_framework(config: &ProfileConfig) -> Framework {
    let unschedulable = Arc::new(node_unschedulable::NodeUnschedulable);
    let node_name = Arc::new(node_name::NodeName);
    let taints = Arc::new(taint_toleration::TaintToleration);
    let affinity = Arc::new(node_affinity::NodeAffinity);
    let ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit::new(
        config.scoring_strategy,
        config.scoring_resources.clone(),
    ));
    let balanced = Arc::new(balanced_allocation::BalancedAllocation::default());
    let images = Arc::new(image_locality::ImageLocality);
    Framework {
        scheduler_name: config.scheduler_name.clone(),
        pre_filter: vec![affinity.clone(), ports.clone(), fit.clone()],
        filter: vec![
            unschedulable,
            node_name,
            taints.clone(),
            affinity.clone(),
            ports,
            fit.clone(),
        ],
        post_filter: vec![Arc::new(default_preemption::DefaultPreemption)],
        pre_score: vec![
            taints.clone(),
            affinity.clone(),
            fit.clone(),
            balanced.clone(),
            images.clone(),
        ],
        score: vec![(taints, 3), (affinity, 2), (fit, 1), (balanced, 1), (images, 1)],
        percentage_of_nodes_to_score: config.percentage_of_nodes_to_score,
    }
}
