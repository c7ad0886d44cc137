import shutil
import zipfile

import numpy as np
import pytest
import torch

from fmlbd.data import (OMNIGLOT_MD5, DatasetError, load_mini_imagenet, load_omniglot, omniglot_zip_paths,
                        read_omniglot_zip)
from tests.conftest import make_omniglot_zip


def test_minimal_omniglot_loads_all_characters_once(omniglot_root):
    pool = load_omniglot(omniglot_root, "minimal", 28)
    # 136 + 156 characters, Greek (24) and Latin (26) are in both zips and kept once
    assert pool.images.shape == (242, 20, 1, 28, 28)
    assert pool.images.dtype == torch.uint8
    assert len(set(pool.groups)) == 8
    assert len(set(pool.names)) == 242
    assert pool.groups.count("Greek") == 24 and pool.groups.count("Latin") == 26
    # inverted: ink is bright, background dark, so the mean is far below mid-grey
    assert pool.images.float().mean() < 60


def test_decoded_cache_is_reused(omniglot_root):
    first = load_omniglot(omniglot_root, "minimal", 28)
    assert (omniglot_root / "omniglot" / "processed" / "minimal-28px.pt").is_file()
    second = load_omniglot(omniglot_root, "minimal", 28)
    assert torch.equal(first.images, second.images) and first.names == second.names


def test_a_decoded_cache_of_blank_images_is_decoded_again_with_a_warning(omniglot_root):
    real = load_omniglot(omniglot_root, "minimal", 28)
    cache = omniglot_root / "omniglot" / "processed" / "minimal-28px.pt"
    torch.save({"images": torch.zeros_like(real.images), "names": list(real.names), "groups": list(real.groups)}, cache)
    with pytest.warns(UserWarning, match=r"minimal-28px.pt is unreadable \(ValueError: it holds blank images\)"):
        again = load_omniglot(omniglot_root, "minimal", 28)
    assert torch.equal(again.images, real.images)


def test_md5_mismatch_is_an_error_naming_the_fix(tmp_path, omniglot_root):
    (tmp_path / "omniglot").mkdir()
    for name in ("images_background_small1.zip", "images_background_small2.zip"):
        shutil.copy(omniglot_root / "omniglot" / name, tmp_path / "omniglot" / name)
    with open(tmp_path / "omniglot" / "images_background_small2.zip", "r+b") as f:
        f.seek(1000)
        f.write(b"corrupted")
    with pytest.raises(DatasetError, match="MD5.*fmlbd download"):
        load_omniglot(tmp_path, "minimal")
    assert not (tmp_path / "omniglot" / "processed").exists()


def test_missing_zip_error_names_download_command(tmp_path):
    with pytest.raises(DatasetError, match="python -m fmlbd download omniglot --source full"):
        omniglot_zip_paths(tmp_path, "full")


def test_unknown_source_is_rejected(tmp_path):
    with pytest.raises(DatasetError, match="unknown Omniglot source"):
        omniglot_zip_paths(tmp_path, "tiny")


def test_full_omniglot_layout_is_read_from_generated_zips(tmp_path, monkeypatch):
    (tmp_path / "omniglot").mkdir()
    bg, ev = tmp_path / "omniglot" / "images_background.zip", tmp_path / "omniglot" / "images_evaluation.zip"
    make_omniglot_zip(bg, "images_background", {"Alpha": 3, "Beta": 2})
    make_omniglot_zip(ev, "images_evaluation", {"Gamma": 4})
    from fmlbd import data

    monkeypatch.setitem(data.OMNIGLOT_MD5, "images_background.zip", data.md5sum(bg))
    monkeypatch.setitem(data.OMNIGLOT_MD5, "images_evaluation.zip", data.md5sum(ev))
    pool = load_omniglot(tmp_path, "full", 28)
    assert pool.images.shape == (9, 4, 1, 28, 28)
    assert pool.classes_in(["Gamma"]) == [5, 6, 7, 8]
    assert data.omniglot_evaluation_alphabets(tmp_path) == ("Gamma",)
    # each character's square lands somewhere else: classes are distinguishable after resizing
    flat = pool.images[:, 0].flatten(1).float()
    assert torch.cdist(flat, flat).fill_diagonal_(1e9).min() > 0


