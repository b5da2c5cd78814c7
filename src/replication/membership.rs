//! Changing a group's voters (partition reassignment) by Raft membership changes.
//!
//! The leader moves the group from its voters to a target set one committed change at a
//! time, each decided by `next_step` from the configuration it has applied:
//!
//! 1. each target node that is not in the group yet joins as a learner (one simple change
//!    each): it receives the log, a snapshot position and a copy first, without voting;
//! 2. once every such learner has caught up, one joint change (Raft's joint consensus)
//!    makes them voters and removes the voters not in the target: while it is in force a
//!    decision needs a majority of the old voters and one of the new;
//! 3. a leader that is not a voter of the new configuration hands its leadership to one
//!    that is (raft-rs would otherwise keep a removed leader leading);
//! 4. the leader leaves the joint configuration (an empty change), and learners outside the
//!    target are removed.
//!
//! A target changed midway (a cancelled or a new reassignment) is just another target: the
//! next step starts from wherever the group is. raft-rs takes one change at a time; the
//! caller proposes a step only when none is pending.
//!
//! A target may also name observers: learners that stay learners (the broker-only nodes
//! following the metadata log). Each is added as a learner once the voters are the target's,
//! and none is removed as a stray.

use std::collections::BTreeSet;

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
};

use super::replica::{node_of, raft_id};
use crate::ids::NodeId;

/// A group's members as a configuration has them (raft ids turned into node ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters (of the incoming configuration while joint).
    pub voters: BTreeSet<NodeId>,
    /// The voters of the outgoing configuration: empty unless joint.
    pub outgoing: BTreeSet<NodeId>,
    /// Learners, including voters that become learners when a joint configuration is left.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn of(conf: &ConfState) -> Membership {
        let nodes = |ids: &[u64]| ids.iter().map(|id| node_of(*id)).collect();
        let mut learners: BTreeSet<NodeId> = nodes(&conf.learners);
        learners.extend(nodes(&conf.learners_next));
        Membership {
            voters: nodes(&conf.voters),
            outgoing: nodes(&conf.voters_outgoing),
            learners,
        }
    }

    /// Whether the group is exactly `target`'s voters, with nothing in between.
    pub fn is(&self, target: &BTreeSet<NodeId>) -> bool {
        self.outgoing.is_empty() && self.learners.is_empty() && self.voters == *target
    }

    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
}

/// The members a group is being brought to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub voters: BTreeSet<NodeId>,
    /// Learners that stay learners; a node also among the voters is a voter.
    pub observers: BTreeSet<NodeId>,
}

impl Target {
    /// Just these voters, no observer (a partition's replicas).
    pub fn voters(voters: BTreeSet<NodeId>) -> Target {
        Target {
            voters,
            observers: BTreeSet::new(),
        }
    }

    fn keeps_as_learner(&self, node: NodeId) -> bool {
        self.observers.contains(&node) && !self.voters.contains(&node)
    }
}

/// What the leader does next to bring the group to a target.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The group is the target.
    Done,
    /// Nothing yet: learners are catching up.
    Wait,
    /// Hand the leadership to one of these voters of the new configuration.
    HandOver(Vec<NodeId>),
    /// Propose this change.
    Propose(ConfChangeV2),
}

/// The next step from `conf` (applied on the leader `me`) towards `target`; `caught_up`
/// says whether a learner follows the leader closely enough to become a voter.
pub fn next_step(
    conf: &Membership,
    me: NodeId,
    target: &Target,
    caught_up: impl Fn(NodeId) -> bool,
) -> Step {
    if !conf.voters.contains(&me) {
        return Step::HandOver(conf.voters.iter().copied().collect());
    }
    if conf.is_joint() {
        return Step::Propose(ConfChangeV2::default());
    }
    let keeps = |node: &&NodeId| target.keeps_as_learner(**node);
    if conf.voters == target.voters {
        let mut observers = target.observers.iter().filter(keeps);
        if let Some(new) = observers.find(|node| !conf.learners.contains(node)) {
            return Step::Propose(simple(*new, ConfChangeType::AddLearnerNode));
        }
        return match conf.learners.iter().find(|node| !keeps(node)) {
            Some(learner) => Step::Propose(simple(*learner, ConfChangeType::RemoveNode)),
            None => Step::Done,
        };
    }
    let target = &target.voters;
    let joining = target.difference(&conf.voters);
    if let Some(new) = joining.clone().find(|node| !conf.learners.contains(node)) {
        return Step::Propose(simple(*new, ConfChangeType::AddLearnerNode));
    }
    if !joining.clone().all(|node| caught_up(*node)) {
        return Step::Wait;
    }
    let promoted = joining.map(|node| (*node, ConfChangeType::AddNode));
    let leaving = conf
        .voters
        .iter()
        .chain(conf.learners.iter().filter(|n| !keeps(n)));
    let removed = leaving
        .filter(|node| !target.contains(node))
        .map(|node| (*node, ConfChangeType::RemoveNode));
    let mut change = ConfChangeV2::default();
    change.set_transition(ConfChangeTransition::Explicit);
    change.set_changes(promoted.chain(removed).map(single).collect());
    Step::Propose(change)
}

fn single((node, change_type): (NodeId, ConfChangeType)) -> ConfChangeSingle {
    let mut single = ConfChangeSingle {
        node_id: raft_id(node),
        ..Default::default()
    };
    single.set_change_type(change_type);
    single
}

