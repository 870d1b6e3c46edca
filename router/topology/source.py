"""Reading topology files: YAML with every mapping, key and value remembering where it was written.

Several files, and directories of ``*.yaml`` / ``*.yml`` files (read in name order), are read into
one list of documents. Anchors, aliases and ``<<`` merge keys work as YAML defines them; a key
written twice in one mapping is an error (YAML loaders usually keep the last one silently).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True, order=True)
class Where:
    """A place in a file: 1-based line and column, as editors count them."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


class Located(dict[str, Any]):
    """A mapping read from YAML: ``where`` is the mapping's place, ``key_where[k]`` the key's and
    ``value_where[k]`` the value's."""

    def __init__(self, where: Where) -> None:
        super().__init__()
        self.where = where
        self.key_where: dict[str, Where] = {}
        self.value_where: dict[str, Where] = {}
        # a scalar value's text as written: YAML reads `name: 010` as 8 and `routing_key: 1.10`
        # as 1.1, so where text is wanted the text written is used, not the number
        self.value_text: dict[str, str] = {}


class LocatedList(list[Any]):
    """A sequence read from YAML: ``item_where[i]`` is the place of item ``i``."""

    def __init__(self, where: Where) -> None:
        super().__init__()
        self.where = where
        self.item_where: list[Where] = []


@dataclass(frozen=True)
class SourceError:
    """A file that cannot be read or is not YAML."""

    where: Where
    message: str


_MERGE = "tag:yaml.org,2002:merge"


def _where(file: str, node: Node) -> Where:
    mark = node.start_mark
    return Where(file, mark.line + 1, mark.column + 1)


class _Builder:
    """Turns composed YAML nodes into Located values. Scalars are resolved by PyYAML's safe
    constructor (ints, floats, booleans, null, strings, dates as strings)."""

    def __init__(self, file: str, errors: list[SourceError]) -> None:
        self.file = file
        self.errors = errors
        self._constructor = yaml.constructor.SafeConstructor()
        self._done: dict[int, Any] = {}  # aliases: one value per node

    def build(self, node: Node) -> Any:
        known = self._done.get(id(node))
        if known is not None:
            return known
        if isinstance(node, MappingNode):
            return self._mapping(node)
        if isinstance(node, SequenceNode):
            items = LocatedList(_where(self.file, node))
            self._done[id(node)] = items
            for child in node.value:
                items.append(self.build(child))
                items.item_where.append(_where(self.file, child))
            return items
        assert isinstance(node, ScalarNode)
        value = self._constructor.construct_object(node, deep=True)
        if hasattr(value, "isoformat"):  # a date-looking scalar: keep the text
            return str(node.value)
        return value

    def _mapping(self, node: MappingNode) -> Located:
        result = Located(_where(self.file, node))
        self._done[id(node)] = result
        merged: list[tuple[Node, Node]] = []
        own: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merged(key_node, value_node, {id(node)}))
            else:
                own.append((key_node, value_node))
        # merged keys first, so the mapping's own keys override them (YAML merge semantics)
        for key_node, value_node in merged:
            key = self._key(key_node)
            if key is not None:
                self._set(result, key, key_node, value_node)
        seen: set[str] = set()
        for key_node, value_node in own:
            key = self._key(key_node)
            if key is None:
                continue
            if key in seen:
                first = result.key_where[key]
                self.errors.append(
                    SourceError(
                        _where(self.file, key_node),
                        f"key '{key}' is written twice in this mapping (first at line "
                        f"{first.line}); keep one",
                    )
                )
                continue
            seen.add(key)
            self._set(result, key, key_node, value_node)
        return result

    def _set(self, result: Located, key: str, key_node: Node, value_node: Node) -> None:
        result[key] = self.build(value_node)
        result.key_where[key] = _where(self.file, key_node)
        result.value_where[key] = _where(self.file, value_node)
        result.value_text.pop(key, None)  # an own key overriding a merged one
        if isinstance(value_node, ScalarNode):
            result.value_text[key] = str(value_node.value)

    def _merged(self, key_node: Node, value_node: Node, seen: set[int]) -> list[tuple[Node, Node]]:
        """The (key, value) pairs a '<<' value merges in, in the order to assign them: a merged
        mapping's own '<<' first (its own keys override them), and of ``<<: [*a, *b]`` the later
        mapping first, because earlier ones win (https://yaml.org/type/merge.html). A problem is
        reported at the '<<' (an alias has no place of its own: it is the anchored node)."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        pairs: list[tuple[Node, Node]] = []
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                self.errors.append(
                    SourceError(
                        _where(self.file, key_node),
                        "'<<' merges mappings only; write '<<: *anchor' where the "
                        "anchor names a mapping",
                    )
                )
                continue
            if id(source) in seen:
                continue  # a mapping merging itself: nothing more to add
            for inner_key, value in source.value:
                if inner_key.tag == _MERGE:
                    pairs.extend(self._merged(inner_key, value, seen | {id(source)}))
            pairs.extend((k, v) for k, v in source.value if k.tag != _MERGE)
        return pairs

    def _key(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            self.errors.append(
                SourceError(_where(self.file, node), "keys must be plain text, not lists or maps")
            )
            return None
        return str(node.value)


@dataclass(frozen=True)
class Document:
    """One YAML document of one file."""

    file: str
    value: Any


def expand(paths: list[str]) -> tuple[list[Path], list[SourceError]]:
    """The files named, with directories replaced by their YAML files in name order."""
    files: list[Path] = []
    errors: list[SourceError] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
            )
            if not found:
                errors.append(
                    SourceError(Where(name), "directory has no .yaml or .yml files to read")
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(SourceError(Where(name), "no such file or directory; check the path"))
    return files, errors


_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, file: str) -> tuple[list[Document], list[SourceError]]:
    """The documents of one file's text."""
    errors: list[SourceError] = []
    documents: list[Document] = []
    try:
        try:
            # libyaml when PyYAML has it: the same nodes and marks, several times faster
            nodes = list(yaml.compose_all(text, Loader=_FAST_LOADER))
        except yaml.YAMLError:
            # the pure-Python parser words its errors better (context and position)
            nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Where(file, mark.line + 1, mark.column + 1) if mark else Where(file)
        problem = error.problem or str(error)
        if error.context:
            problem = f"{error.context}: {problem}"
        return [], [SourceError(where, f"not valid YAML: {problem}")]
    except yaml.YAMLError as error:
        return [], [SourceError(Where(file), f"not valid YAML: {error}")]
    for node in nodes:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            continue  # an empty document ('---' with nothing after it, e.g. at the end of a file)
        builder = _Builder(file, errors)
        documents.append(Document(file, builder.build(node)))
    return documents, errors


def read(paths: list[str]) -> tuple[list[Document], list[SourceError]]:
    """Every document of every file named (files, or directories of YAML files)."""
    files, errors = expand(paths)
    documents: list[Document] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            errors.append(SourceError(Where(str(path)), f"cannot read the file: {error}"))
            continue
        found, problems = parse(text, str(path))
        documents.extend(found)
        errors.extend(problems)
    return documents, errors
