"""The learner's answers to the notebooks' exercises, parsed by type, and the verdict a check gives.

``True`` or "yes", "Lower" or "lower", 0.2 or "1/5" or "20%": each parser takes the forms a learner
would write and returns the value, or raises :class:`WrongForm` with a one-line message naming the
form to use (never the truth value of a string, never a traceback in the notebook).
"""
from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import dataclass
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
    """A finite number: an int or float (a one-element numpy array or torch tensor too, as ``.item()``
    gives it), or a string such as "0.2", "1/5" or "20%"."""
    value = None
    if hasattr(answer, "item") and getattr(answer, "shape", None) in ((), (1,)) and not isinstance(answer, str):
        answer = answer.item()  # a 0-d (or one-element) array or tensor: its number
    try:
        if isinstance(answer, (int, float, np.integer, np.floating)) and not isinstance(answer, (bool, np.bool_)):
            value = float(answer)
        elif isinstance(answer, str):
            text = answer.strip().replace(" ", "")
            value = float(Fraction(text[:-1]) / 100) if text.endswith("%") else float(Fraction(text))
    except (ValueError, ZeroDivisionError, OverflowError):
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


def integers(answer, what: str, count: int | None = None, ordered: bool = False) -> list[int]:
    """Whole numbers given as a set, list or tuple (not a string); exactly ``count`` of them if given;
    ``ordered``: a list or tuple only (a set has no order)."""
    wrong = WrongForm(f"Answer with {what}, not {answer!r}.")
    kinds = (list, tuple) if ordered else (set, frozenset, list, tuple)
    if not isinstance(answer, kinds) or count not in (None, len(answer)):
        raise wrong
    try:
        return [integer(a) for a in answer]
    except WrongForm:
        raise wrong from None


@dataclass(frozen=True)
class Verdict:
    ok: bool | None        #: None: not answered yet
    message: str
    hint: str = ""         #: what a first wrong answer is told instead of ``message``, which may give it away

    def _repr_markdown_(self) -> str:
        mark = {True: "**Right.**", False: "**Not yet.**", None: "*Not answered yet:*"}[self.ok]
        return f"{mark} {self.message}"


UNANSWERED = Verdict(None, "set your answer in the cell above, run it, then run this check.")
AGAIN = "Try again; a second wrong answer shows the explanation."

#: wrong answers so far, per exercise (in this Python process: one notebook's kernel)
wrong_answers: Counter = Counter()


def answered(check):
    """A check whose first argument is the answer: ``None`` gives :data:`UNANSWERED` before any data is
    read, an answer of the wrong form (:class:`WrongForm`) a "Not yet" that says which form to use, and
    the first wrong answer the check's hint instead of its explanation."""
    @functools.wraps(check)
    def wrapper(answer, *args, **kwargs):
        if answer is None:
            return UNANSWERED
        try:
            verdict = check(answer, *args, **kwargs)
        except WrongForm as err:
            return Verdict(False, str(err))
        if verdict.ok is False and verdict.hint:
            wrong_answers[check.__name__] += 1
            if wrong_answers[check.__name__] == 1:
                return Verdict(False, f"{verdict.hint} {AGAIN}")
        return Verdict(verdict.ok, verdict.message)
    return wrapper


def verdict(right: bool, why: str, hint: str = "") -> Verdict:
    """Right or not, why, and a hint for a first wrong answer (a check has already turned an answer of
    ``None`` into :data:`UNANSWERED`)."""
    return Verdict(bool(right), why, hint)
