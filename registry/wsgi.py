"""The WSGI entry point for production: ``gunicorn 'sqm.registry.wsgi:app'``.

Configured from ``SQM_REGISTRY_*`` environment variables (see :class:`RegistryConfig`).
Several workers may serve at once: the log's integration is single-writer through the
database's own lock.
"""

import gc
import sys

from sqm.registry.app import create_app
from sqm.registry.errors import RegistryError

try:
    app = create_app()
except RegistryError as exc:
    # A configuration the registry refuses (a TSA its log requires, missing; a malformed
    # setting): said once, without a traceback. Exit status 3 is gunicorn's "worker failed to
    # boot", on which it stops rather than start the worker again and again.
    print(f"sqm registry: cannot start: {exc}", file=sys.stderr, flush=True)
    sys.exit(3)

# What the worker holds from here on (modules, schema, compiled statements, the app) lives as
# long as the worker: moved out of the collector's sight, a full collection no longer walks
# it. Each request allocates thousands of objects (a feed's validation most), which set off
# full collections every few hundred requests; each walked the 100,000 objects made at start
# (40 ms). In the ingest benchmark on PostgreSQL (4,000 feeds, alternating runs), the
# workers' CPU per attestation fell from 3.25-3.27 to 2.58-3.01 times the compute ceiling's.
gc.collect()
gc.freeze()
