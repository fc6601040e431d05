"""Governance: who may call (API keys), how much (rate limits, parallel requests, budgets), and
what they did (the usage ledger). ``Governor`` is the one object the HTTP layer talks to; it never
imports the web framework and raises ``GovernanceError`` for the HTTP layer to translate."""
