"""`infra/aws/*.tf` parses as HCL2 and every reference in it resolves: the checks of `terraform validate` that
need no provider download (variables, locals, resources, data sources, template files and their placeholders),
plus the bucket settings production relies on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import hcl2
import pytest

pytestmark = pytest.mark.unit
AWS = Path(__file__).resolve().parents[3] / "infra" / "aws"
IAM_ROLES = ("trainer", "store", "uploader")
BUILTIN_OBJECTS = {"each", "path", "count", "self", "terraform"}


def unquote(value):
    return value[1:-1] if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"' else value


@pytest.fixture(scope="module")
def modules() -> dict[str, dict]:
    return {path.name: hcl2.load(path.open()) for path in sorted(AWS.glob("*.tf"))}


def declared(modules) -> set[str]:
    """Every name an expression may use: var.X, local.X, TYPE.NAME, data.TYPE.NAME."""
    names = set()
    for module in modules.values():
        names |= {f"var.{name}" for block in module.get("variable", []) for name in block}
        names |= {f"local.{name}" for block in module.get("locals", []) for name in block if not name.startswith("__")}
        for kind, prefix in (("resource", ""), ("data", "data.")):
            for block in module.get(kind, []):
                for rtype, named in block.items():
                    names |= {f"{prefix}{unquote(rtype)}.{unquote(name)}" for name in named}
    return {n.replace('"', "") for n in names}


def expressions(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if not key.startswith("__"):
                yield from expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from expressions(value)
    elif isinstance(node, str):
        yield node


REFERENCE = re.compile(r"(?<![\w.\-/:])((?:data\.)?[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)")
INTERPOLATION = re.compile(r"\$\{([^{}]*)\}")


def code_of(text: str) -> str:
    """The HCL expression code in one parsed value: the interpolations of a string literal, or an expression
    ("${...}") with its own string literals reduced to their interpolations."""
    if text.startswith('"'):
        return " ".join(INTERPOLATION.findall(text))
    if text.startswith("${") and text.endswith("}"):
        inner = text[2:-1]
        literals = re.findall(r'"(?:[^"\\]|\\.)*"', inner)
        return re.sub(r'"(?:[^"\\]|\\.)*"', '""', inner) + " " + " ".join(map(code_of, literals))
    return ""


def references(modules) -> set[str]:
    found = set()
    for module in modules.values():
        for text in expressions({k: v for k, v in module.items() if k != "variable"}):
            code = code_of(text)
            bound = {name for pair in re.findall(r"\bfor\s+(\w+)(?:\s*,\s*(\w+))?\s+in\b", code) for name in pair}
            for ref in REFERENCE.findall(code):
                if ref.split(".")[0] not in BUILTIN_OBJECTS | bound:
                    found.add(ref)
    return found


def test_every_file_parses_and_every_reference_resolves(modules):
    assert set(modules) == {"main.tf", "outputs.tf", "variables.tf", "versions.tf"}
    names, used = declared(modules), references(modules)
    assert used, "no references found: the parser output changed shape"
    assert used <= names, f"undeclared: {sorted(used - names)}"
    variables = {n for n in names if n.startswith("var.")}
    assert variables <= used, f"declared but never used: {sorted(variables - used)}"


def test_every_required_variable_is_described_and_typed(modules):
    (variables,) = [m["variable"] for m in modules.values() if "variable" in m]
    for block in variables:
        for name, spec in block.items():
            assert unquote(spec.get("description", "")), f"variable {name} has no description"
            assert spec.get("type"), f"variable {name} has no type"


def resource(modules, rtype: str) -> dict:
    (found,) = [named for m in modules.values() for block in m.get("resource", []) for t, named in block.items()
                if unquote(t) == rtype]
    (body,) = found.values()
    return body


def test_the_bucket_is_versioned_encrypted_with_kms_and_never_public(modules):
    assert unquote(resource(modules, "aws_s3_bucket_versioning")["versioning_configuration"][0]["status"]) == "Enabled"
    sse = resource(modules, "aws_s3_bucket_server_side_encryption_configuration")["rule"][0]
    default = sse["apply_server_side_encryption_by_default"][0]
    assert unquote(default["sse_algorithm"]) == "aws:kms" and "aws_kms_key.shelfcast.arn" in default["kms_master_key_id"]
    block = resource(modules, "aws_s3_bucket_public_access_block")
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    assert resource(modules, "aws_kms_key")["enable_key_rotation"] is True


def test_each_role_policy_template_exists_and_gets_every_placeholder_it_uses(modules):
    policy = resource(modules, "aws_iam_role_policy")["policy"]
    given = set(re.findall(r"(\w+)\s*=", policy.split("templatefile(", 1)[1]))
    (roles,) = [unquote(b["roles"]) for m in modules.values() for b in m.get("locals", []) if "roles" in b]
    assert sorted(re.findall(r'\\?"(\w+)\\?"', roles)) == sorted(IAM_ROLES)
    for role in IAM_ROLES:
        template = (AWS / "iam" / f"{role}-policy.json").read_text()
        placeholders = set(re.findall(r"\$\{(\w+)\}", template))
        assert placeholders and placeholders <= given, (role, placeholders - given)
        rendered = template
        for name in placeholders:
            rendered = rendered.replace("${" + name + "}", f"arn:aws:test:::{name}")
        assert json.loads(rendered)["Statement"], role
