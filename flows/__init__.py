"""Prefect flows: the business processes (QA pipeline, payroll, reconciliation, lifecycle)."""
