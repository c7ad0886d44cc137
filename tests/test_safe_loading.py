"""Untrusted files never run code: every model and cache file loads with ``weights_only=True``, a
crafted pickle is refused with a one-line message naming the file, and a shipped model is checked
against its SHA-256 before it is loaded."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from fmlbd import data, pipeline, shipped as shipping
from fmlbd.builders import build_scenario
from fmlbd.config import load_config
from fmlbd.errors import CacheError
from fmlbd.results import load_torch
from tests.helpers import smoke


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": Payload(marker)}, path)


def refused(load, path, marker):
    with pytest.raises(CacheError) as err:
        load()
    message = str(err.value)
    assert str(path) in message and "not loaded" in message and "\n" not in message, message
    assert not marker.exists()


def test_the_payload_runs_code_when_loaded_the_unsafe_way(tmp_path):
    """The crafted file is real: ``weights_only=False`` runs it (so the refusals below mean something)."""
    marker = tmp_path / "ran"
    plant(tmp_path / "evil.pt", marker)
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_crafted_cache_files_are_refused_at_every_stage(omniglot_root, tmp_path):
    cfg = smoke(omniglot_root, tmp_path / "results")
    marker = tmp_path / "ran"
    path = pipeline.pretrain_path(cfg, build_scenario(cfg))
    for name in ("checkpoint.pt", "final.pt"):  # a resumed and a finished pre-training
        plant(path / name, marker)
        refused(lambda: pipeline.pretrain(cfg, progress=False), path / name, marker)
    shutil.rmtree(path)
    pipeline.pretrain(cfg, progress=False)
    attacked = pipeline.attack_path(cfg) / "attacked.pt"
    plant(attacked, marker)
    refused(lambda: pipeline.attack(cfg, progress=False), attacked, marker)
    attacked.unlink()
    pipeline.attack(cfg, progress=False)
    dampening = pipeline.dampening_path(cfg, cfg.case)
    plant(dampening, marker)
    refused(lambda: pipeline.dampening_snapshots(cfg, cfg.case, progress=False), dampening, marker)
    refused(lambda: load_torch(dampening), dampening, marker)


def test_a_crafted_decoded_image_cache_is_decoded_again_never_run(omniglot_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(omniglot_root, root)
    cache = root / "omniglot" / "processed" / "minimal-28px.pt"
    marker = tmp_path / "ran"
    plant(cache, marker)
    with pytest.warns(UserWarning, match="unreadable"):
        pool = data.load_omniglot(root)
    assert len(pool.names) > 0 and not marker.exists()


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """The shipped models in a folder of the test's own, with their manifest."""
    folder = tmp_path / "pretrained"
    shutil.copytree(shipping.SHIPPED, folder)
    monkeypatch.setattr(shipping, "SHIPPED", folder)
    monkeypatch.setattr(shipping, "SHIPPED_SUMS", folder / "SHA256SUMS")
    return folder


def test_a_shipped_model_is_loaded_only_with_its_listed_sha256(omniglot_root, tmp_path, shipped_copy):
    cfg = load_config("quick", {"data.root": str(omniglot_root), "results_dir": str(tmp_path / "results")})
    shipped = shipping.shipped_model(cfg, build_scenario(cfg, "a"))
    assert shipped.parent == shipped_copy
    assert pipeline.pretrain(cfg, "a", progress=False).state["version"] == cfg.federation.rounds  # as shipped
    raw = bytearray(shipped.read_bytes())
    raw[len(raw) // 2] ^= 1  # one bit changed
    shipped.write_bytes(bytes(raw))
    marker = tmp_path / "ran"
    refused(lambda: pipeline.pretrain(cfg, "a", progress=False), shipped, marker)
    plant(shipped, marker)  # a foreign file whose digest an attacker also wrote into the manifest
    shipping.write_shipped_sums()
    refused(lambda: pipeline.pretrain(cfg, "a", progress=False), shipped, marker)
