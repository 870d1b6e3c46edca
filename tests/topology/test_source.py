"""router.topology.source: YAML read with every mapping, key and value remembering its place;
files and directories expanded; anchors, aliases and '<<' merges as YAML defines them."""

from __future__ import annotations

import textwrap
from pathlib import Path

from topology_helpers import write

from router.topology.source import Located, LocatedList, Where, expand, parse, read


def parse_one(text: str, file: str = "t.yaml") -> Located:
    documents, errors = parse(textwrap.dedent(text).lstrip("\n"), file)
    assert errors == []
    assert len(documents) == 1
    value = documents[0].value
    assert isinstance(value, Located)
    return value


def parse_errors(text: str, file: str = "t.yaml") -> list[tuple[int, int, str]]:
    _, errors = parse(textwrap.dedent(text).lstrip("\n"), file)
    return [(e.where.line, e.where.column, e.message) for e in errors]


# --- places ----------------------------------------------------------------------------------------


def test_a_place_prints_as_file_line_and_column_as_editors_count_them() -> None:
    assert str(Where("topology.yaml", 3, 7)) == "topology.yaml:3:7"


def test_a_place_without_a_line_prints_as_the_file_alone() -> None:
    assert str(Where("topology.yaml")) == "topology.yaml"


def test_places_sort_by_file_then_line_then_column() -> None:
    places = [Where("b", 1, 1), Where("a", 2, 1), Where("a", 1, 9), Where("a", 1, 2)]
    assert sorted(places) == [
        Where("a", 1, 2),
        Where("a", 1, 9),
        Where("a", 2, 1),
        Where("b", 1, 1),
    ]


def test_every_key_and_value_remembers_its_line_and_column() -> None:
    document = parse_one(
        """
        queues:
          - name: orders
            message_ttl: 30s
        """
    )
    queue = document["queues"][0]
    assert document.key_where["queues"] == Where("t.yaml", 1, 1)
    assert queue.key_where["message_ttl"] == Where("t.yaml", 3, 5)
    assert queue.value_where["message_ttl"] == Where("t.yaml", 3, 18)
    assert queue.value_where["name"] == Where("t.yaml", 2, 11)


def test_a_mapping_remembers_where_it_starts() -> None:
    document = parse_one(
        """
        queues:
          - name: orders
        """
    )
    assert document["queues"][0].where == Where("t.yaml", 2, 5)


def test_each_list_item_remembers_its_place() -> None:
    document = parse_one(
        """
        vhosts:
          - one
          - two
        """
    )
    vhosts = document["vhosts"]
    assert isinstance(vhosts, LocatedList)
    assert vhosts.where == Where("t.yaml", 2, 3)
    assert vhosts.item_where == [Where("t.yaml", 2, 5), Where("t.yaml", 3, 5)]


def test_values_inside_a_flow_mapping_have_their_column_in_the_line() -> None:
    document = parse_one("bindings: [{exchange: orders, queue: billing}]\n")
    binding = document["bindings"][0]
    assert binding.where == Where("t.yaml", 1, 12)
    assert binding.value_where["queue"] == Where("t.yaml", 1, 38)


# --- scalars -------------------------------------------------------------------------------------


def test_scalars_resolve_as_yaml_safe_loading_does() -> None:
    document = parse_one(
        """
        count: 10
        ratio: 0.5
        flag: true
        nothing: ~
        quoted: '10'
        """
    )
    assert dict(document) == {
        "count": 10,
        "ratio": 0.5,
        "flag": True,
        "nothing": None,
        "quoted": "10",
    }


def test_a_date_looking_scalar_stays_the_text_written() -> None:
    document = parse_one("name: 2024-01-31\n")
    assert document["name"] == "2024-01-31"


def test_a_scalar_value_remembers_the_text_written() -> None:
    document = parse_one("name: 010\nkey: 1.10\nlist: [1]\n")
    assert (document["name"], document["key"]) == (8, 1.1)
    assert document.value_text == {"name": "010", "key": "1.10"}


def test_an_own_key_overriding_a_merged_one_has_its_own_text() -> None:
    document = parse_one("base: &base {name: 010}\nqueue: {<<: *base, name: [a]}\n")
    assert "name" not in document["queue"].value_text


def test_keys_are_text_even_when_yaml_would_read_a_number() -> None:
    document = parse_one("10: ten\n")
    assert list(document) == ["10"]


# --- anchors, aliases, merges ----------------------------------------------------------------------


def test_an_alias_repeats_the_anchored_value() -> None:
    document = parse_one(
        """
        first: &keys [a, b]
        second: *keys
        """
    )
    assert document["second"] == ["a", "b"]


def test_a_merge_key_copies_the_anchored_mapping_in() -> None:
    document = parse_one(
        """
        defaults: &defaults {durable: true, overflow: reject-publish}
        queue:
          <<: *defaults
          name: orders
        """
    )
    assert dict(document["queue"]) == {
        "durable": True,
        "overflow": "reject-publish",
        "name": "orders",
    }


def test_keys_of_the_mapping_itself_override_merged_keys() -> None:
    document = parse_one(
        """
        defaults: &defaults {durable: true, max_length: 10}
        queue:
          max_length: 20
          <<: *defaults
        """
    )
    assert document["queue"]["max_length"] == 20


def test_merged_keys_point_at_where_the_anchored_mapping_wrote_them() -> None:
    document = parse_one(
        """
        defaults: &defaults
          max_length: 10
        queue:
          <<: *defaults
          name: orders
        """
    )
    queue = document["queue"]
    assert queue.key_where["max_length"] == Where("t.yaml", 2, 3)
    assert queue.value_where["max_length"] == Where("t.yaml", 2, 15)
    assert queue.key_where["name"] == Where("t.yaml", 5, 3)


