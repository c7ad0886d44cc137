"""Shared fixtures: the real minimal Omniglot zips, the smoke profile's models trained once per session,
and small generated datasets in the upstream formats."""
from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmlbd import pipeline
from fmlbd.data import OMNIGLOT_MD5, OMNIGLOT_SOURCES, md5sum
from tests.helpers import smoke

REPO = Path(__file__).resolve().parents[1]
MINIMAL = OMNIGLOT_SOURCES["minimal"]


def _find_minimal_zips() -> Path:
    """Folder with the verified minimal zips: $FMLBD_OMNIGLOT_DIR, data/omniglot or ../shared/data/omniglot."""
    candidates = [os.environ.get("FMLBD_OMNIGLOT_DIR"), REPO / "data" / "omniglot", REPO.parent / "shared" / "data" / "omniglot"]
    for c in filter(None, candidates):
        c = Path(c)
        if all((c / z).is_file() and md5sum(c / z) == OMNIGLOT_MD5[z] for z in MINIMAL):
            return c
    raise FileNotFoundError(
        "the minimal Omniglot zips were not found (or fail their MD5): run `bash scripts/setup.sh`, "
        "or set FMLBD_OMNIGLOT_DIR to a folder holding them")


@pytest.fixture(scope="session")
def omniglot_root(tmp_path_factory) -> Path:
    """A data root whose omniglot/ links to the real minimal zips (decoded cache is private to the session)."""
    source = _find_minimal_zips()
    root = tmp_path_factory.mktemp("data")
    (root / "omniglot").mkdir()
    for z in MINIMAL:
        (root / "omniglot" / z).symlink_to(source / z)
    return root


@pytest.fixture(scope="session")
def smoke_models(omniglot_root, tmp_path_factory) -> Path:
    """A results folder holding the smoke profile's pre-trained models and attacks of cases (a) and (b)
    (:func:`tests.helpers.smoke`), trained once per test session."""
    results = tmp_path_factory.mktemp("smoke-models")
    for case in ("a", "b"):
        pipeline.attack(smoke(omniglot_root, results), case, progress=False)
    return results


@pytest.fixture
def smoke_cached(omniglot_root, tmp_path, smoke_models):
    """``smoke(omniglot_root, tmp_path)`` whose cache starts as a copy of :func:`smoke_models`' (the
    test may change its own copy): its pre-trained models and attacks load instead of training."""
    shutil.copytree(smoke_models / "cache", tmp_path / "cache")
    return smoke(omniglot_root, tmp_path)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def make_omniglot_zip(path: Path, stem: str, alphabets: dict[str, int], drawers: int = 4, size: int = 105) -> None:
    """Write a zip in the upstream layout ``stem/<Alphabet>/characterNN/<id>_<drawer>.png``.

    Character ``i`` of alphabet ``a`` is a white image with a black square whose
    position encodes (a's first letter, i), so tests can tell classes apart after resizing.
    """
    with zipfile.ZipFile(path, "w") as zf:
        for alphabet, characters in sorted(alphabets.items()):
            a_index = ord(alphabet[0]) % 8
            for c in range(1, characters + 1):
                for d in range(1, drawers + 1):
                    img = np.full((size, size), 255, np.uint8)
                    r, col = 10 * a_index, 10 * c
                    img[r:r + 20, col:col + 20] = 0
                    zf.writestr(f"{stem}/{alphabet}/character{c:02d}/{c:04d}_{d:02d}.png", png_bytes(img))


@pytest.fixture
def mini_imagenet_root(tmp_path) -> Path:
    """A tiny mini-ImageNet in the standard layout: 2/2/3 classes x 6 JPEGs of odd sizes, solid colours."""
    base = tmp_path / "mini-imagenet"
    (base / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {"train": ["n01", "n02"], "val": ["n03", "n04"], "test": ["n05", "n06", "n07"]}
    for split, wnids in splits.items():
        lines = ["filename,label"]
        for k, wnid in enumerate(wnids):
            for i in range(6):
                name = f"{wnid}{i:08d}.jpg"
                colour = (int(wnid[1:]) * 30, 40 * i, 100)
                img = Image.new("RGB", (int(rng.integers(60, 120)), int(rng.integers(60, 120))), colour)
                img.save(base / "images" / name, quality=95)
                lines.append(f"{name},{wnid}")
        (base / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return tmp_path
