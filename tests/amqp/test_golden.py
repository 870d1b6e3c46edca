"""Golden frames from pika, py-amqp, aio-pika and amqplib talking to RabbitMQ 3.10.

Both directions for every frame: the bytes decode to what pamqp decoded at capture time (names
mapped to ours), and our decoded value encodes back to the very same bytes.
"""

from __future__ import annotations

import datetime
import decimal
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from router.amqp import fastpath, spec
from router.amqp.frames import FrameReader, content_frames, encode_frame, method_frame
from router.amqp.properties import (
    BasicProperties,
    decode_content_header,
    decode_properties,
    encode_content_header,
    peek_delivery_mode,
    peek_expiration,
    peek_headers,
    peek_priority,
    scan,
)
from router.amqp.tables import FieldArray, FieldTable

GOLDEN = Path(__file__).resolve().parent / "golden"
CLIENTS = ["pika", "pyamqp", "aiopika", "amqplib"]
# capture.py's BIG_BODY: the elided middle body frames are rebuilt from it
BIG_BODY = (bytes(range(256)) * 1200)[:300000]
FRAME_MAX = 131072
# the capture's argument names, where they differ from ours (pamqp's 'global_' became 'global')
CAPTURE_NAMES = {"global_": "global"}


@cache
def frames_of(client: str) -> tuple[dict[str, Any], ...]:
    """The client's golden frames, each with its full frame bytes under 'raw' (elided rebuilt)."""
    entries = json.loads((GOLDEN / f"{client}.json").read_text())
    assert entries[0]["name"] == "protocol-header"
    body_offset: dict[tuple[str, int], int] = {}
    out = []
    for entry in entries:
        entry = dict(entry)
        key = (entry["dir"], entry["channel"])
        if entry.get("elided"):
            start = body_offset[key]
            payload = BIG_BODY[start : start + entry["size"]]
            entry["raw"] = encode_frame(3, entry["channel"], payload)
        else:
            entry["raw"] = bytes.fromhex(entry["hex"])
        if entry["type"] == 2:
            body_offset[key] = 0
        elif entry["type"] == 3:
            body_offset[key] += entry["size"]
        out.append(entry)
    return tuple(out)


def payload_of(entry: dict[str, Any]) -> bytes:
    raw: bytes = entry["raw"]
    assert raw[-1] == 0xCE
    return raw[7:-1]


def golden(*types: int, names: tuple[str, ...] = (), direction: str | None = None) -> Any:
    params = []
    for client in CLIENTS:
        for index, entry in enumerate(frames_of(client)):
            if entry["type"] not in types:
                continue
            if names and entry["name"] not in names:
                continue
            if direction is not None and entry["dir"] != direction:
                continue
            params.append(
                pytest.param(entry, id=f"{client}-{index:03d}-{entry['dir']}-{entry['name']}")
            )
    return pytest.mark.parametrize("entry", params)


def jsonish(value: Any, tag: str | None = None) -> Any:
    """Our decoded value in the form capture.py wrote pamqp's (see its ``jsonable``)."""
    if tag == "T":
        return datetime.datetime.fromtimestamp(value, datetime.UTC).isoformat()
    if isinstance(value, FieldTable):
        return {key: jsonish(v, value.tag(key)) for key, v in value.items()}
    if isinstance(value, FieldArray):
        return [jsonish(v, value.tag(i)) for i, v in enumerate(value)]
    if isinstance(value, bytes):
        return {"bytes_hex": value.hex()}
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def tag_spec(tag: str, value: Any) -> Any:
    """Tags the way capture.py recorded them: 'S', {'F': {...}}, {'A': [...]}."""
    if tag == "F":
        return {"F": {key: tag_spec(value.tag(key), v) for key, v in value.items()}}
    if tag == "A":
        return {"A": [tag_spec(value.tag(i), v) for i, v in enumerate(value)]}
    return tag


def method_fields(method: spec.Method) -> dict[str, Any]:
    fields = {}
    for name, kind in method.FIELDS:
        value = getattr(method, name)
        if kind == "longstr":  # pamqp hands back a str where the bytes are UTF-8
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        fields[CAPTURE_NAMES.get(name, name)] = jsonish(value)
    return fields


