//! The `produce` scenario, and the producer half of `e2e`: one task per producer connection.
//!
//! A producer writes Produce requests (one record batch for one partition each, partitions in
//! turn) and a reader task on the same connection takes the answers in order. At most
//! `--max-in-flight` requests are unanswered at once (a semaphore the reader releases).
//! Closed loop fills every batch at once and sends whenever a slot is free; open loop sends the
//! messages that are due, each stamped with its intended send time, from which its latency is
//! measured. The first 8 value bytes of every record carry that time (wall-clock microseconds,
//! big-endian) for `e2e`.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::io::{ReadHalf, WriteHalf};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;

use super::report::{record_us, Progress, Stats};
use super::{Clock, CompressionArg, KeyDistribution, Shared};
use crate::client::admin::topic_name;
use crate::client::security::ClientStream;
use crate::client::Connection;
use crate::client::{FrameReader, FrameWriter};
use crate::protocol::record_batch::{encode_plain_batch, PlainRecord};
use crate::runtime;
use crate::runtime::local_channel::{self, LocalReceiver, LocalSender};
use crate::runtime::Semaphore;

/// Pause before a producer reconnects after its connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// One request on the wire, waiting for its answer.
struct InFlight {
    correlation_id: i32,
    sent_at: Instant,
    /// Open loop: when the first message was due, and the spacing of the following ones;
    /// each message's latency starts at its own intended time.
    first_intended: Option<(Instant, f64)>,
    records: u64,
}

/// What a producer keeps across reconnections.
struct Producer {
    shared: Arc<Shared>,
    clock: Clock,
    next_partition: i32,
    /// Open loop: index of the next message due, and the spacing of messages.
    next_message: u64,
    interval_s: f64,
    phase_s: f64,
    records_per_batch: usize,
    filler: Bytes,
    key_counter: u64,
    random_state: u64,
}

/// Runs one producer until the end of the run; returns when its last answer is in.
pub async fn producer(shared: Arc<Shared>, index: usize, stats: Rc<RefCell<Stats>>) {
    let mut producer = Producer::new(shared.clone(), index);
    let clock = producer.clock;
    while Instant::now() < clock.end {
        let connection = match shared.connect().await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!("producer {index}: connect: {error:#}");
                count_error(&shared, &stats, "connect");
                runtime::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        sleep_until(clock.start).await;
        if let Err(error) = producer.run_connection(connection, &stats).await {
            tracing::debug!("producer {index}: connection failed: {error}");
            count_error(&shared, &stats, "io");
            runtime::sleep(RECONNECT_PAUSE).await;
        }
    }
}

fn count_error(shared: &Shared, stats: &RefCell<Stats>, kind: &str) {
    stats.borrow_mut().error(kind);
    Progress::add(&shared.progress.errors, 1);
}

pub async fn sleep_until(instant: Instant) {
    let now = Instant::now();
    if instant > now {
        runtime::sleep(instant - now).await;
    }
}

impl Producer {
    fn new(shared: Arc<Shared>, index: usize) -> Producer {
        let options = &shared.options;
        let rate = options.rate.unwrap_or(1.0) / options.producers as f64;
        let interval_s = 1.0 / rate;
        let mut random_state = 0x9e37_79b9_7f4a_7c15u64 ^ (index as u64 + 1);
        let filler: Vec<u8> = (0..options.message_size)
            .map(|_| next_random(&mut random_state) as u8)
            .collect();
        Producer {
            clock: shared.clock(),
            next_partition: (index as i32) % shared.partitions,
            next_message: 0,
            interval_s,
            // Producers start a fraction of an interval apart, so that they do not fire together.
            phase_s: interval_s * index as f64 / options.producers as f64,
            records_per_batch: (options.batch_size / options.message_size.max(1)).max(1),
            filler: Bytes::from(filler),
            key_counter: 0,
            random_state,
            shared,
        }
    }

    /// When message `index` is due (open loop).
    fn intended(&self, index: u64) -> Instant {
        self.clock.start + Duration::from_secs_f64(self.phase_s + index as f64 * self.interval_s)
    }

