"""The import rules of docs/ARCHITECTURE.md, checked by walking router/ with ``ast``.

``router.amqp`` is the wire and ``router.broker`` the model: both sans-IO, neither waits nor reads
a clock. Only the edges (runtime, client, dashboard, cli, bench) import trio or h11, and only the
cli imports the runtime. Every import counts: module level, inside functions (lazy), under
``if TYPE_CHECKING:``, relative, and ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "router"

STDLIB = frozenset(sys.stdlib_module_names)
IO_LIBRARIES = frozenset({"socket", "asyncio", "trio", "h11", "rich"})
EDGE_LIBRARIES = frozenset({"trio", "h11"})
EDGE_PACKAGES = (
    "router.runtime",
    "router.client",
    "router.dashboard",
    "router.cli",
    "router.bench",
)
CLOCK_FUNCTIONS = frozenset(
    {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"}
)
CATCH_ALL = frozenset({"Exception", "BaseException"})


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def where(self) -> str:
        return str(self.path.relative_to(ROOT))


@dataclass(frozen=True)
class Import:
    module: str  # the fully qualified module imported
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def router_modules() -> tuple[Module, ...]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules.append(Module(module_name(path), path, tree))
    return tuple(modules)


def in_package(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_router_module(name: str) -> bool:
    """True if ``name`` is a module or package inside router/ (not a name defined in one)."""
    relative = Path(*name.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative).is_dir()


def resolve_relative(module: Module, level: int, target: str | None) -> str:
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package.pop()
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join([*package, target] if target else package)


def imports_of(module: Module) -> list[Import]:
    found: list[Import] = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_relative(module, node.level, node.module) if node.level else node.module
            assert base is not None
            for alias in node.names:
                # ``from router import runtime`` imports router.runtime, a module;
                # ``from router.amqp.spec import Method`` imports router.amqp.spec.
                candidate = f"{base}.{alias.name}"
                is_submodule = in_package(candidate, "router") and is_router_module(candidate)
                found.append(Import(candidate if is_submodule else base, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append(Import(node.args[0].value, node.lineno))
    return found


def top_level(name: str) -> str:
    return name.split(".")[0]


def modules_in(*packages: str) -> list[Module]:
    return [m for m in router_modules() if any(in_package(m.name, p) for p in packages)]


def report(violations: list[str]) -> str:
    return "architecture rule broken:\n  " + "\n  ".join(violations)


# --- the walker itself -------------------------------------------------------------------------


def test_the_walker_sees_lazy_relative_type_checking_and_dynamic_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import spec\n"
        "from ..broker import session\n"
        "if TYPE_CHECKING:\n"
        "    from router.store import sqlite\n"
        "def later():\n"
        "    import trio\n"
        "    importlib.import_module('h11')\n"
    )
    fake = Module("router.amqp.fake", PACKAGE / "amqp" / "fake.py", ast.parse(source))
    assert [i.module for i in imports_of(fake)] == [
        "typing",
        "router.amqp.spec",
        "router.broker.session",
        "router.store.sqlite",
        "trio",
        "h11",
    ]
    assert {m.name for m in router_modules()} >= {
        "router.amqp.connection",
        "router.broker.session",
        "router.runtime.server",
    }


# --- the rules ---------------------------------------------------------------------------------


def test_amqp_imports_nothing_from_router_outside_amqp() -> None:
    violations = [
        f"{m.where}:{i.line} imports {i.module}"
        for m in modules_in("router.amqp")
        for i in imports_of(m)
        if in_package(i.module, "router") and not in_package(i.module, "router.amqp")
    ]
    assert not violations, report(violations)


def test_broker_imports_only_amqp_broker_stdlib_and_sortedcontainers() -> None:
    def allowed(name: str) -> bool:
        if in_package(name, "router"):
            # the bare root package holds only metadata (__version__), no layer
            return name == "router" or any(
                in_package(name, p) for p in ("router.amqp", "router.broker")
            )
        return top_level(name) in STDLIB or top_level(name) == "sortedcontainers"

    violations = [
        f"{m.where}:{i.line} imports {i.module}"
        for m in modules_in("router.broker")
        for i in imports_of(m)
        if not allowed(i.module)
    ]
    assert not violations, report(violations)


def test_only_runtime_client_dashboard_cli_and_bench_import_trio_or_h11() -> None:
    violations = [
        f"{m.where}:{i.line} imports {i.module}"
        for m in router_modules()
        if not any(in_package(m.name, p) for p in EDGE_PACKAGES)
        for i in imports_of(m)
        if top_level(i.module) in EDGE_LIBRARIES
    ]
    assert not violations, report(violations)


def test_nothing_but_cli_imports_runtime() -> None:
    violations = [
        f"{m.where}:{i.line} imports {i.module}"
        for m in router_modules()
        if not in_package(m.name, "router.runtime") and not in_package(m.name, "router.cli")
        for i in imports_of(m)
        if in_package(i.module, "router.runtime")
    ]
    assert not violations, report(violations)


def test_broker_never_imports_store() -> None:
    violations = [
        f"{m.where}:{i.line} imports {i.module} (talk to broker.ports.Store instead)"
        for m in modules_in("router.broker")
        for i in imports_of(m)
        if in_package(i.module, "router.store")
    ]
    assert not violations, report(violations)


def test_amqp_and_broker_never_read_the_clock() -> None:
    violations = []
    for m in modules_in("router.amqp", "router.broker"):
        time_aliases = {"time"}
        for node in ast.walk(m.tree):
            if isinstance(node, ast.Import):
                time_aliases |= {a.asname or a.name for a in node.names if a.name == "time"}
            elif isinstance(node, ast.ImportFrom) and node.module == "time":
                violations += [
                    f"{m.where}:{node.lineno} imports time.{a.name}"
                    for a in node.names
                    if a.name in CLOCK_FUNCTIONS or a.name == "*"
                ]
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in time_aliases
                and node.func.attr in CLOCK_FUNCTIONS
            ):
                violations.append(
                    f"{m.where}:{node.lineno} calls time.{node.func.attr}() (take `now` instead)"
                )
    assert not violations, report(violations)


def test_amqp_and_broker_never_import_socket_asyncio_trio_h11_or_rich() -> None:
    violations = [
        f"{m.where}:{i.line} imports {i.module}"
        for m in modules_in("router.amqp", "router.broker")
        for i in imports_of(m)
        if top_level(i.module) in IO_LIBRARIES
    ]
    assert not violations, report(violations)


def test_amqp_and_broker_have_no_catch_all_except() -> None:
    def catches_all(handler: ast.ExceptHandler) -> bool:
        if handler.type is None:  # bare ``except:``
            return True
        names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        return any(isinstance(n, ast.Name) and n.id in CATCH_ALL for n in names)

    violations = [
        f"{m.where}:{node.lineno} catches everything (raise ChannelError/ConnectionError instead)"
        for m in modules_in("router.amqp", "router.broker")
        for node in ast.walk(m.tree)
        if isinstance(node, ast.ExceptHandler) and catches_all(node)
    ]
    assert not violations, report(violations)


def test_topology_imports_broker_amqp_stdlib_and_yaml_and_only_its_commands_import_rich() -> None:
    def allowed(module: Module, name: str) -> bool:
        if in_package(name, "router"):
            return name == "router" or any(
                in_package(name, p) for p in ("router.amqp", "router.broker", "router.topology")
            )
        if top_level(name) == "rich":
            return module.name == "router.topology.commands"
        return top_level(name) in STDLIB or top_level(name) == "yaml"

    violations = [
        f"{m.where}:{i.line} imports {i.module}"
        for m in modules_in("router.topology")
        for i in imports_of(m)
        if not allowed(m, i.module)
    ]
    assert not violations, report(violations)
