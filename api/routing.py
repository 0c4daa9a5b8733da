"""What the router knows about a path, for answers the router itself gives (405's `Allow`)."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.routing import Match


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path.

    Starlette answers 405 from the first route whose path matched and lists only that route's
    methods; `/orders` has one route for GET and another for POST, so `Allow` must be the union
    over all of them (RFC 9110: the methods the target resource supports). Included routers are
    walked through FastAPI's route contexts, which carry each route's full (prefixed) path.
    """
    scope = {**request.scope, "type": "http"}
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.methods:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)
