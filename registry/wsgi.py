"""The WSGI entry point for production: ``gunicorn 'sqm.registry.wsgi:app'``.

Configured from ``SQM_REGISTRY_*`` environment variables (see :class:`RegistryConfig`).
Several workers may serve at once: the log's integration is single-writer through the
database's own lock.
"""

from sqm.registry.app import create_app

app = create_app()
