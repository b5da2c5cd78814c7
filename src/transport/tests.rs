use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{select, Either};

use super::sim::{Faults, SimNetwork};
use super::tcp::{PeerAddresses, TcpTransport};
use super::{Address, Deliver, Hello, Transport};
use crate::ids::{NodeId, ShardId};
use crate::limits;
use crate::runtime::{self, clock::SimClock, Latency, Mesh, Reply};
use crate::sync::{Latch, Notify};

fn address(node: i32, shard: usize) -> Address {
    Address {
        node: NodeId(node),
        shard: ShardId(shard),
    }
}

/// What one shard was handed, in order.
#[derive(Default)]
struct Received {
    payloads: RefCell<Vec<(Address, Bytes)>>,
    arrived: Notify,
}

impl Received {
    fn deliver(self: &Rc<Self>) -> Deliver {
        let received = self.clone();
        Rc::new(move |from, payload| {
            received.payloads.borrow_mut().push((from, payload));
            received.arrived.notify_all();
        })
    }

    /// Waits until `count` payloads arrived; false if `timeout` passed first.
    async fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let deadline = runtime::sleep(timeout);
        let arrived = async {
            while self.payloads.borrow().len() < count {
                self.arrived.notified().await;
            }
        };
        matches!(
            select(Box::pin(arrived), Box::pin(deadline)).await,
            Either::Left(_)
        )
    }
}

/// Runs the simulation until nothing waits on the clock: every task woken runs, then time
/// jumps to the next deadline.
async fn settle(clock: &SimClock) {
    loop {
        runtime::yield_now().await;
        match clock.until_next_deadline() {
            Some(step) => clock.advance(step),
            None => return,
        }
    }
}

/// Three simulated nodes exchange payloads under seeded delays and drops; returns what
/// node 3 received, in order, and how many were dropped.
fn simulated_run(seed: u64, faults: Faults) -> (Vec<(Address, Bytes)>, u64) {
    runtime::run_on_new_executor(move || async move {
        let clock = SimClock::install(0);
        let network = SimNetwork::new(seed, faults);
        let stop = Rc::new(Latch::default());
        let received = Rc::new(Received::default());
        let senders: Vec<_> = [1, 2]
            .iter()
            .map(|node| network.attach(address(*node, 0), Rc::new(|_, _| {})))
            .collect();
        let _three = network.attach(address(3, 0), received.deliver());
        runtime::spawn_local(network.clone().run(stop.clone())).detach();
        for round in 0..50u32 {
            for sender in &senders {
                let payload = format!("{}:{round}", sender.local().node);
                sender.send(address(3, 0), Bytes::from(payload));
            }
        }
        settle(&clock).await;
        stop.raise();
        let dropped = network.stats().dropped.get();
        clock.uninstall();
        let payloads = received.payloads.take();
        (payloads, dropped)
    })
}

#[test]
fn simulated_deliveries_replay_exactly_from_their_seed() {
    let faults = Faults {
        drop_per_million: 100_000,
        delay_min_ms: 1,
        delay_max_ms: 20,
    };
    let (first, dropped) = simulated_run(7, faults);
    let (again, dropped_again) = simulated_run(7, faults);
    assert_eq!(
        first, again,
        "the same seed delivers the same payloads in the same order"
    );
    assert_eq!(dropped, dropped_again);
    assert!(
        dropped > 0 && dropped < 40,
        "about a tenth of 100 lost: {dropped}"
    );
    assert_eq!(
        first.len() as u64 + dropped,
        100,
        "every payload delivered or dropped"
    );
    let (other, _) = simulated_run(8, faults);
    assert_ne!(first, other, "another seed, another run");
    // Delays spread over 20 ms reorder payloads of one sender.
    let from_one: Vec<u32> = first
        .iter()
        .filter(|(from, _)| from.node == NodeId(1))
        .map(|(_, payload)| {
            let text = std::str::from_utf8(payload).unwrap();
            text.split(':').nth(1).unwrap().parse().unwrap()
        })
        .collect();
    assert!(
        from_one.windows(2).any(|pair| pair[0] > pair[1]),
        "reordered"
    );
}

