"""A local publish destination is written and cleaned only under itself, never through a link
planted there, and only if no other user could plant one (issue 36.7)."""

import json
import os

import pytest
from conftest import run_cli
from helpers import shell_model_run, write_yaml
from test_publish import publishing_doc

from rompy_tasks.core.errors import StageError
from rompy_tasks.postprocess.publish import PublishConfig


def test_publish_never_writes_through_a_link_planted_at_the_destination(tmp_path, prefect_api):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hs.png").write_text("another user's file")
    products = tmp_path / "products"
    products.mkdir()
    (products / "plots").symlink_to(victim)  # plots/hs.png would land in the victim's directory
    ran = run_cli("run", str(write_yaml(tmp_path / "p.yaml", publishing_doc(tmp_path, str(products)))),
                  env={"PREFECT_API_URL": prefect_api})  # fmt: skip
    assert ran.returncode == 1 and f"{products / 'plots'} is a link" in ran.stderr, ran.stderr[-3000:]
    assert (victim / "hs.png").read_text() == "another user's file" and not (products / "out.nc").exists()


def test_unpublish_never_deletes_through_a_planted_link_or_manifest(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.nc").write_text("another user's file")
    products = tmp_path / "products"
    products.mkdir()
    (products / "sub").symlink_to(victim)
    (products / "ours.nc").write_text("published")
    planted = {"files": [{"path": "sub/keep.nc"}, {"path": "../victim/keep.nc"}, {"path": "ours.nc"}]}
    (products / "manifest.json").write_text(json.dumps(planted))
    removed = PublishConfig(destination=str(products), files=["*"]).unpublish(str(products))
    assert removed == ["ours.nc"] and (victim / "keep.nc").read_text() == "another user's file"


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user's needs root")
@pytest.mark.parametrize("how", ["another user's", "world-writable"])
def test_a_destination_another_user_could_plant_links_in_is_refused(tmp_path, how):
    products = tmp_path / "products"
    products.mkdir()
    if how == "another user's":
        os.chown(products, 65534, 65534)
    else:
        os.chmod(products, 0o777)
    run = shell_model_run(tmp_path / "runs", ["true"])
    (run.staging_dir / "a.nc").write_bytes(b"a")
    with pytest.raises(StageError, match="who could plant links in it"):
        PublishConfig(destination=str(products), files=["*.nc"]).process(run)
    assert not list(products.iterdir())
