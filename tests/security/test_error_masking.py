"""A secret given by mistake where an id belongs is not echoed back in full.

Error messages quote the reference they could not resolve. When that is a
secret (a ``gw_`` key pasted instead of its ``key_…`` id, a provider key
instead of a credential id), the message keeps only its display form, so it
does not spread to terminals, HTTP answers and logs.
"""

import pytest

from metis.errors import MetisError, NotFoundError, mask_secrets
from metis.identity.keys import new_secret
from metis.server import create_app
from metis.simulator.keys import new_anthropic_admin_key, new_openai_key
from metis.util.server_thread import ServerThread
from tests.conftest import Cli


@pytest.mark.parametrize(
    "secret",
    [
        new_secret(),
        "mit_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4",
        "mta_" + "z" * 43,
        new_openai_key(),
        new_anthropic_admin_key(),
    ],
    ids=["gateway-key", "ingest-token", "admin-token", "openai-key", "anthropic-admin-key"],
)
def test_secret_like_tokens_are_cut_to_their_display_form(secret: str) -> None:
    masked = mask_secrets(f"unknown gateway key {secret!r}; try again")
    assert secret not in masked
    assert secret[10:20] not in masked
    err = NotFoundError(f"unknown thing {secret!r}")
    assert secret not in err.message and secret not in str(err)


@pytest.mark.parametrize(
    "text",
    [
        "unknown gateway key 'key_01JABCDEFGHJKMNPQRSTVWXYZ0'",
        "unknown credential 'cred_01JABCDEFGHJKMNPQRSTVWXYZ0'",
        "unknown ingest token 'itok_01JABCDEFGHJKMNPQRSTVWXYZ0'",
        "require an Admin API key (sk-admin-...)",
        "unknown gateway key 'gw_nope'",
        "model 'gpt-4o-mini-2024-07-18' is not allowed",
    ],
)
def test_ids_and_short_values_are_left_alone(text: str) -> None:
    assert mask_secrets(text) == text
    assert MetisError(text).message == text


def test_cli_does_not_echo_a_pasted_secret(cli: type[Cli]) -> None:
    cli.ok("workspace", "add", "acme")
    secret = new_secret()
    for args in (
        ["gateway", "revoke-key", secret],
        ["routing", "explain", "--key", secret, "--model", "gpt-4o"],
        ["provider-key", "remove", new_openai_key()],
    ):
        r = cli.run(*args)
        assert r.exit_code == 1 and r.stderr.startswith("error: unknown"), r.output
        assert args[-1] not in r.output and secret not in r.output


def test_api_does_not_echo_a_pasted_secret(
    metis_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("METIS_ADMIN_TOKEN", "admin-" + "t" * 30)
    secret = new_secret()
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url) as http:
        admin = {"Authorization": "Bearer admin-" + "t" * 30}
        for path, params in [
            ("/analytics/by_key", {"gateway_key": secret}),
            ("/analytics/cost", {"user": "sk-" + "u" * 40}),
            ("/export/usage", {"team": secret}),
        ]:
            r = http.get(path, params=params, headers=admin)
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
            assert next(iter(params.values())) not in r.text, (path, r.text)
