"""The learner's answers to the notebooks' exercises, parsed by type.

``True`` or "yes", "Lower" or "lower", 0.2 or "1/5" or "20%": each parser takes the forms a learner
would write and returns the value, or raises :class:`WrongForm` with a one-line message naming the
form to use (never the truth value of a string, never a traceback in the notebook).
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


class WrongForm(ValueError):
    """An answer of the wrong type or form: the check says "Not yet" with this message, never a traceback."""


def yes_no(answer) -> bool:
    """``True`` / ``False``, or the words yes / no / true / false in any case."""
    if isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    words = {"yes": True, "true": True, "no": False, "false": False}
    if isinstance(answer, str) and answer.strip().lower() in words:
        return words[answer.strip().lower()]
    raise WrongForm(f"Answer True or False (or \"yes\" / \"no\"), not {answer!r}.")


def choice(answer, options: tuple[str, ...]) -> str:
    """One of ``options`` (lower-case words), in any case, surrounding spaces ignored."""
    words = " ".join(answer.lower().split()) if isinstance(answer, str) else None
    if words in options:
        return words
    raise WrongForm(f"Answer with one of {', '.join(repr(o) for o in options)}, not {answer!r}.")


def number(answer) -> float:
    """A finite number: an int or float, or a string such as "0.2", "1/5" or "20%"."""
    value = None
    if isinstance(answer, (int, float, np.integer, np.floating)) and not isinstance(answer, (bool, np.bool_)):
        value = float(answer)
    elif isinstance(answer, str):
        text = answer.strip().replace(" ", "")
        try:
            value = float(Fraction(text[:-1]) / 100) if text.endswith("%") else float(Fraction(text))
        except (ValueError, ZeroDivisionError):
            value = None
    if value is None or not math.isfinite(value):
        raise WrongForm(f"Answer with a number (e.g. 0.25, \"1/4\" or \"25%\"), not {answer!r}.")
    return value


def integer(answer, what: str = "a whole number") -> int:
    """A whole number: an int, a float without a fractional part, or a string of one."""
    try:
        value = number(answer)
    except WrongForm:
        value = None
    if value is None or not value.is_integer():
        raise WrongForm(f"Answer with {what}, not {answer!r}.")
    return int(value)


def integers(answer, what: str, count: int | None = None) -> list[int]:
    """Whole numbers given as a set, list or tuple (not a string); exactly ``count`` of them if given."""
    wrong = WrongForm(f"Answer with {what}, not {answer!r}.")
    if not isinstance(answer, (set, frozenset, list, tuple)) or count not in (None, len(answer)):
        raise wrong
    try:
        return [integer(a) for a in answer]
    except WrongForm:
        raise wrong from None
