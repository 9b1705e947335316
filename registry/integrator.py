"""A background sweep that integrates entries whose request died between sequencing and
integration (a killed worker, a dropped connection), so that no sequenced entry waits for the
next submission to reach the tree: every entry is in a signed checkpoint within about
``every`` seconds of being sequenced. It also brings the search index up to the log."""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from sqm.registry.errors import RegistryError
from sqm.registry.indexer import Indexer
from sqm.registry.log import TransparencyLog

logger = logging.getLogger(__name__)


class Integrator:
    """Runs :meth:`TransparencyLog.integrate` every ``every`` seconds while entries wait."""

    def __init__(self, log: TransparencyLog, every: float, indexer: Indexer | None = None) -> None:
        if every <= 0:
            raise RegistryError(f"the integration interval must be positive, got {every}")
        self.log = log
        self.every = every
        self.indexer = indexer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqm-integrator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self.every)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                while self.log.waiting() and not self._stop.is_set():
                    self.log.integrate()
                if self.indexer is not None and self.indexer.position() < self.log.size() - 1:
                    self.indexer.catch_up(wait=False)  # skipped while another worker indexes
            except (SQLAlchemyError, RegistryError):
                # The database may be briefly unavailable; the next sweep tries again.
                logger.exception("background integration failed; retrying in %ss", self.every)
