"""The audit log: who did what to which object, when, and what changed.

Append-only (the database refuses UPDATE, DELETE and TRUNCATE, migration 0010), written in the
same transaction as the change it describes (`service.record`), read by admins and, for money,
by finance (`service.list_entries`).
"""
