"""components/releases.py and what the chosen `version` lets a stack set."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from harness import evaluate
from test_settings import load

from components import releases

OLD = "4d3b0a5de955a258e70e3813bbff486051d88820"


def test_release_table_is_ordered_and_the_default_is_the_newest():
    dates = [r.date for r in releases.RELEASES]
    assert dates == sorted(dates)
    versions = [r.database_version for r in releases.RELEASES]
    assert versions == sorted(versions), "a release table entry would be a downgrade"
    assert releases.DEFAULT_VERSION == releases.LATEST.tag == \
        "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf"
    assert releases.LATEST.database_version == 128
    assert all(len(r.tag) == 40 and int(r.tag, 16) >= 0 for r in releases.RELEASES)
    for setting in releases.VERSIONED_SETTINGS:
        for tag in (setting.since, setting.until):
            assert tag is None or releases.find(tag) is not None, setting


def test_find_and_reads():
    assert releases.find("652b828") is releases.LATEST
    assert releases.find("nope") is None and releases.find("latest") is None
    v8 = next(s for s in releases.VERSIONED_SETTINGS if s.key == "v8ActionTimeoutSeconds")
    assert releases.reads(OLD, v8) is False and releases.reads(releases.LATEST.tag, v8) is True
    assert releases.reads("0" * 40, v8) is None
    assert releases.s3_needs_keys(OLD) is True
    assert releases.s3_needs_keys(releases.LATEST.tag) is False


def test_unknown_version_is_a_warning_not_a_crash():
    settings = load("staging", {"version": "0123456789abcdef0123456789abcdef01234567",
                                "v8ActionTimeoutSeconds": 60})
    assert any("not a release this project knows" in w for w in settings.warnings)
    run = evaluate("staging", {"version": "0123456789abcdef0123456789abcdef01234567"})
    assert any("version-specific checks were skipped" in w for w in run.warnings)


def test_variables_an_old_release_does_not_read_are_left_out():
    env = evaluate("dev", {"version": OLD}).env("convex-dev-backend")
    # disableMetricsEndpoint defaults to true, but 4d3b0a5 predates the variable.
    assert "DISABLE_METRICS_ENDPOINT" not in env
    env = evaluate("dev").env("convex-dev-backend")
    assert env["DISABLE_METRICS_ENDPOINT"] == "true"
    env = evaluate("dev", {"version": OLD, "actionsUserTimeoutSeconds": 900}).env(
        "convex-dev-backend")
    assert env["ACTIONS_USER_TIMEOUT_SECS"] == "900"


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("url,variable", [("postgres://u:p@db:5432", "PG_CA_FILE"),
                                          ("mysql://u:p@db:3306", "MYSQL_CA_FILE")])
def test_database_ca_certificate_is_uploaded_and_pointed_at(url, variable):
    pem = _pem()
    run = evaluate("dev", {"databaseCaCert": pem}, {"databaseUrl": url})
    backend = run.containers()["convex-dev-backend"]
    assert backend.inputs["uploads"] == [{"file": "/convex/database-ca.pem", "content": pem}]
    assert run.env("convex-dev-backend")[variable] == "/convex/database-ca.pem"


def test_mysql_ca_on_a_release_that_does_not_read_it_is_refused():
    from test_settings import problems

    found = problems("dev", {"version": OLD, "databaseCaCert": _pem()},
                     {"databaseUrl": "mysql://u:p@db:3306"})
    assert found == ("convex-selfhost:databaseCaCert: sets MYSQL_CA_FILE, which the chosen "
                     "version 4d3b0a5de955 does not read (only releases from f6966f2 on do); "
                     "remove it or change `version`.",)


def test_backend_args_log_format_and_pool_reach_the_backend():
    run = evaluate("dev", {"backendArgs": ["--convex-http-proxy", "http://proxy:3128"],
                           "logFormat": "json", "provisionPostgres": True,
                           "postgresMaxConnections": 64, "postgresServerMaxConnections": 100})
    backend = run.containers()["convex-dev-backend"]
    assert backend.inputs["command"] == ["--convex-http-proxy", "http://proxy:3128"]
    env = run.env("convex-dev-backend")
    assert env["LOG_FORMAT"] == "json" and env["POSTGRES_MAX_CONNECTIONS"] == "64"
    assert run.containers()["convex-dev-postgres"].inputs["command"] == [
        "postgres", "-c", "max_connections=100"]
    plain = evaluate("dev").containers()["convex-dev-backend"].inputs
    assert "command" not in plain and "uploads" not in plain


def test_between_and_the_s3_boundary():
    crossed = releases.between(OLD, releases.LATEST.tag)
    tags = [r.tag for r in releases.RELEASES]
    assert crossed == list(releases.RELEASES[tags.index(OLD) + 1:])
    assert crossed[0].tag == "ef9b6644c14012425503c9d66b50effdfc16a950"
    assert crossed[-1] is releases.LATEST
    boundary = releases.S3_WITHOUT_KEYS_SINCE
    before = tags[tags.index(boundary) - 1]
    assert releases.s3_needs_keys(boundary) is False and releases.s3_needs_keys(before) is True


def test_between_stops_at_the_target():
    target = "0b8731e45077136ca23521ec11bface108aade99"
    crossed = releases.between(OLD, target)
    assert crossed[-1].tag == target and releases.LATEST not in crossed


def test_a_setting_is_read_by_its_first_and_last_release_exactly():
    from components import releases

    for setting in releases.VERSIONED_SETTINGS:
        if setting.since:
            assert releases.reads(setting.since, setting) is True, setting.key
            before = releases.RELEASES[releases.RELEASES.index(
                releases.find(setting.since)) - 1].tag
            assert releases.reads(before, setting) is False, setting.key
        if setting.until:
            assert releases.reads(setting.until, setting) is True, setting.key
            after = releases.RELEASES[releases.RELEASES.index(
                releases.find(setting.until)) + 1].tag
            assert releases.reads(after, setting) is False, setting.key


S3 = {"s3Region": "auto", "s3BucketPrefix": "acme", "s3Endpoint": "https://minio.example.com"}
S3_KEYS = {"awsAccessKeyId": "AKIAEXAMPLE7", "awsSecretAccessKey": "wJalrXUtnFEMI-secret"}
S3_FLAGS = [("s3ForcePathStyle", "AWS_S3_FORCE_PATH_STYLE",
             "33cef775a8a6228cbacee4a09ac2c4073d62ed13"),
            ("s3DisableSse", "AWS_S3_DISABLE_SSE", "00bd92723422f3bff968230c94ccdeb8c1719832"),
            ("s3DisableChecksums", "AWS_S3_DISABLE_CHECKSUMS",
             "00bd92723422f3bff968230c94ccdeb8c1719832")]


@pytest.mark.parametrize("key,variable,since", S3_FLAGS)
def test_s3_flags_are_sent_only_when_true(key, variable, since):
    env = evaluate("dev", {**S3, key: True}, S3_KEYS).env("convex-dev-backend")
    assert env[variable] == "true"  # upstream parses the value as a boolean: "true" exactly
    for version in (since, releases.LATEST.tag):
        env = evaluate("dev", {**S3, key: False, "version": version},
                       S3_KEYS).env("convex-dev-backend")
        assert variable not in env


@pytest.mark.parametrize("key,variable,since", S3_FLAGS)
def test_s3_flags_are_refused_on_releases_that_do_not_read_them(key, variable, since):
    tags = [r.tag for r in releases.RELEASES]
    before = tags[tags.index(since) - 1]
    from test_settings import problems

    assert problems("dev", {**S3, key: True, "version": before}, S3_KEYS) == (
        f"convex-selfhost:{key}: sets {variable}, which the chosen version {before[:12]} does "
        f"not read (only releases from {since[:7]} on do); remove it or change `version`.",)
    load("dev", {**S3, key: True, "version": since}, S3_KEYS)
    env = evaluate("dev", {**S3, "version": before}, S3_KEYS).env("convex-dev-backend")
    assert variable not in env


def test_an_extra_env_knob_the_release_does_not_read_is_a_warning():
    settings = load("dev", {"extraEnv": ["MODULE_CACHE_MAX_SIZE_BYTES=200000000",
                                         "RUST_MIN_STACK=1"]})
    assert settings.warnings == (
        "extraEnv sets MODULE_CACHE_MAX_SIZE_BYTES, which the chosen version 652b828b5129 does "
        "not read (only releases up to 84bd27d do), so it has no effect; remove it or change "
        "`version`.",)
    assert load("dev", {"extraEnv": ["MODULE_CACHE_MAX_SIZE_BYTES=1"],
                        "version": "84bd27d0ed5e6e76e347cda552bf0be832caaf63"}).warnings == ()
    newer = load("dev", {"extraEnv": ["SOURCE_MAP_CACHE_MAX_SIZE_BYTES=1"], "version": OLD})
    assert newer.warnings == (
        "extraEnv sets SOURCE_MAP_CACHE_MAX_SIZE_BYTES, which the chosen version 4d3b0a5de955 "
        "does not read (only releases from 652b828 on do), so it has no effect; remove it or "
        "change `version`.",)
    secret = load("dev", secrets={"extraEnv": '["MODULE_CACHE_MAX_SIZE_BYTES=1"]'})
    assert secret.warnings == (
        "extraEnv sets the variable of entry 1, which the chosen version 652b828b5129 does not "
        "read (only releases up to 84bd27d do), so it has no effect; remove it or change "
        "`version`.",)
    unknown = load("dev", {"version": "0" * 40, "extraEnv": ["MODULE_CACHE_MAX_SIZE_BYTES=1"]})
    assert not any("extraEnv" in warning for warning in unknown.warnings)


def test_the_knob_table_names_known_releases_and_no_typed_variable():
    from components.settings.runtime import OWNED_ENV_VARS

    assert releases.reads_knob(releases.LATEST.tag, "MODULE_CACHE_MAX_SIZE_BYTES") is False
    assert releases.reads_knob("84bd27d", "MODULE_CACHE_MAX_SIZE_BYTES") is True
    assert releases.reads_knob(releases.LATEST.tag, "RUST_MIN_STACK") is None
    for name, (since, until) in releases.EXTRA_ENV_KNOBS.items():
        assert name not in OWNED_ENV_VARS
        for tag in (since, until):
            assert tag is None or releases.find(tag) is not None, name
        assert (since, until) != (None, None), name


def test_database_url_parameters_are_read_from_4d3b0a5_on():
    assert releases.reads_since(OLD, releases.URL_PARAMETERS_SINCE) is True
    assert releases.reads_since("00bd92723422f3bff968230c94ccdeb8c1719832",
                                releases.URL_PARAMETERS_SINCE) is False
    assert releases.reads_since("0" * 40, releases.URL_PARAMETERS_SINCE) is None
    load("dev", {"version": OLD}, {"databaseUrl": "postgres://u:p@db:5432?sslmode=require"})
