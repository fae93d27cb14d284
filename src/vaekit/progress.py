"""Progress and messages where users look: a terminal, a notebook, or a log file.

- ``progress_bar`` / ``Progress``: a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal) when someone is
  watching (stderr is a terminal, or the code runs under an IPython kernel); elsewhere (CI, redirected output)
  no bar, and ``Progress`` writes a log line with the rate and the ETA every ``log_every`` seconds instead.
- ``ensure_visible_logging``: the ``vaekit`` logger gets a stderr handler at INFO, but only while the application
  has configured no logging of its own (no handler on the root logger); it steps aside as soon as one appears.
  The library never calls ``logging.basicConfig``. Long operations (training, importance sampling) call it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

__all__ = ["interactive", "progress_bar", "Progress", "ensure_visible_logging"]

LOGGER = "vaekit"
LOG_EVERY = 30.0  # seconds between ``Progress`` log lines where no bar is shown


def interactive() -> bool:
    """True when a person sees stderr: a terminal, or a Jupyter/IPython kernel (where stderr is not a TTY)."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # a closed or replaced stream
        pass
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")


def progress_bar(total: int, *, enabled: bool = True, desc: str | None = None, unit: str = "it", initial: int = 0,
                 delay: float = 0.0) -> Any:
    """A ``tqdm.auto.tqdm`` bar over ``total`` units when ``enabled`` and ``interactive()``, else None.

    delay: seconds before the bar first appears (short calls print nothing). Calling this also makes vaekit's
    log lines visible in a notebook (``ensure_visible_logging``).
    """
    ensure_visible_logging()
    if not enabled or not interactive():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True, delay=delay)


class Progress:
    """Count work done on a long loop: a tqdm bar where someone watches, else a log line every ``log_every``
    seconds with the count, the rate and the estimated time left. A context manager (the bar is closed on exit).

    total: units of work (e.g. examples); desc: what is being done; delay: seconds before a bar appears;
    log: the logger of the log lines (default ``vaekit``); log_every: seconds between them (default LOG_EVERY).
    """

    def __init__(self, total: int, *, desc: str, unit: str = "it", enabled: bool = True, delay: float = 2.0,
                 log: logging.Logger | None = None, log_every: float | None = None) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.bar = progress_bar(total, enabled=enabled, desc=desc, unit=unit, delay=delay)
        self.log = log or logging.getLogger(LOGGER)
        self.enabled, self.log_every = enabled, float(LOG_EVERY if log_every is None else log_every)
        self.done = 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """Add ``n`` units of finished work."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.log_every:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            self.log.info("%s: %d / %d %ss, %.1f %ss/s, %s left", self.desc, self.done, self.total, self.unit, rate,
                          self.unit, _duration(eta))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "unknown time"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a notebook replaces it), message only; removes itself
    once the application has configured logging."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


    def filter(self, record: logging.LogRecord) -> bool:
        """Once the application has configured logging (a root handler), step aside: its handlers print."""
        if logging.getLogger().handlers:
            _remove_default()
            return False
        return super().filter(record)


_DEFAULT: logging.Handler | None = None


def _remove_default() -> None:
    global _DEFAULT
    if _DEFAULT is not None:
        logger = logging.getLogger(LOGGER)
        logger.removeHandler(_DEFAULT)
        if logger.level == logging.INFO:  # the level we set (the application may have set its own since)
            logger.setLevel(logging.NOTSET)
        _DEFAULT = None


def ensure_visible_logging() -> bool:
    """Show vaekit's INFO messages on stderr when the application has not configured logging; True if the
    default handler is (now) in place.

    No-op when the root logger has a handler (``basicConfig``, pytest, a framework) or when the ``vaekit``
    logger was given a handler or a level by the application. A default installed earlier is removed here (and
    by the handler itself at its next message) once the application has configured logging, so from then on
    the application's levels and handlers decide alone.
    """
    global _DEFAULT
    root, logger = logging.getLogger(), logging.getLogger(LOGGER)
    if _DEFAULT is not None:
        if not root.handlers:
            return True
        _remove_default()
        return False
    if root.handlers or logger.handlers or logger.level != logging.NOTSET:
        return False
    _DEFAULT = _StderrHandler()
    logger.addHandler(_DEFAULT)
    logger.setLevel(logging.INFO)
    return True
