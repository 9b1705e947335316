"""A gunicorn worker class for the registry: gunicorn's threaded worker, except that a worker
whose threads already each have a connection lets its siblings take a new one first.

    gunicorn -w 2 -k sqm.registry.balanced_worker.BalancedThreadWorker --threads 4 ...

Why: gunicorn's workers share one listening socket, and a new connection goes to whichever
worker's accept() comes first; a keep-alive connection then stays with that worker. Eight
clients connecting at once fell 5/3, 6/2 or 1/7 as often as 4/4, and a worker holding six
connections queues requests on its four threads while its sibling idles: in the ingest
benchmark (SQLite) 0.50-0.57 of the compute ceiling with an even split against 0.35-0.47
with an uneven one. The kernel wakes every worker that waits on the socket, so a full worker
that waits a moment before accepting leaves the connection to a sibling with a free thread;
when every worker is full it accepts after that moment all the same (nothing is refused).

It also answers the requests gunicorn itself refuses as JSON errors, like the app's, not as
gunicorn's HTML pages (see :mod:`sqm.registry.gunicorn_errors`).
"""

from __future__ import annotations

import select
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker  # type: ignore[import-untyped]

from sqm.registry.gunicorn_errors import JsonRefusals

# Long enough for a woken sibling to be scheduled and accept() even on busy cores (at 5 ms,
# one test round in four kept the connection on the full worker with both cores loaded),
# short enough not to matter: only a worker whose every thread has a connection waits, on a
# new connection, and a request it accepted then would wait for a free thread anyway. The
# wait holds up its event loop's bookkeeping of finished requests for as long.
DEFER_SECONDS = 0.01


class BalancedThreadWorker(JsonRefusals, ThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """``-k gthread`` that defers new connections to siblings while all its threads have
    one (see the module's docstring), and answers gunicorn's own refusals as JSON errors."""

    def accept(self, *args: Any) -> None:
        listener = args[-1]  # accept(listener); gunicorn before 23: accept(server, listener)
        if self.nr_conns >= self.cfg.threads:
            time.sleep(DEFER_SECONDS)
            readable, _, _ = select.select([listener], [], [], 0)
            if not readable:  # a sibling took it
                return
        super().accept(*args)
