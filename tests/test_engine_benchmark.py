"""scripts/engine_benchmark.py: its contenders deploy the same thing the program does.

The benchmark itself needs a real engine (run it by hand); these check, without one, that
its compose file and docker floor use the program's own healthchecks and images, that
the floor script is valid bash, and the statistics it prints.
"""

import importlib.util
import subprocess
import sys

import pytest
from harness import REPO, evaluate

spec = importlib.util.spec_from_file_location("engine_benchmark",
                                              REPO / "scripts" / "engine_benchmark.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["engine_benchmark"] = bench  # its dataclasses look their module up
spec.loader.exec_module(bench)


def deployments():
    return bench.deployments_for("bnx", 2, 21000)


def test_compose_runs_the_programs_images_and_healthchecks():
    run = evaluate("dev")
    containers = run.containers()
    compose = bench.compose_file(deployments(), "ab" * 32)
    backend, dashboard = compose["services"]["bnx-d1-backend"], \
        compose["services"]["bnx-d1-dashboard"]
    for service, container in ((backend, containers["convex-dev-backend"]),
                               (dashboard, containers["convex-dev-dashboard"])):
        check = container.inputs["healthcheck"]
        assert service["healthcheck"]["test"] == check["tests"]
        assert service["healthcheck"]["interval"] == check["interval"]
        assert service["healthcheck"]["timeout"] == check["timeout"]
        assert service["healthcheck"]["retries"] == check["retries"]
        assert service["stop_signal"] == container.inputs["stopSignal"]
    assert backend["image"] == bench.BACKEND_IMAGE and dashboard["image"] == bench.DASHBOARD_IMAGE
    # As upstream's compose file: the dashboard waits for a healthy backend.
    assert dashboard["depends_on"] == {"bnx-d1-backend": {"condition": "service_healthy"}}
    assert set(compose["services"]) == {"bnx-d1-backend", "bnx-d1-dashboard",
                                        "bnx-d2-backend", "bnx-d2-dashboard"}
    assert compose["services"]["bnx-d2-backend"]["ports"] == [
        "127.0.0.1:21010:3210", "127.0.0.1:21011:3211"]


def test_the_floor_script_is_valid_bash_and_probes_each_container():
    script = bench.floor_script(deployments(), "ab" * 32)
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    for name in ("bnx-d1-backend", "bnx-d1-dashboard", "bnx-d2-backend", "bnx-d2-dashboard"):
        assert f"docker exec {name} sh -c" in script and f"--name {name} " in script
    assert script.count("--health-cmd") == 4


def test_one_deployment_is_named_like_a_single_deployment_stack():
    (only,) = bench.deployments_for("bnx", 1, 21000)
    assert (only.instance, only.api_port, only.site_port, only.dashboard_port) == (
        "bnx", 21000, 21001, 24000)


def test_summary_reports_median_spread_and_the_worst_run():
    s = bench.summary([1.0, 2.0, 4.0])
    assert s["median"] == 2.0 and s["spread"] == pytest.approx(1.5)
    assert s["worst_over_median"] == pytest.approx(1.0) and s["runs"] == 3


def test_pulumi_runs_with_the_parallelism_up_sh_passes():
    assert bench.up_sh_parallel() == "32"


def test_unchanged_runs_start_once_docker_says_every_container_is_healthy():
    assert bench.healthy_by_docker("healthy\nhealthy\n")
    assert not bench.healthy_by_docker("healthy\nstarting\n")
    assert not bench.healthy_by_docker("healthy\n\n<no value>\n")
    assert not bench.healthy_by_docker("")
