"""A rendered site of one run of the series: Sphinx + myst-nb + sphinx-book-theme (they build offline),
from the executed notebooks that :func:`fmlbd.reproduce.run_series` wrote, executing nothing again.

Pages: a landing page, every executed notebook (figures and rendered interpretations included,
papermill's injected parameters left out), the run's headline numbers, and the instructors',
paper-profile and Flower guides of a checkout. Each notebook page has Colab and Binder buttons for
that notebook in the repository (:func:`repository_url`). Solutions are not published.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from .series import NOTEBOOK_DIR

GUIDES = {"instructors.md": "For instructors", "paper_profile.md": "The paper profile", "flower.md": "On Flower"}


def repository_url() -> str:
    """The project's repository, from the one place it is written: ``[project.urls] Repository`` of
    pyproject.toml (installed as fmlbd's metadata)."""
    for entry in metadata.metadata("fmlbd").get_all("Project-URL") or []:
        name, _, url = entry.partition(",")
        if name.strip().lower() == "repository":
            return url.strip()
    raise LookupError("fmlbd's metadata has no Repository URL: reinstall it (pip install -e .)")


def colab_install_cell(url: str | None = None) -> str:
    """The first code cell of every notebook: installs fmlbd on Colab (which has torch), nothing elsewhere."""
    return ("# Colab only: install fmlbd (Colab has torch)\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install -q \"fmlbd @ git+{url or repository_url()}\"")


def _publishable(path: Path) -> dict:
    """An executed notebook without papermill's injected-parameters cell (absolute paths of the run)."""
    nb = json.loads(path.read_text())
    nb["cells"] = [c for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    return nb


def _landing(notebooks: list[Path], guides: list[str], run: dict) -> str:
    toc = "\n".join(f"notebooks/{nb.stem}" for nb in notebooks)
    guide_toc = "\n".join(Path(g).stem for g in guides)
    profile = run.get("parameters", {}).get("profile", "?")
    url = repository_url()
    return f"""# Backdoor attacks on federated meta-learning

A notebook series, and the small library behind it, that reproduces and goes beyond the study
*Backdoor Attacks on Federated Meta-Learning* (Chen, Golubchik, Paolieri): a single boosted update
plants a backdoor in a federated meta-learning model; benign rounds and fine-tuning do not remove
it; a local matching-network defense lowers it; robust server-side rules stop the protocol's
attack but must read every update, and adversaries who know the rule shape their updates to pass.

Every page below is an executed notebook of one run (profile `{profile}`), with its figures and
the interpretations it rendered from its own numbers; the headline numbers of the whole run, with
its parameters and package versions, are on the last page. Each notebook page has buttons to
open it in Colab or Binder and run it yourself.

## Run it

```
git clone {url} && cd {url.rstrip('/').split('/')[-1]}
bash scripts/setup.sh                # venv, fmlbd, minimal Omniglot
.venv/bin/python -m fmlbd reproduce  # the series, headless, and this site
```

or `pip install "fmlbd @ git+{url}"`, then `python -m fmlbd notebooks DIR` writes the
notebooks to DIR, to open anywhere.

```{{toctree}}
:maxdepth: 1
:caption: The series

{toc}
```

```{{toctree}}
:maxdepth: 1
:caption: This run

summary
```

```{{toctree}}
:maxdepth: 1
:caption: Guides

{guide_toc}
```
"""


def _conf(url: str) -> str:
    return f'''project = "fmlbd"
extensions = ["myst_nb"]
nb_execution_mode = "off"          # the notebooks were executed by the run; never again here
myst_enable_extensions = ["dollarmath"]
exclude_patterns = ["_build"]
suppress_warnings = ["misc.highlighting_failure", "myst.header", "mystnb.unknown_mime_type"]
html_theme = "sphinx_book_theme"
html_title = "fmlbd: backdoors in federated meta-learning"
html_favicon = "favicon.png"
html_context = {{"default_mode": "light"}}
html_theme_options = {{
    "repository_url": "{url}", "repository_branch": "main", "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {{"colab_url": "https://colab.research.google.com",
                       "binderhub_url": "https://mybinder.org", "notebook_interface": "jupyterlab"}},
}}
'''


def _favicon(path: Path) -> None:
    """A 32 x 32 icon: the backdoor key's four dots (red) on a white character cell."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (32, 32), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 31, 31), outline="black", width=2)
    for x, y in ((8, 8), (20, 8), (8, 20), (20, 20)):
        draw.ellipse((x, y, x + 5, y + 5), fill="#d62728")
    image.save(path)


def build_site(output_dir: str | Path, quiet: bool = True) -> Path:
    """Build ``<output_dir>/site`` (HTML, ``index.html`` first) from ``<output_dir>/notebooks`` and
    ``summary.md`` of a finished :func:`~fmlbd.reproduce.run_series`; returns the site folder."""
    from sphinx.cmd.build import build_main

    out = Path(output_dir)
    executed = sorted((out / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not executed or not (out / "summary.md").is_file():
        raise FileNotFoundError(f"{out} holds no finished run (notebooks/*.ipynb and summary.md): run "
                                f"`python -m fmlbd reproduce --output {out}` first")
    run = json.loads((out / "summary.meta.json").read_text()) if (out / "summary.meta.json").is_file() else {}
    docs = NOTEBOOK_DIR.parent / "docs"
    guides = [g for g in GUIDES if (docs / g).is_file()]
    site = out / "site"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        (src / "notebooks").mkdir()
        for nb in executed:
            (src / "notebooks" / nb.name).write_text(json.dumps(_publishable(nb)))
        for g in guides:
            shutil.copyfile(docs / g, src / g)
        shutil.copyfile(out / "summary.md", src / "summary.md")
        (src / "index.md").write_text(_landing(executed, guides, run))
        (src / "conf.py").write_text(_conf(repository_url()))
        _favicon(src / "favicon.png")
        shutil.rmtree(site, ignore_errors=True)
        code = build_main(["-b", "html", "-q" if quiet else "-v", "-d", str(src / "_doctrees"), str(src), str(site)])
    if code:
        raise RuntimeError(f"the site build failed (sphinx exit code {code}); see its messages above")
    return site
