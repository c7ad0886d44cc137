"""Where notebooks find their data and results, the notebooks command, and setup's choice of torch build."""
import importlib.util
from pathlib import Path

import pytest

from fmlbd import cli, paths
from fmlbd.data import DatasetError
from fmlbd.series import NOTEBOOK_DIR, series, write_notebooks

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setup_takes_the_cpu_build_on_linux_without_a_driver_when_its_index_answers():
    choose = load_script("torch_source").choose

    def never():
        raise AssertionError("the index was probed although the answer did not depend on it")

    assert choose("", "Linux", False, lambda: True)[0] == "cpu"
    assert choose("auto", "Linux", False, lambda: False)[0] == "registry"   # the fallback
    assert choose("", "Linux", True, never)[0] == "registry"                 # a GPU: CUDA wheels
    assert choose("", "Darwin", False, never)[0] == "registry"
    assert choose("registry", "Linux", False, never) == ("registry", "FMLBD_TORCH=registry")
    assert choose(" CPU ", "Linux", True, never) == ("cpu", "FMLBD_TORCH=cpu")
    with pytest.raises(ValueError, match="FMLBD_TORCH='gpu'"):
        choose("gpu", "Linux", False, never)


def test_folders_given_are_kept_and_none_are_found(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "ensure_omniglot", lambda root, profile: [])
    for name in ("FMLBD_DATA", "FMLBD_RESULTS", "FMLBD_OUTPUTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT / "notebooks" / "solutions")                      # in the checkout
    assert paths.folders(profile="smoke") == (ROOT / "data", ROOT / "results", ROOT / "outputs" / "smoke")
    assert paths.folders("d", "r", "o") == (Path("d"), Path("r"), Path("o"))
    monkeypatch.chdir(tmp_path)                                              # outside any checkout
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.checkout() is None
    assert paths.folders() == (tmp_path / "xdg/fmlbd/data", tmp_path / "xdg/fmlbd/results", Path("outputs/quick"))
    monkeypatch.setenv("FMLBD_DATA", "/data/omniglot-here")
    monkeypatch.setenv("FMLBD_RESULTS", "/shared/cache")
    assert paths.folders()[:2] == (Path("/data/omniglot-here"), Path("/shared/cache"))


def test_a_missing_dataset_that_cannot_be_downloaded_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    def offline(root, source):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(paths, "download_omniglot", offline)
    with pytest.raises(DatasetError, match=r"could not be downloaded \(OSError: Network is unreachable\); copy "
                                           r"its zips there .* or set data_root \(or FMLBD_DATA\)") as err:
        paths.ensure_omniglot(tmp_path, "quick")
    assert "\n" not in str(err.value)


def test_a_present_dataset_is_md5_checked_not_downloaded(omniglot_root, monkeypatch):
    monkeypatch.setattr(paths, "download_omniglot", lambda root, source: pytest.fail("downloaded"))
    assert len(paths.ensure_omniglot(omniglot_root, "quick")) == 2


def test_the_notebooks_command_writes_the_series_and_keeps_a_learners_copy(tmp_path, capsys):
    assert cli.main(["notebooks", str(tmp_path / "course")]) == 0
    written = sorted(p.relative_to(tmp_path / "course").as_posix() for p in (tmp_path / "course").rglob("*.ipynb"))
    assert written == sorted([p.name for p in series()] + [f"solutions/{p.name}" for p in
                                                            (NOTEBOOK_DIR / "solutions").glob("*.ipynb")])
    assert len(written) == 16
    first = tmp_path / "course" / "00_primer.ipynb"
    first.write_text("a learner's answers")
    assert cli.main(["notebooks", str(tmp_path / "course")]) == 2             # refused, one line
    assert "already exist" in capsys.readouterr().err and first.read_text() == "a learner's answers"
    write_notebooks(tmp_path / "course", overwrite=True)
    assert first.read_text() != "a learner's answers"
