"""Quire's kernel and its marketplace domains, plain Python over SQLAlchemy (no HTTP, no Prefect).

The kernel is the package root (settings, db, tenancy, errors, money, schemas, idempotency) and
`people/`, `auth/`, `events/` (the outbox); it imports no domain. The domains are `orders/` and
`qa/` here and the top-level `ledger/`; each uses the kernel and only the domains the README's
layout section draws beneath it (`tests/test_layers.py` holds the code to that drawing).
"""
