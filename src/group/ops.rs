//! The membership operations of the coordinator: JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, DescribeGroups, ListGroups and DeleteGroups, on the coordinator shard.
//!
//! Each takes the group out of the shard's map only for a synchronous step of the state
//! machine; waiting (for a rebalance or a durable write) happens after the borrow ends.

use crate::ids::PartitionId;
use std::rc::Rc;

use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::ResponseError;

use super::records::{self, RecordKey};
use super::state::{sync_error, JoinArgs, JoinOutcome, SyncOutcome};
use super::Host;
use super::{write, GroupReply, GroupSummary, ListedGroup, MemberSummary, SyncArgs};
use crate::limits;
use crate::metadata::now_ms;
use crate::protocol::str_bytes;
use crate::runtime::clock;

fn join_failed(error: ResponseError, member_id: &str) -> GroupReply {
    GroupReply::Join(
        JoinGroupResponse::default()
            .with_error_code(error.code())
            .with_generation_id(-1)
            .with_member_id(str_bytes(member_id)),
    )
}

pub async fn join(
    shard: &Rc<impl Host>,
    partition: PartitionId,
    group: &str,
    args: JoinArgs,
) -> GroupReply {
    let config = &shard.coordinator().config;
    let timeout = args.session_timeout_ms;
    if timeout < config.min_session_timeout_ms || timeout > config.max_session_timeout_ms {
        return join_failed(ResponseError::InvalidSessionTimeout, &args.member_id);
    }
    let outcome = {
        let mut groups = shard.coordinator().groups.borrow_mut();
        if !groups.contains_key(group) {
            if !args.member_id.is_empty() {
                return join_failed(ResponseError::UnknownMemberId, &args.member_id);
            }
            if groups.len() >= limits::GROUPS_PER_SHARD_MAX {
                return join_failed(ResponseError::CoordinatorNotAvailable, "");
            }
            groups.insert(group.to_string(), shard.coordinator().new_group(group));
        }
        let entry = groups.get_mut(group).expect("inserted above");
        // A new member (or pending one) needs room in the group and on the shard; members
        // that rejoin with their id do not grow the group.
        let full =
            entry.size() >= limits::GROUP_MEMBERS_MAX || !shard.coordinator().has_room_for_member();
        if full && args.member_id.is_empty() {
            return join_failed(ResponseError::GroupMaxSizeReached, "");
        }
        let coordinator = &shard.coordinator();
        coordinator.sized(entry, |g| g.join(args, clock::now(), now_ms()))
    };
    // The join may complete the rebalance at once (every member is in): run it now rather
    // than at the next timer tick.
    super::after_change(shard, partition, group);
    match outcome {
        JoinOutcome::Respond(response) => GroupReply::Join(response),
        JoinOutcome::Wait(rx) => match rx.await {
            Ok(response) => GroupReply::Join(response),
            Err(_) => join_failed(ResponseError::RebalanceInProgress, ""),
        },
        JoinOutcome::PersistThenRespond(value, response) => {
            let record = (
                RecordKey::Group {
                    group: group.to_string(),
                },
                Some(records::encode_group(&value)),
            );
            match write(shard, partition, vec![record], None).await {
                Ok(_) => GroupReply::Join(response),
                Err(error) => join_failed(error, ""),
            }
        }
    }
}

pub async fn sync(shard: &Rc<impl Host>, partition: PartitionId, args: SyncArgs) -> GroupReply {
    let group_id = args.group.clone();
    let outcome = {
        let mut groups = shard.coordinator().groups.borrow_mut();
        let Some(group) = groups.get_mut(&group_id) else {
            return GroupReply::Sync(sync_error(ResponseError::UnknownMemberId));
        };
        group.sync(args, clock::now(), now_ms())
    };
    let rx = match outcome {
        SyncOutcome::Respond(response) => return GroupReply::Sync(response),
        SyncOutcome::Wait(rx) => rx,
        SyncOutcome::Persist(value, generation, rx) => {
            let record = (
                RecordKey::Group {
                    group: group_id.clone(),
                },
                Some(records::encode_group(&value)),
            );
            let ok = write(shard, partition, vec![record], None).await.is_ok();
            let mut groups = shard.coordinator().groups.borrow_mut();
            if let Some(group) = groups.get_mut(&group_id) {
                group.assignment_persisted(generation, ok, clock::now(), now_ms());
            }
            rx
        }
    };
    let response: SyncGroupResponse = rx
        .await
        .unwrap_or_else(|_| sync_error(ResponseError::RebalanceInProgress));
    GroupReply::Sync(response)
}

