"""Payroll: each specialist paid in their own currency, previewed, approved by a second person,
gated by Great Expectations, posted all or nothing, and handed to the bank as ISO 20022 files."""
