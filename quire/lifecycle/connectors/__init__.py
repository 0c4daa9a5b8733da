"""Connectors: one module per provider, each speaking that provider's own protocol.

Every step kind is a plain function `(connection, call) -> StepOutcome` (see `base.py`); a
compensating kind takes the `undo` its forward step recorded. Connectors know nothing of
Prefect, the saga log or the breaker: the executor wraps them in all three.
"""