#[test]
fn a_cut_link_loses_payloads_until_it_is_healed() {
    runtime::run_on_new_executor(|| async {
        let clock = SimClock::install(0);
        let network = SimNetwork::new(1, Faults::default());
        let stop = Rc::new(Latch::default());
        let received = Rc::new(Received::default());
        let one = network.attach(address(1, 0), Rc::new(|_, _| {}));
        let _two = network.attach(address(2, 1), received.deliver());
        runtime::spawn_local(network.clone().run(stop.clone())).detach();
        network.partition(&[NodeId(1)], &[NodeId(2)]);
        one.send(address(2, 1), Bytes::from_static(b"lost"));
        settle(&clock).await;
        assert!(received.payloads.borrow().is_empty());
        network.heal_all();
        one.send(address(2, 1), Bytes::from_static(b"kept"));
        // Cut while in flight: lost on arrival.
        one.send(address(2, 1), Bytes::from_static(b"in flight"));
        let in_flight = network.in_flight();
        assert_eq!(in_flight, 2);
        settle(&clock).await;
        assert_eq!(received.payloads.borrow().len(), 2);
        one.send(address(2, 1), Bytes::from_static(b"cut on the way"));
        network.cut(NodeId(1), NodeId(2));
        settle(&clock).await;
        assert_eq!(received.payloads.borrow().len(), 2);
        assert_eq!(network.stats().dropped.get(), 2);
        stop.raise();
        clock.uninstall();
    });
}

/// A link handed from the shard that accepted it to the shard it names.
type Handed = (Hello, OwnedFd, Reply<()>);

