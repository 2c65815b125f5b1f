"""components/engine.py: the start interval only where the engine supports it."""

import subprocess

from harness import evaluate

from components.docker import engine


def test_api_versions_parse():
    assert engine.parse_api_version("1.41") == (1, 41)
    assert engine.parse_api_version(" 1.44\n") == (1, 44)
    for bad in ("", "abc", "1", "1.44.1", None, "XXXX"):
        assert engine.parse_api_version(bad) is None


def test_start_interval_needs_api_1_44():
    assert engine.EngineFeatures((1, 44)).start_interval
    assert engine.EngineFeatures((1, 51)).start_interval
    assert not engine.EngineFeatures((1, 41)).start_interval
    assert not engine.EngineFeatures(None).start_interval


def test_detect_asks_the_stacks_engine(monkeypatch):
    monkeypatch.delenv(engine.OVERRIDE_VAR)
    monkeypatch.setattr(engine.shutil, "which",
                        lambda name: "/usr/bin/docker" if name == "docker" else None)
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        assert kwargs == {"capture_output": True, "text": True, "timeout": 30, "check": False}
        return subprocess.CompletedProcess(command, 0, "1.41\n", "")

    monkeypatch.setattr(engine.subprocess, "run", fake_run)
    assert engine.detect("ssh://deploy@host").api_version == (1, 41)
    assert engine.detect("").api_version == (1, 41)
    assert engine.detect().api_version == (1, 41)  # the local engine by default
    local = ["docker", "version", "--format", "{{.Server.APIVersion}}"]
    assert calls == [["docker", "--host", "ssh://deploy@host", "version", "--format",
                      "{{.Server.APIVersion}}"], local, local]


def test_detect_without_an_answer_leaves_the_start_interval_out(monkeypatch):
    monkeypatch.delenv(engine.OVERRIDE_VAR)
    monkeypatch.setattr(engine.shutil, "which", lambda name: None)
    assert engine.detect().start_interval is False
    monkeypatch.setattr(engine.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(engine.subprocess, "run", lambda c, **k: subprocess.CompletedProcess(
        c, 1, "", "Cannot connect to the Docker daemon"))
    assert engine.detect().start_interval is False


def test_old_engines_get_no_start_interval(monkeypatch):
    monkeypatch.setenv(engine.OVERRIDE_VAR, "1.41")
    run = evaluate("prod")
    for container in run.containers().values():
        # Docker's "not set", spelled out so the provider does not fill it in as a default.
        assert container.inputs["healthcheck"]["startInterval"] == "0s", container.name
    monkeypatch.setenv(engine.OVERRIDE_VAR, "1.44")
    run = evaluate("prod")
    for container in run.containers().values():
        assert container.inputs["healthcheck"]["startInterval"] == "1s", container.name