def test_merging_a_list_of_mappings_lets_the_earlier_mapping_win() -> None:
    # https://yaml.org/type/merge.html: "Keys in mapping nodes earlier in the sequence override
    # keys specified in later mapping nodes."
    document = parse_one(
        """
        short: &short {message_ttl: 1s, max_length: 5}
        long: &long {message_ttl: 1h, durable: false}
        queue:
          <<: [*short, *long]
        """
    )
    assert dict(document["queue"]) == {"message_ttl": "1s", "max_length": 5, "durable": False}


def test_a_merged_mapping_brings_along_what_it_merged_itself() -> None:
    document = parse_one(
        """
        base: &base {durable: false, max_length: 1}
        work: &work {<<: *base, max_length: 2}
        queue: {<<: *work, name: q}
        """
    )
    assert dict(document["queue"]) == {"durable": False, "max_length": 2, "name": "q"}


def test_merging_a_scalar_is_an_error_at_the_merge_key() -> None:
    assert parse_errors(
        """
        ttl: &ttl 30s
        queue:
          <<: *ttl
        """
    ) == [(3, 3, "'<<' merges mappings only; write '<<: *anchor' where the anchor names a mapping")]


def test_a_key_written_twice_in_one_mapping_is_an_error_naming_the_first_line() -> None:
    assert parse_errors(
        """
        queue:
          name: a
          max_length: 1
          name: b
        """
    ) == [(4, 3, "key 'name' is written twice in this mapping (first at line 2); keep one")]


def test_a_key_written_twice_keeps_the_first_value() -> None:
    documents, _ = parse("name: a\nname: b\n", "t.yaml")
    assert documents[0].value["name"] == "a"


def test_a_key_both_merged_and_written_is_not_written_twice() -> None:
    assert (
        parse_errors(
            """
        defaults: &defaults {name: x}
        queue: {<<: *defaults, name: y}
        """
        )
        == []
    )


def test_a_list_used_as_a_key_is_an_error() -> None:
    assert parse_errors("? [a, b]\n: value\n") == [
        (1, 3, "keys must be plain text, not lists or maps")
    ]


def test_an_alias_to_an_anchor_of_another_document_is_not_valid_yaml() -> None:
    documents, errors = parse("a: &x 1\n---\nb: *x\n", "t.yaml")
    assert documents == []
    assert [(e.where.line, e.message.split(":")[0]) for e in errors] == [(3, "not valid YAML")]


# --- whole files ---------------------------------------------------------------------------------


def test_text_that_is_not_yaml_is_one_error_with_its_line_and_column() -> None:
    documents, errors = parse("queues:\n  - name: [orders\n", "t.yaml")
    assert documents == []
    assert len(errors) == 1
    assert errors[0].where == Where("t.yaml", 3, 1)
    assert errors[0].message.startswith("not valid YAML: while parsing a flow sequence")


def test_every_document_of_a_file_is_read() -> None:
    documents, errors = parse("queues: []\n---\nexchanges: []\n", "t.yaml")
    assert errors == []
    assert [list(d.value) for d in documents] == [["queues"], ["exchanges"]]


def test_empty_documents_are_skipped() -> None:
    documents, errors = parse("# only a comment\n---\nqueues: []\n---\n", "t.yaml")
    assert errors == []
    assert [list(d.value) for d in documents] == [["queues"]]


def test_a_directory_expands_to_its_yaml_files_in_name_order(tmp_path: Path) -> None:
    for name in ("b.yml", "a.yaml", "c.yaml", "notes.txt", "defs.json"):
        write(tmp_path, name, "queues: []\n")
    (tmp_path / "nested.yaml").mkdir()
    files, errors = expand([str(tmp_path)])
    assert errors == []
    assert [f.name for f in files] == ["a.yaml", "b.yml", "c.yaml"]


def test_files_and_directories_named_are_read_in_the_order_named(tmp_path: Path) -> None:
    write(tmp_path, "dir/one.yaml", "queues: []\n")
    single = write(tmp_path, "single.yaml", "queues: []\n")
    files, _ = expand([str(single), str(tmp_path / "dir")])
    assert [f.name for f in files] == ["single.yaml", "one.yaml"]


def test_a_directory_without_yaml_files_is_an_error(tmp_path: Path) -> None:
    _, errors = expand([str(tmp_path)])
    assert [(e.where, e.message) for e in errors] == [
        (Where(str(tmp_path)), "directory has no .yaml or .yml files to read")
    ]


def test_a_path_that_does_not_exist_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    _, errors = expand([missing])
    assert [(e.where, e.message) for e in errors] == [
        (Where(missing), "no such file or directory; check the path")
    ]


def test_read_returns_the_documents_of_every_file_in_order(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "queues: []\n")
    write(tmp_path, "b.yaml", "exchanges: []\n---\nusers: []\n")
    documents, errors = read([str(tmp_path)])
    assert errors == []
    assert [(Path(d.file).name, list(d.value)) for d in documents] == [
        ("a.yaml", ["queues"]),
        ("b.yaml", ["exchanges"]),
        ("b.yaml", ["users"]),
    ]


def test_read_reports_a_file_that_is_not_utf8_and_reads_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"queues: [\xff]\n")
    write(tmp_path, "b.yaml", "exchanges: []\n")
    documents, errors = read([str(tmp_path)])
    assert [Path(d.file).name for d in documents] == ["b.yaml"]
    assert len(errors) == 1
    assert Path(errors[0].where.file).name == "a.yaml"
    assert errors[0].message.startswith("cannot read the file")
