//! Retention: which snapshots each target keeps (rules per policy and per target,
//! chain-aware, never the newest restorable chain or a pinned backup), and the
//! cleanup of the server's local backup folder once files are proven offsite.
//!
//! The plan is pure ([`plan`]); removing manifests is `Repository::forget`, and
//! reclaiming their space is `Repository::prune`.

mod plan;
mod rules;

pub use plan::{group_of, plan, Decision, Group, PlanInput, RuleSources, TargetPlan};
pub use rules::{Age, Rules};
