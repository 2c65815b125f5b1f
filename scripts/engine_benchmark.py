#!/usr/bin/env python3
"""Pulumi against docker compose and plain docker, on a real engine, interleaved.

    . ~/.local/share/pulumi-engine/activate.sh      # Pulumi CLI, plugins, docker compose
    python scripts/engine_benchmark.py               # 1 and 10 deployments, 5 rounds
    python scripts/engine_benchmark.py --sizes 1 4 --rounds 3 --json runs.json

Three contenders bring up the same deployments (a backend and a dashboard each, the same
images, environment and healthchecks, one network and one data volume per deployment):

  pulumi   this project, as `./up.sh` runs it for a dev stack (`pulumi up --yes
           --skip-preview` with up.sh's --parallel), on a copy of the project with its own
           file state backend;
  compose  one compose project with every deployment's services, written as upstream's
           self-hosted/docker/docker-compose.yml is (the dashboard waits for a healthy
           backend), `docker compose up -d --wait`;
  docker   the floor: plain `docker network/volume create` and `docker run`, every
           deployment at once, then ready as soon as each container's own healthcheck test
           passes when run with `docker exec` (no tool can know sooner without guessing).

Scenarios, each contender in turn within a round (the order rotates every round, so the
machine's load falls on all of them alike):

  empty    nothing of it on the engine -> every container healthy (pulumi and compose: as
           their command returns; the floor: as its probes pass);
  same     once Docker itself reports every container healthy (the steady state; not
           timed), run again with nothing changed: pulumi `preview` and `up --skip-preview` (and
           `up --yes`, preview then apply, and `up --skip-preview --refresh`, as
           `./up.sh` runs it), compose `up -d --wait`, the floor one `docker inspect` of
           everything it made.

Everything is named `bn<random>-...` on free ports and removed at the end (and between
scenarios), so other people's stacks and containers on the engine are never touched.
Prints medians, spreads ((max - min) / median, and the slowest run over the median) and
ratios to compose; the machine (cores, engine versions, load averages) is printed first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from components.docker import backend as backend_component  # noqa: E402
from components.docker import dashboard as dashboard_component  # noqa: E402
from components.releases import DEFAULT_VERSION  # noqa: E402

PROJECT_FILES = ("Pulumi.yaml", "__main__.py", "components", "ops", "stacks", "requirements.txt")
BACKEND_IMAGE = f"ghcr.io/get-convex/convex-backend:{DEFAULT_VERSION}"
DASHBOARD_IMAGE = f"ghcr.io/get-convex/convex-dashboard:{DEFAULT_VERSION}"
COMMAND_TIMEOUT = 900


def up_sh_parallel() -> Optional[str]:
    """The --parallel value ./up.sh passes by default (None: it passes none)."""
    for line in (REPO / "up.sh").read_text().splitlines():
        if line.startswith("default_parallel="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


# --- what each contender deploys -------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    instance: str
    api_port: int
    site_port: int
    dashboard_port: int

    @property
    def backend(self) -> str:
        return f"{self.instance}-backend"

    @property
    def dashboard(self) -> str:
        return f"{self.instance}-dashboard"


def container_names(deployments: list[Deployment]) -> list[str]:
    """Every deployment's backend and dashboard container, in order."""
    return [name for d in deployments for name in (d.backend, d.dashboard)]


def backend_env(d: Deployment, secret: str) -> dict[str, str]:
    return {"INSTANCE_NAME": d.instance, "INSTANCE_SECRET": secret,
            "CONVEX_CLOUD_ORIGIN": f"http://127.0.0.1:{d.api_port}",
            "CONVEX_SITE_ORIGIN": f"http://127.0.0.1:{d.site_port}", "RUST_LOG": "info"}


def healthchecks() -> dict[str, dict]:
    """The healthchecks the components give their containers, in compose's words."""
    return {
        "backend": {"test": list(backend_component.HEALTH_TEST),
                    "interval": f"{backend_component.HEALTH_INTERVAL}s", "timeout": "5s",
                    "retries": 3, "start_period": "300s"},
        "dashboard": {"test": list(dashboard_component.HEALTH_TEST),
                      "interval": f"{dashboard_component.HEALTH_INTERVAL}s", "timeout": "5s",
                      "retries": 3,
                      "start_period": f"{dashboard_component.START_TIMEOUT_SECONDS}s"},
    }


