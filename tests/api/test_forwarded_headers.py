"""Forwarded headers, as `quire api` promises them (a real uvicorn process, both databases).

- By default no proxy is trusted: a client cannot pick its own address with X-Forwarded-For,
  not even from 127.0.0.1 (uvicorn's own default trusts loopback), so per-IP limits hold.
- Proxies named in QUIRE_FORWARDED_ALLOW_IPS are believed: behind them, each forwarded client
  address has its own per-IP budget.
"""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import pytest

from deployments import cli
from quire.settings import Settings

# The per-IP limit belongs to no tenant, and every request here comes from 127.0.0.1: each test
# counts in a database of its own.
pytestmark = pytest.mark.own_database

LIMITED = {"QUIRE_LOGIN_LIMIT_PER_IP": "2", "QUIRE_RATE_WINDOW": str(10**9)}


def login_from(base_url: str, forwarded_for: str, n: int) -> int:
    """A failed login (a distinct unknown email each time, so only the per-IP limit can bite)."""
    response = httpx.post(
        f"{base_url}/auth/login",
        json={"tenant": "acme", "email": f"nobody{n}@acme.test", "password": "whatever"},
        headers={"X-Forwarded-For": forwarded_for},
        timeout=30,
    )
    return response.status_code


def test_a_spoofed_x_forwarded_for_does_not_dodge_the_per_ip_limit(db_url, live_server):
    server = live_server(db_url, **LIMITED)

    statuses = [login_from(server.base_url, f"203.0.113.{n}", n) for n in range(4)]

    assert statuses == [401, 401, 429, 429], "every request counts against 127.0.0.1"


def test_forwarded_headers_from_a_trusted_proxy_are_honoured(db_url, live_server):
    server = live_server(db_url, QUIRE_FORWARDED_ALLOW_IPS="127.0.0.1", **LIMITED)

    distinct = [login_from(server.base_url, f"203.0.113.{n}", n) for n in range(4)]
    one_client = [login_from(server.base_url, "198.51.100.7", 10 + n) for n in range(3)]

    assert distinct == [401] * 4, "each forwarded address has its own budget"
    assert one_client == [401, 401, 429]


def run_api(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """The keyword arguments `quire api` hands uvicorn with this environment."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(**env))  # type: ignore[arg-type]
    cli.cmd_api(argparse.Namespace(host=None, port=None, workers=None))
    return seen


def test_quire_api_trusts_no_proxy_unless_told_which(monkeypatch):
    assert Settings.model_fields["forwarded_allow_ips"].default == ""

    default = run_api(monkeypatch)
    behind_proxies = run_api(monkeypatch, QUIRE_FORWARDED_ALLOW_IPS="10.0.0.5, 10.1.0.0/16")

    assert default["proxy_headers"] is False
    assert behind_proxies["proxy_headers"] is True
    assert behind_proxies["forwarded_allow_ips"] == ["10.0.0.5", "10.1.0.0/16"]
