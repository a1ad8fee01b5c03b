"""Bounded path and query parameters shared by the routers (out-of-range ids are a 422, never a
database error)."""

from typing import Annotated

from fastapi import Path, Query

from server.schemas import MAX_ID, MAX_INT32, ErrorBody

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description="The run's id.")]
After = Annotated[int, Query(ge=0, le=MAX_ID, description="Only items with a larger id.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT32)]
Version = Annotated[int, Path(ge=0, le=MAX_INT32, description="Policy version.")]

# Documented on the routes that need a token.
AUTH_ERRORS = {
    401: {"model": ErrorBody, "description": "No bearer token (Authorization: Bearer ...)."},
    403: {"model": ErrorBody, "description": "A token that does not allow this."},
}
