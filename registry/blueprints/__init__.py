"""HTTP blueprints: thin adapters from requests to the log and the TSA."""
