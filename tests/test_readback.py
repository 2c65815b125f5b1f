"""What the program sends is what the docker provider reads back: no diff on the next run.

References are to kreuzwerker/terraform-provider-docker v4.5.0 (commit 5074970c, the
upstream of the pulumi-docker provider this project was checked against),
`internal/provider/`: `helpers.go` (H), `resource_docker_container.go` (schema, S),
`resource_docker_container_funcs.go` (F), `resource_docker_volume.go` (V). The network is
not the provider's (components/docker/network.py, tests/test_network.py).
"""

import pytest
from harness import evaluate

from components.docker.readback import cpus_read_back, go_duration, nano_cpus, stable_cpus

CONTAINER = "docker:index/container:Container"


@pytest.mark.parametrize("cpus,read_back", [
    # H:131-149 nanoInt64ToDecimalString: big.Rat.FloatString(9); nine zeros in all ->
    # FloatString(1) (rounded), else trailing zeros trimmed. F:946-948 sets it on read.
    ("2", "2.0"), ("1", "1.0"), ("0.5", "0.5"), ("1.5", "1.5"), ("0.25", "0.25"),
    ("10", "10."), ("20", "20."), ("100", "100."), ("11", "11.0"), ("0.05", "0.1"),
    ("1.05", "1.05"), ("3.25", "3.25"),
])
def test_cpus_are_spelled_as_the_provider_reads_them(cpus, read_back):
    assert cpus_read_back(nano_cpus(cpus)) == read_back


def test_only_stable_cpus_are_sent():
    # S: cpus is ForceNew; a spelling that reads back differently replaces every run.
    assert stable_cpus("2") == "2.0" and stable_cpus("10") == "10."
    assert stable_cpus("0.05") is None  # reads back as 0.1: another value altogether
    run = evaluate("prod", {"cpus": "10"})
    assert {c.inputs["cpus"] for c in run.of_type(CONTAINER)} == {"10."}


@pytest.mark.parametrize("seconds,spelled", [
    # F:960-971: healthcheck durations are read back with time.Duration.String().
    (0, "0s"), (1, "1s"), (5, "5s"), (59, "59s"), (60, "1m0s"), (90, "1m30s"),
    (300, "5m0s"), (3600, "1h0m0s"), (3661, "1h1m1s"),
])
def test_durations_are_go_durations(seconds, spelled):
    assert go_duration(seconds) == spelled


@pytest.fixture(scope="module")
def prod():
    return evaluate("prod")


def test_every_container_is_sent_in_read_back_form(prod):
    containers = prod.of_type(CONTAINER)
    assert {c.inputs["name"] for c in containers} == {
        "convex-prod-backend", "convex-prod-dashboard", "convex-prod-postgres",
        "convex-prod-proxy"}
    for c in containers:
        inputs = c.inputs
        health = inputs["healthcheck"]
        for field in ("interval", "timeout", "startPeriod"):
            assert health[field] == go_duration(_seconds(health[field])), (c.name, field)
        assert health["retries"] == (5 if inputs["name"] == "convex-prod-postgres" else 3)
        # F:932 memory = Memory/1024/1024; F:940-944 memory_swap likewise. Unset, Docker
        # gives twice the memory as swap: the program sends swap = memory (no swap).
        assert inputs["memory"] == inputs["memorySwap"] == 4096
        assert inputs["cpus"] == "2.0"
        # F:1079-1131 delete stops with destroy_grace_seconds (0 when unset: SIGKILL at
        # once); the container's own stop_timeout is not used.
        assert inputs["destroyGraceSeconds"] >= 10, c.name
        # S:487-525 ports: ip "" is read back as 0.0.0.0, protocol defaults to tcp, and
        # entries come back sorted by internal port (F:27-33): send them that way.
        ports = inputs.get("ports", [])
        assert [p["internal"] for p in ports] == sorted(p["internal"] for p in ports)
        assert all(p["ip"] and p["protocol"] == "tcp" for p in ports)


