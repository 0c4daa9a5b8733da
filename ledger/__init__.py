"""Quire's double-entry ledger for multi-currency payouts (built in the ledger issue)."""
