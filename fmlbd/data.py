"""Datasets as in-memory class pools: Omniglot (minimal or full zips) and mini-ImageNet.

A :class:`ClassPool` holds every image of every class as one ``uint8`` tensor of
shape ``[classes, images_per_class, channels, H, W]``; episodes (``episodes.py``)
index into it. Loading decodes the original files once and caches the decoded
tensor under ``<root>/<dataset>/processed/``.

On-disk layouts (see ``data/README.md``):

- Omniglot: the upstream zips in ``<root>/omniglot/`` (or torchvision's
  ``<root>/omniglot-py/``), each holding ``<zipstem>/<Alphabet>/characterNN/*.png``.
- mini-ImageNet: ``<root>/mini-imagenet/images/*.jpg`` plus ``train.csv``,
  ``val.csv`` and ``test.csv`` with a ``filename,label`` header (Ravi & Larochelle split).
"""
from __future__ import annotations

import csv
import hashlib
import io
import warnings
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from .errors import DatasetError
from .results import atomic_torch_save

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python"
#: MD5 of every Omniglot zip we accept (the full ones are torchvision's constants).
OMNIGLOT_MD5 = {
    "images_background_small1.zip": "e704a628b5459e08445c13499850abc4",
    "images_background_small2.zip": "b75a71a51d3b13f821f212756fe481fd",
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
}
#: MD5 of the pixel-identical rebuild of the full zips (other PNG bytes; see data/README.md), also accepted
OMNIGLOT_REBUILT_MD5 = {
    "images_background.zip": "fdfc10abb49a34afbf68586edba82b85",
    "images_evaluation.zip": "fc199b0ab9da460d3bf58a7251ab6802",
}
OMNIGLOT_SOURCES = {
    "minimal": ("images_background_small1.zip", "images_background_small2.zip"),
    "full": ("images_background.zip", "images_evaluation.zip"),
}
MINI_IMAGENET_SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClassPool:
    """Images grouped by class.

    images: uint8 ``[C, M, ch, H, W]`` (M images per class, pixel values 0-255,
    Omniglot inverted so that ink is bright). names: ``C`` class names. groups:
    ``C`` group names (Omniglot alphabet, mini-ImageNet split) used for class splits.
    """

    images: torch.Tensor
    names: tuple[str, ...]
    groups: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 5:
            raise ValueError("ClassPool.images must be uint8 [classes, images, ch, H, W]")
        if not len(self.names) == len(self.groups) == self.images.shape[0]:
            raise ValueError("ClassPool needs one name and one group per class")

    @property
    def num_classes(self) -> int:
        return self.images.shape[0]

    @property
    def images_per_class(self) -> int:
        return self.images.shape[1]

    def classes_in(self, groups) -> list[int]:
        """Indices of the classes whose group is in ``groups``."""
        wanted = set(groups)
        return [i for i, g in enumerate(self.groups) if g in wanted]


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def accepted_md5(name: str) -> tuple[str, ...]:
    """The MD5s an Omniglot zip called ``name`` may have: upstream's, and the rebuild's for the full zips."""
    return (OMNIGLOT_MD5[name],) + ((OMNIGLOT_REBUILT_MD5[name],) if name in OMNIGLOT_REBUILT_MD5 else ())


def verify_md5(path: Path, expected: str | tuple[str, ...]) -> None:
    """Raise :class:`DatasetError` unless ``path`` has MD5 ``expected`` (or one of them)."""
    got = md5sum(path)
    expected = (expected,) if isinstance(expected, str) else expected
    if got not in expected:
        raise DatasetError(
            f"{path} has MD5 {got}, expected {' or '.join(expected)}: the file is corrupt, truncated or not "
            f"the upstream release. Delete it and fetch it again with "
            f"`python -m fmlbd download omniglot --root <data root>` (or copy the verified file)."
        )