    async fn run_connection(
        &mut self,
        connection: Connection<ClientStream>,
        stats: &Rc<RefCell<Stats>>,
    ) -> io::Result<()> {
        let Connection { mut writer, reader } = connection;
        let in_flight_max = self.shared.options.max_in_flight;
        if self.shared.options.acks == 0 {
            // Nothing comes back: a written request counts as produced.
            return self.write_loop(&mut writer, None, stats).await;
        }
        let permits = Rc::new(Semaphore::new(in_flight_max as u64));
        let (sender, receiver) = local_channel::new_bounded(in_flight_max);
        let acks = runtime::spawn_local(read_acks(
            self.shared.clone(),
            reader,
            receiver,
            permits.clone(),
            stats.clone(),
        ));
        let written = self
            .write_loop(&mut writer, Some((&sender, &permits)), stats)
            .await;
        drop(sender);
        let read = acks.await;
        written.and(read)
    }

    async fn write_loop(
        &mut self,
        writer: &mut FrameWriter<WriteHalf<ClientStream>>,
        acks: Option<(&LocalSender<InFlight>, &Rc<Semaphore>)>,
        stats: &RefCell<Stats>,
    ) -> io::Result<()> {
        let closed = || io::Error::other("the connection's reader stopped");
        loop {
            let Some((first_message, records, due)) = self.next_send().await else {
                return Ok(());
            };
            if let Some((_, permits)) = acks {
                permits.acquire(1).await.map_err(|_| closed())?;
            }
            let wall_us = |i: u64| match first_message {
                Some(first) => self.clock.wall_us(self.intended(first + i)),
                None => self.clock.wall_us(due),
            };
            let timestamps: Vec<u64> = (0..records).map(wall_us).collect();
            let request = self.request(&timestamps);
            let sent_at = Instant::now();
            let correlation_id = writer.send(&request, self.shared.versions.produce).await?;
            match acks {
                Some((sender, _)) => {
                    let flight = InFlight {
                        correlation_id,
                        sent_at,
                        first_intended: first_message.map(|i| (self.intended(i), self.interval_s)),
                        records,
                    };
                    sender.send(flight).await.map_err(|_| closed())?;
                }
                None if self.clock.measuring(sent_at) => {
                    let bytes = records * self.shared.options.message_size as u64;
                    account_produced(&self.shared, &mut stats.borrow_mut(), records, bytes);
                }
                None => {}
            }
        }
    }

    /// Waits until the next batch should go; returns (open loop: its first message index,
    /// record count, the time it is due), or None when the run is over.
    async fn next_send(&mut self) -> Option<(Option<u64>, u64, Instant)> {
        let Some(_) = self.shared.options.rate else {
            let now = Instant::now();
            return (now < self.clock.end).then_some((None, self.records_per_batch as u64, now));
        };
        let linger = Duration::from_millis(self.shared.options.linger_ms);
        loop {
            let first = self.next_message;
            let due_at = self.intended(first);
            if due_at >= self.clock.end {
                return None;
            }
            let now = Instant::now();
            if due_at > now {
                sleep_until(due_at).await;
                continue;
            }
            let mut count = 1u64;
            while (count as usize) < self.records_per_batch {
                let next = self.intended(first + count);
                if next > now || next >= self.clock.end {
                    break;
                }
                count += 1;
            }
            let next = self.intended(first + count);
            let full = count as usize >= self.records_per_batch;
            if !full && now < due_at + linger && next < self.clock.end {
                // Lingering: wait for the next message or the linger deadline, whichever is first.
                sleep_until(next.min(due_at + linger)).await;
                continue;
            }
            self.next_message += count;
            return Some((Some(first), count, due_at));
        }
    }