/// One shard of a real node for the TCP tests: listens on the node's cluster address (but
/// see below) and sends `per_peer` payloads to every shard of the other node, then waits to receive as
/// many from each of them. Returns what it received.
fn tcp_shard(
    node: i32,
    mesh: Arc<Mesh<Handed>>,
    listen: SocketAddr,
    peers: PeerAddresses,
    other: i32,
    per_peer: usize,
    listening: Arc<Barrier>,
) -> Vec<(Address, Bytes)> {
    runtime::run_on_new_executor(move || async move {
        let port = Rc::new(mesh.join());
        let local = address(node, port.id());
        let queue = runtime::task_queue("cluster", 100, Latency::NotImportant);
        let stop = Rc::new(Latch::default());
        let received = Rc::new(Received::default());
        let handoff_port = port.clone();
        let handoff = Rc::new(move |hello: Hello, fd: OwnedFd| {
            let port = handoff_port.clone();
            runtime::spawn_into(queue, async move {
                let to = hello.to.shard.get();
                port.call(to, |reply| (hello, fd, reply)).await;
            });
        });
        let transport = TcpTransport::new(
            local,
            2,
            peers,
            received.deliver(),
            handoff,
            queue,
            stop.clone(),
        );
        // Only shard 0 of node 1 listens: every link to its shard 1 lands on shard 0 and
        // reaches shard 1 only by the handoff.
        if node == 2 || local.shard == ShardId(0) {
            transport.listen(runtime::bind_shared_listener(listen).expect("bind"));
        }
        // Payloads sent before the peer listens are dropped (at most once): start together.
        listening.wait();
        let adopting = transport.clone();
        let serving = port.clone();
        let served = runtime::spawn_local(async move {
            serving
                .serve(|(hello, fd, reply): Handed| {
                    adopting.adopt(hello, fd);
                    reply.send(());
                })
                .await
        });
        for n in 0..per_peer {
            for shard in 0..2 {
                let payload = format!("{node}.{}->{other}.{shard}#{n}", local.shard);
                transport.send(address(other, shard), Bytes::from(payload));
            }
        }
        let all = received
            .wait_for(2 * per_peer, Duration::from_secs(60))
            .await;
        assert!(
            all,
            "{local:?} received {}",
            received.payloads.borrow().len()
        );
        // Stopping closes this shard's links: first every payload must be in the kernel's
        // hands, which delivers it after the close.
        while transport.stats().sent.get() < 2 * per_peer as u64 {
            runtime::sleep(Duration::from_millis(5)).await;
        }
        stop.raise();
        port.close();
        served.await;
        received.payloads.take()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

#[test]
fn payloads_reach_the_shard_they_name_across_real_tcp_links() {
    let addresses: HashMap<i32, SocketAddr> = [1, 2]
        .into_iter()
        .map(|node| (node, SocketAddr::from(([127, 0, 0, 1], free_port()))))
        .collect();
    let per_peer = 200;
    let mut shards = Vec::new();
    let listening = Arc::new(Barrier::new(4));
    for node in [1, 2] {
        let mesh = Mesh::full(2, 16).expect("a mesh");
        let other = 3 - node;
        let peers: PeerAddresses = [(NodeId(other), addresses[&other])].into();
        for _ in 0..2 {
            let (mesh, listen, peers) = (mesh.clone(), addresses[&node], peers.clone());
            let listening = listening.clone();
            shards.push(std::thread::spawn(move || {
                tcp_shard(node, mesh, listen, peers, other, per_peer, listening)
            }));
        }
    }
    for shard in shards {
        let received = shard.join().expect("a shard thread");
        assert_eq!(received.len(), 2 * per_peer);
        let mut by_sender: HashMap<Address, Vec<String>> = HashMap::new();
        for (from, payload) in received {
            let text = String::from_utf8(payload.to_vec()).unwrap();
            let (sender, rest) = text.split_once("->").unwrap();
            assert_eq!(
                sender,
                format!("{}.{}", from.node, from.shard),
                "from is the sender"
            );
            by_sender.entry(from).or_default().push(rest.to_string());
        }
        assert_eq!(
            by_sender.len(),
            2,
            "both shards of the other node reached this one"
        );
        for (from, payloads) in by_sender {
            let target = payloads[0].split('#').next().unwrap().to_string();
            assert!(
                payloads.iter().all(|p| p.starts_with(&target)),
                "one target shard"
            );
            let order: Vec<usize> = payloads
                .iter()
                .map(|p| p.split('#').nth(1).unwrap().parse().unwrap())
                .collect();
            assert_eq!(
                order,
                (0..per_peer).collect::<Vec<_>>(),
                "from {from:?} in order"
            );
        }
    }
}

#[test]
fn a_hello_for_another_node_is_refused_and_its_payloads_dropped() {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    runtime::run_on_new_executor(move || async move {
        let queue = runtime::task_queue("cluster", 100, Latency::NotImportant);
        let stop = Rc::new(Latch::default());
        let nothing: Deliver = Rc::new(|_, _| panic!("nothing is delivered"));
        let no_handoff = Rc::new(|_: Hello, _: OwnedFd| panic!("nothing is handed over"));
        let node_one = TcpTransport::new(
            address(1, 0),
            1,
            PeerAddresses::new(),
            nothing.clone(),
            no_handoff.clone(),
            queue,
            stop.clone(),
        );
        node_one.listen(runtime::bind_shared_listener(listen).expect("bind"));
        // Node 3 believes node 2 listens where node 1 does.
        let confused = TcpTransport::new(
            address(3, 0),
            1,
            [(NodeId(2), listen)].into(),
            nothing,
            no_handoff,
            queue,
            stop.clone(),
        );
        confused.send(address(2, 0), Bytes::from_static(b"for node 2"));
        while confused.stats().dropped.get() == 0 {
            runtime::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(confused.stats().sent.get(), 0);
        stop.raise();
    });
}

/// A link's socket gives up on a silent peer: the kernel holds the link's user timeout, and
/// probes an idle link every second (keepalive counts whole seconds: a shorter time would be
/// refused, and the link left to TCP's defaults).
#[test]
fn a_link_socket_gives_up_on_a_silent_peer() {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    runtime::run_on_new_executor(move || async move {
        let _listener = runtime::bind_shared_listener(listen).expect("bind");
        let stream = runtime::TcpStream::connect(listen).await.expect("connect");
        let silence = Duration::from_millis(limits::CLUSTER_LINK_SILENCE_MS);
        runtime::fail_when_unreachable(&stream, silence).expect("the options are taken");
        let socket = socket2::SockRef::from(&stream);
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(silence));
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.keepalive_time().unwrap(), Duration::from_secs(1));
        assert_eq!(socket.keepalive_interval().unwrap(), Duration::from_secs(1));
    });
}