def compose_file(deployments: list[Deployment], secret: str) -> dict:
    checks = healthchecks()
    services, volumes, networks = {}, {}, {}
    common = {"restart": "unless-stopped", "stop_signal": "SIGINT",
              "stop_grace_period": "10s",
              "logging": {"driver": "json-file",
                          "options": {"max-size": "10m", "max-file": "3"}}}
    for d in deployments:
        networks[f"{d.instance}-net"] = {"name": f"{d.instance}-net"}
        volumes[f"{d.instance}-data"] = {"name": f"{d.instance}-data"}
        services[d.backend] = {
            **common, "image": BACKEND_IMAGE, "container_name": d.backend,
            "environment": backend_env(d, secret),
            "ports": [f"127.0.0.1:{d.api_port}:3210", f"127.0.0.1:{d.site_port}:3211"],
            "volumes": [f"{d.instance}-data:/convex/data"],
            "networks": {f"{d.instance}-net": {"aliases": ["backend"]}},
            "healthcheck": checks["backend"]}
        services[d.dashboard] = {
            **common, "image": DASHBOARD_IMAGE, "container_name": d.dashboard,
            "environment": {"NEXT_PUBLIC_DEPLOYMENT_URL": f"http://127.0.0.1:{d.api_port}"},
            "ports": [f"127.0.0.1:{d.dashboard_port}:6791"],
            "networks": {f"{d.instance}-net": {"aliases": ["dashboard"]}},
            "healthcheck": checks["dashboard"],
            # As upstream's docker-compose.yml has it.
            "depends_on": {d.backend: {"condition": "service_healthy"}}}
    return {"name": deployments[0].instance.rsplit("-", 1)[0], "services": services,
            "volumes": volumes, "networks": networks}


def floor_script(deployments: list[Deployment], secret: str) -> str:
    """A bash script: every deployment made at once with the docker CLI, then each
    container's own healthcheck test run in a tight loop inside it until it passes."""
    checks = healthchecks()

    def healthcheck_flags(check: dict) -> str:
        test = check["test"]
        command = test[1] if test[0] == "CMD-SHELL" else " ".join(test[1:])
        return (f"--health-cmd {sh(command)} --health-interval {check['interval']} "
                f"--health-timeout {check['timeout']} --health-retries {check['retries']} "
                f"--health-start-period {check['start_period']}")

    def wait(container: str, check: dict) -> str:
        test = check["test"]
        probe = test[1] if test[0] == "CMD-SHELL" else " ".join(sh(a) for a in test[1:])
        loop = f"until {probe} >/dev/null 2>&1; do sleep 0.1; done"
        return f"timeout 300 docker exec {container} sh -c {sh(loop)}"

    logs = "--log-driver json-file --log-opt max-size=10m --log-opt max-file=3"
    common = f"--restart unless-stopped --stop-signal SIGINT --stop-timeout 10 {logs}"
    lines = ["set -euo pipefail", "pids=()"]
    for d in deployments:
        env = " ".join(f"-e {sh(f'{k}={v}')}" for k, v in backend_env(d, secret).items())
        lines.append(
            "( docker network create {net} >/dev/null && docker volume create {vol} >/dev/null"
            " && {{ docker run -d --name {b} --network {net} --network-alias backend {env}"
            " -p 127.0.0.1:{api}:3210 -p 127.0.0.1:{site}:3211 -v {vol}:/convex/data {common}"
            " {bcheck} {bimage} >/dev/null & docker run -d --name {dash} --network {net}"
            " --network-alias dashboard -e NEXT_PUBLIC_DEPLOYMENT_URL=http://127.0.0.1:{api}"
            " -p 127.0.0.1:{dport}:6791 {common} {dcheck} {dimage} >/dev/null & wait; }}"
            " && {{ {bwait} & {dwait} & wait; }} ) & pids+=($!)".format(
                net=f"{d.instance}-net", vol=f"{d.instance}-data", b=d.backend, env=env,
                api=d.api_port, site=d.site_port, common=common,
                bcheck=healthcheck_flags(checks["backend"]), bimage=BACKEND_IMAGE,
                dash=d.dashboard, dport=d.dashboard_port,
                dcheck=healthcheck_flags(checks["dashboard"]), dimage=DASHBOARD_IMAGE,
                bwait=wait(d.backend, checks["backend"]),
                dwait=wait(d.dashboard, checks["dashboard"])))
    lines.append('for pid in "${pids[@]}"; do wait "$pid"; done')
    return "\n".join(lines) + "\n"


