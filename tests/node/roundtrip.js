#!/usr/bin/env node
// One kafkajs round trip, driven by tests/python/test_kafkajs.py.
//
// Usage: node roundtrip.js '<json config>'
//   {"brokers": ["127.0.0.1:9092"], "ca": "/path/ca.pem" | null,
//    "sasl": {"mechanism": "scram-sha-512", "username": "...", "password": "..."} | null,
//    "topic": "t", "count": 10}
//
// A producer sends `count` records (key "k<i>", value "v<i>") with acks -1 to partition 0; then a
// consumer in a group of its own subscribes from the beginning and reads until it has `count`
// records. Prints one JSON line {"ok": true, "produced": [...], "consumed": [...]} and exits 0.
// On any error prints {"ok": false, "error": {name, message, type, code, retriable}} and exits 1,
// with kafkajs's own log lines (kept in memory until then) on stderr. A hard timeout ends the
// process whatever state the client is in, so the caller can never hang on it.

'use strict'

const fs = require('fs')
const crypto = require('crypto')
const { Kafka, logLevel, Partitioners } = require('kafkajs')

const HARD_TIMEOUT_MS = 60000

const logLines = []
const logCreator = () => ({ namespace, level, label, log }) => {
  logLines.push(JSON.stringify({ level: label, namespace, ...log }))
}

let finished = false

function finish(code, result) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(result) + '\n')
  if (code !== 0 && logLines.length) {
    process.stderr.write('kafkajs log:\n' + logLines.join('\n') + '\n')
  }
  // Exit at once: open sockets or timers of a failed client must not keep the process alive.
  process.exit(code)
}

function describeError(e) {
  if (!(e instanceof Error)) return { name: typeof e, message: String(e) }
  const out = { name: e.name, message: e.message }
  for (const field of ['type', 'code', 'retriable', 'broker', 'retryCount']) {
    if (e[field] !== undefined) out[field] = e[field]
  }
  if (e.cause && e.cause !== e) out.cause = describeError(e.cause)
  return out
}

function fail(e) {
  finish(1, { ok: false, error: describeError(e) })
}

async function main(config) {
  const { brokers, ca, sasl, topic, count } = config
  const kafka = new Kafka({
    clientId: 'corelog-kafkajs-test',
    brokers,
    ssl: ca ? { ca: [fs.readFileSync(ca)] } : false,
    sasl: sasl || undefined,
    connectionTimeout: 10000,
    authenticationTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5 },
    // Everything at INFO and above is kept, and shown only if the run fails.
    logLevel: logLevel.INFO,
    logCreator,
  })

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  const messages = []
  for (let i = 0; i < count; i++) {
    messages.push({ key: `k${i}`, value: `v${i}`, partition: 0 })
  }
  const metadata = await producer.send({ topic, acks: -1, messages })
  await producer.disconnect()
  const produced = metadata.map(m => ({
    partition: m.partition,
    errorCode: m.errorCode,
    baseOffset: m.baseOffset,
  }))

  const groupId = `corelog-kafkajs-${topic}-${crypto.randomBytes(4).toString('hex')}`
  const consumer = kafka.consumer({ groupId })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const consumed = []
  await new Promise((resolve, reject) => {
    consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error))
    consumer
      .run({
        eachMessage: async ({ partition, message }) => {
          consumed.push({
            partition,
            offset: message.offset,
            key: message.key === null ? null : message.key.toString(),
            value: message.value === null ? null : message.value.toString(),
          })
          if (consumed.length >= count) resolve()
        },
      })
      .catch(reject)
  })
  await consumer.disconnect()
  return { ok: true, groupId, produced, consumed }
}

const timer = setTimeout(() => {
  const e = new Error(`no result within ${HARD_TIMEOUT_MS} ms`)
  e.name = 'RoundTripTimeout'
  fail(e)
}, HARD_TIMEOUT_MS)

let config
try {
  config = JSON.parse(process.argv[2])
} catch (e) {
  fail(e)
}
if (!finished) {
  main(config).then(result => {
    clearTimeout(timer)
    finish(0, result)
  }, fail)
}
