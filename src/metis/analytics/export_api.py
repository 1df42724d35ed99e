from fastapi import APIRouter, Depends

from metis.analytics.deps import require_admin

router = APIRouter(dependencies=[Depends(require_admin)], tags=["export"])
