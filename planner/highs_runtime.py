"""HiGHS inside a long-running host process: every HiGHS run in the planner goes through :func:`run_highs`.

The planner's backends, its infeasibility explanations and the scenario generator all run HiGHS;
this module keeps those runs usable when they are repeated again and again in one process:

* HiGHS keeps one task scheduler per calling thread, sized by the first run on that thread; a later
  run on the same thread that asks for another number of threads fails ("Not Set"). ``run_highs``
  resets this thread's scheduler whenever the requested size differs from the one it was made with.
* highspy >= 1.16 prints a banner to file descriptor 1 the first time a ``Highs`` object is made in a
  process. :func:`new_highs` makes that first object with descriptor 1 pointed at ``/dev/null``, so a
  library caller's stdout (and ``plan solve``'s JSON) stays clean.
* A run can be cancelled from another thread (``cancel``): HiGHS's interrupt callbacks check the
  event and stop the solver within milliseconds.
"""

from __future__ import annotations

import os
import threading

import highspy

from planner.io import devnull_onto

_tls = threading.local()  # per thread: the size of HiGHS's scheduler on this thread (0 = HiGHS's default)


_banner_lock = threading.Lock()


_banner_done = False


def silence_banner() -> None:
    """Make the process's first ``Highs`` object with fd 1 on /dev/null (highspy prints its banner then)."""
    global _banner_done
    with _banner_lock:
        if _banner_done:
            return
        try:
            import sys

            sys.stdout.flush()
        except Exception:  # pragma: no cover - a closed or odd sys.stdout
            pass
        try:
            saved = os.dup(1)
        except OSError:  # fd 1 is closed: put /dev/null there for good (nothing else may land on it)

            devnull_onto(1)
            highspy.Highs()
            _banner_done = True
            return
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
            highspy.Highs()
            try:
                import ctypes

                ctypes.CDLL(None).fflush(None)  # C stdio buffers, in case the banner was buffered
            except Exception:  # pragma: no cover - no libc symbol table
                pass
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
        _banner_done = True


def new_highs() -> highspy.Highs:
    """A ``Highs`` object with logging off, made without anything reaching stdout."""
    if not _banner_done:
        silence_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


def _reset_scheduler() -> None:
    """Shut down this thread's HiGHS scheduler (highspy >= 1.16: per thread; older: the same call
    under its older name)."""
    reset = getattr(highspy.Highs, "resetThreadScheduler", None) or highspy.Highs.resetGlobalScheduler
    reset(True)


def prepare_thread(threads: int | None) -> None:
    """Make this thread's HiGHS scheduler fit a run with ``threads`` threads (None: HiGHS's default).

    A scheduler made for another size is shut down first; HiGHS makes a new one at the next run.
    """
    want = int(threads) if threads else 0
    have = getattr(_tls, "threads", None)
    if have is not None and want and want != have:
        _reset_scheduler()
        have = None
    if have is None:
        _tls.threads = want


def _scheduler_mismatch(h: highspy.Highs, st) -> bool:
    return st == highspy.HighsStatus.kError and h.getModelStatus() == highspy.HighsModelStatus.kNotset


def run_highs(h: highspy.Highs, threads: int | None = None, cancel: threading.Event | None = None):
    """``h.run()`` on this thread with ``threads`` threads; returns HiGHS's status.

    If the run fails before starting because this thread's scheduler was made elsewhere with another
    size (user code, another library), the scheduler is reset and the run tried once more. With
    ``cancel``, the run stops (HiGHS status: interrupted) soon after the event is set.
    """
    if cancel is not None and cancel.is_set():
        return highspy.HighsStatus.kWarning  # not run: the caller reads no solution
    want = int(threads) if threads else 0
    h.setOptionValue("threads", want)
    prepare_thread(want)
    subs = []
    if cancel is not None:
        def on_interrupt(e, _ev=cancel):
            if _ev.is_set():
                e.interrupt()

        for cbk in (h.cbMipInterrupt, h.cbSimplexInterrupt, h.cbIpmInterrupt):
            cbk.subscribe(on_interrupt)
            subs.append(cbk)
    try:
        st = h.run()
        if _scheduler_mismatch(h, st):
            _reset_scheduler()
            _tls.threads = want
            st = h.run()
        return st
    finally:
        for cbk in subs:
            cbk.unsubscribe(on_interrupt)
