//! Consumer-group administration over the blocking [`Admin`] client: coordinator lookup,
//! listing, describing, deleting groups, and reading and committing their offsets.
//!
//! Group requests go to the group's coordinator, found with FindCoordinator: in a cluster it
//! may be another broker than the one first reached, so [`Admin::coordinator`] opens a
//! connection there. Member assignments are decoded from the consumer protocol's bytes; bytes
//! that do not parse are reported as such, never a panic.

use std::net::ToSocketAddrs;

use anyhow::{bail, Context};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::admin::{kafka_error, topic_name, versions, Admin, ERROR_UNKNOWN_TOPIC};

/// Group request versions this client sends, inside what Kafka 3.x/4.x and corelog serve.
pub mod group_versions {
    pub const FIND_COORDINATOR: i16 = 3;
    pub const LIST_GROUPS: i16 = 4;
    pub const DESCRIBE_GROUPS: i16 = 5;
    pub const DELETE_GROUPS: i16 = 2;
    pub const OFFSET_FETCH: i16 = 8;
    pub const OFFSET_COMMIT: i16 = 8;
}

// FindCoordinator v4+ asks for a list of keys; this client sends the single-key form.
const _: () = assert!(group_versions::FIND_COORDINATOR <= 3);
// OffsetFetch's multi-group form starts at v8.
const _: () = assert!(group_versions::OFFSET_FETCH >= 8);

/// FindCoordinator's key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;

/// A group as ListGroups shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupListing {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (e.g. "range"), empty when there is none.
    pub protocol: String,
    pub members: Vec<MemberInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// The decoded consumer-protocol assignment; None when the bytes do not parse.
    pub assignment: Option<Assignment>,
}

/// A consumer-protocol assignment: version, partitions per topic, and opaque user data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub version: i16,
    pub topics: Vec<(String, Vec<i32>)>,
    pub user_data: Option<Vec<u8>>,
}

/// A group's committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group_id(value: &str) -> GroupId {
    GroupId(text(value))
}

/// Reads big-endian fields from assignment bytes; every read checks the length left.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl Cursor<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        if count > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }

    /// An array length; negative (null) arrays count as empty.
    fn count(&mut self) -> Option<usize> {
        let count = self.i32()?;
        // Each element takes at least two bytes, which bounds what a hostile count allocates.
        let count = usize::try_from(count.max(0)).ok()?;
        (count <= self.bytes.len() / 2).then_some(count)
    }
}

/// Decodes a consumer-protocol assignment (version, [topic, [partition]], user data).
/// Empty bytes (a member not yet assigned) decode as an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Option<Assignment> {
    if bytes.is_empty() {
        return Some(Assignment {
            version: 0,
            topics: Vec::new(),
            user_data: None,
        });
    }
    let mut cursor = Cursor { bytes };
    let version = cursor.i16()?;
    let mut topics = Vec::new();
    for _ in 0..cursor.count()? {
        let topic = cursor.string()?;
        let partitions = (0..cursor.count()?)
            .map(|_| cursor.i32())
            .collect::<Option<Vec<i32>>>()?;
        topics.push((topic, partitions));
    }
    // Version 0 ends with the user data; later versions may add fields after it.
    let user_data = match cursor.i32() {
        None => None,
        Some(length) if length < 0 => None,
        Some(length) => Some(cursor.take(length as usize)?.to_vec()),
    };
    Some(Assignment {
        version,
        topics,
        user_data,
    })
}

/// Encodes a consumer-protocol assignment of version 0 (tests and tools that join groups).
pub fn encode_assignment(topics: &[(&str, &[i32])], user_data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (topic, partitions) in topics {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for partition in *partitions {
            out.extend_from_slice(&partition.to_be_bytes());
        }
    }
    out.extend_from_slice(&(user_data.len() as i32).to_be_bytes());
    out.extend_from_slice(user_data);
    out
}

impl Admin {
    /// A connection to the coordinator of `group` (FindCoordinator on this broker first).
    pub fn coordinator(&mut self, group: &str) -> anyhow::Result<Admin> {
        let request = FindCoordinatorRequest::default()
            .with_key(text(group))
            .with_key_type(KEY_TYPE_GROUP);
        let response = self.request(&request, group_versions::FIND_COORDINATOR)?;
        if response.error_code != 0 {
            let message = response.error_message.as_ref().map(|m| m.as_str());
            return Err(kafka_error(
                &format!("coordinator of group {group:?}"),
                response.error_code,
                message,
            ));
        }
        let address = format!("{}:{}", response.host.as_str(), response.port);
        let resolved: Vec<_> = address
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the coordinator address {address}"))?
            .collect();
        if resolved.contains(&self.address()) {
            // Same broker: a second connection keeps the API simple and costs one handshake.
            let host = response.host.to_string();
            return Admin::connect(self.address(), &host, &self.security().clone());
        }
        Admin::connect_any(&[address], &self.security().clone())
    }

    /// The `HOST:PORT` of every broker Metadata lists.
    pub fn broker_addresses(&mut self) -> anyhow::Result<Vec<String>> {
        let request = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        let response = self.request(&request, versions::METADATA)?;
        let mut brokers: Vec<String> = response
            .brokers
            .iter()
            .map(|b| format!("{}:{}", b.host.as_str(), b.port))
            .collect();
        brokers.sort();
        Ok(brokers)
    }

