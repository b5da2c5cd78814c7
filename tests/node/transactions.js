#!/usr/bin/env node
// One kafkajs transactional run, driven by tests/python/test_transactions.py.
//
// Usage: node transactions.js '<json config>'
//   {"brokers": ["127.0.0.1:9092"], "topic": "t", "count": 10, "transactionalId": "id",
//    "group": "g"}
//
// A transactional producer sends `count` records "c<i>" to partitions i % 2 and offset 10 of
// partition 0 for group `group` in one transaction and commits it, then sends "a<i>" in a
// second transaction and aborts it. Then it reads the group's committed offset of partition 0.
// Prints one JSON line {"ok": true, "committedOffset": "10"} and exits 0, or
// {"ok": false, "error": {...}} and exits 1 with kafkajs's log on stderr. A hard timeout ends
// the process whatever state the client is in.

'use strict'

const { Kafka, logLevel } = require('kafkajs')

const HARD_TIMEOUT_MS = 60000
const logLines = []
const logCreator = () => ({ namespace, label, log }) => {
  logLines.push(JSON.stringify({ level: label, namespace, ...log }))
}

function finish(code, result) {
  process.stdout.write(JSON.stringify(result) + '\n')
  if (code !== 0 && logLines.length) {
    process.stderr.write('kafkajs log:\n' + logLines.join('\n') + '\n')
  }
  process.exit(code)
}

async function main(config) {
  const { brokers, topic, count, transactionalId, group } = config
  const kafka = new Kafka({
    clientId: 'corelog-kafkajs-txn-test',
    brokers,
    logLevel: logLevel.INFO,
    logCreator,
    retry: { retries: 10 },
  })
  const producer = kafka.producer({ transactionalId, idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const committed = await producer.transaction()
  const values = (prefix) => Array.from({ length: count }, (_, i) => ({ value: `${prefix}${i}`, partition: i % 2 }))
  await committed.send({ topic, acks: -1, messages: values('c') })
  await committed.sendOffsets({
    consumerGroupId: group,
    topics: [{ topic, partitions: [{ partition: 0, offset: '10' }] }],
  })
  await committed.commit()
  const aborted = await producer.transaction()
  await aborted.send({ topic, acks: -1, messages: values('a') })
  await aborted.abort()
  await producer.disconnect()

  const admin = kafka.admin()
  await admin.connect()
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  await admin.disconnect()
  const partition0 = offsets[0].partitions.find((p) => p.partition === 0)
  finish(0, { ok: true, committedOffset: partition0.offset })
}

setTimeout(() => finish(1, { ok: false, error: { name: 'Timeout', message: 'hard timeout' } }), HARD_TIMEOUT_MS).unref()
main(JSON.parse(process.argv[2])).catch((e) =>
  finish(1, { ok: false, error: { name: e.name, message: e.message, type: e.type } }))
