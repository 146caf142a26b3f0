"""Render a checkpoint's chat template without trusting it.

A chat template is Jinja code from whoever published the folder.  jinja2's immutable sandbox already keeps
it away from Python objects (no ``__class__``, no mutating methods, ``range`` capped); on top of that the
renderer here bounds what the sandbox does not:

* time: a deadline checked at every call, attribute, filter, operator and output chunk, plus (in the main
  thread) a timer signal for loops that do nothing but iterate;
* memory: every string or list the template builds by ``*``, ``+``, ``**``, a filter, a method or a
  ``namespace`` assignment, and the output itself, is capped in length before it grows further;
* every other failure (a TypeError in the template's own arithmetic, runaway macro recursion) is the
  template's fault and becomes one `Awq2TrtError`.
"""

from __future__ import annotations

import functools
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from awq2trt.errors import Awq2TrtError

RENDER_SECONDS = 2.0  # real templates render in well under a millisecond
MAX_LENGTH = 1_000_000  # characters (or items) of any value the template builds, and of its output
MAX_EXPONENT = 64
WHERE = "chat template"


class _LimitExceeded(Exception):
    """Raised inside the template when it passes one of the bounds; becomes an Awq2TrtError outside."""


def _length(value: object) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def _checked_size(value: object, what: str) -> object:
    if _length(value) > MAX_LENGTH:
        raise _LimitExceeded(f"{what} builds a value of {_length(value)} items (at most {MAX_LENGTH})")
    return value


def _checked_args(args: Sequence[object], kwargs: dict[str, object], what: str) -> None:
    """Refuse a numeric argument that would make a call build something huge (``center(10**9)``)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_LENGTH:
            raise _LimitExceeded(f"{what} called with {value} (at most {MAX_LENGTH})")


# A width or precision in a format string ("%1000000000s", "{:>1000000000}") allocates that much at once.
_FORMAT_WIDTH = re.compile(r"[%:][^%{}]*?(\d{7,})")


def _checked_format(text: object, what: str) -> None:
    if isinstance(text, str):
        for match in _FORMAT_WIDTH.finditer(text):
            if int(match.group(1)) > MAX_LENGTH:
                raise _LimitExceeded(f"{what} asks for a width of {match.group(1)} (at most {MAX_LENGTH})")


def _format_string(method: object) -> object:
    """The string whose ``format`` / ``format_map`` *method* is, if it is one."""
    if getattr(method, "__name__", None) in ("format", "format_map"):
        method = getattr(method, "__wrapped__", method)  # jinja wraps str.format in a sandboxed formatter
        return getattr(method, "__self__", None)
    return None


def _environment(deadline: float) -> Any:
    """A fresh sandboxed environment whose every hook checks *deadline* and the size bounds."""
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from jinja2.utils import Namespace

    def tick() -> None:
        if time.monotonic() > deadline:
            raise _LimitExceeded(f"rendering took longer than {RENDER_SECONDS:g} s")

    class BoundedNamespace(Namespace):
        def __setitem__(self, name: str, value: object) -> None:
            tick()
            super().__setitem__(name, _checked_size(value, "a namespace assignment"))

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        # Intercepted operators are also kept out of compile-time constant folding.
        intercepted_binops = frozenset({"*", "**", "+", "//", "%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            tick()
            if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
                raise _LimitExceeded(f"an exponent of {right} (at most {MAX_EXPONENT})")
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if _length(seq) and isinstance(count, int) and _length(seq) * count > MAX_LENGTH:
                        raise _LimitExceeded(f"repeating a value {count} times (at most {MAX_LENGTH} items)")
            if operator == "%":
                _checked_format(left, "string formatting")
            return _checked_size(super().call_binop(context, operator, left, right), f"the operator {operator}")

        def getattr(self, obj: Any, attribute: str) -> Any:
            tick()
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            tick()
            return super().getitem(obj, argument)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            tick()
            _checked_args(args, kwargs, "a function")
            _checked_format(_format_string(__obj), "str.format")
            return _checked_size(super().call(__context, __obj, *args, **kwargs), "a function call")

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = BoundedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters = {name: _bounded_filter(name, f, tick) for name, f in env.filters.items()}
    env.globals["raise_exception"] = raise_exception
    env.globals["namespace"] = BoundedNamespace
    return env


def _bounded_filter(name: str, f: Callable[..., Any], tick: Callable[[], None]) -> Callable[..., Any]:
    @functools.wraps(f)  # keeps jinja's pass_context / pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        tick()
        _checked_args(args[1:], kwargs, f"the filter {name}")
        if name == "format" and args:
            _checked_format(args[0], "the filter format")
        return _checked_size(f(*args, **kwargs), f"the filter {name}")

    return bounded


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt a template that only iterates (no hook runs) once *seconds* pass; main thread only."""
    # Signals belong to the main thread; and a timer someone else set (libFuzzer's -timeout, a test runner's)
    # is theirs: leave both alone and rely on the deadline checks in the hooks.
    busy = signal.getitimer(signal.ITIMER_REAL)[0] > 0 or signal.getsignal(signal.SIGALRM) not in (
        signal.SIG_DFL,
        signal.SIG_IGN,
    )
    if threading.current_thread() is not threading.main_thread() or busy:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _LimitExceeded(f"rendering took longer than {RENDER_SECONDS:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def render_chat_template(template: str, variables: dict[str, Any], *, seconds: float = RENDER_SECONDS) -> str:
    """*template* rendered with *variables*, or an `Awq2TrtError` saying why it could not be."""
    deadline = time.monotonic() + seconds
    pieces: list[str] = []
    size = 0
    env = _environment(deadline)
    try:
        with _alarm(seconds + 0.5):
            for piece in env.from_string(template).generate(**variables):
                size += len(piece)
                if size > MAX_LENGTH:
                    raise _LimitExceeded(f"the output passes {MAX_LENGTH} characters")
                if time.monotonic() > deadline:
                    raise _LimitExceeded(f"rendering took longer than {seconds:g} s")
                pieces.append(piece)
    except _LimitExceeded as error:
        raise Awq2TrtError(WHERE, detail=f"refused: {error}") from None
    except RecursionError:
        raise Awq2TrtError(WHERE, detail="recursion too deep (a macro calling itself?)") from None
    except MemoryError:
        raise Awq2TrtError(WHERE, detail="ran out of memory") from None
    except Exception as error:  # the template is the folder's code: whatever it raises is its own mistake
        message = (str(error).strip().splitlines() or [""])[0][:200]
        detail = f"{type(error).__name__}: {message}" if message else type(error).__name__
        raise Awq2TrtError(WHERE, detail=detail) from None
    return "".join(pieces)
