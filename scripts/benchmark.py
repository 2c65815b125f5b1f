#!/usr/bin/env python3
"""How long the program takes to evaluate under the mock engine, against a floor.

The floor is the same resource graph (types, names, parents, inputs, dependencies,
options) replayed by a minimal program with no settings parsing, no component logic and
no admin-key derivation: it measures what the Pulumi SDK and its mock engine cost by
themselves, so "program / floor" is the share the program adds.

Targets (from the issue):
  * 50 deployments take at most 5x as long as one deployment;
  * the program takes at most 2.5x the floor, with 1 and with 50 deployments.

    python scripts/benchmark.py              # report, always exits 0
    python scripts/benchmark.py --check      # exit 1 when a target is missed
    python scripts/benchmark.py --repeat 9 --sizes 1 10 50
    python scripts/benchmark.py --no-cold    # skip the fresh-process table

Cold timings (the ones the targets are judged on) run each evaluation in a fresh Python
process, as `pulumi up` does, so they count interpreter start-up and imports (the program
imports pulumi_docker, pulumi_random and cryptography; the floor only pulumi). Warm
timings: modules already imported, one untimed run first, median of `--repeat` runs with
the best beside it; they measure evaluation alone, and the program/floor ratio is checked
on them too. Warm growth from 1 to 50 deployments is shown for information: it follows the
resource count, for the floor as much as for the program.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import harness  # noqa: E402  (needs the paths above)

MAX_GROWTH_50_OVER_1 = 5.0
MAX_PROGRAM_OVER_FLOOR = 2.5

# Ports shift by 10 per deployment; these bases keep 50 (and up to ~2500) deployments
# below 65535 without any two published ports clashing.
BASE_PORTS = {"backendPort": 20000, "sitePort": 20001, "dashboardPort": 40000}

# The floor program: reads the recorded graph and registers it, nothing else.
FLOOR_PROGRAM = """\
import json
import pulumi

SECRET_KEY, SECRET_SIG = {secret_key!r}, {secret_sig!r}


def value(v):
    if isinstance(v, dict):
        if v.get(SECRET_KEY) == SECRET_SIG:
            return pulumi.Output.secret(value(v.get("value")))
        return {{k: value(x) for k, x in v.items()}}
    if isinstance(v, list):
        return [value(x) for x in v]
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


created = {{}}
for r in json.loads(open({graph!r}).read()):
    opts = pulumi.ResourceOptions(
        parent=created.get(r["parent"]),
        depends_on=[created[u] for u in r["dependencies"]],
        protect=r["protect"],
        delete_before_replace=r["delete_before_replace"],
        retain_on_delete=r["retain_on_delete"],
        additional_secret_outputs=r["additional_secret_outputs"],
    )
    if r["custom"]:
        res = pulumi.CustomResource(r["type"], r["name"], value(r["raw"]), opts)
    else:
        res = pulumi.ComponentResource(r["type"], r["name"], None, opts)
        res.register_outputs({{}})
    created[r["urn"]] = res
"""


# Run in a fresh interpreter for the cold timings: argv = repo, deployments, program path.
COLD_CHILD = (
    """\
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import harness
harness.evaluate("dev", overrides={
    "deployments": [f"pr-{i + 1}" for i in range(int(sys.argv[2]))], "protectData": False,
    **%r}, program=sys.argv[3])
