"""components/docker/health.py: every `pulumi up` waits for healthy containers (not a preview),
fails on exited or timed-out ones, and records a gate only after."""

import asyncio
import signal
import subprocess
import threading
import time

import grpc
import pulumi
import pytest
from harness import REPO, evaluate, is_secret_value

from components.docker import health
from components.docker.health import HealthGateError, wait_until_healthy


def states(*sequence):
    """An inspect stand-in that returns the given states in turn (the last one repeats)."""
    calls = []

    def inspect(name, host):
        calls.append((name, host))
        return sequence[min(len(calls), len(sequence)) - 1]

    inspect.calls = calls
    return inspect


def running(status=None, output=""):
    state = {"Status": "running", "Running": True, "Restarting": False, "ExitCode": 0}
    if status:
        state["Health"] = {"Status": status, "Log": [{"Output": output}] if output else []}
    return state


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_waits_through_starting_until_healthy():
    inspect, clock = states(running("starting"), running("starting"), running("healthy")), Clock()
    assert wait_until_healthy("c", "ssh://h", 60, inspect=inspect, clock=clock,
                              sleep=clock.sleep) == "healthy"
    assert inspect.calls == [("c", "ssh://h")] * 3 and clock.now == 2


def test_a_container_without_healthcheck_counts_when_running():
    assert wait_until_healthy("c", "", 5, inspect=states(running()), clock=Clock(),
                              sleep=lambda s: None) == "running"


def test_an_exited_container_fails_at_once():
    exited = {"Status": "exited", "Running": False, "Restarting": False, "ExitCode": 1}
    with pytest.raises(HealthGateError) as failed:
        wait_until_healthy("convex-dev-backend", "", 60, inspect=states(exited), clock=Clock(),
                           sleep=lambda s: pytest.fail("must not wait"))
    assert str(failed.value) == (
        "container convex-dev-backend is not running (status 'exited', exit code 1); see "
        "`docker logs convex-dev-backend`. The next `pulumi up` checks again.")


def test_a_restarting_container_is_waited_for():
    restarting = {"Status": "restarting", "Running": False, "Restarting": True, "ExitCode": 1}
    clock = Clock()
    assert wait_until_healthy("c", "", 60, inspect=states(restarting, running("healthy")),
                              clock=clock, sleep=clock.sleep) == "healthy"


def test_timeout_names_the_last_probe():
    clock = Clock()
    with pytest.raises(HealthGateError) as failed:
        wait_until_healthy("convex-dev-backend", "", 10,
                           inspect=states(running("starting", "curl: (7) refused\n")),
                           clock=clock, sleep=clock.sleep)
    assert str(failed.value) == (
        "container convex-dev-backend did not become healthy within 10s (status starting; "
        "last probe: curl: (7) refused). See `docker logs convex-dev-backend`; the next "
        "`pulumi up` checks again and fails until it is healthy.")
    assert clock.now == 10


def test_a_container_docker_calls_unhealthy_fails_at_once_after_one_short_probe():
    # Docker says unhealthy only after the start period, which is as long as the wait: a
    # container left failing (a backend whose database is gone, a backup container whose
    # last run failed) fails `pulumi up` at once with the reason, not after the timeout.
    clock, probe = Clock(), probes(("failed", "convex-backup health failed: last=x"))
    with pytest.raises(HealthGateError) as failed:
        wait_until_healthy("convex-prod-backup", "", 60,
                           inspect=states(checked("unhealthy", output="old output")),
                           clock=clock, sleep=clock.sleep, probe=probe)
    assert str(failed.value) == (
        "container convex-prod-backup is unhealthy: Docker counts its healthcheck as failing "
        "after its start period, and a probe now fails too (last probe: convex-backup health "
        "failed: last=x). See `docker logs convex-prod-backup`; the next `pulumi up` checks "
        "again and fails until it is healthy.")
    assert [call[3] for call in probe.calls] == [1] and clock.now == 0
    # One that answers again (its database is back) passes before Docker's next check.
    assert wait_until_healthy("c", "", 60, inspect=states(checked("unhealthy")),
                              clock=clock, sleep=clock.sleep,
                              probe=probes(("passed", ""))) == "healthy"
    # Without a test it can run, Docker's word stands.
    with pytest.raises(HealthGateError, match="is unhealthy"):
        wait_until_healthy("c", "", 60, inspect=states(checked("unhealthy", test=None)),
                           clock=clock, sleep=clock.sleep)


