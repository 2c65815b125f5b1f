"""ConvexPostgres: a provisioned database beside the backend."""

from harness import evaluate, fake_digest, is_secret_value

CONTAINER = "docker:index/container:Container"


def run_with_postgres(stack="dev", **overrides):
    return evaluate(stack, {"provisionPostgres": True, **overrides})


def test_postgres_container_volume_and_password():
    run = run_with_postgres()
    postgres = run.containers()["convex-dev-postgres"]
    image = run.named("images-postgres")
    assert image.inputs["name"] == "postgres:17.6-alpine"
    assert postgres.inputs["image"] == f"sha256:{fake_digest('image', 'postgres:17.6-alpine')}"
    assert "ports" not in postgres.inputs  # reachable only on the deployment's network
    assert postgres.inputs["networksAdvanced"][0]["name"] == "convex-dev-network"
    assert postgres.inputs["volumes"][0]["containerPath"] == "/var/lib/postgresql/data"
    # A query over TCP in the instance's database: the image's temporary init server
    # listens on the Unix socket only, before that database exists.
    assert postgres.inputs["healthcheck"]["tests"] == [
        "CMD", "psql", "--no-password", "--host", "127.0.0.1", "--port", "5432",
        "--username", "convex", "--dbname", "convex_dev", "--tuples-only", "--command",
        "SELECT 1"]
    assert postgres.inputs["healthcheck"]["startPeriod"] == "3m0s"
    assert postgres.inputs["command"] == ["postgres", "-c", "max_connections=200"]
    # Deleted or replaced with a clean shutdown, never SIGKILL at once.
    assert postgres.inputs["stopSignal"] == "SIGINT"
    assert postgres.inputs["destroyGraceSeconds"] == 60
    assert postgres.delete_before_replace
    env = run.env("convex-dev-postgres")
    password = run.named("convex-dev-postgres-password")
    assert password.type == "random:index/randomPassword:RandomPassword"
    assert password.inputs["special"] is False and password.inputs["length"] == 32
    assert env["POSTGRES_USER"] == "convex"
    assert env["POSTGRES_DB"] == "convex_dev"  # the database the backend looks for
    assert is_secret_value(postgres.raw["envs"])


def test_backend_waits_for_healthy_postgres_and_uses_it():
    run = run_with_postgres()
    backend = run.containers()["convex-dev-backend"]
    gate = run.named("convex-dev-postgres-healthy")
    assert gate.inputs["input"]["container_name"] == "convex-dev-postgres"
    assert gate.urn in backend.dependencies
    env = run.env("convex-dev-backend")
    password = run.env("convex-dev-postgres")["POSTGRES_PASSWORD"]
    assert env["POSTGRES_URL"] == f"postgresql://convex:{password}@convex-dev-postgres:5432"
    assert env["DO_NOT_REQUIRE_SSL"] == "true"


def test_postgres_data_is_protected_like_convex_data():
    run = run_with_postgres("staging")
    volume = run.named("convex-staging-postgres-data")
    assert volume.inputs["name"] == "convex-staging-pgdata"
    assert volume.protect and volume.retain_on_delete
    assert run.named("convex-staging-postgres-password").protect


def test_database_name_follows_the_instance_name():
    run = run_with_postgres(instanceName="shop-eu-1")
    assert run.env("shop-eu-1-postgres")["POSTGRES_DB"] == "shop_eu_1"
