#!/usr/bin/env node
// amqplib (promise API) scenarios for tests/interop/test_amqplib.py.
//
// Usage: node scenarios.js AMQP_URL SCENARIO
// Prints one JSON line of observations and exits 0, or prints the error and exits 1.
// Every scenario uses fresh random names and deletes what it declares, so it can be run
// repeatedly against the same broker (router in a test, or the RabbitMQ reference by hand).
'use strict';

const crypto = require('node:crypto');
const amqp = require('amqplib');

const SCENARIO_TIMEOUT_MS = 15000;

function unique(prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll fn() until it returns something other than false/undefined, or give up.
async function until(fn, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== false && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function errorInfo(err) {
  return {
    name: err.name,
    message: err.message,
    code: err.code === undefined ? null : err.code,
    classId: err.classId === undefined ? null : err.classId,
    methodId: err.methodId === undefined ? null : err.methodId,
  };
}

function gotMessage(msg) {
  return {
    body: msg.content.toString(),
    fields: {
      deliveryTag: msg.fields.deliveryTag,
      redelivered: msg.fields.redelivered,
      exchange: msg.fields.exchange,
      routingKey: msg.fields.routingKey,
      messageCount: msg.fields.messageCount === undefined ? null : msg.fields.messageCount,
    },
  };
}

const scenarios = {
  // connect + channel + assertQueue + sendToQueue + get
  async basic_get(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const q = unique('get');
      const declared = await ch.assertQueue(q, { durable: false });
      const sent = ch.sendToQueue(q, Buffer.from('hello amqplib'), {
        contentType: 'text/plain',
        messageId: 'm-1',
        headers: { 'x-origin': 'node', n: 7 },
        deliveryMode: 1,
      });
      const msg = await until(() => ch.get(q, { noAck: false }), 'basic.get-ok');
      const observed = gotMessage(msg);
      ch.ack(msg);
      const empty = await ch.get(q);
      await ch.deleteQueue(q);
      await ch.close();
      return {
        declared: {
          queueMatches: declared.queue === q,
          messageCount: declared.messageCount,
          consumerCount: declared.consumerCount,
        },
        sendReturned: sent,
        got: observed,
        queueMatchesRoutingKey: observed.fields.routingKey === q,
        properties: {
          contentType: msg.properties.contentType,
          messageId: msg.properties.messageId,
          headers: msg.properties.headers,
          deliveryMode: msg.properties.deliveryMode,
        },
        secondGet: empty,
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // consume with prefetch and ack
  async consume_prefetch_ack(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const q = unique('work');
      await ch.assertQueue(q, { durable: false });
      await ch.prefetch(2);
      for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(`job-${i}`));
      const pending = [];
      const received = [];
      const tags = new Set();
      const ok = await ch.consume(q, (msg) => {
        if (msg === null) return;
        pending.push(msg);
        received.push(msg.content.toString());
        tags.add(msg.fields.consumerTag);
      });
      await until(() => pending.length >= 2 || false, 'first two deliveries');
      await sleep(300); // a broker ignoring prefetch would have delivered more by now
      const inFlightBeforeAck = pending.length;
      const maxInFlight = [inFlightBeforeAck];
      while (received.length < 5 || pending.length > 0) {
        if (pending.length > 0) {
          ch.ack(pending.shift());
        } else {
          await until(() => pending.length > 0 || false, 'next delivery');
        }
        maxInFlight.push(pending.length);
      }
      await ch.cancel(ok.consumerTag);
      const after = await ch.checkQueue(q);
      await ch.deleteQueue(q);
      await ch.close();
      return {
        inFlightBeforeAck,
        maxInFlight: Math.max(...maxInFlight),
        received,
        consumerTagMatches: tags.size === 1 && tags.has(ok.consumerTag),
        afterCancel: { messageCount: after.messageCount, consumerCount: after.consumerCount },
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // publish/subscribe via a fanout exchange with exclusive server-named queues
  async fanout(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const ex = unique('logs');
      await ch.assertExchange(ex, 'fanout', { durable: false });
      const subscribers = [];
      for (let i = 0; i < 2; i++) {
        const { queue } = await ch.assertQueue('', { exclusive: true });
        await ch.bindQueue(queue, ex, '');
        const got = [];
        await ch.consume(queue, (msg) => msg && got.push(gotMessage(msg)), { noAck: true });
        subscribers.push({ queue, got });
      }
      ch.publish(ex, 'ignored.key', Buffer.from('broadcast'));
      await until(() => subscribers.every((s) => s.got.length >= 1) || false, 'fanout deliveries');
      await sleep(100);
      await ch.deleteExchange(ex);
      await ch.close();
      return {
        serverNamed: subscribers.map((s) => s.queue.startsWith('amq.gen-')),
        distinctQueues: new Set(subscribers.map((s) => s.queue)).size,
        deliveries: subscribers.map((s) =>
          s.got.map((m) => ({
            body: m.body,
            exchangeMatches: m.fields.exchange === ex,
            routingKey: m.fields.routingKey,
            redelivered: m.fields.redelivered,
          })),
        ),
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // topic routing (the RabbitMQ tutorial 5 bindings)
  async topic(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const ex = unique('topic');
      await ch.assertExchange(ex, 'topic', { durable: false });
      const bindings = { q1: ['*.orange.*'], q2: ['*.*.rabbit', 'lazy.#'] };
      const got = {};
      for (const [name, patterns] of Object.entries(bindings)) {
        const { queue } = await ch.assertQueue('', { exclusive: true });
        for (const p of patterns) await ch.bindQueue(queue, ex, p);
        got[name] = [];
        await ch.consume(queue, (msg) => msg && got[name].push(msg.fields.routingKey), { noAck: true });
      }
      const keys = [
        'quick.orange.rabbit',
        'lazy.orange.elephant',
        'quick.orange.fox',
        'lazy.brown.fox',
        'lazy.pink.rabbit',
        'quick.brown.fox',
        'orange',
        'quick.orange.male.rabbit',
        'lazy.orange.male.rabbit',
        'lazy',
        'lazy.',
        '.orange.',
      ];
      for (const key of keys) ch.publish(ex, key, Buffer.from(key));
      const expectedTotal = 11;
      await until(() => got.q1.length + got.q2.length >= expectedTotal || false, 'topic deliveries');
      await sleep(200); // let any wrongly routed extra arrive
      await ch.deleteExchange(ex);
      await ch.close();
      return got;
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // confirm channel: publish callbacks and waitForConfirms
  async confirms(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createConfirmChannel();
      const q = unique('confirm');
      await ch.assertQueue(q, { durable: false });
      const acks = [];
      const callbacks = [];
      ch.on('ack', (fields) => acks.push({ deliveryTag: fields.deliveryTag, multiple: fields.multiple }));
      for (let i = 0; i < 10; i++) {
        ch.sendToQueue(q, Buffer.from(`c-${i}`), {}, (err, ok) => {
          callbacks.push({ i, err: err === null || err === undefined ? null : String(err), ok: ok === undefined ? null : ok });
        });
      }
      const waited = await ch.waitForConfirms();
      const tags = [];
      for (const a of acks) tags.push(a.deliveryTag);
      const count = await ch.checkQueue(q);
      await ch.deleteQueue(q);
      await ch.close();
      return {
        waitForConfirms: waited === undefined ? null : waited,
        callbacks: callbacks.length,
        callbackErrors: callbacks.filter((c) => c.err !== null).length,
        callbackOrder: callbacks.map((c) => c.i),
        ackEventsCoverAll: acks.length > 0 && Math.max(...tags) === 10,
        ackTagsIncreasing: tags.every((t, i) => i === 0 || t > tags[i - 1]),
        messageCount: count.messageCount,
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // mandatory publish that routes nowhere comes back as a 'return' event
  async mandatory_return(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const ex = unique('nowhere');
      await ch.assertExchange(ex, 'direct', { durable: false });
      const returned = [];
      ch.on('return', (msg) =>
        returned.push({
          body: msg.content.toString(),
          replyCode: msg.fields.replyCode,
          replyText: msg.fields.replyText,
          exchangeMatches: msg.fields.exchange === ex,
          routingKey: msg.fields.routingKey,
          messageId: msg.properties.messageId,
        }),
      );
      ch.publish(ex, 'no-such-binding', Buffer.from('dropped silently'));
      ch.publish(ex, 'no-such-binding', Buffer.from('come back'), { mandatory: true, messageId: 'r-1' });
      ch.publish('', unique('no-such-queue'), Buffer.from('default exchange'), { mandatory: true });
      await until(() => returned.length >= 2 || false, 'basic.return');
      await sleep(200);
      await ch.deleteExchange(ex);
      await ch.close();
      return {
        returned: returned.map((r) => ({ ...r, routingKey: r.routingKey.replace(/-[0-9a-f]{8}$/, '-*') })),
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // nack with requeue gives redelivered=true
  async nack_requeue(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const q = unique('nack');
      await ch.assertQueue(q, { durable: false });
      ch.sendToQueue(q, Buffer.from('try again'));
      const first = await until(() => ch.get(q), 'first basic.get-ok');
      ch.nack(first, false, true);
      const second = await until(() => ch.get(q), 'redelivery');
      ch.ack(second);
      // and the same through a consumer
      ch.sendToQueue(q, Buffer.from('consumer retry'));
      const consumed = [];
      const { consumerTag } = await ch.consume(q, (msg) => {
        if (msg === null) return; // cancelled by the server
        consumed.push({ body: msg.content.toString(), redelivered: msg.fields.redelivered });
        if (!msg.fields.redelivered) ch.nack(msg, false, true);
        else ch.ack(msg);
      });
      await until(() => consumed.length >= 2 || false, 'consumer redelivery');
      await ch.cancel(consumerTag);
      const after = await ch.checkQueue(q);
      await ch.deleteQueue(q);
      await ch.close();
      return {
        first: { body: first.content.toString(), redelivered: first.fields.redelivered, messageCount: first.fields.messageCount },
        second: { body: second.content.toString(), redelivered: second.fields.redelivered, messageCount: second.fields.messageCount },
        tagsIncrease: second.fields.deliveryTag > first.fields.deliveryTag,
        consumed,
        remaining: after.messageCount,
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // checkQueue on a missing queue rejects with 404 and closes the channel
  async check_missing_queue(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const events = [];
      let channelError = null;
      ch.on('error', (err) => {
        events.push('error');
        channelError = errorInfo(err);
      });
      const closed = new Promise((resolve) =>
        ch.on('close', () => {
          events.push('close');
          resolve();
        }),
      );
      const missing = 'missing-queue-for-amqplib';
      let rejection = null;
      try {
        await ch.checkQueue(missing);
      } catch (err) {
        rejection = errorInfo(err);
      }
      await Promise.race([closed, sleep(5000)]);
      let afterClose = null;
      try {
        await ch.assertQueue(unique('after'));
      } catch (err) {
        afterClose = { name: err.name, message: err.message };
      }
      // the connection survives a channel error
      const ch2 = await conn.createChannel();
      const { queue } = await ch2.assertQueue('', { exclusive: true });
      await ch2.close();
      return {
        rejection,
        channelError,
        events,
        afterClose,
        connectionStillUsable: queue.startsWith('amq.gen-'),
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // deleteQueue reports the messages it dropped; the queue is gone afterwards
  async delete_queue(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const q = unique('doomed');
      await ch.assertQueue(q, { durable: false });
      for (let i = 0; i < 3; i++) ch.sendToQueue(q, Buffer.from(`d-${i}`));
      await until(async () => (await ch.checkQueue(q)).messageCount === 3 || false, '3 ready messages');
      const deleted = await ch.deleteQueue(q);
      const deletedAgain = await ch.deleteQueue(q);
      let check = null;
      const ch2 = await conn.createChannel();
      ch2.on('error', () => {});
      try {
        await ch2.checkQueue(q);
        check = 'exists';
      } catch (err) {
        check = err.code;
      }
      // deleting a queue with a consumer cancels the consumer (amqplib calls back with null)
      const watched = unique('watched');
      await ch.assertQueue(watched, { durable: false });
      const notifications = [];
      const cancelEvents = [];
      ch.on('cancel', (fields) => cancelEvents.push(fields.consumerTag));
      const { consumerTag } = await ch.consume(watched, (msg) => notifications.push(msg === null ? null : 'message'));
      const deletedWatched = await ch.deleteQueue(watched);
      await until(() => notifications.length >= 1 || false, 'basic.cancel from the server');
      await ch.close();
      return {
        deleted,
        deletedAgain,
        checkAfterDelete: check,
        deletedWatched,
        consumerNotifications: notifications,
        cancelEventTagMatches: cancelEvents.length === 1 && cancelEvents[0] === consumerTag,
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // a 1 MiB message (split over many body frames) round-trips intact
  async large_message(url) {
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const q = unique('big');
      await ch.assertQueue(q, { durable: false });
      const size = 1024 * 1024;
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i++) body[i] = (i * 31 + (i >> 8)) % 251;
      const digest = (b) => crypto.createHash('sha256').update(b).digest('hex');
      ch.sendToQueue(q, body, { messageId: 'big-1' });
      const viaGet = await until(() => ch.get(q), 'large basic.get-ok');
      ch.ack(viaGet);
      ch.sendToQueue(q, body);
      const consumed = [];
      const { consumerTag } = await ch.consume(q, (msg) => msg && consumed.push(msg.content), { noAck: true });
      await until(() => consumed.length >= 1 || false, 'large delivery');
      await ch.cancel(consumerTag);
      await ch.deleteQueue(q);
      await ch.close();
      const frameMax = conn.connection.frameMax;
      return {
        frameMax,
        bodyFrames: Math.ceil(size / (frameMax - 8)),
        sentSha256: digest(body),
        get: { length: viaGet.content.length, sha256: digest(viaGet.content), messageId: viaGet.properties.messageId },
        consume: { length: consumed[0].length, sha256: digest(consumed[0]) },
      };
    } finally {
      await conn.close().catch(() => {});
    }
  },

  // connection close is clean: close resolves, 'close' without error, resources released
  async connection_close(url) {
    const conn = await amqp.connect(url);
    const events = [];
    conn.on('error', (err) => events.push({ event: 'error', message: err.message }));
    const closeEvent = new Promise((resolve) =>
      conn.on('close', (err) => {
        events.push({ event: 'close', error: err === undefined ? null : String(err) });
        resolve();
      }),
    );
    const ch = await conn.createChannel();
    const { queue } = await ch.assertQueue('', { exclusive: true });
    const closeResult = await conn.close();
    await Promise.race([closeEvent, sleep(5000)]);
    let afterClose = null;
    try {
      await conn.createChannel();
    } catch (err) {
      afterClose = { name: err.name, message: err.message };
    }
    // the exclusive queue went with its connection
    const other = await amqp.connect(url);
    let exclusiveQueue = null;
    try {
      const ch2 = await other.createChannel();
      ch2.on('error', () => {});
      try {
        await ch2.checkQueue(queue);
        exclusiveQueue = 'exists';
      } catch (err) {
        exclusiveQueue = err.code;
      }
    } finally {
      await other.close();
    }
    return { closeResult: closeResult === undefined ? null : closeResult, events, afterClose, exclusiveQueueAfterClose: exclusiveQueue };
  },
};

async function main() {
  const [url, name] = process.argv.slice(2);
  const scenario = scenarios[name];
  if (!url || !scenario) {
    throw new Error(`usage: node scenarios.js AMQP_URL {${Object.keys(scenarios).join('|')}}`);
  }
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`scenario ${name} timed out after ${SCENARIO_TIMEOUT_MS} ms`)), SCENARIO_TIMEOUT_MS);
  });
  try {
    return await Promise.race([scenario(url), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

main().then(
  (observations) => {
    process.stdout.write(`${JSON.stringify(observations)}\n`, () => process.exit(0));
  },
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : String(err)}\n`, () => process.exit(1));
  },
);