    /// The groups this broker coordinates.
    pub fn list_groups(&mut self) -> anyhow::Result<Vec<GroupListing>> {
        let response = self.request(&ListGroupsRequest::default(), group_versions::LIST_GROUPS)?;
        if response.error_code != 0 {
            return Err(kafka_error("ListGroups", response.error_code, None));
        }
        Ok(response
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group: g.group_id.0.to_string(),
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
            })
            .collect())
    }

    /// DescribeGroups of one group on its coordinator (call on [`Admin::coordinator`]).
    pub fn describe_group(&mut self, group: &str) -> anyhow::Result<GroupDescription> {
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response = self.request(&request, group_versions::DESCRIBE_GROUPS)?;
        let Some(described) = response.groups.into_iter().next() else {
            bail!("DescribeGroups answered without group {group:?}");
        };
        if described.error_code != 0 {
            let message = described.error_message.as_ref().map(|m| m.as_str());
            return Err(kafka_error(
                &format!("describe group {group:?}"),
                described.error_code,
                message,
            ));
        }
        let members = described
            .members
            .into_iter()
            .map(|m| MemberInfo {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                host: m.client_host.to_string(),
                assignment: decode_assignment(&m.member_assignment),
            })
            .collect();
        Ok(GroupDescription {
            group: group.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members,
        })
    }

    /// DeleteGroups on the coordinator; the error code answered per group (0: deleted).
    pub fn delete_groups(&mut self, groups: &[String]) -> anyhow::Result<Vec<(String, i16)>> {
        let request = DeleteGroupsRequest::default()
            .with_groups_names(groups.iter().map(|g| group_id(g)).collect());
        let response = self.request(&request, group_versions::DELETE_GROUPS)?;
        Ok(response
            .results
            .into_iter()
            .map(|r| (r.group_id.0.to_string(), r.error_code))
            .collect())
    }

    /// The group's committed offsets, of every topic (`topic` None) or of some partitions of
    /// one topic. Partitions without a committed offset are left out.
    pub fn committed_offsets(
        &mut self,
        group: &str,
        topic: Option<(&str, &[i32])>,
    ) -> anyhow::Result<Vec<CommittedOffset>> {
        let topics = topic.map(|(name, partitions)| {
            vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(name))
                .with_partition_indexes(partitions.to_vec())]
        });
        let ask = OffsetFetchRequestGroup::default()
            .with_group_id(group_id(group))
            .with_topics(topics);
        let request = OffsetFetchRequest::default().with_groups(vec![ask]);
        let response = self.request(&request, group_versions::OFFSET_FETCH)?;
        let Some(answer) = response.groups.into_iter().next() else {
            bail!("OffsetFetch answered without group {group:?}");
        };
        let what = format!("offsets of group {group:?}");
        if answer.error_code != 0 {
            return Err(kafka_error(&what, answer.error_code, None));
        }
        let mut offsets = Vec::new();
        for topic in answer.topics {
            for partition in topic.partitions {
                if partition.error_code != 0 {
                    return Err(kafka_error(&what, partition.error_code, None));
                }
                if partition.committed_offset >= 0 {
                    offsets.push(CommittedOffset {
                        topic: topic.name.0.to_string(),
                        partition: partition.partition_index,
                        offset: partition.committed_offset,
                    });
                }
            }
        }
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(offsets)
    }

    /// The log end offset of each of `partitions` of `topic`, in partition order; None for a
    /// partition that no longer exists (UNKNOWN_TOPIC_OR_PARTITION: its topic was deleted while
    /// the group still holds offsets or an assignment there). Any other error fails, as does a
    /// request that fails as a whole.
    pub fn log_end_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<(i32, Option<i64>)>> {
        self.list_offsets(topic, partitions, -1)?
            .into_iter()
            .map(|(partition, answer)| match answer {
                Ok(offset) => Ok((partition, Some(offset))),
                Err(ERROR_UNKNOWN_TOPIC) => Ok((partition, None)),
                Err(code) => {
                    let what = format!("log end offset of {topic}-{partition}");
                    Err(kafka_error(&what, code, None))
                }
            })
            .collect()
    }

    /// Commits `offsets` as an admin does: generation -1 and no member, which a broker accepts
    /// only for a group without members. Fails naming the first Kafka error answered.
    pub fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &[CommittedOffset],
    ) -> anyhow::Result<()> {
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for offset in offsets {
            let partition = OffsetCommitRequestPartition::default()
                .with_partition_index(offset.partition)
                .with_committed_offset(offset.offset);
            match topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == offset.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(&offset.topic))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_topics(topics);
        let response = self.request(&request, group_versions::OFFSET_COMMIT)?;
        for topic in &response.topics {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    let what = format!(
                        "commit offsets of group {group:?} ({}-{})",
                        topic.name.0.as_str(),
                        partition.partition_index
                    );
                    return Err(kafka_error(&what, partition.error_code, None));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoded assignment decodes to the same topics, partitions and user data.
    #[test]
    fn assignment_round_trip() {
        let bytes = encode_assignment(&[("a", &[0, 2]), ("b", &[])], b"ud");
        let decoded = decode_assignment(&bytes).unwrap();
        assert_eq!(decoded.version, 0);
        assert_eq!(
            decoded.topics,
            vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![])]
        );
        assert_eq!(decoded.user_data.as_deref(), Some(&b"ud"[..]));
    }

    /// Truncated or lying bytes decode to None instead of panicking or allocating wildly.
    #[test]
    fn malformed_assignments_are_none() {
        let bytes = encode_assignment(&[("topic", &[1, 2, 3])], b"");
        for end in 1..bytes.len() - 4 {
            assert_eq!(
                decode_assignment(&bytes[..end]),
                None,
                "prefix of {end} bytes"
            );
        }
        let huge_count = [0, 0, 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(decode_assignment(&huge_count), None);
        let negative_string = [0, 0, 0, 0, 0, 1, 0xff, 0xff];
        assert_eq!(decode_assignment(&negative_string), None);
    }
}
