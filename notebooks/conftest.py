"""Every notebook cell the test command runs (nbval) must also leave clean output: no warning, no
traceback, no stray return value, at most one progress bar (see :mod:`fmlbd.hygiene`)."""
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
