//! Calls on the controller: the one way handlers reach it, from any shard of any node.
//!
//! A shard sends its call to shard 0 over the mesh. Shard 0 runs it on its controller when
//! this node's controller is the active one (always on a single node; in a cluster, when the
//! node leads the metadata quorum), and otherwise forwards it over the node-to-node transport
//! to shard 0 of the node that leads, which runs it only if it still leads (a forwarded call
//! is never forwarded again). No answer within `CONTROLLER_CALL_TIMEOUT_MS` or before the
//! node asked stops leading, or no leader, is `None`: the handler answers NOT_CONTROLLER and
//! the client retries, as with Kafka.
//! A broker-only node that knows no leader yet (it has not joined the metadata group: its
//! registration is its first call) asks all the voters; the leader among them answers.
//!
//! Payload of a forwarded call: kind (1 byte, `CALL` or `ANSWER`), call id (8, big-endian),
//! then the call or the answer as JSON (controller calls are admin traffic, not data).

use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use futures::future::{select, Either};
use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::admin::{AdminResult, ControllerCommand};
use super::messages::{CreateTopicSpec, ShardRequest, TopicRef, TopicResult};
use super::Shard;
use crate::ids::{NodeId, ShardId};
use crate::limits;
use crate::metadata::BrokerRegistration;
use crate::replication::GroupState;
use crate::runtime;
use crate::transport::{Address, Transport};

/// What can be asked of the controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerCall {
    CreateTopics(Vec<CreateTopicSpec>),
    DeleteTopics(Vec<TopicRef>),
    /// A fresh block of producer ids `[first, end)`.
    AllocateProducerIds,
    /// Config changes, partition increases, users, ACLs and quotas.
    Commands(Vec<ControllerCommand>),
    /// A node of the cluster, once per start, says where clients reach it (it is fenced
    /// until it has caught up with the metadata log).
    RegisterBroker(BrokerRegistration),
    /// A registered node says it is alive and how far it has applied the metadata log (the
    /// offset of the next record it applies), or that it is shutting down (it is fenced at
    /// once, as Kafka's controlled shutdown, instead of after its session).
    Heartbeat {
        node: NodeId,
        shutting_down: bool,
        #[serde(default)]
        applied: i64,
    },
    /// The metadata quorum as its leader knows it (DescribeQuorum).
    DescribeQuorum,
}

/// The controller's answer, one variant per kind of call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerAnswer {
    Topics(Vec<TopicResult>),
    ProducerIds(Result<(i64, i64), String>),
    Commands(Vec<AdminResult>),
    /// Ok: the metadata log offset the registration is applied below; the node serves
    /// clients once it has applied that far and is unfenced.
    Registered(Result<i64, String>),
    /// Ok(Some(offset)): the node stays fenced until it has applied the log below `offset`.
    /// Err: the node is not registered (it registers again).
    Heartbeat(Result<Option<i64>, String>),
    Quorum(GroupState),
}

/// Payload kinds of forwarded calls (replication's payloads use kinds below 0x10).
const CALL: u8 = 0x10;
const ANSWER: u8 = 0x11;

/// Whether a node-to-node payload is a forwarded controller call or its answer.
pub fn is_controller_payload(payload: &[u8]) -> bool {
    matches!(payload.first(), Some(&CALL) | Some(&ANSWER))
}

fn encode(kind: u8, id: u64, body: &impl Serialize) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(kind);
    out.put_u64(id);
    let json = serde_json::to_vec(body).expect("controller calls encode as JSON");
    out.extend_from_slice(&json);
    out.freeze()
}

impl Shard {
    /// Runs `call` on the active controller; None when none can be reached, or no answer
    /// came from another node within `CONTROLLER_CALL_TIMEOUT_MS`.
    pub async fn call_controller(
        self: &Rc<Self>,
        call: ControllerCall,
    ) -> Option<ControllerAnswer> {
        let patience = Duration::from_millis(limits::CONTROLLER_CALL_TIMEOUT_MS);
        self.call_controller_within(call, patience).await
    }

