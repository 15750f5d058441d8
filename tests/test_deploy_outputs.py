"""``edgeres config ...`` output folders: replaced only when an earlier config command made them (issue 14 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeres.cli import cli
from tests.deploy_fixtures import Bundles, deploy_bundles  # noqa: F401  (fixture)

KINDS = ("triton", "deepstream", "isaac-ros")


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("kind", KINDS)
def test_config_replaces_its_own_output_but_not_a_users_folder(kind: str, deploy_bundles: Bundles, tmp_path: Path) -> None:
    bundle = deploy_bundles["ref_fp32"]
    out = tmp_path / "out"
    assert run("config", kind, str(bundle), "-o", str(out)).exit_code == 0, f"config {kind} writes a new folder"
    again = run("config", kind, str(bundle), "-o", str(out))
    assert again.exit_code == 0, f"config {kind} replaces its own earlier output: {again.output}"

    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    refused = run("config", kind, str(bundle), "-o", str(users))
    assert refused.exit_code == 2 and "--force" in refused.stderr, f"a foreign folder is refused: {refused.stderr}"
    assert (users / "notes.txt").read_text() == "mine", "the user's file is untouched"
    assert run("config", kind, str(bundle), "-o", str(users), "--force").exit_code == 0, "--force replaces it"


@pytest.mark.parametrize("kind", KINDS)
def test_config_never_writes_over_the_bundle(kind: str, deploy_bundles: Bundles) -> None:
    bundle = deploy_bundles["ref_fp32"]
    before = sorted(p.name for p in bundle.iterdir())
    refused = run("config", kind, str(bundle), "-o", str(bundle), "--force")
    assert refused.exit_code == 2 and "holds an input" in refused.stderr, f"the bundle is an input: {refused.stderr}"
    assert sorted(p.name for p in bundle.iterdir()) == before, "the bundle is unchanged"
