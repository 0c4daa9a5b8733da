"""What operators and API consumers rely on: health, metrics, request ids, documented errors."""

from __future__ import annotations

import uuid


async def test_liveness_and_readiness(client):
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert (ready.status_code, ready.json()["database"]) == (200, "ok")


async def test_metrics_count_requests_by_route(client, world):
    await client.get(f"/orders/{uuid.uuid4()}", headers=world.manager.auth)
    text = (await client.get("/metrics")).text
    assert 'quire_http_requests_total{method="GET",route="/orders/{order_id}",status="404"}' in text
    assert "quire_http_request_duration_seconds_bucket" in text


async def test_a_request_id_is_echoed_or_made_up(client):
    echoed = await client.get("/health/live", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    made = await client.get("/health/live", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces"


async def test_every_error_shares_one_body_shape(client, world):
    responses = [
        await client.get("/orders"),  # 401
        await client.post("/users", json={}, headers=world.specialist.auth),  # 422 or 403
        await client.get(f"/orders/{uuid.uuid4()}", headers=world.manager.auth),  # 404
        await client.get("/no-such-route"),  # 404 from the router
        await client.delete("/orders", headers=world.manager.auth),  # 405
    ]
    for response in responses:
        body = response.json()
        assert response.status_code >= 400
        assert set(body) >= {"type", "title", "status", "code", "detail", "request_id"}, body
        assert body["status"] == response.status_code


async def test_openapi_documents_every_endpoints_errors(client):
    spec = (await client.get("/openapi.json")).json()
    assert "Problem" in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        if path.startswith("/health"):
            continue
        for method, operation in operations.items():
            codes = {int(c) for c in operation["responses"] if c.isdigit()}
            assert any(c >= 400 for c in codes), f"{method.upper()} {path} documents no errors"
