"""Quire's shared domain kernel: settings, database, tenants and people, orders, the event outbox.

Nothing in here knows about HTTP or Prefect; `api/`, `tasks/` and `flows/` build on it.
"""
