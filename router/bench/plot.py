"""``router bench-plot``: throughput and latency from ``router bench`` JSON files, as one PNG.

Needs matplotlib (``pip install 'router[bench]'``). Three panels: the primary figure of every
throughput scenario for each broker (log scale: they span two orders of magnitude), the latency
percentiles of the latency scenarios, and router's ratio to the other broker, oriented so that
above 1 is router's advantage (for latency and memory, the inverse ratio).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

THROUGHPUT = {
    "publish",
    "e2e",
    "persistent",
    "fanout",
    "topic",
    "headers",
    "priority",
    "many",
}


def load(files: list[Path]) -> list[dict[str, Any]]:
    data = []
    for path in files:
        item = json.loads(path.read_text())
        item.setdefault("name", path.stem)
        data.append(item)
    return data


def plot_files(files: list[Path], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise SystemExit(
            f"router bench-plot needs matplotlib ({error}); install it with "
            "pip install 'router[bench]'"
        ) from None
    from router.bench import PRIMARY

    data = load(files)
    labels = []
    for item in data:
        for result in item["results"]:
            name = "RabbitMQ" if result["label"] == "compare" else result["label"]
            if name not in labels:
                labels.append(name)

    throughput = [d for d in data if d["scenario"] in THROUGHPUT]
    latency = [d for d in data if d["scenario"] == "latency"]
    figure, axes = plt.subplots(1, 3, figsize=(18, 6.5), constrained_layout=True)

    # 1. throughput per scenario and broker
    ax = axes[0]
    height = 0.8 / max(1, len(labels))
    for b, broker in enumerate(labels):
        values = []
        for item in throughput:
            value = _median(item, broker, PRIMARY[item["scenario"]][0])
            values.append(value or 0)
        positions = [i + b * height for i in range(len(throughput))]
        ax.barh(positions, values, height=height, label=broker)
    ax.set_yticks([i + height * (len(labels) - 1) / 2 for i in range(len(throughput))])
    ax.set_yticklabels([_title(d) for d in throughput])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("messages/s (fanout: deliveries/s), log scale")
    ax.set_title("Throughput (median)")
    ax.legend()

    # 2. latency percentiles at fixed rates
    ax = axes[1]
    percentiles = [
        ("latency_p50_ms", "p50"),
        ("latency_p99_ms", "p99"),
        ("latency_p999_ms", "p99.9"),
    ]
    groups = [(d, broker) for d in latency for broker in labels]
    width = 0.8 / len(percentiles)
    for p, (key, name) in enumerate(percentiles):
        values = [_median(d, broker, key) or 0 for d, broker in groups]
        ax.bar([i + p * width for i in range(len(groups))], values, width=width, label=name)
    ax.set_xticks([i + width for i in range(len(groups))])
    ax.set_xticklabels(
        [f"{broker}\n{int(d['settings']['rate'])} msg/s" for d, broker in groups], fontsize=8
    )
    ax.set_yscale("log")
    ax.set_ylabel("publish to delivery, ms (log scale)")
    ax.set_title("Latency at a fixed rate (median of runs)")
    ax.legend()

    # 3. router / other, oriented so > 1 is router's advantage
    ax = axes[2]
    names, ratios = [], []
    for item in data:
        if len(labels) < 2:
            break
        key, _, higher_better = PRIMARY[item["scenario"]]
        mine = _median(item, labels[0], key)
        other = _median(item, labels[1], key)
        if mine and other:
            names.append(_title(item))
            ratios.append(mine / other if higher_better else other / mine)
    colors = ["tab:green" if r >= 1 else "tab:red" for r in ratios]
    ax.barh(range(len(ratios)), ratios, color=colors)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(ratios)))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(
        f"{labels[0]} / {labels[1] if len(labels) > 1 else '?'} (> 1: router better), log scale"
    )
    ax.set_title("Ratio, same run")
    figure.savefig(out, dpi=110)
    plt.close(figure)


def _title(item: dict[str, Any]) -> str:
    return str(item.get("name") or item["scenario"])


def _median(item: dict[str, Any], broker: str, key: str) -> float | None:
    for result in item["results"]:
        name = "RabbitMQ" if result["label"] == "compare" else result["label"]
        if name == broker:
            value = result.get(f"median_{key}")
            return float(value) if value is not None else None
    return None