def sh(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


# --- running and timing ----------------------------------------------------------------


def run(command: list[str], cwd: Optional[Path] = None, env: Optional[dict] = None,
        check: bool = True, stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, input=stdin)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({done.returncode}):\n"
                           f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    run(command, **kwargs)
    return time.perf_counter() - start


def free_port_base(count: int, taken: set[int]) -> int:
    """A port p such that p + 10*i (+0, +1; and p + 3000 + 10*i) is free for i < count."""
    for _ in range(500):
        base = 21000 + secrets.randbelow(3000) * 2
        ports = [base + 10 * i + k for i in range(count) for k in (0, 1, 3000)]
        if taken.isdisjoint(ports) and all(port_free(p) for p in ports):
            taken.update(ports)
            return base
    raise RuntimeError("no free ports found")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def deployments_for(prefix: str, count: int, base: int) -> list[Deployment]:
    if count == 1:
        return [Deployment(prefix, base, base + 1, base + 3000)]
    return [Deployment(f"{prefix}-d{i + 1}", base + 10 * i, base + 10 * i + 1,
                       base + 3000 + 10 * i) for i in range(count)]


def check_answering(deployments: list[Deployment]) -> None:
    """Every backend and dashboard answers on its published port (not timed)."""
    import urllib.request
    for d in deployments:
        for url in (f"http://127.0.0.1:{d.api_port}/version",
                    f"http://127.0.0.1:{d.dashboard_port}{dashboard_component.HEALTH_PATH}"):
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200, url


def healthy_by_docker(printed: str) -> bool:
    """`docker inspect --format '{{.State.Health.Status}}'` of every container said healthy."""
    statuses = printed.split()
    return bool(statuses) and all(status == "healthy" for status in statuses)


def wait_healthy_by_docker(deployments: list[Deployment], timeout: float = 120) -> float:
    """Wait (not timed as a scenario) until Docker itself reports every container
    healthy: the steady state that "nothing changed" means. Below API 1.44 Docker's first
    probe comes one interval after the start (10 s for the dashboard), while this
    project's `up` ends as soon as the probes it runs itself pass; until Docker says
    healthy, each of its gates would run the healthcheck test again on the next `up`, and
    compose's `--wait` would wait for Docker. Returns the seconds waited."""
    names = container_names(deployments)
    start = time.perf_counter()
    while True:
        done = run(["docker", "inspect", "--format", "{{.State.Health.Status}}", *names],
                   check=False)
        if done.returncode == 0 and healthy_by_docker(done.stdout):
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"containers not healthy by Docker within {timeout:.0f}s: "
                               f"{done.stdout.split()} {done.stderr.strip()}")
        time.sleep(0.5)


def remove_everything(deployments: list[Deployment]) -> None:
    run(["docker", "rm", "-f", *container_names(deployments)], check=False)
    # compose and the floor name networks <instance>-net; this project <instance>-network.
    run(["docker", "network", "rm", *[f"{d.instance}-{suffix}" for d in deployments
                                      for suffix in ("net", "network")]], check=False)
    run(["docker", "volume", "rm", "-f", *[f"{d.instance}-data" for d in deployments]],
        check=False)


class Contender:
    name = ""

    def __init__(self, bench: "Bench", size: int):
        self.bench, self.size = bench, size
        self.prefix = f"{bench.prefix}{self.name[0]}{size}"
        self.deployments = deployments_for(self.prefix, size, free_port_base(size, bench.ports))

    def empty_to_healthy(self) -> float:
        raise NotImplementedError

    def unchanged(self) -> dict[str, float]:
        raise NotImplementedError

    def down(self) -> None:
        remove_everything(self.deployments)


