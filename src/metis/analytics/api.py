"""The analytics/admin HTTP API: `install` adds its routers to the server's FastAPI app."""

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends

from metis.analytics.deps import AdminDep, bind_app, require_admin

if TYPE_CHECKING:
    from metis.server import Components

router = APIRouter(dependencies=[Depends(require_admin)], tags=["analytics"])


@router.get("/admin/whoami")
def whoami(admin: AdminDep) -> dict[str, str]:
    """Which admin token this request authenticated with (a cheap auth check)."""
    return {"token_id": admin.token_id, "name": admin.name}


def install(comps: "Components") -> None:
    """Register the analytics API on ``comps.api`` and dispose its engine on shutdown."""
    bind_app(comps.api, comps.settings)
    comps.api.include_router(router)

    async def _dispose() -> None:
        eng = getattr(comps.api.state, "metis_engine", None)
        if eng is not None:
            eng.dispose()

    comps.shutdown.append(_dispose)
