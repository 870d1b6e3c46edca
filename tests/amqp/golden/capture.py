"""Capture golden AMQP 0-9-1 wire bytes from real clients talking to RabbitMQ.

This is a developer tool, NOT a test (no ``test_`` prefix, pytest ignores it).
It starts a recording TCP proxy on 127.0.0.1:5680 that forwards to a real
RabbitMQ on 127.0.0.1:5673, runs one scripted session per client through the
proxy, splits the recorded byte streams into AMQP frames, decodes them with
pamqp and writes ``<client>.json`` next to this file.

How to rerun::

    /work/shared/tools/rabbitmq-reference start      # RabbitMQ 3.10 on :5673
    # python venv with pika, amqp (py-amqp), aio-pika, pamqp:
    /tmp/probe-venv/bin/python tests/amqp/golden/capture.py            # all
    /tmp/probe-venv/bin/python tests/amqp/golden/capture.py pika pyamqp
    # amqplib session needs node + amqplib installed outside the repo:
    #   mkdir -p /tmp/golden-node && cd /tmp/golden-node && npm install amqplib
    # (override the location with GOLDEN_NODE_DIR=/path/to/dir)

Output format (one JSON list per client, chronological by recording order):
    {"dir": "c2s"|"s2c", "type": int|null, "channel": int|null,
     "class_id": int|null, "method_id": int|null, "name": str, "hex": str,
     "fields": {...}            # method frames (decoded with pamqp)
     "field_tags": {...}        # method/header tables: AMQP type tag per value
     "body_size", "property_flags", "properties"   # content-header frames
    }
Large content bodies: only the first and last body frame of a message are
stored; the middle ones become {"name": "content-body", "elided": true,
"size": N}.  "size" on kept body frames is the payload length.
"""

import asyncio
import datetime
import decimal
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

LISTEN = ('127.0.0.1', 5680)
UPSTREAM = ('127.0.0.1', 5673)
OUT_DIR = Path(__file__).resolve().parent
NODE_DIR = os.environ.get('GOLDEN_NODE_DIR', '/tmp/golden-node')
PROTOCOL_HEADER = b'AMQP\x00\x00\x09\x01'
FRAME_END = 0xCE

UTC = datetime.timezone.utc
BIG_BODY = (bytes(range(256)) * 1200)[:300000]  # > 131072 -> 3 body frames
SMALL_BODY = b'{"hello": "golden"}'
TS = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
TS_INT = int(TS.timestamp())


# --------------------------------------------------------------------------
# recording proxy
# --------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.chunks = []  # (seq, conn_id, dir, bytes)
        self.seq = 0
        self.conn_count = 0

    def add(self, conn_id, direction, data):
        with self.lock:
            self.seq += 1
            self.chunks.append((self.seq, conn_id, direction, bytes(data)))

    def new_conn(self):
        with self.lock:
            self.conn_count += 1
            return self.conn_count

    def take(self):
        with self.lock:
            out, self.chunks = self.chunks, []
            return out


