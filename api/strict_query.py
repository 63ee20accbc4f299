"""Unknown query parameters are refused (422), not ignored.

``GET /events?since=...`` answering every event because ``since`` was misspelt (or not yet
known to this version) looks like an answer and is not one. So every GET route refuses a query
parameter it does not declare, in FastAPI's 422 shape, one error per unknown name. It is an
app-wide dependency: it runs first, before the key is checked (the names a route takes are
public in the OpenAPI document anyway). It is given to the reading routers and pages
(``STRICT_QUERY``), not to the whole app: a dependency costs every request it applies to, and
the publishing routes (POST, the hot path) take no query parameters to check.
``tests/test_api_read.py`` asks every GET route of the app, so a new one without it fails there.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute

from api.errors import BadQuery

_CHECKED_METHODS = frozenset({"GET", "HEAD"})


async def refuse_unknown_query(request: Request) -> None:
    if request.method not in _CHECKED_METHODS:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    # A walk over a handful of dependants: cheaper than a cache keyed by route would be safe.
    known = _query_names(route.dependant)
    refusal: BadQuery | None = None
    for name in dict.fromkeys(request.query_params.keys()):
        if name not in known:
            error = BadQuery(
                name,
                f"unknown query parameter; this route takes {_listed(known)}",
                "extra_forbidden",
                input_=request.query_params[name],
            )
            refusal = error if refusal is None else refusal.also(error)
    if refusal is not None:
        raise refusal


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters of a route and of every dependency it has, by their wire names."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(field.alias for field in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


def _listed(names: frozenset[str]) -> str:
    if not names:
        return "none"
    return ", ".join(sorted(names))


# For ``include_router(..., dependencies=STRICT_QUERY)`` and ``@app.get(..., dependencies=...)``.
STRICT_QUERY: list[DependsParam] = [Depends(refuse_unknown_query)]
