"""Pulumi.yaml, stack files and README stay in step with the code.

(The scripts and the example CI workflow: test_scripts.py, test_ci_workflow.py.)
"""

import ast
import json
import re

import jsonschema
import pytest
import yaml
from harness import EXAMPLE_STACKS, REPO, STACKS, cli_string, project_file, stack_file

from components.settings import KEYS, KEYS_BY_NAME, NAMESPACE

SCHEMA = REPO.parent / "shared" / "reference" / "pulumi-project.schema.json"
README = (REPO / "README.md").read_text()
CONFIGURATION = (REPO / "docs" / "configuration.md").read_text()


def test_pulumi_yaml_matches_the_cli_schema():
    if not SCHEMA.exists():
        pytest.skip(f"the Pulumi project schema is not at {SCHEMA}")
    jsonschema.validate(project_file(), json.loads(SCHEMA.read_text()))


def test_project_basics():
    project = project_file()
    assert project["name"] == NAMESPACE
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == "venv"
    assert project["stackConfigDir"] == "stacks"


def test_every_setting_is_declared_with_type_default_and_description():
    declared = project_file()["config"]
    assert list(declared) == [key.name for key in KEYS]
    for key in KEYS:
        entry = declared[key.name]
        assert entry["type"] == key.type, key.name
        assert entry["default"] == key.default, key.name
        assert len(entry["description"]) > 20, key.name
        if key.type == "array":
            assert entry["items"] == {"type": "string"}
        # The CLI refuses a secret key whose (plain) default applies; the program checks.
        assert "secret" not in entry
        if key.secret:
            assert "--secret" in entry["description"], key.name


def value_has_type(value, declared_type):
    """The CLI's own check (pulumi sdk/go/common/workspace ValidateConfigValue): integers
    and booleans may also be the strings it writes itself when it rewrites a stack file
    (`pulumi stack select --create` adds encryptionsalt and quotes 3210 and false)."""
    return {
        "string": lambda v: isinstance(v, (str, int, float)) and not isinstance(v, bool),
        "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, str) and re.fullmatch(r"[+-]?[0-9]+", v) is not None),
        "boolean": lambda v: isinstance(v, bool) or v in ("true", "false"),
        "array": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    }[declared_type](value)


def as_the_cli_rewrites_it(document: dict) -> dict:
    """A stack file as `pulumi stack select --create` saves it again (seen with CLI 3.274):
    scalars become strings, an encryptionsalt is added."""
    def rewrite(value):
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        return value
    config = {key: rewrite(value) for key, value in (document.get("config") or {}).items()}
    return {"config": config, "encryptionsalt": "v1:AAAAAAAAAAA=:v1:AAAA:AAAA"}


@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_file_the_cli_rewrote_stays_valid_and_means_the_same(stack):
    original = stack_file(stack)
    rewritten = yaml.safe_load(yaml.safe_dump(as_the_cli_rewrites_it(original)))
    for full_key, value in rewritten["config"].items():
        namespace, _, name = full_key.partition(":")
        if namespace == NAMESPACE:
            key = KEYS_BY_NAME[name]
            assert value_has_type(value, key.type), f"{stack}: {name}={value!r}"
    # The program receives the same strings either way.
    assert {k: cli_string(v) for k, v in rewritten["config"].items()} == \
        {k: cli_string(v) for k, v in (original.get("config") or {}).items()}


def test_the_type_check_refuses_what_the_cli_refuses():
    assert not value_has_type("abc", "integer") and not value_has_type("3.5", "integer")
    assert not value_has_type(" 1", "integer") and not value_has_type(True, "integer")
    assert not value_has_type("maybe", "boolean") and not value_has_type("True", "boolean")
    assert not value_has_type(1, "boolean")
    assert value_has_type("-3", "integer") and value_has_type("+7", "integer")


@pytest.mark.parametrize("stack", STACKS)
def test_stack_file_values_have_the_declared_types(stack):
    config = stack_file(stack)["config"]
    for full_key, value in config.items():
        namespace, _, name = full_key.partition(":")
        if namespace != NAMESPACE:
            continue
        assert name in KEYS_BY_NAME, f"{stack}: undeclared key {name}"
        key = KEYS_BY_NAME[name]
        assert value_has_type(value, key.type), f"{stack}: {name}={value!r} is not {key.type}"
        assert not key.secret, f"{stack}: secret {name} in plain text"


