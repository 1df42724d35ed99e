"""Fixtures: a running Metis server with an admin token, and an authenticated client."""

from collections.abc import Iterator

import httpx
import pytest

from metis.server import create_app
from metis.util.server_thread import ServerThread
from tests.conftest import Cli


@pytest.fixture
def admin_token(cli: type[Cli]) -> str:
    out = cli.ok("admin", "token", "create", "--name", "tests").stdout
    return out.strip().splitlines()[-1]


@pytest.fixture
def api(admin_token: str) -> Iterator[httpx.Client]:
    """An httpx client on a real Metis server, authenticated with an admin token."""
    with (
        ServerThread(create_app()) as srv,
        httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        ) as client,
    ):
        yield client
