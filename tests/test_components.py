"""Each component built alone, from literal arguments, by another program (no config)."""

from harness import REPO, evaluate, is_secret_value

from components.admin_key import check_admin_key


def test_backend_and_dashboard_from_another_program():
    run = evaluate(None, program=REPO / "tests" / "programs" / "backend_alone.py",
                   stack_name="elsewhere")
    containers = run.containers()
    assert set(containers) == {"shop-backend", "shop-dashboard"}
    backend = containers["shop-backend"]
    assert backend.inputs["image"].startswith("sha256:")
    assert [(p["internal"], p["external"], p["ip"]) for p in backend.inputs["ports"]] == [
        (3210, 4210, "127.0.0.1"), (3211, 4211, "127.0.0.1")]
    assert backend.inputs["memory"] == 2048 and backend.inputs["cpus"] == "1.5"
    assert is_secret_value(backend.raw["envs"]) and "envs" in backend.additional_secret_outputs
    volume = run.named("shop-data")
    assert volume.inputs["name"] == "shop-data" and volume.protect and volume.retain_on_delete
    gate = run.named("shop-healthy")
    assert gate.inputs["input"]["container_name"] == "shop-backend"
    assert gate.urn not in containers["shop-dashboard"].dependencies
    assert containers["shop-dashboard"].inputs["envs"] == [
        "NEXT_PUBLIC_DEPLOYMENT_URL=http://127.0.0.1:4210"]
    secret = run.env("shop-backend")["INSTANCE_SECRET"]
    assert check_admin_key(run.outputs["adminKey"], "shop", secret).read_only is False