pub fn heartbeat(
    shard: &Rc<impl Host>,
    group: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> GroupReply {
    let mut groups = shard.coordinator().groups.borrow_mut();
    let Some(group) = groups.get_mut(group) else {
        return GroupReply::Error(ResponseError::UnknownMemberId);
    };
    match group.heartbeat(member_id, instance_id, generation, clock::now()) {
        Ok(()) => GroupReply::Done,
        Err(error) => GroupReply::Error(error),
    }
}

pub fn leave(
    shard: &Rc<impl Host>,
    group: &str,
    members: Vec<(String, Option<String>)>,
) -> GroupReply {
    let mut groups = shard.coordinator().groups.borrow_mut();
    let Some(group) = groups.get_mut(group) else {
        let unknown = members
            .iter()
            .map(|_| Err(ResponseError::UnknownMemberId))
            .collect();
        return GroupReply::Leave(unknown);
    };
    if group.state == super::GroupState::Dead {
        return GroupReply::Error(ResponseError::CoordinatorNotAvailable);
    }
    let results = members
        .iter()
        .map(|(member_id, instance_id)| {
            let (member_id, instance_id) = (member_id.as_str(), instance_id.as_deref());
            shard.coordinator().sized(group, |g| {
                g.leave(member_id, instance_id, clock::now(), now_ms())
            })
        })
        .collect();
    GroupReply::Leave(results)
}

pub fn describe(shard: &Rc<impl Host>, group: &str) -> GroupReply {
    let groups = shard.coordinator().groups.borrow();
    let Some(group) = groups.get(group) else {
        return GroupReply::Describe(GroupSummary {
            state: super::GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        });
    };
    // Like Kafka, metadata and assignments are shown only for a stable group.
    let stable = group.state == super::GroupState::Stable;
    let protocol = group.protocol.as_deref();
    let members = group
        .members
        .values()
        .map(|m| MemberSummary {
            member_id: m.id.clone(),
            instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            metadata: if stable {
                m.metadata_for(protocol)
            } else {
                Default::default()
            },
            assignment: if stable {
                m.assignment.clone()
            } else {
                Default::default()
            },
        })
        .collect();
    GroupReply::Describe(GroupSummary {
        state: group.state.name(),
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol: if stable {
            protocol.unwrap_or_default().to_string()
        } else {
            String::new()
        },
        members,
    })
}

pub fn list(shard: &Rc<impl Host>) -> Vec<ListedGroup> {
    let loaded = shard.coordinator().loaded.borrow();
    let count = shard.partition_count(super::OFFSETS_TOPIC).unwrap_or(1);
    let groups = shard.coordinator().groups.borrow();
    groups
        .values()
        .filter(|g| g.state != super::GroupState::Dead)
        .filter(|g| loaded.get(&super::partition_for(&g.id, count)) == Some(&true))
        .map(|g| ListedGroup {
            group_id: g.id.clone(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            state: g.state.name(),
        })
        .collect()
}

/// DeleteGroups for one group: only an empty group may go; its offsets and metadata get
/// tombstones, so a restart does not bring it back.
pub async fn delete(shard: &Rc<impl Host>, partition: PartitionId, group: &str) -> GroupReply {
    let tombstones = {
        let mut groups = shard.coordinator().groups.borrow_mut();
        let Some(entry) = groups.get_mut(group) else {
            return GroupReply::Error(ResponseError::GroupIdNotFound);
        };
        match entry.state {
            super::GroupState::Dead => return GroupReply::Error(ResponseError::GroupIdNotFound),
            super::GroupState::Empty if entry.is_empty_of_members() => {}
            _ => return GroupReply::Error(ResponseError::NonEmptyGroup),
        }
        shard.coordinator().sized(entry, |g| g.kill(now_ms()));
        let removed = groups.remove(group).expect("present");
        let mut tombstones: Vec<(RecordKey, Option<bytes::Bytes>)> = removed
            .offsets
            .into_keys()
            .map(|(topic, partition)| {
                let key = RecordKey::Offset {
                    group: group.to_string(),
                    topic,
                    partition,
                };
                (key, None)
            })
            .collect();
        let key = RecordKey::Group {
            group: group.to_string(),
        };
        tombstones.push((key, None));
        tombstones
    };
    match write(shard, partition, tombstones, None).await {
        Ok(_) => GroupReply::Done,
        Err(error) => GroupReply::Error(error),
    }
}
