"""The marketplace HTTP API (FastAPI): parse, authenticate, call the domain, shape the response."""
