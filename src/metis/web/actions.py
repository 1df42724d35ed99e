"""The dashboard's forms: set caps, disable teams and users, issue and revoke keys, sync now.

Each action checks the session and its CSRF token first (`authorized_post`),
validates its input into a 4xx page naming the problem, makes its change in
one transaction through the identity/ingest library, and redirects back with
a one-shot message (post/redirect/get). Issuing a key is the exception: its
answer is the page that shows the secret, once, with ``Cache-Control:
no-store``.
"""

import asyncio
from collections.abc import Callable
from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from metis.analytics.deps import app_engine, app_settings
from metis.credentials import get_credential, list_credentials
from metis.errors import MetisError
from metis.identity.keys import get_key, issue_key, revoke_key
from metis.identity.teams import KEEP, _Keep, disable_team, get_team, set_caps
from metis.identity.users import disable_user, get_user
from metis.identity.validate import parse_cap_usd
from metis.ingest.jobs import run_job
from metis.web.http import (
    authorized_post,
    check_id,
    read_form,
    redirect_with_flash,
    render,
    safe_next,
    ui_error,
)
from metis.web.params import UIError
from metis.web.tables import fmt_usd

router = APIRouter(include_in_schema=False)


def _opt_cap(form: dict[str, str], field: str, label: str) -> int | None:
    """An optional cap field in USD: empty or ``none`` is no cap."""
    raw = form.get(field, "").strip().lstrip("$").replace(",", "")
    if raw == "" or raw.lower() == "none":
        return None
    try:
        return parse_cap_usd(raw, label)
    except MetisError as exc:
        raise UIError(400, exc.message) from None


def _cap_change(form: dict[str, str], field: str, label: str) -> int | _Keep | None:
    """A cap field of the set-caps form: empty keeps the cap, ``none`` clears it."""
    if not form.get(field, "").strip():
        return KEEP
    return _opt_cap(form, field, label)


async def _change(
    request: Request, form: dict[str, str], change: Callable[[Connection], str]
) -> Response:
    """Check session + CSRF, run ``change`` in one transaction, redirect with its message.

    A library error becomes the 4xx page naming it; nothing is half-written.
    """
    engine = app_engine(request)

    def do() -> str:
        authorized_post(request, engine, form)
        try:
            with engine.begin() as conn:
                return change(conn)
        except MetisError as exc:
            raise ui_error(exc) from None

    msg = await run_in_threadpool(do)
    return redirect_with_flash(request, safe_next(form.get("return_to")), msg)


def _show_cap(v: int | None) -> str:
    return "none" if v is None else fmt_usd(Decimal(v) / 10**9)


@router.post("/ui/teams/caps")
async def team_caps(request: Request) -> Response:
    """Set a team's caps (empty keeps, ``none`` clears); the gateway's next request sees them."""
    form = await read_form(request)

    def change(conn: Connection) -> str:
        team_id = check_id(form.get("team", ""), "team")
        daily = _cap_change(form, "daily_cap_usd", "daily cap")
        monthly = _cap_change(form, "monthly_cap_usd", "monthly cap")
        get_team(conn, team_id)
        t = set_caps(conn, team_id, daily_cap_nanousd=daily, monthly_cap_nanousd=monthly)
        return (
            f"Caps of team {t.name}: daily {_show_cap(t.daily_cap_nanousd)}, "
            f"monthly {_show_cap(t.monthly_cap_nanousd)}"
        )

    return await _change(request, form, change)


@router.post("/ui/teams/{team_id}/disable")
async def team_disable(request: Request, team_id: str) -> Response:
    """Disable a team: keys bound to it get 401 from the next request (no re-enable in v1)."""
    form = await read_form(request)
    check_id(team_id, "team id")

    def change(conn: Connection) -> str:
        t = disable_team(conn, team_id)
        return f"Team {t.name} disabled: its keys stop working from the next request"

    return await _change(request, form, change)


@router.post("/ui/users/{user_id}/disable")
async def user_disable(request: Request, user_id: str) -> Response:
    """Disable a user: keys bound to them get 401 from the next request (no re-enable in v1)."""
    form = await read_form(request)
    check_id(user_id, "user id")

    def change(conn: Connection) -> str:
        get_user(conn, user_id)
        u = disable_user(conn, user_id)
        return f"User {u.alias} disabled: their keys stop working from the next request"

    return await _change(request, form, change)


@router.post("/ui/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: str) -> Response:
    """Revoke a key with an optional reason (idempotent: a second revoke changes nothing)."""
    form = await read_form(request)
    check_id(key_id, "key id")

    def change(conn: Connection) -> str:
        get_key(conn, key_id)
        k, changed = revoke_key(conn, key_id, reason=form.get("reason") or None)
        return f"Key {k.name} ({k.id}) " + ("revoked" if changed else "was already revoked")

    return await _change(request, form, change)


@router.post("/ui/keys")
async def key_issue(request: Request) -> Response:
    """Issue a key; the answer is the one page that shows its secret (never stored)."""
    form = await read_form(request)
    engine = app_engine(request)

    def do() -> Response:
        s = authorized_post(request, engine, form)
        name = form.get("name", "").strip()
        if not name:
            raise UIError(400, "key name is required")
        workspace = form.get("workspace", "").strip()
        if not workspace:
            raise UIError(400, "workspace is required")
        user = form.get("user", "").strip() or None
        team = form.get("team", "").strip() or None
        cap = _opt_cap(form, "daily_cap_usd", "daily cap")
        models_raw = form.get("allowed_models", "").strip()
        models = [m.strip() for m in models_raw.split(",") if m.strip()] or None
        try:
            with engine.begin() as conn:
                key, secret = issue_key(
                    conn,
                    name=name,
                    workspace=workspace,
                    user=user,
                    team=team,
                    allowed_models=models,
                    daily_cap_nanousd=cap,
                )
        except MetisError as exc:
            raise ui_error(exc) from None
        return render(
            request,
            "key_issued.html",
            {
                "title": "Key issued",
                "key": key,
                "secret": secret,
                "session": s,
                "back": safe_next(form.get("return_to")),
            },
        )

    return await run_in_threadpool(do)


@router.post("/ui/ingestion/{credential_id}/sync")
async def sync_now(request: Request, credential_id: str) -> Response:
    """Run the provider sync of one usage_admin credential now (same job as the scheduler)."""
    form = await read_form(request)
    check_id(credential_id, "credential id")
    engine = app_engine(request)
    settings = app_settings(request)

    def check() -> None:
        authorized_post(request, engine, form)
        with engine.connect() as conn:
            try:
                cred = get_credential(conn, credential_id)
            except MetisError as exc:
                raise ui_error(exc) from None
            if cred.id not in {c.id for c in list_credentials(conn, purpose="usage_admin")}:
                raise UIError(
                    400,
                    f"credential {credential_id} is not an active usage_admin key: nothing to sync",
                )

    await run_in_threadpool(check)
    outcomes = await asyncio.to_thread(
        run_job, engine, settings, name="ui", credential=credential_id, kind="sync"
    )
    if not outcomes:
        return redirect_with_flash(
            request, safe_next(form.get("return_to")), "Sync did not run (see the logs)", "error"
        )
    o = outcomes[0]
    msg = (
        f"Sync of {o.credential_id}: {o.status}, {o.stored} stored, {o.updated} updated, "
        f"{o.unchanged} unchanged" + (f"; error: {o.error_message}" if o.error_message else "")
    )
    return redirect_with_flash(
        request,
        safe_next(form.get("return_to")),
        msg,
        "error" if o.status == "failed" else "ok",
    )
