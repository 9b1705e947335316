"""``python -m sqm`` runs the ``sqm`` command."""

from sqm.cli import main

main()
