"""docs/topology.schema.json: generated from the validator's tables, a valid JSON Schema, and it
accepts the example topology and refuses what the validator refuses by shape."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from router.topology.jsonschema import json_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "docs" / "topology.schema.json"


def test_the_schema_file_is_what_router_topology_json_schema_writes() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "regenerate it: router topology json-schema -o docs/topology.schema.json"
    )


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


def test_the_example_topology_satisfies_the_schema() -> None:
    data = yaml.safe_load((ROOT / "config" / "topology.yaml").read_text())
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))
    assert not errors, [e.message for e in errors]


def test_the_schema_refuses_a_misspelt_key_a_bad_type_and_a_bad_duration() -> None:
    data = {
        "exchanges": [{"name": "orders", "type": "fanot"}],
        "queues": [{"name": "q", "mesage_ttl": 5, "message_ttl": "soon"}],
    }
    errors = list(jsonschema.Draft202012Validator(json_schema()).iter_errors(data))
    assert len(errors) == 3
