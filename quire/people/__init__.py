"""Tenants (organisations), their users and roles, and specialists' profiles."""
