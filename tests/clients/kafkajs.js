#!/usr/bin/env node
// Client compatibility: kafkajs 2.x against a Kafka-compatible broker.
//
//   node kafkajs.js BOOTSTRAP          (e.g. 127.0.0.1:9092)
//
// Checks, each printed as "ok: ..." or "FAIL: ...":
//   - admin: create topics with 3 partitions, see them in the metadata
//   - a plain (non-idempotent) producer sends keyed records with headers; the partitions'
//     watermarks count them; a consumer group reads them all back (keys, values, headers;
//     nothing missing, nothing twice)
//   - producing to a topic that does not exist yet works (Kafka auto-creates it)
//   - an idempotent producer (idempotent: true, maxInFlightRequests: 1) does the same
//   - at the end a fresh produce and group consume still work (nothing above broke the broker)
//   - every client disconnects cleanly
// After a failure an "info:" line says whether the broker still answers metadata requests;
// when it does not, the remaining checks fail as not run.
// Exit code 0 when every check passed, 1 otherwise. The whole run is bounded (< 60 s).
// LOG_LEVEL=info|debug|warn|error|nothing sets kafkajs' own logging (default: nothing).

'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const crypto = require('crypto');
const { Kafka, logLevel } = require('kafkajs');

const bootstrap = process.argv[2];
if (!bootstrap) {
  console.error('usage: node kafkajs.js BOOTSTRAP');
  process.exit(2);
}

const SCRIPT_TIMEOUT_MS = 58000;
const N = 30;
const suffix = crypto.randomBytes(4).toString('hex');
const name = (what) => `kafkajs-${what}-${suffix}`;

const failures = [];
let current = 'start-up';
// The check after whose failure the broker stopped answering; later checks are not run.
let downAfter = null;

const watchdog = setTimeout(() => {
  console.log(`FAIL: whole script timed out after ${SCRIPT_TIMEOUT_MS / 1000} s (during: ${current})`);
  console.log(`kafkajs: ${failures.length + 1} check(s) failed`);
  process.exit(1);
}, SCRIPT_TIMEOUT_MS);

const level = {
  nothing: logLevel.NOTHING,
  error: logLevel.ERROR,
  warn: logLevel.WARN,
  info: logLevel.INFO,
  debug: logLevel.DEBUG,
}[(process.env.LOG_LEVEL || 'nothing').toLowerCase()];

const kafka = new Kafka({
  clientId: `sluice-compat-${suffix}`,
  brokers: [bootstrap],
  logLevel: level === undefined ? logLevel.NOTHING : level,
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 4, initialRetryTime: 300, maxRetryTime: 2000 },
});

function describe(err) {
  if (!err) return String(err);
  let text = `${err.name || 'Error'}: ${err.message}`;
  if (err.type) text += ` [${err.type}]`;
  if (err.originalError && err.originalError !== err) text += ` (cause: ${describe(err.originalError)})`;
  else if (err.cause) text += ` (cause: ${describe(err.cause)})`;
  return text;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function brokerProbe() {
  // Whether the broker still answers a metadata request on a fresh connection.
  const probe = new Kafka({
    clientId: `sluice-compat-probe-${suffix}`,
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    requestTimeout: 4000,
    retry: { retries: 0 },
  }).admin();
  try {
    await withTimeout(probe.connect(), 4000, 'probe connect');
    const topics = await withTimeout(probe.listTopics(), 4000, 'probe metadata');
    console.log(`info: broker still answers metadata requests (${topics.length} topics)`);
    return true;
  } catch (err) {
    console.log(`info: broker no longer answers metadata requests: ${describe(err)}`);
    return false;
  } finally {
    await withTimeout(probe.disconnect(), 3000, 'probe disconnect').catch(() => {});
  }
}

// Runs one check; prints ok/FAIL; returns its result or undefined on failure. Once the
// broker stopped answering, checks are not run, except closing ones (`always`).
async function check(what, ms, fn, { always = false } = {}) {
  if (downAfter && !always) {
    skip(what, `the broker stopped answering after: ${downAfter}`);
    return undefined;
  }
  current = what;
  const started = Date.now();
  try {
    const result = await withTimeout(Promise.resolve().then(fn), ms, what);
    const detail = typeof result === 'string' ? ` (${result})` : '';
    console.log(`ok: ${what}${detail} [${Date.now() - started} ms]`);
    return result === undefined ? true : result;
  } catch (err) {
    console.log(`FAIL: ${what}: ${describe(err)} [${Date.now() - started} ms]`);
    failures.push(what);
    if (!(await brokerProbe())) downAfter = what;
    return undefined;
  }
}

function skip(what, why) {
  console.log(`FAIL: ${what}: not run because ${why}`);
  failures.push(what);
}

function records(tag, count) {
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push({
      key: `${tag}-key-${i}`,
      value: Buffer.concat([Buffer.from(`${tag}-value-${i}-`), Buffer.from([0xff, 0x00, i & 0xff])]),
      headers: { origin: 'kafkajs', seq: String(i), bin: Buffer.from([0x00, 0x01, 0xfe]) },
    });
  }
  return out;
}