    /// `call_controller` for a call that is repeated anyway (a heartbeat, a leadership
    /// report), giving up on another node's answer after `patience`. Node-to-node links drop
    /// what they cannot deliver (a cut, a link that failed), so a call can be lost; such a
    /// call is better sent again soon than waited for the whole timeout (a heartbeat lost in
    /// a network cut kept its node fenced 10 s after the heal).
    pub async fn call_controller_within(
        self: &Rc<Self>,
        call: ControllerCall,
        patience: Duration,
    ) -> Option<ControllerAnswer> {
        if self.id != ShardId(0) {
            let reply = self
                .call(ShardId(0), |tx| {
                    ShardRequest::ControllerCall(call, patience, tx)
                })
                .await;
            return reply.flatten();
        }
        let controller = self.controller.borrow().clone()?;
        match controller.leader() {
            Some(node) if node == self.config.node_id => controller.run(self, call).await,
            Some(node) => self.forward_to_controller(node, call, true, patience).await,
            None => self.ask_voters(call, patience).await,
        }
    }

    /// A broker-only node that knows no leader: the call goes to every voter at once, and the
    /// leader's answer is taken (only the leader runs it; the others answer None at once, and
    /// a voter that is down costs no more than the rest). None on a voter, and when no voter
    /// answers.
    async fn ask_voters(
        self: &Rc<Self>,
        call: ControllerCall,
        patience: Duration,
    ) -> Option<ControllerAnswer> {
        let config = self.config.cluster.as_ref()?;
        if config.is_voter(self.config.node_id) {
            return None;
        }
        let mut asked: FuturesUnordered<_> = config
            .voter_ids()
            .into_iter()
            .map(|voter| self.forward_to_controller(voter, call.clone(), false, patience))
            .collect();
        while let Some(answer) = asked.next().await {
            if answer.is_some() {
                return answer;
            }
        }
        None
    }

    /// Sends `call` to shard 0 of `node` and waits for its answer: at most `patience`, and,
    /// when `node` was asked as the leader (`as_leader`),
    /// only while this node still knows it as the leader. A call to a controller that died or
    /// was deposed then ends as soon as a new leader is known, and the caller asks that one:
    /// a broker's heartbeats must not wait out the timeout, or the new controller fences
    /// every node it has not heard from within their session.
    async fn forward_to_controller(
        self: &Rc<Self>,
        node: NodeId,
        call: ControllerCall,
        as_leader: bool,
        patience: Duration,
    ) -> Option<ControllerAnswer> {
        let cluster = self.cluster.get()?;
        let id = cluster.next_call_id();
        let (answer, answered) = oneshot::channel();
        cluster.forwarded.borrow_mut().insert(id, answer);
        let to = Address {
            node,
            shard: ShardId(0),
        };
        cluster.transport.send(to, encode(CALL, id, &call));
        let timeout = runtime::sleep(patience);
        let quorum = self
            .controller
            .borrow()
            .as_ref()
            .and_then(|c| c.replica().cloned());
        let deposed = async move {
            match quorum {
                Some(replica) if as_leader => loop {
                    let moved = replica.leadership_moved();
                    if replica.leader() != Some(node) {
                        return;
                    }
                    moved.await;
                },
                _ => std::future::pending().await,
            }
        };
        let given_up = select(Box::pin(timeout), Box::pin(deposed));
        let answer = match select(answered, given_up).await {
            Either::Left((answer, _)) => answer.ok().flatten(),
            Either::Right(_) => None,
        };
        cluster.forwarded.borrow_mut().remove(&id);
        answer
    }