def test_timeout_before_any_probe_says_so():
    clock = Clock()
    no_output = running("starting")
    no_output["Health"]["Log"] = [{"ExitCode": -1}]
    for state in (running("starting"), no_output, {**running(), "Health": {"Log": []}}):
        with pytest.raises(HealthGateError) as failed:
            wait_until_healthy("c", "", 3, inspect=states(state), clock=clock, sleep=clock.sleep)
        status = state["Health"].get("Status") or "unknown"
        assert f"(status {status}; last probe: none yet)" in str(failed.value)


def test_no_docker_cli_is_a_clear_error(monkeypatch):
    asked = []
    monkeypatch.setattr(health.shutil, "which",
                        lambda name: asked.append(name) or (None if name == "docker" else "/x"))
    with pytest.raises(HealthGateError) as failed:
        wait_until_healthy("c", "", 5)
    assert str(failed.value) == (
        "the `docker` CLI is not on PATH; it is needed to check that containers are healthy "
        "(install the Docker CLI where you run pulumi).")
    assert asked == ["docker"]
    # A stand-in inspect needs no CLI.
    assert wait_until_healthy("c", "", 5, inspect=states(running("healthy")), clock=Clock(),
                              sleep=lambda s: None) == "healthy"


def test_inspect_asks_the_stacks_engine(monkeypatch):
    seen = []

    def run(command, **kwargs):
        seen.append((command, kwargs))
        return subprocess.CompletedProcess(
            command, 0, '{"Running": true}\t{"Test": ["CMD-SHELL", "curl -f x"]}\n', "")

    monkeypatch.setattr(health.subprocess, "run", run)
    asked = {"Running": True, "Healthcheck": {"Test": ["CMD-SHELL", "curl -f x"]}}
    assert health._inspect_state("c", "ssh://deploy@h") == asked
    assert health._inspect_state("c", "") == asked
    options = {"capture_output": True, "text": True, "timeout": 60, "check": False}
    state_and_check = "{{json .State}}\t{{json .Config.Healthcheck}}"
    assert seen == [(["docker", "--host", "ssh://deploy@h", "inspect", "--type", "container",
                      "--format", state_and_check, "--", "c"], options),
                    (["docker", "inspect", "--type", "container", "--format", state_and_check,
                      "--", "c"], options)]
    monkeypatch.setattr(health.subprocess, "run", lambda c, **k: subprocess.CompletedProcess(
        c, 0, '{"Running": true}\tnull\n', ""))
    assert health._inspect_state("c", "") == {"Running": True, "Healthcheck": None}

    def hangs(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(health.subprocess, "run", hangs)
    assert health._inspect_state("c", "") == {}  # asked again on the next poll
    monkeypatch.setattr(health.subprocess, "run", lambda c, **k: subprocess.CompletedProcess(
        c, 1, "", "Error: No such container: c\n"))
    with pytest.raises(HealthGateError, match="No such container"):
        health._inspect_state("c", "")


def test_up_waits_for_the_container_on_the_gates_own_threads(monkeypatch):
    waited = []

    def wait(name, host, timeout):
        waited.append((name, host, timeout, threading.current_thread().name))

    monkeypatch.setattr(health, "wait_until_healthy", wait)
    monkeypatch.setattr(health.pulumi.runtime, "is_dry_run", lambda: False)
    assert asyncio.run(health.confirm_healthy("abc", "c", "ssh://deploy@h", 60)) == "abc"
    # Not the program's default executor: its threads carry the SDK's calls to the engine.
    assert waited == [("c", "ssh://deploy@h", 60, waited[0][3])]
    assert waited[0][3].startswith("health-gate")


def test_a_preview_waits_for_nothing(monkeypatch):
    monkeypatch.setattr(health, "wait_until_healthy",
                        lambda *a: pytest.fail("a preview must not wait"))
    monkeypatch.setattr(health.pulumi.runtime, "is_dry_run", lambda: True)
    assert asyncio.run(health.confirm_healthy("abc", "c", "", 60)) == "abc"


def test_a_gate_built_alone_records_its_container_after_the_wait():
    run = evaluate(None, program=REPO / "tests" / "programs" / "gate_alone.py")
    gate, container = run.named("web-healthy"), run.named("web")
    # A Stash: kept by the engine itself, no provider process on any run.
    assert gate.type == "pulumi:index:Stash" and gate.custom
    assert gate.inputs == {"input": {"container_id": "web-id", "container_name": "web"}}
    assert gate.dependencies == [container.urn]
    assert run.health_waits == [("web", "", 90)]


def test_a_failed_wait_fails_the_program_with_its_message_and_records_no_gate():
    def unhealthy(name, host, timeout):
        if name == "convex-prod-backend":
            raise HealthGateError(f"container {name} did not become healthy within "
                                  f"{timeout}s")
        return "healthy"

    with pytest.raises(HealthGateError, match="convex-prod-backend did not become healthy "
                                              "within 900s") as failed:
        evaluate("prod", health=unhealthy)
    # A RunError: the language host prints its message without a traceback.
    assert isinstance(failed.value, pulumi.RunError)
    names = {r.name for r in failed.value.registered}
    assert "convex-prod-backend-container" in names
    assert "convex-prod-backend-healthy" not in names
    # What waits for the backend's health (the TLS proxy) is not created either.
    assert "convex-prod-tls-container" not in names
    assert "convex-prod-dashboard-healthy" in names


@pytest.mark.parametrize("printed", ["not json", "null", "[]", "{}", '"running"', "42", "",
                                     '{"Running": true}\t{bad', "null\tnull"])
def test_odd_inspect_output_is_a_gate_error_naming_the_container(monkeypatch, printed):
    monkeypatch.setattr(health.subprocess, "run", lambda c, **k: subprocess.CompletedProcess(
        c, 0, printed, ""))
    with pytest.raises(HealthGateError) as failed:
        health._inspect_state("convex-dev-backend", "")
    assert "`docker inspect convex-dev-backend` did not print a container state" \
        in str(failed.value)


@pytest.mark.parametrize("state", [{"Running": True, "Health": []},
                                   {"Running": True, "Health": "healthy"},
                                   {"Running": True, "Health": {"Status": "starting",
                                                                "Log": ["odd", None]}},
                                   {"Running": True, "Health": {"Status": "starting",
                                                                "Log": {"Output": "x"}}}])
def test_odd_health_fields_never_raise_anything_but_a_gate_error(state):
    clock = Clock()
    try:
        wait_until_healthy("c", "", 2, inspect=states(state), clock=clock, sleep=clock.sleep)
    except HealthGateError:
        pass


CURL_METER = (
    "  % Total    % Received % Xferd  Average Speed   Time    Time     Time  Current\n"
    "                                 Dload  Upload   Total   Spent    Left  Speed\n"
    "\r  0     0    0     0    0     0      0      0 --:--:-- --:--:-- --:--:--     0"
    "\r  0     0    0     0    0     0      0      0 --:--:--  0:00:01 --:--:--     0\n"
    "curl: (7) Failed to connect to localhost port 3210 after 0 ms: Connection refused\n")


def test_the_last_probe_is_quoted_without_curls_progress_meter():
    clock = Clock()
    with pytest.raises(HealthGateError) as failed:
        wait_until_healthy("b", "", 1, inspect=states(running("unhealthy", CURL_METER)),
                           clock=clock, sleep=clock.sleep)
    assert ("last probe: curl: (7) Failed to connect to localhost port 3210 after 0 ms: "
            "Connection refused)") in str(failed.value)
    assert "% Total" not in str(failed.value) and "--:--" not in str(failed.value)
    assert health.readable("a\x1b[31mb\x00c") == "a [31mb c"
    assert len(health.readable("x" * 5000)) == 300


def test_a_remote_engine_address_is_used_for_the_wait_and_never_recorded():
    run = evaluate("dev", overrides={"docker:host": "ssh://deploy@build-host"})
    gates = run.of_type("pulumi:index:Stash")
    assert gates and all("build-host" not in repr(gate.raw) for gate in gates)
    assert {host for _, host, _ in run.health_waits} == {"ssh://deploy@build-host"}


def test_the_gate_shows_the_containers_plain_settings_by_name():
    run = evaluate("dev", secrets={"extraEnv": ["API_TOKEN=t0ken-value"]})
    gate = run.named("convex-dev-backend-healthy")
    settings = gate.inputs["input"]["settings"]
    assert settings["RUST_LOG"] == "info" and settings["INSTANCE_NAME"] == "convex-dev"
    assert settings["label convex-selfhost.limits"].startswith("log-max-size=10m")
    assert "INSTANCE_SECRET" not in settings and "API_TOKEN" not in settings
    assert "t0ken-value" not in repr(gate.raw)
    # A plain map beside the container's id: a preview shows a change of it by name even
    # while the replaced container's id is still unknown.
    assert not is_secret_value(gate.raw["input"]["settings"])
    dashboard = run.named("convex-dev-dashboard-healthy").inputs["input"]["settings"]
    assert dashboard["NEXT_PUBLIC_DEPLOYMENT_URL"] == "http://127.0.0.1:3210"


# --- the gate's own probe: the healthcheck's test run inside the container -----------

BACKEND_TEST = ["CMD-SHELL", "curl -f http://localhost:3210/version"]


def checked(status=None, test=BACKEND_TEST, output=""):
    """A running container whose configured healthcheck runs `test`."""
    return {**running(status, output), "Healthcheck": {"Test": test} if test else None}


def probes(*outcomes):
    """A probe stand-in answering the given outcomes in turn (the last one repeats)."""
    calls = []

    def probe(name, host, test, seconds):
        calls.append((name, host, test, seconds))
        return outcomes[min(len(calls), len(outcomes)) - 1]

    probe.calls = calls
    return probe


def test_a_container_answering_its_test_is_ready_before_docker_says_so():
    # Docker still says "starting" (its first probe is an interval away): the gate's own
    # run of the same test decides, without sleeping.
    clock = Clock()
    probe = probes(("passed", ""))
    assert wait_until_healthy("b", "ssh://h", 300, inspect=states(checked("starting")),
                              clock=clock, sleep=lambda s: pytest.fail("must not sleep"),
                              probe=probe) == "healthy"
    assert probe.calls == [("b", "ssh://h", BACKEND_TEST, health.PROBE_ROUND_SECONDS)]


def test_docker_saying_healthy_needs_no_probe():
    assert wait_until_healthy("b", "", 60, inspect=states(checked("healthy")), clock=Clock(),
                              sleep=lambda s: None,
                              probe=lambda *a: pytest.fail("no probe needed")) == "healthy"


def test_probe_rounds_are_bounded_by_the_time_left_and_the_last_output_is_quoted():
    clock = Clock()

    def probe(name, host, test, seconds):
        clock.now += seconds  # the loop inside the container ran for its whole round
        probe.rounds.append(seconds)
        return "failed", "curl: (7) Failed to connect to localhost port 3210: Connection refused"

    probe.rounds = []
    with pytest.raises(HealthGateError) as failed:
        wait_until_healthy("convex-dev-backend", "", 70, inspect=states(checked("starting")),
                           clock=clock, sleep=clock.sleep, probe=probe)
    assert probe.rounds == [30, 30, 10] and clock.now == 70
    assert str(failed.value) == (
        "container convex-dev-backend did not become healthy within 70s (status starting; "
        "last probe: curl: (7) Failed to connect to localhost port 3210: Connection refused). "
        "See `docker logs convex-dev-backend`; the next `pulumi up` checks again and fails "
        "until it is healthy.")


def test_a_container_that_exits_while_probed_fails_naming_it():
    exited = {"Status": "exited", "Running": False, "Restarting": False, "ExitCode": 2}
    clock = Clock()
    with pytest.raises(HealthGateError, match="container b is not running .status 'exited', "
                                              "exit code 2"):
        wait_until_healthy("b", "", 60, inspect=states(checked("starting"), exited),
                           clock=clock, sleep=clock.sleep,
                           probe=probes(("unavailable", "Container b is not running")))
    assert clock.now == 0.5  # one short pause, no busy loop


def test_an_image_without_sh_falls_back_to_dockers_status():
    clock = Clock()
    probe = probes(("unavailable", 'OCI runtime exec failed: exec: "sh": executable file not '
                                   'found in $PATH'))
    assert wait_until_healthy("b", "", 60,
                              inspect=states(checked("starting"), checked("starting"),
                                             checked("healthy")),
                              clock=clock, sleep=clock.sleep, probe=probe) == "healthy"
    assert len(probe.calls) == 1 and clock.now == 1.5  # then Docker's status, each second


def test_tests_the_gate_cannot_run_leave_it_to_docker():
    for test in (["NONE"], ["CMD"], ["CMD-SHELL", 3], "curl x", None):
        assert health.healthcheck_test(checked(test=test)) == []
    assert health.healthcheck_test({"Healthcheck": "odd"}) == []
    assert health.healthcheck_test(checked(test=["CMD", "pg_isready", "-U", "convex"])) == [
        "CMD", "pg_isready", "-U", "convex"]


def test_the_probe_execs_the_test_in_the_container_on_the_stacks_engine(monkeypatch):
    seen = []

    def run(command, **kwargs):
        seen.append((command, kwargs["timeout"]))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(health.subprocess, "run", run)
    assert health._probe_inside("b", "ssh://deploy@h", BACKEND_TEST, 30) == ("passed", "")
    assert seen == [(["docker", "--host", "ssh://deploy@h", "exec", "b", "sh", "-c",
                      health.PROBE_SCRIPT, "probe", "30", *BACKEND_TEST], 90)]
    answers = {3: ("out\n", "", ("failed", "out")),
               1: ("", "Error: No such container: b\n",
                   ("unavailable", "Error: No such container: b"))}
    for code, (stdout, stderr, expected) in answers.items():
        monkeypatch.setattr(health.subprocess, "run", lambda c, code=code, o=stdout, e=stderr,
                            **k: subprocess.CompletedProcess(c, code, o, e))
        assert health._probe_inside("b", "", BACKEND_TEST, 5) == expected

    def hangs(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(health.subprocess, "run", hangs)
    assert health._probe_inside("b", "", BACKEND_TEST, 5) == (
        "unavailable", "`docker exec` did not return")


def _probe_script(*args, timeout=20):
    return subprocess.run(["sh", "-c", health.PROBE_SCRIPT, "probe", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_the_probe_script_passes_as_soon_as_the_test_does(tmp_path):
    flag = tmp_path / "ready"
    subprocess.Popen(["sh", "-c", f"sleep 0.6; touch {flag}"])
    started = time.monotonic()
    done = _probe_script("20", "CMD", "test", "-e", str(flag))
    assert done.returncode == 0 and time.monotonic() - started < 0.6 + 1.5
    assert _probe_script("5", "CMD-SHELL", "exit 0").returncode == 0


def test_the_probe_script_stops_when_its_time_is_up_with_the_last_output():
    done = _probe_script("1", "CMD-SHELL", "echo \"refused $((6 * 7))\"; exit 7")
    assert (done.returncode, done.stdout) == (health.PROBE_TIMED_OUT, "refused 42")
    done = _probe_script("1", "CMD", "sh", "-c", "echo no; exit 1")
    assert (done.returncode, done.stdout) == (health.PROBE_TIMED_OUT, "no")


def test_against_a_real_engine_an_interrupt_ends_the_program_quietly(monkeypatch):
    installed, exits = [], []
    monkeypatch.setattr(health.signal, "signal", lambda *a: installed.append(a))
    # Under the SDK's mocks (the test harness) nothing is installed.
    evaluate(None, program=REPO / "tests" / "programs" / "gate_alone.py")
    assert installed == []
    # Against an engine (a gRPC resource monitor), SIGINT exits at once: the engine has
    # stopped, and Python's default would print a traceback per blocked call.
    channel = grpc.insecure_channel("127.0.0.1:1")
    monkeypatch.setattr(health.pulumi.runtime.settings, "get_monitor",
                        lambda: health.ResourceMonitorStub(channel))
    health.exit_quietly_when_interrupted()
    assert installed == [(signal.SIGINT, health._exit_now)]
    monkeypatch.setattr(health.os, "_exit", exits.append)
    health._exit_now(signal.SIGINT, None)
    assert exits == [1]
    channel.close()