async function produce(producer, topic, batch, chunk = 10) {
  for (let i = 0; i < batch.length; i += chunk) {
    const result = await producer.send({ topic, acks: -1, messages: batch.slice(i, i + chunk) });
    for (const r of result) {
      if (r.errorCode !== 0) throw new Error(`partition ${r.partition}: error code ${r.errorCode}`);
    }
  }
  return `${batch.length} records acknowledged`;
}

const openClients = [];

// Consumes `expected` records of `topic` in a new group; waits a little more for duplicates.
async function consumeGroup(topic, groupId, expected, ms) {
  const consumer = kafka.consumer({
    groupId,
    sessionTimeout: 10000,
    rebalanceTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 500,
    retry: { retries: 3, initialRetryTime: 300, maxRetryTime: 2000 },
  });
  openClients.push(consumer);
  const got = [];
  let crashed;
  consumer.on(consumer.events.CRASH, (e) => {
    crashed = e.payload.error;
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      got.push({ partition, offset: message.offset, key: message.key, value: message.value, headers: message.headers });
    },
  });
  const deadline = Date.now() + ms;
  while (got.length < expected && Date.now() < deadline) {
    if (crashed) throw new Error(`consumer crashed: ${describe(crashed)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (got.length >= expected) {
    // A short grace period so that duplicates, if any, arrive too.
    await new Promise((r) => setTimeout(r, 700));
  }
  await withTimeout(consumer.disconnect(), 5000, 'consumer disconnect');
  openClients.splice(openClients.indexOf(consumer), 1);
  if (crashed) throw new Error(`consumer crashed: ${describe(crashed)}`);
  return { got };
}

function verify(sent, got) {
  const problems = [];
  const byKey = new Map();
  for (const m of got) {
    const key = m.key ? m.key.toString() : '<null>';
    if (byKey.has(key)) problems.push(`duplicate ${key}`);
    byKey.set(key, m);
  }
  for (const r of sent) {
    const m = byKey.get(r.key);
    if (!m) {
      problems.push(`missing ${r.key}`);
      continue;
    }
    if (!m.value || !m.value.equals(r.value)) problems.push(`${r.key}: value ${m.value && m.value.toString('hex')} != ${r.value.toString('hex')}`);
    for (const [h, v] of Object.entries(r.headers)) {
      const want = Buffer.isBuffer(v) ? v : Buffer.from(v);
      const have = m.headers && m.headers[h];
      if (!have || !Buffer.from(have).equals(want)) problems.push(`${r.key}: header ${h}=${have && Buffer.from(have).toString('hex')} != ${want.toString('hex')}`);
    }
  }
  const expectedKeys = new Set(sent.map((r) => r.key));
  for (const key of byKey.keys()) if (!expectedKeys.has(key)) problems.push(`unexpected record ${key}`);
  if (got.length !== sent.length) problems.push(`got ${got.length} records, sent ${sent.length}`);
  if (problems.length) throw new Error(problems.slice(0, 8).join('; ') + (problems.length > 8 ? `; ... (${problems.length} problems)` : ''));
  const partitions = new Set(got.map((m) => m.partition));
  return `${got.length} records, keys/values/headers match, no duplicates, ${partitions.size} partitions`;
}

// The partitions' high watermarks (admin.fetchTopicOffsets) must add up to what was sent.
async function highWatermarks(admin, topic, expected) {
  const offsets = await admin.fetchTopicOffsets(topic);
  const highs = offsets.map((o) => `${o.partition}:${o.high}`).join(' ');
  const total = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0);
  if (total !== expected) throw new Error(`high - low watermarks add up to ${total}, ${expected} records were produced (high watermarks ${highs})`);
  return `high watermarks ${highs}`;
}

async function produceAndConsume(label, producer, topic, tag, admin) {
  const sent = records(tag, N);
  const produced = await check(`${label}: produce ${N} keyed records with headers to ${topic}`, 12000, () => produce(producer, topic, sent));
  if (!produced) {
    skip(`${label}: group consume of ${topic}`, 'the produce failed');
    return;
  }
  if (admin) await check(`${label}: the watermarks of ${topic} count ${N} records`, 8000, () => highWatermarks(admin, topic, N));
  await check(`${label}: consumer group reads all ${N} back from ${topic}`, 20000, async () => {
    const { got } = await consumeGroup(topic, name(`${tag}-group`), N, 15000);
    return verify(sent, got);
  });
}

async function main() {
  console.log(`kafkajs ${require('kafkajs/package.json').version} against ${bootstrap}`);
  const topics = { plain: name('plain'), idem: name('idempotent'), final: name('final') };
  const missing = name('autocreate');

  const admin = kafka.admin();
  openClients.push(admin);
  const adminUp = await check('admin connects', 8000, () => admin.connect());
  if (adminUp) {
    await check('admin creates 3 topics with 3 partitions', 12000, async () => {
      const created = await admin.createTopics({
        waitForLeaders: true,
        timeout: 10000,
        topics: Object.values(topics).map((topic) => ({ topic, numPartitions: 3, replicationFactor: 1 })),
      });
      if (!created) throw new Error('createTopics returned false (topics already existed?)');
      const meta = await admin.fetchTopicMetadata({ topics: Object.values(topics) });
      const counts = meta.topics.map((t) => `${t.name}:${t.partitions.length}`);
      for (const t of meta.topics) if (t.partitions.length !== 3) throw new Error(`partition counts ${counts.join(', ')}`);
      return 'metadata shows 3 partitions each';
    });
  }

  // A plain (non-idempotent) producer.
  const plain = kafka.producer({ allowAutoTopicCreation: true, retry: { retries: 4, initialRetryTime: 300, maxRetryTime: 2000 } });
  openClients.push(plain);
  if (await check('plain producer connects', 8000, () => plain.connect())) {
    await produceAndConsume('plain producer', plain, topics.plain, 'plain', adminUp && admin);

    // Kafka auto-creates a topic a producer names (auto.create.topics.enable=true).
    const sent = records('auto', 5);
    const produced = await check(`plain producer: produce to topic ${missing} that does not exist yet (auto-creation)`, 12000, () =>
      produce(plain, missing, sent, 5),
    );
    if (produced) {
      await check(`auto-created topic ${missing}: consumer group reads the 5 records back`, 20000, async () => {
        const { got } = await consumeGroup(missing, name('auto-group'), sent.length, 15000);
        return verify(sent, got);
      });
    } else {
      skip(`auto-created topic ${missing}: group consume`, 'the produce failed');
    }
    await check('plain producer disconnects', 5000, () => plain.disconnect(), { always: true });
    openClients.splice(openClients.indexOf(plain), 1);
  } else {
    skip('plain producer: produce, auto-creation and group consume', 'the producer could not connect');
  }

  // The idempotent producer: InitProducerId, then sequence numbers on every batch.
  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 3, initialRetryTime: 300, maxRetryTime: 2000 } });
  openClients.push(idem);
  if (await check('idempotent producer connects', 8000, () => idem.connect())) {
    await produceAndConsume('idempotent producer', idem, topics.idem, 'idem', adminUp && admin);
    await check('idempotent producer disconnects', 5000, () => idem.disconnect(), { always: true });
    openClients.splice(openClients.indexOf(idem), 1);
  } else {
    skip('idempotent producer: produce and group consume', 'the producer could not connect (InitProducerId failed?)');
  }

  // Whatever happened above, the broker must still take records and serve a group.
  const last = kafka.producer({ retry: { retries: 2, initialRetryTime: 300, maxRetryTime: 1000 } });
  openClients.push(last);
  if (await check('final: a new producer connects', 5000, () => last.connect())) {
    await produceAndConsume('final', last, topics.final, 'final', adminUp && admin);
    await check('final producer disconnects', 5000, () => last.disconnect(), { always: true });
    openClients.splice(openClients.indexOf(last), 1);
  } else {
    skip('final: produce and group consume', 'the producer could not connect');
  }

  if (adminUp) {
    await check('admin disconnects', 5000, () => admin.disconnect(), { always: true });
    openClients.splice(openClients.indexOf(admin), 1);
  }
}

main()
  .catch((err) => {
    console.log(`FAIL: unexpected error (during: ${current}): ${describe(err)}`);
    failures.push('unexpected error');
  })
  .finally(async () => {
    for (const client of openClients) await withTimeout(client.disconnect(), 3000, 'cleanup').catch(() => {});
    clearTimeout(watchdog);
    if (failures.length) {
      console.log(`kafkajs: ${failures.length} check(s) failed: ${failures.join(' | ')}`);
      process.exit(1);
    }
    console.log('kafkajs: all checks passed');
    process.exit(0);
  });