    /// A forwarded call or an answer from another node (shard 0 only); anything that does
    /// not decode is dropped like a lost payload.
    pub(super) fn receive_controller_payload(self: &Rc<Self>, from: Address, mut payload: Bytes) {
        if payload.len() < 9 {
            return;
        }
        let kind = payload.get_u8();
        let id = payload.get_u64();
        match kind {
            CALL => {
                let Ok(call) = serde_json::from_slice::<ControllerCall>(&payload) else {
                    return;
                };
                // A broker-only node registering is answered before its registration is
                // applied, which is how this node would learn where it listens.
                if let ControllerCall::RegisterBroker(registration) = &call {
                    self.learn_registering(from.node, registration);
                }
                let shard = self.clone();
                runtime::spawn_into(self.queues.requests, async move {
                    let controller = shard.controller.borrow().clone();
                    let answer = match controller {
                        Some(controller) => controller.run(&shard, call).await,
                        None => None,
                    };
                    if let Some(cluster) = shard.cluster.get() {
                        cluster.transport.send(from, encode(ANSWER, id, &answer));
                    }
                });
            }
            ANSWER => {
                let Ok(answer) = serde_json::from_slice::<Option<ControllerAnswer>>(&payload)
                else {
                    return;
                };
                let waiting = self
                    .cluster
                    .get()
                    .and_then(|cluster| cluster.forwarded.borrow_mut().remove(&id));
                if let Some(waiting) = waiting {
                    let _ = waiting.send(answer);
                }
            }
            _ => {}
        }
    }

    pub async fn create_topics(self: &Rc<Self>, specs: Vec<CreateTopicSpec>) -> Vec<TopicResult> {
        let names: Vec<_> = specs.iter().map(|spec| spec.name.clone()).collect();
        match self
            .call_controller(ControllerCall::CreateTopics(specs))
            .await
        {
            Some(ControllerAnswer::Topics(results)) => results,
            _ => controller_unavailable(names.into_iter()),
        }
    }

    pub async fn delete_topics(self: &Rc<Self>, topics: Vec<TopicRef>) -> Vec<TopicResult> {
        let names: Vec<_> = topics
            .iter()
            .map(|topic| match topic {
                TopicRef::Name(name) => name.clone(),
                TopicRef::Id(_) => String::new(),
            })
            .collect();
        match self
            .call_controller(ControllerCall::DeleteTopics(topics))
            .await
        {
            Some(ControllerAnswer::Topics(results)) => results,
            _ => controller_unavailable(names.into_iter()),
        }
    }

    /// Runs `commands` on the controller, in order; one result per command.
    pub async fn controller_commands(
        self: &Rc<Self>,
        commands: Vec<ControllerCommand>,
    ) -> Vec<AdminResult> {
        let count = commands.len();
        match self
            .call_controller(ControllerCall::Commands(commands))
            .await
        {
            Some(ControllerAnswer::Commands(results)) => results,
            _ => {
                let unavailable = AdminResult::error(
                    ResponseError::NotController,
                    "the controller is not available",
                );
                vec![unavailable; count]
            }
        }
    }

    /// The metadata quorum as its leader knows it; None when no controller can be reached.
    pub async fn describe_quorum(self: &Rc<Self>) -> Option<GroupState> {
        match self.call_controller(ControllerCall::DescribeQuorum).await {
            Some(ControllerAnswer::Quorum(state)) => Some(state),
            _ => None,
        }
    }

    /// A fresh block of producer ids from the controller.
    pub(crate) async fn producer_id_block(self: &Rc<Self>) -> Result<(i64, i64), String> {
        match self
            .call_controller(ControllerCall::AllocateProducerIds)
            .await
        {
            Some(ControllerAnswer::ProducerIds(block)) => block,
            _ => Err("the controller is not available".into()),
        }
    }
}

fn controller_unavailable(names: impl Iterator<Item = String>) -> Vec<TopicResult> {
    names
        .map(|name| {
            let refusal = (
                ResponseError::NotController,
                "the controller is not available".to_string(),
            );
            TopicResult::refused(name, refusal)
        })
        .collect()
}