class PulumiContender(Contender):
    name = "pulumi"

    def __init__(self, bench: "Bench", size: int):
        super().__init__(bench, size)
        self.stack = self.prefix
        bench.pulumi("stack", "init", self.stack, "--secrets-provider", "passphrase")
        stack_file = bench.project / "stacks" / f"Pulumi.{self.stack}.yaml"
        first = self.deployments[0]
        config = {"convex-selfhost:instanceName": self.prefix,
                  "convex-selfhost:backendPort": first.api_port,
                  "convex-selfhost:sitePort": first.site_port,
                  "convex-selfhost:dashboardPort": first.dashboard_port,
                  "convex-selfhost:protectData": False}
        if size > 1:
            config["convex-selfhost:deployments"] = [f"d{i + 1}" for i in range(size)]
        lines = [line for line in stack_file.read_text().splitlines()
                 if line.startswith("encryptionsalt")]
        stack_file.write_text("\n".join(lines + ["config:"] + [
            f"  {key}: {json.dumps(value)}" for key, value in config.items()]) + "\n")
        self.parallel = ["--parallel", bench.parallel] if bench.parallel else []

    def empty_to_healthy(self) -> float:
        return self.bench.pulumi_timed("up", "--yes", "--skip-preview", *self.parallel,
                                       stack=self.stack)

    def unchanged(self) -> dict[str, float]:
        return {
            "preview": self.bench.pulumi_timed("preview", "--expect-no-changes",
                                               *self.parallel, stack=self.stack),
            "up --skip-preview": self.bench.pulumi_timed(
                "up", "--yes", "--skip-preview", "--expect-no-changes", *self.parallel,
                stack=self.stack),
            "up --yes": self.bench.pulumi_timed("up", "--yes", "--expect-no-changes",
                                                *self.parallel, stack=self.stack),
            # What ./up.sh adds: the refresh that brings back what was removed by hand.
            "up --skip-preview --refresh": self.bench.pulumi_timed(
                "up", "--yes", "--skip-preview", "--refresh", "--expect-no-changes",
                *self.parallel, stack=self.stack),
        }

    def down(self) -> None:
        self.bench.pulumi("destroy", "--yes", "--skip-preview", *self.parallel,
                          stack=self.stack, check=False)
        super().down()  # the data volumes are retained on destroy


class ComposeContender(Contender):
    name = "compose"

    def __init__(self, bench: "Bench", size: int):
        super().__init__(bench, size)
        self.file = bench.root / f"compose-{self.prefix}.json"
        self.file.write_text(json.dumps(compose_file(self.deployments, bench.secret), indent=1))
        self.command = ["docker", "compose", "-p", self.prefix, "-f", str(self.file)]

    def empty_to_healthy(self) -> float:
        return timed([*self.command, "up", "-d", "--wait"])

    def unchanged(self) -> dict[str, float]:
        return {"up -d --wait": timed([*self.command, "up", "-d", "--wait"])}

    def down(self) -> None:
        run([*self.command, "down", "-v", "-t", "10"], check=False)
        super().down()


class FloorContender(Contender):
    name = "docker"

    def __init__(self, bench: "Bench", size: int):
        super().__init__(bench, size)
        self.script = bench.root / f"floor-{self.prefix}.sh"
        self.script.write_text(floor_script(self.deployments, bench.secret))

    def empty_to_healthy(self) -> float:
        return timed(["bash", str(self.script)])

    def unchanged(self) -> dict[str, float]:
        return {"inspect": timed(["docker", "inspect", *container_names(self.deployments), *[
            f"{d.instance}-net" for d in self.deployments], *[
            f"{d.instance}-data" for d in self.deployments]])}


CONTENDERS = {c.name: c for c in (PulumiContender, ComposeContender, FloorContender)}


@dataclass
class Bench:
    root: Path
    venv: Path
    parallel: Optional[str]
    prefix: str = field(default_factory=lambda: f"bn{uuid.uuid4().hex[:4]}")
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    ports: set = field(default_factory=set)

    def __post_init__(self):
        self.project = self.root / "project"
        self.project.mkdir()
        (self.root / "state").mkdir()
        for name in PROJECT_FILES:
            source = REPO / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, self.project / name)
        for stack_file in (self.project / "stacks").glob("Pulumi.*.yaml"):
            stack_file.unlink()
        (self.project / "venv").symlink_to(self.venv, target_is_directory=True)
        self.env = dict(os.environ, PULUMI_BACKEND_URL=(self.root / "state").as_uri(),
                        PULUMI_CONFIG_PASSPHRASE=f"bench-{self.prefix}",
                        PULUMI_SKIP_UPDATE_CHECK="true")
        for name in ("PULUMI_CONFIG_PASSPHRASE_FILE", "CONVEX_SELFHOST_DOCKER_API_VERSION"):
            self.env.pop(name, None)

    def pulumi(self, *args: str, stack: Optional[str] = None, check: bool = True):
        command = ["pulumi", *args, "--non-interactive"] + (["--stack", stack] if stack else [])
        return run(command, cwd=self.project, env=self.env, check=check)

    def pulumi_timed(self, *args: str, stack: str) -> float:
        start = time.perf_counter()
        self.pulumi(*args, stack=stack)
        return time.perf_counter() - start


# --- reporting -------------------------------------------------------------------------


def summary(samples: list[float]) -> dict[str, float]:
    median = statistics.median(samples)
    return {"median": median, "min": min(samples), "max": max(samples),
            "spread": (max(samples) - min(samples)) / median,
            "worst_over_median": max(samples) / median - 1, "runs": len(samples)}


