"""Demonstrations of a guard in the book: the refusal's type and message, without a traceback."""

import textwrap
from collections.abc import Callable


def show_refusal(action: Callable[[], object], width: int = 88) -> None:
    """Run ``action`` and print the exception it raises as ``TypeName: message``.

    A traceback would show the reader the machine's paths and the library's internals, and the
    book's HTML cuts its long lines off; the type and message are what a user acts on. The line
    is wrapped at ``width`` characters to fit the book's text column. An exception raised inside
    ``action`` is caught (any ``Exception``); if ``action`` returns normally, AssertionError is
    raised, so a guard that stops refusing fails the book's build instead of silently losing its
    demonstration.
    """
    try:
        result = action()
    except Exception as error:  # any refusal is shown: that is the point
        print(textwrap.fill(f"{type(error).__name__}: {error}", width=width))
        return
    raise AssertionError(f"expected a refusal, but the action returned {result!r}")