fn simple(node: NodeId, change_type: ConfChangeType) -> ConfChangeV2 {
    let mut change = ConfChangeV2::default();
    change.set_changes(vec![single((node, change_type))].into());
    change
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[i32]) -> BTreeSet<NodeId> {
        ids.iter().map(|id| NodeId(*id)).collect()
    }

    fn voters(ids: &[i32]) -> Target {
        Target::voters(nodes(ids))
    }

    fn members(voters: &[i32], outgoing: &[i32], learners: &[i32]) -> Membership {
        Membership {
            voters: nodes(voters),
            outgoing: nodes(outgoing),
            learners: nodes(learners),
        }
    }

    fn changes(step: &Step) -> Vec<(u64, ConfChangeType)> {
        let Step::Propose(change) = step else {
            panic!("not a proposal: {step:?}");
        };
        change
            .changes
            .iter()
            .map(|single| (single.node_id, single.get_change_type()))
            .collect()
    }

    /// Moving {1,2,3} to {2,3,4}: 4 joins as a learner, waits to catch up, then one joint
    /// change promotes it and removes 1; a leader on 1 hands over while joint; the leader on
    /// 2 leaves the joint configuration; then the group is the target.
    #[test]
    fn a_replica_moves_through_a_learner_and_a_joint_configuration() {
        let target = voters(&[2, 3, 4]);
        let start = members(&[1, 2, 3], &[], &[]);
        let step = next_step(&start, NodeId(1), &target, |_| false);
        assert_eq!(changes(&step), [(5, ConfChangeType::AddLearnerNode)]);
        let learning = members(&[1, 2, 3], &[], &[4]);
        assert_eq!(
            next_step(&learning, NodeId(1), &target, |_| false),
            Step::Wait
        );
        let step = next_step(&learning, NodeId(1), &target, |_| true);
        assert_eq!(
            changes(&step),
            [
                (5, ConfChangeType::AddNode),
                (2, ConfChangeType::RemoveNode)
            ]
        );
        let Step::Propose(change) = step else {
            unreachable!()
        };
        assert_eq!(change.get_transition(), ConfChangeTransition::Explicit);
        let joint = members(&[2, 3, 4], &[1, 2, 3], &[]);
        assert_eq!(
            next_step(&joint, NodeId(1), &target, |_| true),
            Step::HandOver(vec![NodeId(2), NodeId(3), NodeId(4)])
        );
        let step = next_step(&joint, NodeId(2), &target, |_| true);
        assert_eq!(step, Step::Propose(ConfChangeV2::default()));
        let done = members(&[2, 3, 4], &[], &[]);
        assert!(done.is(&target.voters));
        assert_eq!(next_step(&done, NodeId(2), &target, |_| true), Step::Done);
    }

    /// A target changed back (a cancelled reassignment) after a learner joined: the learner
    /// is removed and nothing else changes.
    #[test]
    fn a_learner_outside_the_target_is_removed() {
        let target = voters(&[1, 2, 3]);
        let learning = members(&[1, 2, 3], &[], &[4]);
        let step = next_step(&learning, NodeId(1), &target, |_| true);
        assert_eq!(changes(&step), [(5, ConfChangeType::RemoveNode)]);
    }

    /// Shrinking needs no learner: one joint change removes the voters.
    #[test]
    fn shrinking_removes_voters_in_one_joint_change() {
        let target = voters(&[1]);
        let start = members(&[1, 2, 3], &[], &[]);
        let step = next_step(&start, NodeId(1), &target, |_| false);
        assert_eq!(
            changes(&step),
            [
                (3, ConfChangeType::RemoveNode),
                (4, ConfChangeType::RemoveNode)
            ]
        );
    }

    /// Observers (broker-only nodes following the metadata log) join as learners one at a
    /// time and stay learners, through a change of the voters too.
    #[test]
    fn observers_are_added_and_kept_as_learners() {
        let target = Target {
            voters: nodes(&[1, 2, 3]),
            observers: nodes(&[3, 4, 5]),
        };
        let start = members(&[1, 2, 3], &[], &[]);
        let step = next_step(&start, NodeId(1), &target, |_| false);
        assert_eq!(changes(&step), [(5, ConfChangeType::AddLearnerNode)]);
        let one = members(&[1, 2, 3], &[], &[4]);
        let step = next_step(&one, NodeId(1), &target, |_| false);
        assert_eq!(changes(&step), [(6, ConfChangeType::AddLearnerNode)]);
        let both = members(&[1, 2, 3], &[], &[4, 5]);
        assert_eq!(next_step(&both, NodeId(1), &target, |_| false), Step::Done);
        let moving = Target {
            voters: nodes(&[1, 2, 6]),
            ..target
        };
        let learning = members(&[1, 2, 3], &[], &[4, 5, 6]);
        let step = next_step(&learning, NodeId(1), &moving, |_| true);
        assert_eq!(
            changes(&step),
            [
                (7, ConfChangeType::AddNode),
                (4, ConfChangeType::RemoveNode)
            ]
        );
    }

    /// The configuration read from raft-rs's ConfState, learners-to-be included.
    #[test]
    fn membership_reads_a_joint_conf_state() {
        let conf = ConfState {
            voters: vec![3, 4, 5],
            voters_outgoing: vec![1, 2, 3],
            learners_next: vec![1],
            ..Default::default()
        };
        assert_eq!(Membership::of(&conf), members(&[2, 3, 4], &[0, 1, 2], &[0]));
    }
}