def machine() -> dict[str, str]:
    def version(command: list[str]) -> str:
        try:
            return run(command, check=False).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    return {"cores": str(os.cpu_count()), "machine": platform.machine(),
            "kernel": platform.release(),
            "docker": version(["docker", "version", "--format",
                               "{{.Server.Version}} (API {{.Server.APIVersion}})"]),
            "compose": version(["docker", "compose", "version", "--short"]),
            "pulumi": version(["pulumi", "version"]),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def print_report(results: dict, loads: list[float]) -> None:
    print(f"\nload average (1 min) during the runs: min {min(loads):.2f}, "
          f"median {statistics.median(loads):.2f}, max {max(loads):.2f}")
    for size, scenarios in results.items():
        for scenario, by_command in scenarios.items():
            compose = by_command.get(("compose", "up -d --wait"))
            print(f"\n{size} deployment(s), {scenario}:")
            print(f"  {'contender':<30} {'median':>7} {'min':>7} {'max':>7} {'spread':>7} "
                  f"{'worst':>7} {'/compose':>8}")
            for (contender, command), samples in by_command.items():
                s = summary(samples)
                ratio = (f"{s['median'] / statistics.median(compose):8.2f}"
                         if compose else f"{'':>8}")
                print(f"  {contender + ' ' + command:<30} {s['median']:7.2f} {s['min']:7.2f} "
                      f"{s['max']:7.2f} {s['spread']:7.0%} {s['worst_over_median']:+7.0%} "
                      f"{ratio}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10],
                        help="deployment counts (default: 1 10)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS),
                        choices=list(CONTENDERS))
    parser.add_argument("--no-unchanged", dest="unchanged", action="store_false",
                        help="only empty -> healthy")
    parser.add_argument("--parallel", default=up_sh_parallel(),
                        help="pulumi --parallel (default: what ./up.sh passes)")
    parser.add_argument("--venv", type=Path,
                        default=REPO / "venv" if (REPO / "venv").is_dir() else Path(sys.prefix),
                        help="the virtualenv the program runs in (default: ./venv, else "
                             "this interpreter's)")
    parser.add_argument("--json", type=Path, help="write every sample here")
    args = parser.parse_args(argv)
    for tool in ("pulumi", "docker"):
        if shutil.which(tool) is None:
            print(f"`{tool}` is not on PATH", file=sys.stderr)
            return 2

    info = machine()
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    print(f"pulumi --parallel {args.parallel or '(default)'}; {args.rounds} rounds")
    results: dict = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="convex-selfhost-engine-bench-") as tmp:
        bench = Bench(Path(tmp), args.venv.resolve(), args.parallel)
        contenders = {size: [CONTENDERS[name](bench, size) for name in args.contenders]
                      for size in args.sizes}
        try:
            for size, group in contenders.items():
                scenarios = results.setdefault(size, {"empty -> healthy": {}, "unchanged": {}})
                for contender in group:
                    contender.down()
                for round_ in range(args.rounds):
                    order = group[round_ % len(group):] + group[:round_ % len(group)]
                    for contender in order:
                        loads.append(os.getloadavg()[0])
                        seconds = contender.empty_to_healthy()
                        check_answering(contender.deployments)
                        key = (contender.name, "up -d --wait" if contender.name == "compose"
                               else "up" if contender.name == "pulumi" else "run + probe")
                        scenarios["empty -> healthy"].setdefault(key, []).append(seconds)
                        line = f"[{size}] round {round_ + 1} {contender.name}: {seconds:.2f}s"
                        if args.unchanged:
                            wait_healthy_by_docker(contender.deployments)
                            for command, taken in contender.unchanged().items():
                                scenarios["unchanged"].setdefault(
                                    (contender.name, command), []).append(taken)
                                line += f", {command} {taken:.2f}s"
                        print(f"{line} (load {os.getloadavg()[0]:.2f})", flush=True)
                        contender.down()
        finally:
            for group in contenders.values():
                for contender in group:
                    contender.down()
                    if isinstance(contender, PulumiContender):
                        bench.pulumi("stack", "rm", "--yes", "--force",
                                     stack=contender.stack, check=False)
    print_report(results, loads)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "loads": loads, "results": {
            str(size): {scenario: {" ".join(key): samples for key, samples in cmds.items()}
                        for scenario, cmds in scenarios.items()}
            for size, scenarios in results.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