def property_fields(props: BasicProperties) -> dict[str, Any]:
    fields = {}
    for name in BasicProperties.__dataclass_fields__:
        value = getattr(props, name)
        if value is not None:
            fields[name] = jsonish(value, "T" if name == "timestamp" else None)
    return fields


# --- method frames -------------------------------------------------------------------------------


@golden(1)
def test_golden_method_decodes_to_the_fields_the_client_sent(entry: dict[str, Any]) -> None:
    method = spec.decode_method(payload_of(entry))
    assert entry["name"] == method.NAME
    assert (entry["class_id"], entry["method_id"]) == (method.CLASS_ID, method.METHOD_ID)
    assert method_fields(method) == entry["fields"]


@golden(1)
def test_golden_method_reencodes_to_the_same_bytes(entry: dict[str, Any]) -> None:
    payload = payload_of(entry)
    assert spec.decode_method(payload).encode() == payload


@golden(1)
def test_golden_method_frame_is_rebuilt_byte_for_byte(entry: dict[str, Any]) -> None:
    method = spec.decode_method(payload_of(entry))
    assert method_frame(entry["channel"], method) == entry["raw"]


@golden(1)
def test_golden_method_tables_keep_the_type_tags_the_client_sent(entry: dict[str, Any]) -> None:
    method = spec.decode_method(payload_of(entry))
    tags = {
        CAPTURE_NAMES.get(name, name): tag_spec("F", getattr(method, name))["F"]
        for name, kind in method.FIELDS
        if kind == "table"
    }
    assert tags == entry.get("field_tags", {})


# --- content headers -----------------------------------------------------------------------------


@golden(2)
def test_golden_content_header_decodes_to_the_captured_properties(entry: dict[str, Any]) -> None:
    class_id, body_size, raw_props = decode_content_header(payload_of(entry))
    assert (class_id, body_size) == (entry["class_id"], entry["body_size"])
    assert int.from_bytes(raw_props[:2], "big") == entry["property_flags"]
    props = decode_properties(raw_props)
    assert property_fields(props) == entry["properties"]
    if props.headers is not None:
        assert tag_spec("F", props.headers)["F"] == entry["field_tags"]["headers"]


@golden(2)
def test_golden_content_header_reencodes_to_the_same_bytes(entry: dict[str, Any]) -> None:
    class_id, body_size, raw_props = decode_content_header(payload_of(entry))
    props = decode_properties(raw_props)
    assert props.encode() == raw_props
    assert encode_content_header(class_id, body_size, props.encode()) == payload_of(entry)


@golden(2)
def test_golden_content_header_scan_finds_mode_priority_and_expiration(
    entry: dict[str, Any],
) -> None:
    _, _, raw_props = decode_content_header(payload_of(entry))
    captured = entry["properties"]
    expected = (
        captured.get("delivery_mode", 0),
        captured.get("priority"),
        captured.get("expiration"),
    )
    assert scan(raw_props) == expected
    assert (
        peek_delivery_mode(raw_props),
        peek_priority(raw_props),
        peek_expiration(raw_props),
    ) == (expected)
    headers = peek_headers(raw_props)
    assert (jsonish(headers) if headers is not None else None) == captured.get("headers")


# --- the fast path against real clients' bytes ---------------------------------------------------


@golden(1, names=("basic.publish",))
def test_golden_publish_is_read_by_the_fast_path(entry: dict[str, Any]) -> None:
    fields = entry["fields"]
    assert fastpath.decode_publish(payload_of(entry)) == (
        fields["exchange"],
        fields["routing_key"],
        fields["mandatory"],
        fields["immediate"],
    )


@golden(1, names=("basic.ack", "basic.nack", "basic.reject"), direction="c2s")
def test_golden_acknowledgement_is_read_by_the_fast_path(entry: dict[str, Any]) -> None:
    fields = entry["fields"]
    if entry["name"] == "basic.nack":
        bits = int(fields["multiple"]) | int(fields["requeue"]) << 1
    elif entry["name"] == "basic.reject":
        bits = int(fields["requeue"])
    else:
        bits = int(fields["multiple"])
    assert fastpath.decode_tag_bits(payload_of(entry)) == (fields["delivery_tag"], bits)


