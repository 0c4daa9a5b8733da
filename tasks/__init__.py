"""Prefect tasks wrapping domain calls with retries, caching, timeouts and concurrency limits."""
