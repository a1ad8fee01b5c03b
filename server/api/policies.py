"""Policies: the wire-format documents (learner/export.py, robot/policy.py) and their metadata."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.api.params import RunId, Version
from server.deps import ReaderDep, SessionDep
from server.repository import learning as repo
from server.schemas import ErrorBody, PolicyKind, PolicyOut

router = APIRouter(prefix="/api/v1/runs/{run_id}/policies", tags=["policies"],
                   dependencies=[ReaderDep])
Kind = Annotated[PolicyKind, Query(description="mf (SAC) or mb (model-based).")]
SHA_HEADER = "X-Policy-SHA256"


@router.get("")
def list_policies(run_id: RunId, session: SessionDep,
                  kind: Annotated[PolicyKind | None, Query()] = None) -> list[PolicyOut]:
    return [PolicyOut.model_validate(s)
            for s in repo.list_snapshots(session, run_id=run_id, kind=kind)]


@router.get(
    "/{version}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}},
              "description": "The policy document (.npz wire format).",
              "headers": {SHA_HEADER: {"schema": {"type": "string"},
                                       "description": "sha256 of the body."}}},
        404: {"model": ErrorBody, "description": "No such run, or no such policy version."},
        410: {"model": ErrorBody,
              "description": "An old version whose document was pruned (DCLAW_POLICIES_KEPT)."},
    },
)
def download_policy(run_id: RunId, version: Version, kind: Kind, session: SessionDep) -> Response:
    """The document's bytes; verify them against the assignment's (and the header's) sha256."""
    snapshot = repo.get_snapshot(session, run_id=run_id, kind=kind, version=version)
    return Response(
        content=snapshot.data,
        media_type="application/octet-stream",
        headers={
            SHA_HEADER: snapshot.sha256,
            "X-Policy-Kind": snapshot.kind,
            "X-Policy-Version": str(snapshot.version),
            "ETag": f'"{snapshot.sha256}"',
            "Cache-Control": "public, max-age=31536000, immutable",
            "Content-Disposition": f'attachment; filename="run{run_id}-{kind}-v{version}.npz"',
        },
    )


@router.get("/{version}/meta", responses={404: {"model": ErrorBody}})
def policy_metadata(run_id: RunId, version: Version, kind: Kind,
                    session: SessionDep) -> PolicyOut:
    return PolicyOut.model_validate(
        repo.get_snapshot(session, run_id=run_id, kind=kind, version=version, with_data=False))
