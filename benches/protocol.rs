//! Protocol hot paths: request decoding (a Produce carrying a 16 KiB batch, a Metadata
//! request) and Fetch response encoding (10 partitions of 4 batches each).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, ProduceRequest, RequestHeader, RequestKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use corelog::protocol::{
    decode_request, encode_fetch_response, FetchPartition, FetchResponseData, FetchTopic,
};

fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("bench-client")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.freeze()
}

fn produce_frame(version: i16) -> Bytes {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from(vec![0x5a; 16 * 1024])));
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
        .with_partition_data(vec![partition]);
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000);
    frame(
        ApiKey::Produce,
        version,
        &RequestKind::Produce(request.with_topic_data(vec![topic])),
    )
}

fn metadata_frame() -> Bytes {
    let topics = ["orders", "payments", "audit"]
        .iter()
        .map(|name| {
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(name))))
        })
        .collect();
    let request = MetadataRequest::default().with_topics(Some(topics));
    frame(ApiKey::Metadata, 12, &RequestKind::Metadata(request))
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_request");
    for version in [7, 9] {
        let produce = produce_frame(version);
        group.throughput(Throughput::Bytes(produce.len() as u64));
        group.bench_function(format!("produce_v{version}_16KiB"), |b| {
            b.iter(|| decode_request(black_box(produce.clone())).expect("decode"))
        });
    }
    let metadata = metadata_frame();
    group.throughput(Throughput::Elements(1));
    group.bench_function("metadata_v12_3_topics", |b| {
        b.iter(|| decode_request(black_box(metadata.clone())).expect("decode"))
    });
    group.finish();
}

fn fetch_response() -> FetchResponseData {
    let batch = Bytes::from(vec![0x33; 16 * 1024]);
    let partitions = (0..10)
        .map(|index| FetchPartition {
            partition_index: index,
            error_code: 0,
            high_watermark: 1_000_000,
            last_stable_offset: 1_000_000,
            log_start_offset: 0,
            records: vec![batch.clone(); 4],
            aborted_transactions: None,
            current_leader: None,
            preferred_read_replica: None,
        })
        .collect();
    let topic = FetchTopic {
        name: StrBytes::from_static_str("bench-topic"),
        topic_id: Default::default(),
        partitions,
    };
    FetchResponseData {
        topics: vec![topic],
        ..FetchResponseData::default()
    }
}

fn bench_fetch(c: &mut Criterion) {
    let response = fetch_response();
    let mut group = c.benchmark_group("encode_fetch_response");
    group.throughput(Throughput::Elements(40));
    for version in [11, 12] {
        group.bench_function(format!("v{version}_10_partitions_x4_batches"), |b| {
            b.iter(|| encode_fetch_response(1, version, black_box(&response)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_fetch);
criterion_main!(benches);
