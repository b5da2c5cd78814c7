#!/usr/bin/env node
// kafkajs on a compacted topic, driven by tests/python/test_compaction.py. One step per run:
//
// Usage: node compaction.js '<json config>', the config one of
//   {"step": "create", "brokers": [...], "topic": "t", "configs": {"cleanup.policy": ...}}
//     creates `topic` (one partition, `configs`) with the admin client. Result: {"ok": true}.
//   {"step": "produce", "brokers": [...], "topic": "t",
//    "messages": [["key", "head" | null], ...], "valueBytes": 3000, "perSend": 5}
//     sends `messages` in order to partition 0, `perSend` to a send (one batch each), acks -1.
//     A message's value is null (a tombstone) when its head is, else `head + "|"` padded
//     with "x" to `valueBytes` bytes (test_compaction.py's `changelog_value`). Result:
//     {"ok": true, "offsets": ["0", "1", ...]}, the offset acknowledged for each message.
//   {"step": "read", "brokers": [...], "topic": "t"}
//     reads partition 0 of `topic` from the beginning with a consumer group of its own, until
//     it has consumed the record just below the high watermark it asked for first. Result:
//     {"ok": true, "highWatermark": "n", "records": [{offset, key, value}, ...]}.
//   {"step": "keyless", "brokers": [...], "topic": "t", "configs": {...}}
//     creates `topic` as "create" does, sends a record without a key, then one with a key.
//     Result: {"ok": true, "keylessError": {name, type, ...} | null, "keyedOffset": "n"}.
//
// Prints one JSON line and exits 0, or {"ok": false, "error": {...}, ...} and exits 1 with
// kafkajs's log on stderr. A hard timeout ends the process whatever state the client is in,
// and says how far a read got, so that a consumer stuck on a sparse log shows where.

'use strict'

const crypto = require('crypto')
const { Kafka, logLevel, Partitioners } = require('kafkajs')

const HARD_TIMEOUT_MS = 60000
const logLines = []
const logCreator = () => ({ namespace, label, log }) => {
  logLines.push(JSON.stringify({ level: label, namespace, ...log }))
}
// What a read consumed so far: reported by the hard timeout too.
const consumed = []

let finished = false

function finish(code, result) {
  if (finished) return
  finished = true
  if (code !== 0 && logLines.length) {
    process.stderr.write('kafkajs log:\n' + logLines.join('\n') + '\n')
  }
  // A large result outgrows the pipe's buffer: exit once it is written, not before.
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}

function describeError(e) {
  if (!(e instanceof Error)) return { name: typeof e, message: String(e) }
  const out = { name: e.name, message: e.message }
  for (const field of ['type', 'code', 'retriable']) {
    if (e[field] !== undefined) out[field] = e[field]
  }
  if (e.cause && e.cause !== e) out.cause = describeError(e.cause)
  return out
}

function fail(e) {
  const last = consumed.length ? consumed[consumed.length - 1].offset : null
  finish(1, { ok: false, error: describeError(e), consumedCount: consumed.length, lastOffset: last })
}

function changelogValue(head, valueBytes) {
  return head === null ? null : (head + '|').padEnd(valueBytes, 'x')
}

async function createTopic(kafka, topic, configs, replicationFactor = 1) {
  const admin = kafka.admin()
  await admin.connect()
  const configEntries = Object.entries(configs).map(([name, value]) => ({ name, value }))
  await admin.createTopics({
    topics: [{ topic, numPartitions: 1, replicationFactor, configEntries }],
    waitForLeaders: true,
  })
  await admin.disconnect()
}

async function create(kafka, { topic, configs, replicationFactor }) {
  await createTopic(kafka, topic, configs, replicationFactor)
  return { ok: true }
}

async function produce(kafka, { topic, messages, valueBytes, perSend }) {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const offsets = []
  for (let at = 0; at < messages.length; at += perSend) {
    const chunk = messages.slice(at, at + perSend).map(([key, head]) => ({
      key,
      value: changelogValue(head, valueBytes),
      partition: 0,
    }))
    const [metadata] = await producer.send({ topic, acks: -1, messages: chunk })
    const base = BigInt(metadata.baseOffset)
    chunk.forEach((_, i) => offsets.push((base + BigInt(i)).toString()))
  }
  await producer.disconnect()
  return { ok: true, offsets }
}

async function read(kafka, { topic }) {
  const admin = kafka.admin()
  await admin.connect()
  const [partition0] = await admin.fetchTopicOffsets(topic)
  await admin.disconnect()
  const high = BigInt(partition0.high)
  if (high === 0n) return { ok: true, highWatermark: '0', records: [] }

  const groupId = `corelog-kafkajs-${topic}-${crypto.randomBytes(4).toString('hex')}`
  const consumer = kafka.consumer({ groupId })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await new Promise((resolve, reject) => {
    consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error))
    consumer
      .run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          consumed.push({
            partition,
            offset: message.offset,
            key: message.key === null ? null : message.key.toString(),
            value: message.value === null ? null : message.value.toString(),
          })
          if (BigInt(message.offset) + 1n >= high) resolve()
        },
      })
      .catch(reject)
  })
  await consumer.disconnect()
  return { ok: true, highWatermark: high.toString(), records: consumed }
}

async function keyless(kafka, { topic, configs }) {
  await createTopic(kafka, topic, configs)
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  let keylessError = null
  try {
    await producer.send({ topic, acks: -1, messages: [{ value: 'no key', partition: 0 }] })
  } catch (e) {
    keylessError = describeError(e)
  }
  const [metadata] = await producer.send({
    topic, acks: -1, messages: [{ key: 'k', value: 'with key', partition: 0 }],
  })
  await producer.disconnect()
  return { ok: true, keylessError, keyedOffset: metadata.baseOffset }
}

async function main(config) {
  const kafka = new Kafka({
    clientId: 'corelog-kafkajs-compaction-test',
    brokers: config.brokers,
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5 },
    logLevel: logLevel.INFO,
    logCreator,
  })
  const steps = { create, produce, read, keyless }
  if (!steps[config.step]) throw new Error(`unknown step ${config.step}`)
  return steps[config.step](kafka, config)
}

setTimeout(() => {
  const e = new Error(`no result within ${HARD_TIMEOUT_MS} ms`)
  e.name = 'CompactionTimeout'
  fail(e)
}, HARD_TIMEOUT_MS).unref()

let config
try {
  config = JSON.parse(process.argv[2])
} catch (e) {
  fail(e)
}
if (!finished) main(config).then((result) => finish(0, result), fail)