def test_docs_document_every_key_and_the_readme_every_output():
    for key in KEYS:
        assert f"| `{key.name}` | {key.type} |" in CONFIGURATION, key.name
    for output in ("backendUrl", "siteUrl", "dashboardUrl", "instanceName", "instanceSecret",
                   "adminKey", "readOnlyAdminKey", "envLocal"):
        assert f"| `{output}` |" in README, output
    for stack in EXAMPLE_STACKS:
        assert f"stacks/Pulumi.{stack}.yaml" in README


def test_documented_defaults_match_pulumi_yaml():
    for key in KEYS:
        pattern = rf"^\| `{key.name}` \| {key.type} \| ([^|]+) \|"
        row = re.search(pattern, CONFIGURATION, re.M).group(1).strip()
        if key.default in ("", []):
            assert row in ("(empty)", "`[]`"), key.name
        else:
            expected = json.dumps(key.default) if isinstance(key.default, bool) else key.default
            assert row == f"`{expected}`", key.name


def test_readme_policy_table_names_every_policy():
    policies = re.findall(r'name="([a-z-]+)"', (REPO / "policy" / "convex_policies.py").read_text())
    assert policies
    for name in policies:
        assert f"| `{name}` |" in README


def test_configuration_table_is_generated_from_pulumi_yaml():
    import importlib.util

    spec = importlib.util.spec_from_file_location("config_table",
                                                  REPO / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.table() in CONFIGURATION + "\n"
    assert module.replace_in(CONFIGURATION) == CONFIGURATION


SDK_PACKAGES = ("pulumi", "pulumi_policy", "pulumi_docker", "pulumi_random")


def _is_sdk(module: str) -> bool:
    return module.split(".")[0] in SDK_PACKAGES


def private_sdk_names(source: str) -> list[str]:
    """`_name`s of the Pulumi SDKs a module imports or reaches through an attribute."""
    tree = ast.parse(source)
    found, sdk_names = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_sdk(alias.name):
                    sdk_names.add((alias.asname or alias.name).split(".")[0])
                    found += [p for p in alias.name.split(".") if p.startswith("_")]
        elif isinstance(node, ast.ImportFrom) and node.module and _is_sdk(node.module):
            found += [p for p in node.module.split(".") if p.startswith("_")]
            for alias in node.names:
                sdk_names.add(alias.asname or alias.name)
                if alias.name.startswith("_"):
                    found.append(alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in sdk_names:
                found.append(node.attr)
    return found


def test_the_checker_finds_private_sdk_names():
    assert private_sdk_names("from pulumi.runtime import rpc\nrpc._special_sig_key") == [
        "_special_sig_key"]
    assert private_sdk_names("from pulumi_policy.policy import _PolicyAnalyzerServicer") == [
        "_PolicyAnalyzerServicer"]
    assert private_sdk_names("import pulumi.runtime.settings\npulumi.runtime.settings._x") == [
        "_x"]
    assert private_sdk_names("import os\nos._exit\nfrom components import x\nx._y") == []


def test_no_private_sdk_names_anywhere():
    files = [REPO / "__main__.py", *REPO.glob("components/**/*.py"),
             *REPO.glob("policy/*.py"), *REPO.glob("tests/**/*.py"), *REPO.glob("scripts/*.py")]
    assert len(files) > 40
    used = {str(f.relative_to(REPO)): private_sdk_names(f.read_text()) for f in files}
    assert {path: names for path, names in used.items() if names} == {}


def test_modules_and_functions_stay_small():
    """No module over 400 lines and no function over 60 in components/, ops/ and policy/.
    ops/backup.py is the exception: it is uploaded whole into the backup container and run
    there alone (standard library only), so it cannot be split into modules."""
    files = [*REPO.glob("components/**/*.py"), *REPO.glob("ops/*.py"), *REPO.glob("policy/*.py")]
    limits = {"ops/backup.py": 1000}
    too_long = {}
    for path in files:
        source = path.read_text()
        name = str(path.relative_to(REPO))
        if source.count("\n") > limits.get(name, 400):
            too_long[name] = source.count("\n")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    too_long[f"{name}:{node.name}"] = length
    assert len(files) > 30 and too_long == {}
