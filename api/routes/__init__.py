"""HTTP routes: thin adapters from HTTP to ``api.service`` (one module per area)."""