def test_full_md5_constants_are_torchvisions():
    from torchvision.datasets import Omniglot

    assert OMNIGLOT_MD5["images_background.zip"] == Omniglot.zips_md5["images_background"]
    assert OMNIGLOT_MD5["images_evaluation.zip"] == Omniglot.zips_md5["images_evaluation"]


def test_unreadable_zip_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DatasetError, match="not a readable zip"):
        read_omniglot_zip(bad, 28)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(DatasetError, match="no <Alphabet>"):
        read_omniglot_zip(empty, 28)


def test_mini_imagenet_loader_on_fixture(mini_imagenet_root):
    pool = load_mini_imagenet(mini_imagenet_root, 84)
    assert pool.images.shape == (7, 6, 3, 84, 84)
    assert pool.groups.count("train") == 2 and pool.groups.count("val") == 2 and pool.groups.count("test") == 3
    assert pool.names[0] == "test/n05"
    # solid colours survive decode + resize (JPEG tolerance): class n05, image 2 = (150, 80, 100)
    colour = pool.images[0, 2].float().mean((1, 2))
    assert np.allclose(colour.numpy(), [150, 80, 100], atol=4)


def test_mini_imagenet_missing_parts_are_named(mini_imagenet_root):
    (mini_imagenet_root / "mini-imagenet" / "val.csv").unlink()
    with pytest.raises(DatasetError, match="val.csv"):
        load_mini_imagenet(mini_imagenet_root)


def test_mini_imagenet_missing_image_is_named(mini_imagenet_root):
    (mini_imagenet_root / "mini-imagenet" / "images" / "n0300000003.jpg").unlink()
    with pytest.raises(DatasetError, match="n0300000003.jpg"):
        load_mini_imagenet(mini_imagenet_root)


@pytest.mark.parametrize("content", [b"", b"not a jpeg", None], ids=["empty", "not an image", "cut in half"])
def test_a_corrupt_mini_imagenet_image_is_named(mini_imagenet_root, content):
    image = mini_imagenet_root / "mini-imagenet" / "images" / "n0300000003.jpg"
    image.write_bytes(image.read_bytes()[: len(image.read_bytes()) // 2] if content is None else content)
    with pytest.raises(DatasetError, match=r"n0300000003.jpg is not a readable image \(.*\): replace it"):
        load_mini_imagenet(mini_imagenet_root)


def test_a_full_zip_is_accepted_with_upstreams_or_the_rebuilds_md5_only(tmp_path, monkeypatch):
    from fmlbd import data

    (tmp_path / "omniglot").mkdir()
    bg, ev = tmp_path / "omniglot" / "images_background.zip", tmp_path / "omniglot" / "images_evaluation.zip"
    make_omniglot_zip(bg, "images_background", {"Alpha": 2})
    make_omniglot_zip(ev, "images_evaluation", {"Gamma": 2})
    monkeypatch.setitem(data.OMNIGLOT_REBUILT_MD5, "images_background.zip", data.md5sum(bg))
    monkeypatch.setitem(data.OMNIGLOT_REBUILT_MD5, "images_evaluation.zip", data.md5sum(ev))
    assert omniglot_zip_paths(tmp_path, "full") == [bg, ev]
    monkeypatch.setitem(data.OMNIGLOT_REBUILT_MD5, "images_evaluation.zip", "0" * 32)
    with pytest.raises(DatasetError, match=f"expected {OMNIGLOT_MD5['images_evaluation.zip']} or 0000"):
        omniglot_zip_paths(tmp_path, "full")