class Proxy(threading.Thread):
    def __init__(self, recorder):
        super().__init__(daemon=True)
        self.rec = recorder
        self.ready = threading.Event()
        self.loop = None
        self.server = None

    async def _pipe(self, conn_id, direction, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.rec.add(conn_id, direction, data)  # record before forward
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if writer.can_write_eof():
                    writer.write_eof()
            except (OSError, RuntimeError):
                pass

    async def _handle(self, creader, cwriter):
        conn_id = self.rec.new_conn()
        try:
            ureader, uwriter = await asyncio.open_connection(*UPSTREAM)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(
            self._pipe(conn_id, 'c2s', creader, uwriter),
            self._pipe(conn_id, 's2c', ureader, cwriter),
        )
        for w in (cwriter, uwriter):
            try:
                w.close()
            except OSError:
                pass

    async def _main(self):
        self.server = await asyncio.start_server(self._handle, *LISTEN)
        self.ready.set()
        async with self.server:
            await self.server.serve_forever()

    def run(self):
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except asyncio.CancelledError:
            pass


# --------------------------------------------------------------------------
# frame splitting and decoding
# --------------------------------------------------------------------------
_captured_tables = []
pframe = None


def install_pamqp_hook():
    """Import pamqp lazily and make its table decoder remember the raw
    bytes of every field table, so we can report the type tags used."""
    global pframe
    if pframe is not None:
        return
    from pamqp import decode as pdecode
    from pamqp import frame as _pframe
    orig = pdecode.METHODS['table']

    def recording_table(value):
        consumed, result = orig(value)
        _captured_tables.append(bytes(value[:consumed]))
        return consumed, result

    pdecode.METHODS['table'] = recording_table
    pframe = _pframe


def _tag_value(buf, off):
    tag = chr(buf[off])
    off += 1
    fixed = {'t': 1, 'b': 1, 'B': 1, 's': 2, 'u': 2, 'I': 4, 'i': 4, 'l': 8,
             'L': 8, 'f': 4, 'd': 8, 'D': 5, 'T': 8, 'V': 0, '\x00': 0}
    if tag in fixed:
        return tag, off + fixed[tag]
    if tag in ('S', 'x'):
        (n,) = struct.unpack_from('>I', buf, off)
        return tag, off + 4 + n
    if tag == 'F':
        sub, off = _tag_table(buf, off)
        return {'F': sub}, off
    if tag == 'A':
        (n,) = struct.unpack_from('>I', buf, off)
        end = off + 4 + n
        off += 4
        items = []
        while off < end:
            t, off = _tag_value(buf, off)
            items.append(t)
        return {'A': items}, end
    raise ValueError(f'unknown field tag {tag!r}')


def _tag_table(buf, off=0):
    """Return ({key: tag-spec}, new_offset) for the table at buf[off:]."""
    (n,) = struct.unpack_from('>I', buf, off)
    end = off + 4 + n
    off += 4
    out = {}
    while off < end:
        klen = buf[off]
        key = buf[off + 1: off + 1 + klen].decode('utf-8', 'replace')
        off += 1 + klen
        out[key], off = _tag_value(buf, off)
    return out, end


def jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {'bytes_hex': bytes(v).hex()}
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and (v != v or v in (float('inf'), float('-inf'))):
        return repr(v)
    return v


def method_name(obj):
    cls, meth = obj.name.split('.')
    return cls.lower() + '.' + re.sub(r'(?<!^)([A-Z])', r'-\1', meth).lower()


PROP_SPEC_NAME = {'message_type': 'type'}
# pamqp renames a few arguments to avoid Python keywords/builtins
ARG_SPEC_NAME = {'exchange_type': 'type', 'global_': 'global'}


def decode_frame(raw):
    """raw = full frame bytes; returns dict (without dir)."""
    ftype, channel, size = struct.unpack_from('>BHI', raw, 0)
    payload = raw[7:7 + size]
    assert raw[7 + size] == FRAME_END, 'bad frame end'
    entry = {'type': ftype, 'channel': channel, 'class_id': None,
             'method_id': None}
    if ftype == 1:
        class_id, method_id = struct.unpack_from('>HH', payload, 0)
        entry['class_id'], entry['method_id'] = class_id, method_id
        _captured_tables.clear()
        _, _, obj = pframe.unmarshal(raw)
        entry['name'] = method_name(obj)
        entry['hex'] = raw.hex()
        fields = {}
        tags = {}
        tables = list(_captured_tables)
        for slot in obj.__slots__:
            value = getattr(obj, slot)
            name = ARG_SPEC_NAME.get(slot, slot)
            fields[name] = jsonable(value)
            if obj.amqp_type(slot) == 'table':
                tags[name] = _tag_table(tables.pop(0))[0]
        entry['fields'] = fields
        if tags:
            entry['field_tags'] = tags
    elif ftype == 2:
        class_id, weight, body_size, flags = struct.unpack_from(
            '>HHQH', payload, 0)
        entry['class_id'] = class_id
        entry['name'] = 'content-header'
        entry['hex'] = raw.hex()
        _captured_tables.clear()
        _, _, obj = pframe.unmarshal(raw)
        props = {}
        for slot in obj.properties.__slots__:
            value = getattr(obj.properties, slot)
            if flags & obj.properties.flags[slot]:
                props[PROP_SPEC_NAME.get(slot, slot)] = jsonable(value)
        entry['weight'] = weight
        entry['body_size'] = body_size
        entry['property_flags'] = flags
        entry['properties'] = props
        if _captured_tables:
            entry['field_tags'] = {'headers': _tag_table(_captured_tables[0])[0]}
    elif ftype == 3:
        entry['name'] = 'content-body'
        entry['size'] = size
        entry['hex'] = raw.hex()
    elif ftype == 8:
        entry['name'] = 'heartbeat'
        entry['hex'] = raw.hex()
    else:
        entry['name'] = f'unknown-{ftype}'
        entry['hex'] = raw.hex()
    return entry


def split_stream(chunks, direction):
    """chunks: list of (seq, data) for one connection+direction.
    Returns list of (seq_of_completing_chunk, index, entry)."""
    buf = bytearray()
    ends = []  # (end_offset, seq)
    for seq, data in chunks:
        buf += data
        ends.append((len(buf), seq))

    def seq_at(offset_end):
        for end, seq in ends:
            if end >= offset_end:
                return seq
        return ends[-1][1]

    out = []
    off = 0
    if direction == 'c2s' and buf[:4] == b'AMQP':
        raw = bytes(buf[:8])
        out.append((seq_at(8), {'type': None, 'channel': None,
                                'class_id': None, 'method_id': None,
                                'name': 'protocol-header', 'hex': raw.hex()}))
        off = 8
    while off + 7 <= len(buf):
        ftype, channel, size = struct.unpack_from('>BHI', buf, off)
        end = off + 7 + size + 1
        if end > len(buf):
            print(f'  warning: truncated frame at end of {direction} stream',
                  file=sys.stderr)
            break
        raw = bytes(buf[off:end])
        out.append((seq_at(end), decode_frame(raw)))
        off = end
    if off != len(buf):
        print(f'  warning: {len(buf) - off} trailing bytes in {direction}',
              file=sys.stderr)
    return out


def elide_bodies(entries):
    """Keep only first and last body frame of each content (per dir+channel)."""
    groups = {}
    current = {}
    for i, e in enumerate(entries):
        key = (e.get('conn'), e['dir'], e['channel'])
        if e['name'] == 'content-header':
            current[key] = []
            groups.setdefault(key, []).append(current[key])
        elif e['name'] == 'content-body' and key in current:
            current[key].append(i)
        elif e['type'] == 1:
            # a method frame on the same channel ends the content
            current.pop(key, None)
    for lists in groups.values():
        for idxs in lists:
            for i in idxs[1:-1]:
                e = entries[i]
                entries[i] = {'dir': e['dir'], 'type': 3,
                              'channel': e['channel'], 'class_id': None,
                              'method_id': None, 'name': 'content-body',
                              'elided': True, 'size': e['size']}
                if 'conn' in e:
                    entries[i]['conn'] = e['conn']
    return entries


def build_entries(chunks):
    per = {}
    for seq, conn_id, direction, data in chunks:
        per.setdefault((conn_id, direction), []).append((seq, data))
    conns = sorted({c for c, _ in per})
    frames = []
    for (conn_id, direction), lst in per.items():
        for idx, (seq, entry) in enumerate(split_stream(lst, direction)):
            e = {'dir': direction}
            if len(conns) > 1:
                e['conn'] = conns.index(conn_id) + 1
            e.update(entry)
            frames.append((seq, 0 if direction == 'c2s' else 1, idx, e))
    frames.sort(key=lambda t: (t[0], t[1], t[2]))
    return elide_bodies([f[3] for f in frames])


# --------------------------------------------------------------------------
# sessions
# --------------------------------------------------------------------------
def names(client):
    return f'golden.{client}.x', f'golden.{client}.q'


QUEUE_ARGS = {
    'x-message-ttl': 60000,
    'x-max-priority': 10,
    'x-golden-str': 'hello',
    'x-golden-bool': True,
    'x-golden-table': {'a': 1, 'b': 'two', 'c': False},
    'x-golden-float': 1.5,
    'x-golden-array': [1, 'a', True],
}
EXCHANGE_ARGS = {'x-golden-ex': 'yes', 'x-golden-n': 7}
BIND_ARGS = {'x-golden-bind': 'v'}


def queue_args(floats=True):
    a = dict(QUEUE_ARGS)
    if not floats:
        del a['x-golden-float']
    return a


def py_headers(bytes_type=bytes,
               include=('decimal', 'bytes', 'int64', 'float')):
    h = {
        'str': 'hello',
        'unicode': 'h\u00e9llo \u2713',
        'int_small': 7,
        'int_neg': -5,
        'int_short': 1000,
        'int32': 100000,
        'bool_t': True,
        'bool_f': False,
        'timestamp': TS,
        'none': None,
        'array': [1, 'two', True, {'k': 'v'}, [3, 4]],
        'table': {'a': 1, 'b': 'x', 'inner': {'deep': True}},
    }
    if 'float' in include:
        h['float'] = 3.5
        h['array'].insert(3, 2.5)
    if 'int64' in include:
        h['int64'] = 2 ** 40
    if 'decimal' in include:
        h['decimal'] = decimal.Decimal('3.14')
    if 'bytes' in include:
        h['bytes'] = bytes_type(b'\x00\x01\xffbin')
    return h


def ensure_clean(client):
    """Delete leftovers from earlier runs, directly (not via the proxy)."""
    import pika
    x, q = names(client)
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        host=UPSTREAM[0], port=UPSTREAM[1]))
    ch = conn.channel()
    ch.queue_delete(q)
    ch.exchange_delete(x)
    conn.close()


