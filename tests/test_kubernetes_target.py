"""components/kubernetes: what the program sends the API server, under the mock engine."""

import subprocess
import sys

import pytest
from harness import REPO, SAMPLE_SECRET, evaluate, is_secret_value

from components.admin_key import check_admin_key
from components.kubernetes import workloads

DATABASE_URL = "postgres://convex:pw-hunter2@db.example.com:5432"
CA = (REPO / "tests" / "fixtures" / "test-ca.pem").read_text()


def pod(resource) -> dict:
    spec = resource.inputs["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else \
        spec["template"]
    return template["spec"]


def container(resource) -> dict:
    (only,) = pod(resource)["containers"]
    return only


def env_of(resource) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(resource)["env"]}


def test_the_example_stack_runs_one_backend_that_never_overlaps():
    run = evaluate("kubernetes", secrets={"instanceSecret": SAMPLE_SECRET})
    backend = run.named("convex-kubernetes-backend")
    assert backend.type == "kubernetes:apps/v1:StatefulSet"
    spec = backend.inputs["spec"]
    assert spec["replicas"] == 1 and spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert spec["podManagementPolicy"] == "OrderedReady"
    c = container(backend)
    assert c["image"] == ("ghcr.io/get-convex/convex-backend:"
                          "652b828b5129e6cdbcaa3c20efa8d116d09ff3bf")
    assert c["resources"] == {"limits": {"cpu": "2000m", "memory": "4096Mi"},
                              "requests": {"cpu": "2000m", "memory": "4096Mi"}}
    # 300 s of startup budget for first-start migrations, then /version every 5 s.
    assert c["startupProbe"] == {"httpGet": {"path": "/version", "port": 3210},
                                 "periodSeconds": 5, "timeoutSeconds": 5,
                                 "failureThreshold": 60}
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod(backend)["automountServiceAccountToken"] is False
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/convex/data"}]
    assert pod(backend)["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "convex-kubernetes-data"}
    assert backend.raw["metadata"]["namespace"] == "convex-kubernetes"


def test_secrets_are_referenced_never_in_plain_env():
    run = evaluate("kubernetes", secrets={"instanceSecret": SAMPLE_SECRET,
                                          "databaseUrl": DATABASE_URL})
    backend = run.named("convex-kubernetes-backend")
    env = env_of(backend)
    for name in ("INSTANCE_SECRET", "POSTGRES_URL"):
        assert env[name] == {"secretKeyRef": {"name": "convex-kubernetes-backend", "key": name}}
    assert SAMPLE_SECRET not in str(backend.raw) and "pw-hunter2" not in str(backend.raw)
    secret = run.named("convex-kubernetes-backend-secret")
    assert secret.type == "kubernetes:core/v1:Secret"
    assert is_secret_value(secret.raw["stringData"])
    assert secret.inputs["stringData"] == {"INSTANCE_SECRET": SAMPLE_SECRET,
                                           "POSTGRES_URL": DATABASE_URL}
    assert env["CONVEX_CLOUD_ORIGIN"] == "https://api.convex.example.com"


def test_admin_keys_are_derived_in_the_program_and_secret():
    run = evaluate("kubernetes", secrets={"instanceSecret": SAMPLE_SECRET})
    check_admin_key(run.outputs["adminKey"], "convex-kubernetes", SAMPLE_SECRET)
    assert {"adminKey", "readOnlyAdminKey", "envLocal", "instanceSecret"} <= run.secret_outputs
    assert run.outputs["envLocal"].startswith(
        "CONVEX_SELF_HOSTED_URL=https://api.convex.example.com\n")


def test_destroy_and_a_new_version_never_lose_the_data():
    run = evaluate("kubernetes", {"protectData": True})
    for name in ("convex-kubernetes-data", "convex-kubernetes-backups"):
        claim = run.named(name)
        assert claim.type == "kubernetes:core/v1:PersistentVolumeClaim"
        assert claim.retain_on_delete and claim.protect
        assert claim.inputs["spec"]["resources"] == {"requests": {"storage": "20Gi"}}
    # Deleting a namespace deletes its claims: the stack leaves it.
    assert run.named("namespace").retain_on_delete
    assert run.named("convex-kubernetes-instance-secret").protect
    unprotected = evaluate("kubernetes", {"protectData": False})
    assert not unprotected.named("convex-kubernetes-data").protect
    assert unprotected.named("convex-kubernetes-data").retain_on_delete


def test_the_ingress_serves_api_site_and_dashboard_with_cert_manager():
    ingress = evaluate("kubernetes").named("convex-kubernetes-ingress")
    spec = ingress.inputs["spec"]
    assert spec["ingressClassName"] == "nginx"
    routes = [(r["host"], r["http"]["paths"][0]["backend"]["service"]) for r in spec["rules"]]
    assert routes == [
        ("api.convex.example.com", {"name": "convex-kubernetes-backend",
                                    "port": {"number": 3210}}),
        ("site.convex.example.com", {"name": "convex-kubernetes-backend",
                                     "port": {"number": 3211}}),
        ("dashboard.convex.example.com", {"name": "convex-kubernetes-dashboard",
                                          "port": {"number": 6791}})]
    assert spec["tls"] == [{"hosts": [host for host, _ in routes],
                            "secretName": "convex-kubernetes-tls"}]
    assert ingress.inputs["metadata"]["annotations"] == {
        "pulumi.com/skipAwait": "true",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
        "cert-manager.io/cluster-issuer": "letsencrypt"}


def test_without_an_ingress_the_urls_are_the_services_in_the_cluster():
    run = evaluate("kubernetes", {"kubernetesIngressClass": None,
                                  "kubernetesCertManagerIssuer": None,
                                  "kubernetesIngressAnnotations": None,
                                  "kubernetesDashboardHost": None, "cloudOrigin": None,
                                  "siteOrigin": None})
    service = "convex-kubernetes-backend.convex-kubernetes.svc.cluster.local"
    assert run.outputs["backendUrl"] == f"http://{service}:3210"
    assert run.outputs["siteUrl"] == f"http://{service}:3211"
    assert run.outputs["dashboardUrl"] == (
        "http://convex-kubernetes-dashboard.convex-kubernetes.svc.cluster.local:6791")
    assert not run.of_type("kubernetes:networking.k8s.io/v1:Ingress")
    services = {r.inputs["metadata"]["name"]: r.inputs["spec"]
                for r in run.of_type("kubernetes:core/v1:Service")}
    assert services["convex-kubernetes-backend"]["ports"] == [
        {"name": "api", "port": 3210, "targetPort": "api"},
        {"name": "site", "port": 3211, "targetPort": "site"}]


def test_the_dashboard_runs_as_its_images_own_user_and_without_the_admin_key():
    run = evaluate("kubernetes")
    dashboard = run.named("convex-kubernetes-dashboard")
    assert dashboard.type == "kubernetes:apps/v1:Deployment"
    c = container(dashboard)
    assert c["securityContext"]["runAsUser"] == 1001 and c["securityContext"]["runAsNonRoot"]
    assert env_of(dashboard) == {"NEXT_PUBLIC_DEPLOYMENT_URL": "https://api.convex.example.com"}
    assert not evaluate("kubernetes", {"dashboard": False,
                                       "kubernetesDashboardHost": None}).of_type(
        "kubernetes:apps/v1:Deployment")


def test_scheduled_backups_are_a_cronjob_running_the_same_client():
    run = evaluate("kubernetes", secrets={"instanceSecret": SAMPLE_SECRET})
    job = run.named("convex-kubernetes-backup-cronjob")
    spec = job.inputs["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == (
        "0 3 * * *", "Etc/UTC", "Forbid")
    c = container(job)
    assert c["command"] == ["python3", "/app/convex_backup.py", "once", "--url",
                            "http://convex-kubernetes-backend:3210", "--dest", "/backups",
                            "--keep", "7", "--timeout", "1800"]
    assert env_of(job)["CONVEX_SELF_HOSTED_ADMIN_KEY"] == {"secretKeyRef": {
        "name": "convex-kubernetes-backup", "key": "CONVEX_SELF_HOSTED_ADMIN_KEY"}}
    assert c["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert pod(job)["securityContext"] == {"fsGroup": 65534}
    client = run.named("convex-kubernetes-backup-client").inputs["data"]["convex_backup.py"]
    assert client == (REPO / "ops" / "backup.py").read_text()
    key = run.named("convex-kubernetes-backup-key")
    assert is_secret_value(key.raw["stringData"])
    assert run.outputs["adminKey"] not in str(job.raw)


def test_a_database_ca_is_mounted_from_a_configmap():
    run = evaluate("kubernetes", {"databaseCaCert": CA}, {"databaseUrl": DATABASE_URL})
    backend = run.named("convex-kubernetes-backend")
    assert {"name": "database-ca", "mountPath": "/convex/database-ca.pem", "subPath": "ca.pem",
            "readOnly": True} in container(backend)["volumeMounts"]
    assert env_of(backend)["PG_CA_FILE"] == "/convex/database-ca.pem"
    assert run.named("convex-kubernetes-database-ca").inputs["data"] == {"ca.pem": CA}


def test_several_deployments_share_the_namespace_with_names_of_their_own():
    run = evaluate("kubernetes", {"deployments": ["a", "b"], "kubernetesIngressClass": None,
                                  "kubernetesCertManagerIssuer": None,
                                  "kubernetesIngressAnnotations": None,
                                  "kubernetesDashboardHost": None, "cloudOrigin": None,
                                  "siteOrigin": None})
    names = sorted(r.inputs["metadata"]["name"]
                   for r in run.of_type("kubernetes:apps/v1:StatefulSet"))
    assert names == ["convex-kubernetes-a-backend", "convex-kubernetes-b-backend"]
    assert len(run.of_type("kubernetes:core/v1:Namespace")) == 1
    assert set(run.outputs["backendUrl"]) == {"a", "b"}


@pytest.mark.parametrize("start, failures, timeout", [(300, 60, "600s"), (1200, 240, "1500s"),
                                                      (12, 3, "600s")])
def test_the_startup_budget_follows_backend_start_timeout(start, failures, timeout):
    run = evaluate("kubernetes", {"backendStartTimeoutSeconds": start})
    backend = run.named("convex-kubernetes-backend")
    assert container(backend)["startupProbe"]["failureThreshold"] == failures
    assert workloads.await_timeout(type("S", (), {"resources": type(
        "R", (), {"backend_start_timeout_seconds": start})})) == timeout


def test_other_targets_never_import_the_kubernetes_sdk():
    """The program imports only the chosen target (and its provider SDK)."""
    code = ("import sys; sys.path.insert(0, 'tests'); from harness import evaluate; "
            "evaluate('dev'); evaluate('host'); "
            "print('pulumi_kubernetes' in sys.modules, 'components.kubernetes.stack' in "
            "sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]


def test_off_host_copies_in_the_cronjob_come_from_its_secret():
    key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    run = evaluate("kubernetes", {"backupS3Bucket": "acme-backups"},
                   {"backupS3AccessKeyId": "AKIA-id", "backupS3SecretAccessKey": "s3cr3t-key",
                    "backupEncryptionKey": key})
    job = run.named("convex-kubernetes-backup-cronjob")
    assert container(job)["command"][-7:] == [
        "--s3-bucket", "acme-backups", "--s3-region", "us-east-1", "--s3-prefix",
        "convex-kubernetes", "--encrypt"]
    env = env_of(job)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CONVEX_BACKUP_ENCRYPTION_KEY"):
        assert env[name] == {"secretKeyRef": {"name": "convex-kubernetes-backup", "key": name}}
    secret = run.named("convex-kubernetes-backup-key")
    assert is_secret_value(secret.raw["stringData"])
    assert secret.inputs["stringData"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t-key"
    assert "s3cr3t-key" not in str(job.raw) and key not in str(job.raw)


def test_the_restore_drill_is_a_suspended_cronjob_with_a_throwaway_backend_sidecar():
    run = evaluate("kubernetes", secrets={"instanceSecret": SAMPLE_SECRET})
    drill = run.named("convex-kubernetes-backup-drill")
    spec = drill.inputs["spec"]
    assert drill.inputs["metadata"]["name"] == "convex-kubernetes-drill"
    assert spec["suspend"] is True and spec["jobTemplate"]["spec"]["backoffLimit"] == 0
    (backend,) = pod(drill)["initContainers"]
    assert backend["restartPolicy"] == "Always"  # a native sidecar: gone with the client
    assert backend["image"] == run.named("convex-kubernetes-backend").inputs["spec"][
        "template"]["spec"]["containers"][0]["image"]  # the same release
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in backend["env"]}
    assert env["INSTANCE_NAME"] == "convex-kubernetes-drill"
    assert env["INSTANCE_SECRET"] == {"secretKeyRef": {"name": "convex-kubernetes-drill",
                                                       "key": "INSTANCE_SECRET"}}
    # Its data is an emptyDir: nothing of the real deployment (claim, database, S3).
    volumes = {v["name"]: v for v in pod(drill)["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert backend["volumeMounts"] == [{"name": "data", "mountPath": "/convex/data"}]
    assert not {"DATABASE_URL", "POSTGRES_URL", "MYSQL_URL", "S3_STORAGE_EXPORTS_BUCKET"} & set(env)
    assert volumes["backups"]["persistentVolumeClaim"] == {"claimName": "convex-kubernetes-backups",
                                                           "readOnly": True}
    c = container(drill)
    assert c["command"] == ["python3", "/app/convex_backup.py", "drill", "--url",
                            "http://127.0.0.1:3210", "--dest", "/backups", "--wait", "300",
                            "--timeout", "3600"]
    assert {"name": "backups", "mountPath": "/backups", "readOnly": True} in c["volumeMounts"]
    # The drill's admin key is derived in the program from the drill's own secret.
    values = run.named("convex-kubernetes-backup-drill-key")
    assert is_secret_value(values.raw["stringData"])
    data = values.inputs["stringData"]
    assert check_admin_key(data["CONVEX_SELF_HOSTED_ADMIN_KEY"], "convex-kubernetes-drill",
                           data["INSTANCE_SECRET"])
    assert data["INSTANCE_SECRET"] != SAMPLE_SECRET
    assert data["INSTANCE_SECRET"] not in str(drill.raw)


def test_without_local_copies_the_drill_reads_the_bucket():
    run = evaluate("kubernetes", {"backupS3Bucket": "acme-backups", "backupLocal": False},
                   {"backupS3AccessKeyId": "AKIA-id", "backupS3SecretAccessKey": "s3cr3t-key"})
    drill = run.named("convex-kubernetes-backup-drill")
    command = container(drill)["command"]
    assert "--dest" not in command and command[command.index("--s3-bucket") + 1] == "acme-backups"
    env = env_of(drill)
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {
        "name": "convex-kubernetes-drill", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert "s3cr3t-key" not in str(drill.raw)