    /// A Produce request with one batch of `timestamps.len()` records for the next partition.
    fn request(&mut self, timestamps_us: &[u64]) -> ProduceRequest {
        let batch = self.encode_batch(timestamps_us);
        let partition = self.next_partition;
        self.next_partition = (self.next_partition + 1) % self.shared.partitions;
        let data = PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(batch));
        let topic = TopicProduceData::default()
            .with_name(topic_name(&self.shared.options.topic))
            .with_partition_data(vec![data]);
        ProduceRequest::default()
            .with_acks(self.shared.options.acks)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![topic])
    }

    fn encode_batch(&mut self, timestamps_us: &[u64]) -> Bytes {
        let records: Vec<PlainRecord> = timestamps_us
            .iter()
            .map(|&wall_us| PlainRecord {
                timestamp: (wall_us / 1000) as i64,
                key: self.next_key(),
                value: Some(self.value(wall_us)),
            })
            .collect();
        let compression = compression(self.shared.options.compression);
        encode_plain_batch(records, compression)
            .expect("records built here always encode")
            .freeze()
    }

    fn value(&self, wall_us: u64) -> Bytes {
        let size = self.filler.len();
        let stamp = wall_us.to_be_bytes();
        let stamped = size.min(stamp.len());
        let mut value = BytesMut::with_capacity(size);
        value.extend_from_slice(&stamp[..stamped]);
        value.extend_from_slice(&self.filler[stamped..]);
        value.freeze()
    }

    fn next_key(&mut self) -> Option<Bytes> {
        match self.shared.options.key_distribution {
            KeyDistribution::None => None,
            KeyDistribution::Random => {
                let random = next_random(&mut self.random_state);
                let key = match self.shared.options.key_space {
                    Some(keys) => random % keys.get(),
                    None => random,
                };
                Some(Bytes::copy_from_slice(&key.to_be_bytes()))
            }
            KeyDistribution::Sequential => {
                self.key_counter += 1;
                Some(Bytes::from(self.key_counter.to_string()))
            }
        }
    }
}

/// xorshift64*: cheap pseudo-random numbers for keys and filler (no quality needed).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn compression(arg: CompressionArg) -> Compression {
    match arg {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Snappy => Compression::Snappy,
        CompressionArg::Lz4 => Compression::Lz4,
        CompressionArg::Zstd => Compression::Zstd,
    }
}

fn account_produced(shared: &Shared, stats: &mut Stats, records: u64, bytes: u64) {
    stats.produced_messages += records;
    stats.produced_bytes += bytes;
    Progress::add(&shared.progress.produced_messages, records);
    Progress::add(&shared.progress.produced_bytes, bytes);
}

/// Takes the answers of one connection in request order and accounts each batch.
async fn read_acks(
    shared: Arc<Shared>,
    mut reader: FrameReader<ReadHalf<ClientStream>>,
    receiver: LocalReceiver<InFlight>,
    permits: Rc<Semaphore>,
    stats: Rc<RefCell<Stats>>,
) -> io::Result<()> {
    while let Some(flight) = receiver.recv().await {
        let response = reader
            .recv::<ProduceRequest>(flight.correlation_id, shared.versions.produce)
            .await;
        permits.signal(1);
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                // Wakes a writer waiting for a slot; it then sees the connection is gone.
                permits.close();
                return Err(error);
            }
        };
        account_ack(&shared, &flight, &response, &mut stats.borrow_mut());
    }
    Ok(())
}

fn account_ack(shared: &Shared, flight: &InFlight, response: &ProduceResponse, stats: &mut Stats) {
    let now = Instant::now();
    let code = response
        .responses
        .first()
        .and_then(|topic| topic.partition_responses.first())
        .map_or(-1, |partition| partition.error_code);
    if code != 0 {
        stats.kafka_error(code);
        Progress::add(&shared.progress.errors, 1);
        return;
    }
    let clock = shared.clock();
    if !clock.measuring(now) {
        return;
    }
    let bytes = flight.records * shared.options.message_size as u64;
    account_produced(shared, stats, flight.records, bytes);
    let round_trip_us = now.duration_since(flight.sent_at).as_micros() as u64;
    record_us(&mut stats.request_latency_us, round_trip_us, 1);
    match flight.first_intended {
        None => record_us(&mut stats.produce_latency_us, round_trip_us, flight.records),
        Some((first, interval_s)) => {
            for offset in 0..flight.records {
                let intended = first + Duration::from_secs_f64(offset as f64 * interval_s);
                let latency_us = now.saturating_duration_since(intended).as_micros() as u64;
                record_us(&mut stats.produce_latency_us, latency_us, 1);
            }
        }
    }
}