@golden(1, names=("basic.deliver",))
def test_golden_deliver_is_written_by_the_fast_path(entry: dict[str, Any]) -> None:
    f = entry["fields"]
    rk = fastpath.shortstr(f["exchange"]) + fastpath.shortstr(f["routing_key"])
    frame = fastpath.deliver_frame(
        entry["channel"],
        fastpath.shortstr(f["consumer_tag"]),
        f["delivery_tag"],
        f["redelivered"],
        rk,
    )
    assert frame == entry["raw"]


@golden(1, names=("basic.get-ok",))
def test_golden_get_ok_is_written_by_the_fast_path(entry: dict[str, Any]) -> None:
    f = entry["fields"]
    rk = fastpath.shortstr(f["exchange"]) + fastpath.shortstr(f["routing_key"])
    frame = fastpath.get_ok_frame(
        entry["channel"], f["delivery_tag"], f["redelivered"], rk, f["message_count"]
    )
    assert frame == entry["raw"]


@golden(1, names=("basic.return",))
def test_golden_return_is_written_by_the_fast_path(entry: dict[str, Any]) -> None:
    f = entry["fields"]
    rk = fastpath.shortstr(f["exchange"]) + fastpath.shortstr(f["routing_key"])
    assert (
        fastpath.return_frame(entry["channel"], f["reply_code"], f["reply_text"], rk)
        == (entry["raw"])
    )


@golden(1, names=("basic.ack",), direction="s2c")
def test_golden_publisher_confirm_is_written_by_the_fast_path(entry: dict[str, Any]) -> None:
    f = entry["fields"]
    assert (
        fastpath.confirm_frame(entry["channel"], f["delivery_tag"], f["multiple"]) == (entry["raw"])
    )


@golden(1, names=("basic.get-empty",))
def test_golden_get_empty_is_written_by_the_fast_path(entry: dict[str, Any]) -> None:
    assert fastpath.get_empty_frame(entry["channel"]) == entry["raw"]


def contents(client: str, direction: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each content header of one direction with the body frames that follow it."""
    found: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    open_: dict[int, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for entry in frames_of(client):
        if entry["dir"] != direction:
            continue
        if entry["type"] == 2:
            open_[entry["channel"]] = (entry, [])
            found.append(open_[entry["channel"]])
        elif entry["type"] == 3:
            open_[entry["channel"]][1].append(entry)
    return found


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_golden_content_frames_are_written_the_same_way_by_content_tail_and_content_frames(
    client: str, direction: str
) -> None:
    checked = 0
    for header, bodies in contents(client, direction):
        body = b"".join(payload_of(b) for b in bodies)
        assert len(body) == header["body_size"]
        expected = header["raw"] + b"".join(b["raw"] for b in bodies)
        _, _, raw_props = decode_content_header(payload_of(header))
        channel = header["channel"]
        tail = fastpath.content_tail(channel, payload_of(header), body, FRAME_MAX)
        assert tail == expected
        assert b"".join(content_frames(channel, 60, raw_props, body, FRAME_MAX)) == expected
        checked += 1
    assert checked >= 5


# --- the frame reader on whole streams -----------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
@pytest.mark.parametrize("chunk", [1 << 20, 4096, 777, 7])
def test_golden_stream_is_split_back_into_the_captured_frames(
    client: str, direction: str, chunk: int
) -> None:
    entries = [e for e in frames_of(client) if e["dir"] == direction]
    stream = b"".join(e["raw"] for e in entries)
    reader = FrameReader(max_size=FRAME_MAX)
    got = []
    if direction == "c2s":
        assert entries[0]["name"] == "protocol-header"
        entries = entries[1:]
        reader.feed(stream[:8])
        assert reader.take(8) == b"AMQP\x00\x00\x09\x01"
        stream = stream[8:]
    for start in range(0, len(stream), chunk):
        reader.feed(stream[start : start + chunk])
        got += reader.read_frames()
    assert reader.buffered == 0
    assert got == [(e["type"], e["channel"], payload_of(e)) for e in entries]


def test_golden_files_hold_every_client_and_both_directions() -> None:
    for client in CLIENTS:
        directions = {e["dir"] for e in frames_of(client)}
        names = {e["name"] for e in frames_of(client)}
        assert directions == {"c2s", "s2c"}
        assert {"connection.start-ok", "basic.publish", "basic.deliver"} <= names
