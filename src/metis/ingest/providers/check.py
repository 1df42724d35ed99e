"""``metis provider-key test``: one cheap authenticated call with a credential."""

import asyncio
from dataclasses import dataclass

from sqlalchemy import Engine

from metis.config import Settings
from metis.credentials import get_credential, reveal_secret
from metis.errors import MetisError
from metis.ingest.providers.registry import client_for, provider_api
from metis.ingest.settings import IngestSettings
from metis.timeutil import utcnow


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str


def check_credential(engine: Engine, settings: Settings, credential_id: str) -> CheckResult:
    """Call the provider once with the credential: ok, or the provider's error.

    No retries (one call means one call); decryption problems raise, since they
    are Metis's, not the provider's.
    """
    with engine.connect() as conn:
        cred = get_credential(conn, credential_id)
        secret = reveal_secret(conn, settings, credential_id)
    ing = IngestSettings(ingest_max_attempts=1, ingest_http_timeout_seconds=15)

    async def go() -> CheckResult:
        async with client_for(cred, secret, ing) as http:
            try:
                detail = await provider_api(cred.provider).check(http, cred, utcnow())
            except MetisError as exc:
                return CheckResult(False, exc.message)
            return CheckResult(True, detail)

    return asyncio.run(go())