# ---- pika ----------------------------------------------------------------
def session_pika():
    import pika
    import pika.exceptions
    x, q = names('pika')
    params = pika.ConnectionParameters(host=LISTEN[0], port=LISTEN[1],
                                       heartbeat=1)
    conn = pika.BlockingConnection(params)
    # error case: passive declare of a missing queue -> channel.close 404
    ech = conn.channel()
    try:
        ech.queue_declare('golden.missing', passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        pass
    ch = conn.channel()
    ch.exchange_declare(x, 'topic', durable=True, arguments=EXCHANGE_ARGS)
    ch.queue_declare(q, arguments=queue_args(floats=False))  # no float
    ch.queue_bind(q, x, 'golden.#', arguments=BIND_ARGS)
    ch.basic_qos(prefetch_count=10)
    ch.confirm_delivery()
    props = pika.BasicProperties(
        content_type='application/json', content_encoding='utf-8',
        headers=py_headers(include=('decimal', 'bytes', 'int64')),
        delivery_mode=2, priority=5,
        correlation_id='corr-1', reply_to='golden.reply', expiration='60000',
        message_id='msg-1', timestamp=TS_INT, type='golden.type',
        user_id='guest', app_id='golden-pika')
    ch.basic_publish(x, 'golden.big', BIG_BODY, props)
    ch.basic_publish(x, 'golden.small', SMALL_BODY, props)
    ch.basic_publish(x, 'golden.m3', b'm3')
    ch.basic_publish(x, 'golden.m4', b'm4',
                     pika.BasicProperties(delivery_mode=1))
    try:
        ch.basic_publish(x, 'nomatch', b'unroutable', mandatory=True)
    except pika.exceptions.UnroutableError:
        pass
    got = []
    ctag = ch.basic_consume(q, lambda c, m, p, b: got.append(m))
    deadline = time.time() + 10
    while len(got) < 4 and time.time() < deadline:
        conn.process_data_events(time_limit=0.2)
    ch.basic_ack(got[0].delivery_tag)
    ch.basic_nack(got[1].delivery_tag, requeue=False)
    ch.basic_reject(got[2].delivery_tag, requeue=False)
    ch.basic_cancel(ctag)
    ch.basic_recover(requeue=True)
    m, p, b = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    ch.basic_get(q)  # get-empty
    # transactions need a channel not in confirm mode
    tch = conn.channel()
    tch.tx_select()
    tch.basic_publish(x, 'golden.tx', b'tx1')
    tch.tx_commit()
    tch.basic_publish(x, 'golden.tx', b'tx2')
    tch.tx_rollback()
    tch.close()
    ch.queue_purge(q)
    ch.queue_unbind(q, x, 'golden.#', arguments=BIND_ARGS)
    conn.sleep(2.5)  # idle -> heartbeats
    ch.queue_delete(q)
    ch.exchange_delete(x)
    ch.close()
    conn.close()


# ---- py-amqp -------------------------------------------------------------
def session_pyamqp():
    import amqp
    from amqp import spec
    x, q = names('pyamqp')
    conn = amqp.Connection(host=f'{LISTEN[0]}:{LISTEN[1]}', userid='guest',
                           password='guest', virtual_host='/', heartbeat=1)
    conn.connect()
    ech = conn.channel()
    try:
        ech.queue_declare('golden.missing', passive=True)
    except amqp.exceptions.NotFound:
        pass
    ch = conn.channel()
    ch.exchange_declare(x, 'topic', durable=True, auto_delete=False,
                        arguments=EXCHANGE_ARGS)
    ch.queue_declare(q, durable=False, auto_delete=False,
                     arguments=QUEUE_ARGS)
    ch.queue_bind(q, x, 'golden.#', arguments=BIND_ARGS)
    ch.basic_qos(prefetch_size=0, prefetch_count=10, a_global=False)
    ch.confirm_select()
    props = dict(
        content_type='application/json', content_encoding='utf-8',
        application_headers=py_headers(
            include=('decimal', 'float', 'int64', 'bytes')),  # bytes -> 'S'
        delivery_mode=2, priority=5,
        correlation_id='corr-1', reply_to='golden.reply', expiration='60000',
        message_id='msg-1', timestamp=TS_INT, type='golden.type',
        user_id='guest', app_id='golden-pyamqp')
    ch.basic_publish(amqp.Message(BIG_BODY, **props), x, 'golden.big')
    ch.basic_publish(amqp.Message(SMALL_BODY, **props), x, 'golden.small')
    ch.basic_publish(amqp.Message(b'm3'), x, 'golden.m3')
    ch.basic_publish(amqp.Message(b'm4', delivery_mode=1), x, 'golden.m4')
    got = []
    ctag = ch.basic_consume(q, callback=got.append)
    deadline = time.time() + 10
    while len(got) < 4 and time.time() < deadline:
        try:
            conn.drain_events(timeout=0.2)
        except TimeoutError:
            pass
        except Exception as exc:  # socket.timeout on older pythons
            if 'timed out' not in str(exc):
                raise
    ch.basic_ack(got[0].delivery_tag)
    ch.send_method(spec.Basic.Nack, 'Lbb', (got[1].delivery_tag, False, False))
    ch.basic_reject(got[2].delivery_tag, requeue=False)
    ch.basic_cancel(ctag)
    ch.basic_recover(requeue=True)
    # basic.recover-ok arrives asynchronously in py-amqp; wait for it
    ch.wait(spec.Basic.RecoverOk)
    m = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    ch.basic_get(q)  # get-empty
    tch = conn.channel()
    tch.tx_select()
    tch.basic_publish(amqp.Message(b'tx1'), x, 'golden.tx')
    tch.tx_commit()
    tch.basic_publish(amqp.Message(b'tx2'), x, 'golden.tx')
    tch.tx_rollback()
    tch.close()
    ch.queue_purge(q)
    ch.queue_unbind(q, x, 'golden.#', arguments=BIND_ARGS)
    end = time.time() + 2.5
    while time.time() < end:  # py-amqp only heartbeats when ticked
        conn.heartbeat_tick()
        try:
            conn.drain_events(timeout=0.2)
        except Exception as exc:
            if 'timed out' not in str(exc):
                raise
    ch.queue_delete(q)
    ch.exchange_delete(x)
    ch.close()
    conn.close()


# ---- aio-pika ------------------------------------------------------------
async def _session_aiopika():
    import aio_pika
    from aio_pika.exceptions import ChannelNotFoundEntity
    x, q = names('aiopika')
    conn = await aio_pika.connect(
        f'amqp://guest:guest@{LISTEN[0]}:{LISTEN[1]}/?heartbeat=1')
    ech = await conn.channel(publisher_confirms=False)
    try:
        await ech.declare_queue('golden.missing', passive=True)
    except ChannelNotFoundEntity:
        pass
    ch = await conn.channel(publisher_confirms=True)  # -> confirm.select
    ex = await ch.declare_exchange(x, aio_pika.ExchangeType.TOPIC,
                                   durable=True, arguments=EXCHANGE_ARGS)
    queue = await ch.declare_queue(q, arguments=QUEUE_ARGS)
    await queue.bind(ex, 'golden.#', arguments=BIND_ARGS)
    await ch.set_qos(prefetch_count=10)
    props = dict(
        content_type='application/json', content_encoding='utf-8',
        headers=py_headers(bytes_type=bytearray), delivery_mode=2,
        priority=5, correlation_id='corr-1', reply_to='golden.reply',
        expiration=60, message_id='msg-1', timestamp=TS, type='golden.type',
        user_id='guest', app_id='golden-aiopika')
    await ex.publish(aio_pika.Message(BIG_BODY, **props), 'golden.big')
    await ex.publish(aio_pika.Message(SMALL_BODY, **props), 'golden.small')
    await ex.publish(aio_pika.Message(b'm3'), 'golden.m3')
    await ex.publish(aio_pika.Message(
        b'm4', delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
        'golden.m4')
    try:
        await ex.publish(aio_pika.Message(b'unroutable'), 'nomatch',
                         mandatory=True)
    except Exception:
        pass
    got = asyncio.Queue()

    async def on_msg(message):
        await got.put(message)

    ctag = await queue.consume(on_msg, no_ack=False)
    msgs = [await asyncio.wait_for(got.get(), 10) for _ in range(4)]
    await msgs[0].ack()
    await msgs[1].nack(requeue=False)
    await msgs[2].reject(requeue=False)
    await queue.cancel(ctag)
    underlay = await ch.get_underlay_channel()
    await underlay.basic_recover(requeue=True)
    m = await queue.get(fail=False, timeout=5)
    await m.ack()
    await queue.get(fail=False, timeout=5)  # get-empty
    tch = await conn.channel(publisher_confirms=False)
    tex = await tch.get_exchange(x, ensure=False)
    tx = tch.transaction()
    await tx.select()
    await tex.publish(aio_pika.Message(b'tx1'), 'golden.tx')
    await tx.commit()
    await tex.publish(aio_pika.Message(b'tx2'), 'golden.tx')
    await tx.rollback()
    await tch.close()
    await queue.purge()
    await queue.unbind(ex, 'golden.#', arguments=BIND_ARGS)
    await asyncio.sleep(2.5)
    await queue.delete(if_unused=False, if_empty=False)
    await ex.delete()
    await ch.close()
    await conn.close()


def session_aiopika():
    asyncio.run(_session_aiopika())


# ---- node amqplib --------------------------------------------------------
NODE_SCRIPT = r"""
const amqp = require('amqplib');
const path = require('path');
const defs = require(path.join(path.dirname(require.resolve('amqplib')), 'lib', 'defs.js'));
const [X, Q, URL, BIGLEN] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const big = Buffer.alloc(Number(BIGLEN));
for (let i = 0; i < big.length; i++) big[i] = i % 256;
const small = Buffer.from('{"hello": "golden"}');
(async () => {
  const conn = await amqp.connect(URL);
  conn.on('error', () => {});
  // error case: passive declare of a missing queue -> channel.close 404
  const ech = await conn.createChannel();
  ech.on('error', () => {});
  try { await ech.checkQueue('golden.missing'); } catch (e) {}
  const ch = await conn.createConfirmChannel();
  await ch.assertExchange(X, 'topic', { durable: true, arguments: { 'x-golden-ex': 'yes', 'x-golden-n': 7 } });
  await ch.assertQueue(Q, { durable: false, arguments: {
    'x-message-ttl': 60000, 'x-max-priority': 10, 'x-golden-str': 'hello',
    'x-golden-bool': true, 'x-golden-table': { a: 1, b: 'two', c: false },
    'x-golden-float': 1.5, 'x-golden-array': [1, 'a', true] } });
  await ch.bindQueue(Q, X, 'golden.#', { 'x-golden-bind': 'v' });
  await ch.prefetch(10);
  const props = {
    contentType: 'application/json', contentEncoding: 'utf-8',
    headers: {
      str: 'hello', unicode: 'h\u00e9llo \u2713', int_small: 7, int_neg: -5,
      int_short: 1000, int32: 100000, int64: 2 ** 40, bool_t: true,
      bool_f: false, float: 3.5, timestamp: { '!': 'timestamp', value: %TS% },
      none: null, array: [1, 'two', true, 2.5, { k: 'v' }, [3, 4]],
      table: { a: 1, b: 'x', inner: { deep: true } },
      decimal: { '!': 'decimal', value: { places: 2, digits: 314 } },
      bytes: Buffer.from([0, 1, 255, 98, 105, 110]),
      float32: { '!': 'float', value: 0.5 }, uint8: { '!': 'uint8', value: 200 },
    },
    deliveryMode: 2, priority: 5, correlationId: 'corr-1',
    replyTo: 'golden.reply', expiration: '60000', messageId: 'msg-1',
    timestamp: %TS%, type: 'golden.type', userId: 'guest', appId: 'golden-amqplib',
  };
  const pub = (rk, body, opts) => new Promise((res, rej) =>
    ch.publish(X, rk, body, opts || {}, (err) => (err ? rej(err) : res())));
  await pub('golden.big', big, props);
  await pub('golden.small', small, props);
  await pub('golden.m3', Buffer.from('m3'));
  await pub('golden.m4', Buffer.from('m4'), { deliveryMode: 1 });
  ch.on('return', () => {});
  await pub('nomatch', Buffer.from('unroutable'), { mandatory: true });
  const got = [];
  const { consumerTag } = await ch.consume(Q, (m) => got.push(m));
  for (let i = 0; i < 100 && got.length < 4; i++) await sleep(100);
  ch.ack(got[0]);
  ch.nack(got[1], false, false);
  ch.reject(got[2], false);
  await ch.cancel(consumerTag);
  await ch.recover();
  const m = await ch.get(Q);
  ch.ack(m);
  await ch.get(Q); // get-empty
  const tch = await conn.createChannel();
  await tch.rpc(defs.TxSelect, {}, defs.TxSelectOk);
  tch.publish(X, 'golden.tx', Buffer.from('tx1'));
  await tch.rpc(defs.TxCommit, {}, defs.TxCommitOk);
  tch.publish(X, 'golden.tx', Buffer.from('tx2'));
  await tch.rpc(defs.TxRollback, {}, defs.TxRollbackOk);
  await tch.close();
  await ch.purgeQueue(Q);
  await ch.unbindQueue(Q, X, 'golden.#', { 'x-golden-bind': 'v' });
  await sleep(2500);
  await ch.deleteQueue(Q);
  await ch.deleteExchange(X);
  await ch.close();
  await conn.close();
})().catch((e) => { console.error(e); process.exit(1); });
"""


def session_amqplib():
    x, q = names('amqplib')
    script = NODE_SCRIPT.replace('%TS%', str(TS_INT))
    with tempfile.NamedTemporaryFile('w', suffix='.js', delete=False) as f:
        f.write(script)
        path = f.name
    try:
        env = dict(os.environ,
                   NODE_PATH=os.path.join(NODE_DIR, 'node_modules'))
        url = f'amqp://guest:guest@{LISTEN[0]}:{LISTEN[1]}/?heartbeat=1'
        subprocess.run(['node', path, x, q, url, str(len(BIG_BODY))],
                       env=env, check=True, timeout=60)
    finally:
        os.unlink(path)


SESSIONS = {
    'pika': session_pika,
    'pyamqp': session_pyamqp,
    'aiopika': session_aiopika,
    'amqplib': session_amqplib,
}


def main(argv):
    clients = argv or list(SESSIONS)
    install_pamqp_hook()
    rec = Recorder()
    proxy = Proxy(rec)
    proxy.start()
    proxy.ready.wait(5)
    for client in clients:
        print(f'== {client}')
        ensure_clean(client)
        rec.take()
        SESSIONS[client]()
        time.sleep(0.5)  # let the proxy flush the close frames
        entries = build_entries(rec.take())
        out = OUT_DIR / f'{client}.json'
        with open(out, 'w') as f:
            json.dump(entries, f, indent=1)
            f.write('\n')
        names_seen = sorted({e['name'] for e in entries})
        print(f'   {len(entries)} frames, {out.stat().st_size} bytes -> {out}')
        print('   ' + ', '.join(names_seen))


if __name__ == '__main__':
    main(sys.argv[1:])
