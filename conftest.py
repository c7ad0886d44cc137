"""The test command's order and notebook hygiene: every notebook cell it runs (nbval) must leave clean
output (no warning, no traceback, no stray return value, at most one progress bar; see
:mod:`fmlbd.hygiene`), and tests marked ``after_notebooks`` run last."""
from __future__ import annotations

import pytest

from fmlbd.hygiene import output_problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # set by nbval's cell item once the cell has run
    if outputs:
        problems = output_problems(outputs)
        if problems:
            pytest.fail(f"{item.name} of {item.path.name} leaves output a learner should not see: "
                        + "; ".join(problems), pytrace=False)
    return result


def pytest_configure(config):
    config.addinivalue_line("markers", "after_notebooks: runs after the notebooks, whose results cache it reads")
    config.addinivalue_line("markers", "slow: takes 20 s or more on 2 cores; -m 'not slow' leaves them out")


def pytest_collection_modifyitems(items):
    """Tests marked ``after_notebooks`` run last, once the notebooks have filled the results cache."""
    items.sort(key=lambda item: item.get_closest_marker("after_notebooks") is not None)
