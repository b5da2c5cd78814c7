//! Partition reassignments over the Kafka protocol: AlterPartitionReassignments (start, change
//! or cancel moves of replicas) and ListPartitionReassignments (the moves in progress), for
//! `corelog cluster reassign|reassignments|decommission`. Served by Kafka 2.4 on.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};

use super::admin::{kafka_error, Admin};

const ALTER_VERSION: i16 = 0;
const LIST_VERSION: i16 = 0;
/// How long the broker may take, as Kafka's tools ask.
const TIMEOUT_MS: i32 = 30_000;

/// One partition's wanted replicas; `None` cancels its reassignment. The JSON shape of
/// `kafka-reassign-partitions.sh`'s plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionTarget {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

/// A reassignment in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    /// The target's replicas first, then those leaving.
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl Admin {
    /// Starts (or cancels) the reassignment of each of `targets`; per target, what the
    /// controller answered.
    pub fn alter_reassignments(
        &mut self,
        targets: &[PartitionTarget],
    ) -> anyhow::Result<Vec<anyhow::Result<()>>> {
        let mut topics: Vec<ReassignableTopic> = Vec::new();
        for target in targets {
            let partition = ReassignablePartition::default()
                .with_partition_index(target.partition)
                .with_replicas(
                    target
                        .replicas
                        .as_ref()
                        .map(|replicas| replicas.iter().map(|id| BrokerId(*id)).collect()),
                );
            match topics
                .iter_mut()
                .find(|t| t.name.0.as_str() == target.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(target.topic.clone())))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(TIMEOUT_MS)
            .with_topics(topics);
        let response = self.request(&request, ALTER_VERSION)?;
        if response.error_code != 0 {
            let message = response.error_message.as_deref();
            return Err(kafka_error("reassign", response.error_code, message));
        }
        let outcomes = targets
            .iter()
            .map(|target| {
                let answered = response
                    .responses
                    .iter()
                    .filter(|topic| topic.name.0.as_str() == target.topic)
                    .flat_map(|topic| &topic.partitions)
                    .find(|partition| partition.partition_index == target.partition);
                let what = format!("reassign {}-{}", target.topic, target.partition);
                match answered {
                    None => Err(anyhow::anyhow!("{what}: no answer")),
                    Some(answer) if answer.error_code != 0 => Err(kafka_error(
                        &what,
                        answer.error_code,
                        answer.error_message.as_deref(),
                    )),
                    Some(_) => Ok(()),
                }
            })
            .collect();
        Ok(outcomes)
    }

    /// Every reassignment in progress, by topic and partition.
    pub fn list_reassignments(&mut self) -> anyhow::Result<Vec<Ongoing>> {
        let request = ListPartitionReassignmentsRequest::default().with_timeout_ms(TIMEOUT_MS);
        let response = self.request(&request, LIST_VERSION)?;
        if response.error_code != 0 {
            let message = response.error_message.as_deref();
            return Err(kafka_error(
                "list reassignments",
                response.error_code,
                message,
            ));
        }
        let ids = |ids: &[BrokerId]| ids.iter().map(|id| id.0).collect();
        let mut ongoing: Vec<Ongoing> = response
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| Ongoing {
                    topic: topic.name.0.to_string(),
                    partition: partition.partition_index,
                    replicas: ids(&partition.replicas),
                    adding: ids(&partition.adding_replicas),
                    removing: ids(&partition.removing_replicas),
                })
            })
            .collect();
        ongoing.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(ongoing)
    }
}
