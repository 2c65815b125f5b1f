"""components/sdk_debug.py: the SDK's debug lines go nowhere unless asked for."""

import importlib

import pulumi
import pytest
from harness import evaluate

from components import sdk_debug


@pytest.fixture
def engine_calls(monkeypatch):
    """Every line the SDK would send to the engine, by severity name."""
    calls = []
    monkeypatch.setattr(pulumi.log, "get_engine", lambda: object())
    monkeypatch.setattr(pulumi.log, "_log", lambda _engine, severity, message, *_rest:
                        calls.append((severity, message)))
    return calls


def test_debug_lines_are_dropped_and_nothing_else(engine_calls):
    pulumi.log.debug("before")
    assert sdk_debug.drop_sdk_debug_lines({}) is True
    pulumi.log.debug("registering resource: ty=docker:index/container:Container")
    pulumi.log.warn("a warning")
    pulumi.log.info("some info")
    pulumi.log.error("an error")
    assert [message for _severity, message in engine_calls] == [
        "before", "a warning", "some info", "an error"]


@pytest.mark.parametrize("value", ["1", " 1 "])
def test_the_environment_keeps_them(engine_calls, value):
    assert sdk_debug.drop_sdk_debug_lines({sdk_debug.ENV_VAR: value}) is False
    pulumi.log.debug("kept")
    assert [message for _severity, message in engine_calls] == ["kept"]


@pytest.mark.parametrize("value", ["", "0", "true", "yes"])
def test_anything_but_1_drops_them(engine_calls, value):
    assert sdk_debug.drop_sdk_debug_lines({sdk_debug.ENV_VAR: value}) is True
    pulumi.log.debug("dropped")
    assert engine_calls == []


@pytest.mark.parametrize("module", [
    "pulumi.runtime.resource", "pulumi.runtime.stack", "pulumi.runtime.rpc",
    "pulumi.runtime.rpc_manager", "pulumi.runtime.invoke"])
def test_the_sdk_logs_through_the_module(module):
    """The drop works because the SDK calls `log.debug` on the module at call time; an SDK
    that bound the function at import would keep sending them, and this test says so."""
    loaded = importlib.import_module(module)
    assert loaded.log is pulumi.log
    assert not hasattr(loaded, "debug") or loaded.debug is not pulumi.log.debug


def test_the_program_drops_them(monkeypatch):
    monkeypatch.delenv(sdk_debug.ENV_VAR, raising=False)
    evaluate("dev")
    assert pulumi.log.debug is sdk_debug._dropped


def test_the_program_keeps_them_when_asked(monkeypatch):
    monkeypatch.setenv(sdk_debug.ENV_VAR, "1")
    original = pulumi.log.debug
    evaluate("dev")
    assert pulumi.log.debug is original
