"""``router topology validate | plan | apply | export | convert | json-schema | hash-password``.

Exit codes: 0 done (or nothing to do), 1 the files or the plan have problems (nothing applied),
2 usage or a broker that cannot be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from router.broker.passwords import hash_password
from router.topology import load
from router.topology.definitions import current_from_definitions, to_definitions, to_yaml
from router.topology.model import Topology
from router.topology.plan import BLOCKED, CONFLICT, CREATE, DELETE, RECREATE, UPDATE, Plan, plan
from router.topology.remote import ManagementClient, RemoteError, RemoteTarget
from router.topology.schema import Problem
from router.topology.target import ApplyError

DEFAULT_URL = "http://127.0.0.1:15672"
STYLES = {
    CREATE: "green",
    UPDATE: "yellow",
    RECREATE: "magenta",
    DELETE: "red",
    CONFLICT: "bold red",
    BLOCKED: "bold red",
}
SHOWN_ROWS = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="topology_command", required=True, metavar="COMMAND")

    def files(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "files",
            nargs="+",
            metavar="FILE",
            help="YAML files, directories of them, or RabbitMQ definitions .json files",
        )

    def remote(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            default=DEFAULT_URL,
            help=f"the broker's management API (router or RabbitMQ; default {DEFAULT_URL})",
        )
        p.add_argument("--user", default="guest", help="management API user (default guest)")
        p.add_argument("--password", default="guest", help="its password (default guest)")

    def changes(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--prune", action="store_true", help="also delete what the files do not declare"
        )
        p.add_argument(
            "--force",
            action="store_true",
            help="with --prune or --recreate: delete queues even when they hold messages",
        )
        p.add_argument(
            "--recreate",
            action="store_true",
            help="delete and re-declare exchanges and queues whose settings cannot change in "
            "place (queues holding messages need --force too)",
        )
        p.add_argument(
            "--full", action="store_true", help=f"list every change (default: {SHOWN_ROWS})"
        )

    validate = sub.add_parser("validate", help="check topology files; report every problem")
    files(validate)
    planning = sub.add_parser("plan", help="show what apply would change on a running broker")
    files(planning)
    remote(planning)
    changes(planning)
    applying = sub.add_parser("apply", help="make a running broker match the files")
    files(applying)
    remote(applying)
    changes(applying)
    export = sub.add_parser("export", help="write a running broker's topology")
    remote(export)
    export.add_argument(
        "--format",
        choices=("yaml", "rabbitmq"),
        default="yaml",
        help="yaml (router topology) or rabbitmq (definitions JSON for import_definitions)",
    )
    export.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    convert = sub.add_parser(
        "convert", help="RabbitMQ definitions JSON to topology YAML, or YAML to definitions"
    )
    files(convert)
    convert.add_argument(
        "--to",
        choices=("yaml", "rabbitmq"),
        default=None,
        help="output format (default: yaml for .json input, rabbitmq otherwise)",
    )
    convert.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    schema = sub.add_parser(
        "json-schema", help="write the JSON Schema of topology files (editor completion)"
    )
    schema.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
    hashing = sub.add_parser(
        "hash-password", help="make a password_hash for a topology file (asks if not given)"
    )
    hashing.add_argument("password", nargs="?", default=None)


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    command = args.topology_command
    if command == "hash-password":
        return _hash_password(args)
    if command == "export":
        return _export(args, errors)
    if command == "json-schema":
        from router.topology.jsonschema import json_schema

        return _write(args.output, json.dumps(json_schema(), indent=2) + "\n")
    topology, problems = load(args.files)
    failed = _report(problems, errors)
    if failed:
        errors.print(
            f"[bold red]{failed} error{'s' if failed != 1 else ''}[/]: nothing was applied. Fix "
            "the files and run 'router topology validate' again."
        )
        return 1
    if command == "validate":
        console.print(f"[green]valid[/]: {topology.summary()}")
        return 0
    if command == "convert":
        return _convert(args, topology)
    client = ManagementClient(args.url, args.user, args.password)
    try:
        target = RemoteTarget(client)
        current, messages = target.current()
        result = plan(
            topology,
            current,
            messages=messages,
            prune=args.prune,
            force=args.force,
            recreate=args.recreate,
            keep_users=frozenset({args.user}),
        )
        print_plan(console, result, full=args.full)
        if result.problems:
            errors.print(
                f"[bold red]{len(result.problems)} change(s) cannot be applied[/] (see above): "
                "nothing was applied."
                if command == "apply"
                else f"[bold red]{len(result.problems)} change(s) cannot be applied[/] as "
                "things stand (see above)."
            )
            return 1
        if command == "plan" or result.empty:
            return 0
        target.apply(result.steps())
        after, _ = target.current()
        check = plan(
            topology,
            after,
            prune=args.prune,
            force=True,
            recreate=True,
            keep_users=frozenset({args.user}),
        )
        console.print(f"[green]applied[/]: {result.summary()}")
        if not check.empty:
            errors.print(
                "[yellow]the broker still differs from the files after apply:[/] "
                f"{check.summary()}; run 'router topology plan' to see what"
            )
            return 1
        return 0
    except RemoteError as error:
        errors.print(f"[bold red]error[/]: {error}")
        return 2
    except ApplyError as error:
        errors.print(
            f"[bold red]apply stopped[/] after {error.done} step(s): {error}. Run 'router "
            "topology plan' to see what is left."
        )
        return 1
    finally:
        client.close()


def _report(problems: list[Problem], console: Console) -> int:
    """Print every problem; the number of errors (warnings do not count)."""
    for problem in problems:
        style = "yellow" if problem.warning else "red"
        text = Text(str(problem.where) + ": ", style="bold")
        text.append("warning: " if problem.warning else "error: ", style=style)
        if problem.path:
            text.append(problem.path + ": ", style="cyan")
        text.append(problem.message)
        if problem.allowed:
            text.append("\n    allowed: ", style="dim")
            text.append(problem.allowed)
        if problem.hint:
            text.append("\n    hint: ", style="dim")
            text.append(problem.hint)
        console.print(text)
    return sum(1 for p in problems if not p.warning)


def print_plan(console: Console, result: Plan, *, full: bool = False) -> None:
    if result.empty:
        console.print(f"[green]{result.summary()}[/]")
        return
    table = Table(title="topology plan", title_justify="left", expand=False)
    for column in ("action", "kind", "vhost", "name", "detail"):
        table.add_column(column, overflow="fold")
    order = (CONFLICT, BLOCKED, RECREATE, DELETE, UPDATE, CREATE)
    rows = sorted(result.changes, key=lambda c: order.index(c.action))
    shown = rows if full else [r for i, r in enumerate(rows) if i < SHOWN_ROWS or not r.applicable]
    for change in shown:
        table.add_row(
            Text(change.action, style=STYLES[change.action]),
            change.kind,
            change.vhost,
            change.name,
            change.detail,
        )
    console.print(table)
    if len(shown) < len(rows):
        console.print(f"… and {len(rows) - len(shown)} more (--full lists every change)")
    console.print(result.summary())


def _export(args: argparse.Namespace, errors: Console) -> int:
    client = ManagementClient(args.url, args.user, args.password)
    try:
        document = client.request("GET", "/api/definitions")
    except RemoteError as error:
        errors.print(f"[bold red]error[/]: {error}")
        return 2
    finally:
        client.close()
    topology = current_from_definitions(document)
    return _write(args.output, _render(topology, args.format, f"exported from {args.url}"))


def _convert(args: argparse.Namespace, topology: Topology) -> int:
    to = args.to or ("yaml" if all(f.endswith(".json") for f in args.files) else "rabbitmq")
    return _write(args.output, _render(topology, to, f"converted from {', '.join(args.files)}"))


def _render(topology: Topology, form: str, origin: str) -> str:
    if form == "rabbitmq":
        return json.dumps(to_definitions(topology), indent=2) + "\n"
    header = (
        f"router topology, {origin}\n{topology.summary()}\n"
        "apply with: router topology apply FILE (docs/topology.md)"
    )
    return to_yaml(topology, header)


def _write(output: str, text: str) -> int:
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
    return 0


def _hash_password(args: argparse.Namespace) -> int:
    password: Any = args.password
    if password is None:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("router: the two passwords differ; nothing written", file=sys.stderr)
            return 1
    if not password:
        print("router: an empty password cannot log in; choose one", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
