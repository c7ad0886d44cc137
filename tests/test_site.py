"""The rendered site of a run, checked in a real browser (Debian's Chromium, headless, via Selenium):
every page of the site built from a smoke-profile run (notebooks 00-02) loads without console errors, every figure
loads, every internal link resolves, and each notebook page's launch buttons open that notebook.

Needs chromium, chromium-driver and the site extra; skipped without them unless FMLBD_REQUIRE_BROWSER=1
(CI sets it and installs them, so there it fails instead).
"""
import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from fmlbd.series import series

REQUIRED = os.environ.get("FMLBD_REQUIRE_BROWSER") == "1"
BROWSER, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _missing() -> str:
    try:
        import selenium  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed (pip install -e \".[site]\" selenium)"
    return "" if BROWSER and DRIVER else "chromium and chromium-driver are not installed (apt-get install ...)"


if _missing():
    if REQUIRED:
        pytest.fail(f"FMLBD_REQUIRE_BROWSER=1 but {_missing()}", pytrace=False)
    pytest.skip(_missing(), allow_module_level=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory, omniglot_root):
    """A smoke-profile run of notebooks 00-02 (or the finished run in FMLBD_SITE_RUN) and its site; the
    build's seconds. Three notebooks, not eight, to keep the test command's time: every notebook page
    comes from the same template, and `python -m fmlbd reproduce` builds the whole series' site."""
    from fmlbd.reproduce import run_series
    from fmlbd.site import build_site

    out = Path(os.environ.get("FMLBD_SITE_RUN") or tmp_path_factory.mktemp("run"))
    runs = None if os.environ.get("FMLBD_SITE_RUN") else run_series(
        out, {"profile": "smoke", "seed": 0, "dataset": "omniglot", "data_root": str(omniglot_root),
              "results_dir": str(out / "results"), "overrides": {}}, SITE_NOTEBOOKS, progress=False)
    assert runs is None or list(runs["status"]) == ["ok"] * len(SITE_NOTEBOOKS), runs.to_string()
    start = time.perf_counter()
    built = build_site(out)
    return built, time.perf_counter() - start


@pytest.fixture(scope="module")
def browser(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site[0]))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver, f"http://127.0.0.1:{server.server_address[1]}/"
    driver.quit()
    server.shutdown()


#: the notebooks whose smoke run the site is built from
SITE_NOTEBOOKS = series()[:3]


def pages(root: Path) -> list[str]:
    """The site's pages (not the theme's templates under _static, nor the generated index and search)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                  if p.name not in ("genindex.html", "search.html") and not p.relative_to(root).parts[0].startswith("_"))


@pytest.mark.slow
def test_the_site_builds_in_under_two_minutes_with_every_page(site):
    root, seconds = site
    assert seconds <= 120, seconds
    run = sorted(p.stem for p in (root.parent / "notebooks").glob("*.ipynb"))
    assert os.environ.get("FMLBD_SITE_RUN") or run == [nb.stem for nb in SITE_NOTEBOOKS]
    expected = {"index.html", "summary.html", "instructors.html", "paper_profile.html", "flower.html"} | {
        f"notebooks/{name}.html" for name in run}
    assert expected <= set(pages(root))
    assert not list(root.rglob("*solutions*")), "solutions are not for the learners' pages"


def test_every_page_loads_in_a_real_browser_with_its_figures_links_and_launch_buttons(site, browser):
    root = site[0]
    driver, base = browser
    for page in pages(root):
        driver.get(base + page)
        errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], (page, errors)
        widths = driver.execute_script("return Array.from(document.images).map(i => [i.src, i.naturalWidth])")
        assert all(w > 0 for _, w in widths), (page, [s for s, w in widths if w == 0])
        hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        for href in hrefs:
            url = urlparse(href)
            if url.netloc == urlparse(base).netloc:
                target = root / unquote(url.path).lstrip("/")
                assert target.is_file() or (target / "index.html").is_file(), (page, href)
        if page.startswith("notebooks/"):
            notebook = f"notebooks/{Path(page).stem}.ipynb"
            colab = [h for h in hrefs if "colab.research.google.com" in h]
            binder = [h for h in hrefs if "mybinder.org" in h]
            assert colab and all(h.endswith("/blob/main/" + notebook) for h in colab), (page, colab)
            assert binder and all(h.endswith(notebook) for h in binder), (page, binder)
    shots = root.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    for page in ("index.html", "notebooks/02_one_shot_attack.html"):
        driver.get(urljoin(base, page))
        driver.save_screenshot(str(shots / (Path(page).stem + ".png")))
        assert (shots / (Path(page).stem + ".png")).stat().st_size > 10_000
    if os.environ.get("FMLBD_SITE_SCREENSHOTS"):  # keep them where a person can look at them
        shutil.copytree(shots, os.environ["FMLBD_SITE_SCREENSHOTS"], dirs_exist_ok=True)
