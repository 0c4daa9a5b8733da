"""Credentials: passwords, access tokens, rotating refresh tokens, API keys, rate limits.

Plain Python over the database; `api/` turns these results into HTTP.
"""
