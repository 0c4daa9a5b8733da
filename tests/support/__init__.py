"""Test support: real databases, app clients, live servers and ready-made tenants."""
