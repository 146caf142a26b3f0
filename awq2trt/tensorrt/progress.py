"""TensorRT's build progress (its ``IProgressMonitor`` callbacks) as tqdm bars, and cancelling a build.

TensorRT reports nested phases ("Building engine" > "Tactic selection" > ...), each with a step count, from its
own threads.  ``ProgressBars`` keeps one bar per open phase, indented by depth, and answers each finished step
with whether to go on: it says stop once ``cancel()`` was called (the builder's Ctrl-C handler calls it), and
TensorRT then ends the build early instead of the process being torn down inside it.  Callbacks never raise:
an exception escaping into TensorRT's C++ would abort the process, so a failure in a bar stops the build and is
re-raised afterwards by the builder.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

if TYPE_CHECKING:
    import tensorrt


class ProgressBars:
    """The tqdm side: thread-safe, usable without TensorRT (tests drive it directly)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}
        self._depth: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self.error: BaseException | None = None  # the first exception a callback caught

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask TensorRT to stop: the next ``step_complete`` answers False."""
        self._cancelled.set()

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock, self._guard():
            depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._depth[phase_name] = depth
            self._close(phase_name)  # a name is reused once its earlier phase finished
            self._bars[phase_name] = tqdm(
                total=max(num_steps, 1),
                desc="  " * depth + phase_name,
                unit="step",
                position=depth,
                leave=depth == 0,
                disable=not self.enabled,
                dynamic_ncols=True,
            )

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock, self._guard():
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.update(max(0, step + 1 - bar.n))  # steps count from 0; TensorRT may skip some
        return not self._cancelled.is_set()

    def phase_finish(self, phase_name: str) -> None:
        with self._lock, self._guard():
            self._close(phase_name)
            self._depth.pop(phase_name, None)

    def close(self) -> None:
        """Close every bar still open (after a failed or cancelled build TensorRT may not finish its phases)."""
        with self._lock, self._guard():
            for name in list(self._bars):
                self._close(name)

    def _close(self, phase_name: str) -> None:
        bar = self._bars.pop(phase_name, None)
        if bar is not None:
            bar.close()

    def _guard(self) -> _Guard:
        return _Guard(self)


class _Guard:
    """Swallow a callback's exception into ``bars.error`` and cancel the build (nothing may reach TensorRT)."""

    def __init__(self, bars: ProgressBars) -> None:
        self.bars = bars

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> bool:
        if error is None:
            return False
        if self.bars.error is None:
            self.bars.error = error
        self.bars.cancel()
        return True


def tensorrt_monitor(bars: ProgressBars) -> tensorrt.IProgressMonitor:
    """An ``IProgressMonitor`` for ``IBuilderConfig.progress_monitor`` that forwards to *bars*.

    Called by the builder once it has imported TensorRT; the subclass is made here because its base class
    exists only then.
    """
    import tensorrt as trt

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)  # pybind11 trampolines need the base initialised explicitly

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            bars.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return bars.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            bars.phase_finish(phase_name)

    return Monitor()