"""
    % BASE_PORTS
)


def overrides(deployments: int) -> dict[str, Any]:
    return {
        "deployments": [f"pr-{i + 1}" for i in range(deployments)],
        "protectData": False,
        **BASE_PORTS,
    }


def run_program(deployments: int) -> harness.Evaluation:
    return harness.evaluate("dev", overrides=overrides(deployments))


def write_floor(evaluation: harness.Evaluation, directory: Path, deployments: int) -> Path:
    graph = directory / f"graph-{deployments}.json"
    graph.write_text(
        json.dumps(
            [
                {
                    "type": r.type,
                    "name": r.name,
                    "urn": r.urn,
                    "parent": r.parent,
                    "custom": r.custom,
                    "raw": r.raw,
                    "protect": r.protect,
                    "delete_before_replace": r.delete_before_replace,
                    "retain_on_delete": r.retain_on_delete,
                    "dependencies": r.dependencies,
                    "additional_secret_outputs": r.additional_secret_outputs,
                }
                for r in evaluation.resources
            ]
        )
    )
    program = directory / f"floor-{deployments}.py"
    program.write_text(
        FLOOR_PROGRAM.format(
            secret_key=harness.SIG_KEY, secret_sig=harness.SECRET_SIG, graph=str(graph)
        )
    )
    return program


def graph_signature(evaluation: harness.Evaluation) -> list[tuple]:
    """What must match between program and floor (the URN carries type, name, parent)."""
    return sorted(
        (
            r.urn,
            r.parent,
            r.custom,
            json.dumps(r.raw, sort_keys=True),
            r.protect,
            r.delete_before_replace,
            r.retain_on_delete,
            tuple(sorted(r.dependencies)),
            tuple(sorted(r.additional_secret_outputs)),
        )
        for r in evaluation.resources
    )


DEFAULT_GC_THRESHOLD = gc.get_threshold()


def timed(run: Callable[[], Any], repeat: int) -> tuple[float, float]:
    run()  # warm-up: imports, first-call caches
    samples = []
    for _ in range(repeat):
        # The program raises the collector's thresholds for itself; start every run,
        # program or floor, from the interpreter's defaults.
        gc.set_threshold(*DEFAULT_GC_THRESHOLD)
        gc.collect()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), min(samples)


def timed_cold(deployments: int, program: Path, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        child = subprocess.run(
            [sys.executable, "-c", COLD_CHILD, str(REPO), str(deployments), str(program)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        samples.append(time.perf_counter() - start)
        # (A clean run may still print an asyncio warning at interpreter exit: not shown.)
        if child.returncode != 0:
            sys.stderr.write(child.stderr)
            raise SystemExit(f"cold run of {program} failed with exit code {child.returncode}")
    return statistics.median(samples), min(samples)


def print_table(title: str, rows: list[tuple]) -> None:
    print(title)
    print(
        f"{'deployments':>11} {'resources':>9} {'program':>17} {'floor':>17} {'program/floor':>13}"
    )
    for size, count, program_s, program_best, floor_s, floor_best in rows:
        print(
            f"{size:>11} {count:>9} {program_s:>8.3f} ({program_best:6.3f}) "
            f"{floor_s:>8.3f} ({floor_best:6.3f}) {program_s / floor_s:>13.2f}"
        )
    small, large = rows[0], rows[-1]
    if large[0] != small[0]:
        print(
            f"growth {large[0]}/{small[0]}: program {large[2] / small[2]:.1f}x, "
            f"floor {large[4] / small[4]:.1f}x (resources {large[1] / small[1]:.0f}x)"
        )
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a target is missed (default: report only)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[1, 50],
        help="deployment counts to measure (first and last are compared)",
    )
    parser.add_argument(
        "--no-cold", dest="cold", action="store_false", help="skip the fresh-process (cold) timings"
    )
    args = parser.parse_args(argv)

    rows, cold_rows = [], []
    with tempfile.TemporaryDirectory(prefix="convex-selfhost-bench-") as tmp:
        for size in args.sizes:
            evaluation = run_program(size)
            floor = write_floor(evaluation, Path(tmp), size)
            replay = harness.evaluate("dev", overrides=overrides(size), program=floor)
            if graph_signature(replay) != graph_signature(evaluation):
                print(
                    f"floor program does not reproduce the graph for {size} deployments",
                    file=sys.stderr,
                )
                return 2
            program_s, program_best = timed(lambda size=size: run_program(size), args.repeat)
            floor_s, floor_best = timed(
                lambda size=size, floor=floor: harness.evaluate(
                    "dev", overrides=overrides(size), program=floor
                ),
                args.repeat,
            )
            rows.append(
                (size, len(evaluation.resources), program_s, program_best, floor_s, floor_best)
            )
            if args.cold:
                cold_rows.append(
                    (
                        size,
                        len(evaluation.resources),
                        *timed_cold(size, REPO / "__main__.py", args.repeat),
                        *timed_cold(size, floor, args.repeat),
                    )
                )

    print_table(
        f"warm: median of {args.repeat} runs in one process (best in brackets), seconds", rows
    )
    if cold_rows:
        print_table(
            f"cold: median of {args.repeat} fresh processes, start-up and imports "
            "included (best in brackets), seconds",
            cold_rows,
        )

    # Targets are judged on what `pulumi up` runs: a fresh process per evaluation (cold).
    # Warm growth cannot meet 5x even for the floor: with imports and start-up paid
    # already, evaluation time is proportional to the number of resources.
    judged, kind = (cold_rows, "cold") if cold_rows else (rows, "warm")
    small, large = judged[0], judged[-1]
    results = []
    if large[0] != small[0]:
        program_growth = large[2] / small[2]
        results.append(
            (
                f"{large[0]} deployments <= {MAX_GROWTH_50_OVER_1:g}x {small[0]} deployment(s)",
                program_growth <= MAX_GROWTH_50_OVER_1,
                f"{program_growth:.1f}x ({kind})",
            )
        )
    for table, table_kind in ((judged, kind), (rows, "warm")):
        for size, _, program_s, _, floor_s, _ in table:
            ratio = program_s / floor_s
            results.append(
                (
                    f"program <= {MAX_PROGRAM_OVER_FLOOR:g}x floor at {size} deployment(s)",
                    ratio <= MAX_PROGRAM_OVER_FLOOR,
                    f"{ratio:.2f}x ({table_kind})",
                )
            )
        if kind == "warm":
            break
    for label, met, figure in results:
        print(f"{'met   ' if met else 'MISSED'} {label}: {figure}")

    missed = [label for label, met, _ in results if not met]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