def test_host_dependent_fields_are_ignored_and_carried_by_a_label(prod):
    for c in prod.of_type(CONTAINER):
        # F:952,983-989 log_opts comes back as Docker's whole map (daemon.json log-opts
        # merged in); memory_swap is -1 on hosts without swap accounting; engines before
        # API 1.44 drop start_interval. Labels are not read back (F:893-898) but force
        # replacement (S), so the label carries the configured values instead.
        assert c.ignore_changes == ["logOpts", "memorySwap", "healthcheck.startInterval"]
        labels = {entry["label"]: entry["value"] for entry in c.inputs["labels"]}
        assert labels["convex-selfhost.limits"] == "log-max-size=10m,log-max-file=3,memory=4096m"
        # F:991-1076 update does not apply healthcheck changes to a running container.
        assert c.replace_on_changes == ["healthcheck"]


def test_changing_log_rotation_changes_the_label_and_so_replaces(prod):
    other = evaluate("prod", {"logMaxSizeMb": 20})
    before = {c.name: c.inputs["labels"] for c in prod.of_type(CONTAINER)}
    after = {c.name: c.inputs["labels"] for c in other.of_type(CONTAINER)}
    assert all(before[name] != after[name] for name in before)


def test_stop_signals(prod):
    containers = prod.containers()
    assert containers["convex-prod-backend"].inputs["stopSignal"] == "SIGINT"
    assert containers["convex-prod-dashboard"].inputs["stopSignal"] == "SIGINT"
    assert containers["convex-prod-postgres"].inputs["stopSignal"] == "SIGINT"
    assert containers["convex-prod-postgres"].inputs["destroyGraceSeconds"] == 60


def test_adopted_volume_ignores_what_compose_gave_it():
    # V:48-67 labels and driver_opts are ForceNew and not Computed; V:288-360 reads back
    # every label (com.docker.compose.*), the driver and the options.
    run = evaluate("dev", {"dataVolumeName": "legacy_data"})
    volume = run.named("convex-dev-backend-data")
    assert volume.inputs == {"name": "legacy_data"}
    assert volume.ignore_changes == ["labels", "driver", "driverOpts"]
    own = evaluate("dev").named("convex-dev-backend-data")
    assert own.ignore_changes == [] and own.inputs["labels"]
    for name in ("convex-prod-postgres-data", "convex-prod-tls-data"):
        volume = evaluate("prod").named(name)
        assert volume.ignore_changes == [] and volume.inputs["labels"], name


def test_images(prod):
    for image in prod.of_type("docker:index/remoteImage:RemoteImage"):
        # Removing an image on replacement would break other stacks on the host using it.
        assert image.inputs["keepLocally"] is True


def _seconds(duration: str) -> int:
    total, number = 0, ""
    for char in duration:
        if char.isdigit():
            number += char
        else:
            total += int(number) * {"h": 3600, "m": 60, "s": 1}[char]
            number = ""
    return total


def test_read_back_edges():
    assert cpus_read_back(0) == "0"
    # FloatString(1) rounds half away from zero: 0.05 -> 0.1, 0.04 -> "0.0"
    assert cpus_read_back(40_000_000) == "0.0" and cpus_read_back(50_000_000) == "0.1"
    assert cpus_read_back(4_000_000) == "0.0" and cpus_read_back(34_000_000) == "0.034"
    assert cpus_read_back(1) == "0.0"  # nine zeros in "0.000000001"
    with pytest.raises(ValueError, match="more than 9 decimals"):
        nano_cpus("0.0000000001")
    with pytest.raises(ValueError, match="never negative"):
        go_duration(-1)


def test_rounding_keeps_the_whole_part():
    # "10.050000000" has nine zeros: FloatString(1) rounds to 10.1 (not the 10.05 sent).
    assert cpus_read_back(nano_cpus("10.05")) == "10.1"
    assert stable_cpus("10.05") is None
    with pytest.raises(ValueError) as raised:
        nano_cpus("1.0000000001")
    assert str(raised.value) == "more than 9 decimals"
