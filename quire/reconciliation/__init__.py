"""Reconciliation: bank statements matched against the ledger, and its invariants proved."""