def omniglot_zip_paths(root: str | Path, source: str = "minimal") -> list[Path]:
    """Locate and MD5-verify the zips of an Omniglot ``source`` ("minimal" or "full")."""
    if source not in OMNIGLOT_SOURCES:
        raise DatasetError(f"unknown Omniglot source {source!r}; choose one of {sorted(OMNIGLOT_SOURCES)}")
    root = Path(root)
    paths = []
    for name in OMNIGLOT_SOURCES[source]:
        candidates = [root / "omniglot" / name, root / "omniglot-py" / name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DatasetError(
                f"Omniglot file {name} not found in {candidates[0].parent} (or {candidates[1].parent}). "
                f"Run `python -m fmlbd download omniglot --source {source} --root {root}` on a machine "
                f"with internet, or copy the zips there (see data/README.md)."
            )
        verify_md5(found, accepted_md5(name))
        paths.append(found)
    return paths


def download_omniglot(root: str | Path, source: str = "minimal") -> list[Path]:
    """Download (if absent) and MD5-verify the Omniglot zips of ``source`` into ``<root>/omniglot``."""
    from torchvision.datasets.utils import download_url

    target = Path(root) / "omniglot"
    for name in OMNIGLOT_SOURCES[source]:
        if not (target / name).is_file():
            download_url(f"{OMNIGLOT_URL}/{name}", str(target), filename=name, md5=OMNIGLOT_MD5[name])
    return omniglot_zip_paths(root, source)


def _decode(data: bytes, mode: str, size: int, name: str, fix: str) -> np.ndarray:
    """Decode image bytes to uint8 ``[ch, size, size]`` (antialiased resize); :class:`DatasetError`
    naming the image ``name`` and the ``fix`` if they are not a readable image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert(mode)
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{name} is not a readable image ({type(err).__name__}: {err}): {fix}") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def read_omniglot_zip(path: Path, image_size: int) -> dict[tuple[str, str], list[np.ndarray]]:
    """Decode one Omniglot zip: ``{(alphabet, character): [uint8 [1, size, size], ...]}``.

    Images are inverted (ink = 255) and sorted by file name (drawer order).
    """
    classes: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = defaultdict(list)
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                parts = PurePosixPath(info.filename).parts
                if info.is_dir() or not info.filename.endswith(".png") or len(parts) < 4:
                    continue
                alphabet, character, fname = parts[-3], parts[-2], parts[-1]
                img = 255 - _decode(zf.read(info), "L", image_size, f"{info.filename} in {path}",
                                    "delete the zip and download it again")
                classes[(alphabet, character)].append((fname, img))
    except zipfile.BadZipFile as err:
        raise DatasetError(f"{path} is not a readable zip ({err}): delete it and download it again.") from err
    if not classes:
        raise DatasetError(f"{path} holds no <Alphabet>/<character>/*.png images: is it an Omniglot zip?")
    return {key: [img for _, img in sorted(items)] for key, items in classes.items()}


def _stack_pool(classes: dict[tuple[str, str], list[np.ndarray]]) -> ClassPool:
    """Stack ``{(group, name): images}`` into a pool, keeping min(images) per class."""
    keys = sorted(classes)
    counts = {len(classes[k]) for k in keys}
    per_class = min(counts)
    if len(counts) > 1:
        warnings.warn(f"classes have {sorted(counts)} images; keeping the first {per_class} of each")
    images = torch.from_numpy(np.stack([np.stack(classes[k][:per_class]) for k in keys]))
    return ClassPool(images=images, names=tuple(f"{g}/{n}" for g, n in keys), groups=tuple(g for g, _ in keys))


def _cached(cache_files: list[Path], build) -> ClassPool:
    """The pool saved in the first readable of ``cache_files``, else ``build()`` it and save it in the
    first writable place (none writable, e.g. a read-only data folder: kept in memory only).
    A cache file that cannot be read is rebuilt, with a warning that names it."""
    for cache_file in cache_files:
        if cache_file.is_file():
            try:
                saved = torch.load(cache_file, weights_only=True)
                images = saved["images"]
                if images.dtype != torch.uint8 or images.ndim != 5 or len(saved["names"]) != len(images):
                    raise ValueError("not a [classes, images, channels, height, width] uint8 tensor per name")
                if bool((images.flatten(2).amax(-1) == 0).any()):
                    raise ValueError("it holds blank images")
                return ClassPool(images=images, names=tuple(saved["names"]), groups=tuple(saved["groups"]))
            except Exception as err:
                warnings.warn(f"{cache_file} is unreadable ({type(err).__name__}: {err}); decoding the images again")
    pool = build()
    for cache_file in cache_files:
        try:
            atomic_torch_save({"images": pool.images, "names": list(pool.names), "groups": list(pool.groups)},
                              cache_file)
            break
        except OSError:
            continue
    return pool


def load_omniglot(root: str | Path, source: str = "minimal", image_size: int = 28,
                  cache_dir: str | Path | None = None) -> ClassPool:
    """All characters of an Omniglot ``source`` as a pool (group = alphabet).

    Characters that appear in several zips (Greek and Latin in the two minimal
    zips, byte-identical upstream) are kept once. The decoded images are cached in
    ``<root>/omniglot/processed/``, or in ``cache_dir`` when the data folder is read-only.
    """
    paths = omniglot_zip_paths(root, source)

    def build() -> ClassPool:
        merged: dict[tuple[str, str], list[np.ndarray]] = {}
        for path in paths:
            for key, imgs in read_omniglot_zip(path, image_size).items():
                merged.setdefault(key, imgs)
        return _stack_pool(merged)

    name = f"{source}-{image_size}px.pt"
    return _cached(_cache_files(Path(root) / "omniglot" / "processed", cache_dir, name), build)


def omniglot_evaluation_alphabets(root: str | Path) -> tuple[str, ...]:
    """Alphabets of the full Omniglot evaluation zip (the standard held-out alphabets)."""
    path = omniglot_zip_paths(root, "full")[1]
    with zipfile.ZipFile(path) as zf:
        names = {PurePosixPath(n).parts[1] for n in zf.namelist() if len(PurePosixPath(n).parts) > 2}
    return tuple(sorted(names))


def _cache_files(beside_data: Path, fallback: str | Path | None, name: str) -> list[Path]:
    return [beside_data / name] + ([Path(fallback) / name] if fallback is not None else [])


def load_mini_imagenet(root: str | Path, image_size: int = 84, cache_dir: str | Path | None = None) -> ClassPool:
    """mini-ImageNet from ``<root>/mini-imagenet`` (group = split name: train/val/test); decoded
    images cached as for :func:`load_omniglot`."""
    base = Path(root) / "mini-imagenet"
    missing = [p for p in [base / "images"] + [base / f"{s}.csv" for s in MINI_IMAGENET_SPLITS] if not p.exists()]
    if missing:
        raise DatasetError(
            f"mini-ImageNet incomplete: missing {', '.join(map(str, missing))}. Place the images/ folder and "
            f"the train/val/test CSV files (Ravi & Larochelle split) there, as data/README.md describes."
        )

    def build() -> ClassPool:
        classes: dict[tuple[str, str], list[np.ndarray]] = {}
        for split in MINI_IMAGENET_SPLITS:
            with open(base / f"{split}.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            if rows and not {"filename", "label"} <= set(rows[0]):
                raise DatasetError(f"{base / f'{split}.csv'} needs a 'filename,label' header")
            for row in sorted(rows, key=lambda r: r["filename"]):
                image_path = base / "images" / row["filename"]
                if not image_path.is_file():
                    raise DatasetError(f"{image_path} listed in {split}.csv does not exist")
                img = _decode(image_path.read_bytes(), "RGB", image_size, str(image_path),
                              "replace it with the dataset's file")
                classes.setdefault((split, row["label"]), []).append(img)
        return _stack_pool(classes)

    return _cached(_cache_files(base / "processed", cache_dir, f"mini-imagenet-{image_size}px.pt"), build)
