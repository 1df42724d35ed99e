"""``metis provider-key``: a workspace's provider API keys (encrypted, or referenced)."""

import sys

import typer

from metis.cli import resolve
from metis.cli._common import (
    WIDE_HELP,
    console,
    print_json,
    print_table,
    ready_engine,
    settings,
    transaction,
)
from metis.credentials import (
    Credential,
    add_credential,
    list_credentials,
    remove_credential,
    validate_request,
)
from metis.errors import ValidationError
from metis.timeutil import iso
from metis.workspaces import list_workspaces

app = typer.Typer(
    help="Provider keys of a workspace (OpenAI, Anthropic, Azure, Gemini, Bedrock, "
    "OpenAI-compatible), stored encrypted.",
    no_args_is_help=True,
)


def _read_secret() -> str:
    """The secret from a hidden prompt (TTY) or stdin (pipe); never from argv."""
    if sys.stdin is not None and sys.stdin.isatty():
        value: str = typer.prompt("Provider API key", hide_input=True)
    else:
        value = sys.stdin.read() if sys.stdin is not None else ""
    value = value.strip()
    if not value:
        raise ValidationError(
            "no secret given: type it at the prompt, pipe it on stdin, or use --secret-ref"
        )
    return value


def _shown(c: Credential) -> str:
    if c.secret_ref:
        return f"{c.secret_ref} (…{c.last4})" if c.last4 else c.secret_ref
    return f"…{c.last4}" if c.last4 else "…"


@app.command("add")
def add(
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace name, id or path."),
    provider: str = typer.Option(
        ...,
        "--provider",
        help="The upstream's name: openai, anthropic, azure, gemini, bedrock, an "
        "OpenAI-compatible preset (groq, mistral, deepseek, xai, openrouter, together, "
        "fireworks, cerebras, gemini-openai, ollama, vllm, lmstudio), or any name with "
        "--family. Usage records and model addresses (NAME/model) use it.",
    ),
    family: str | None = typer.Option(
        None,
        "--family",
        help="openai, openai-compatible, azure-openai, anthropic, gemini or bedrock "
        "(default: from --provider).",
    ),
    purpose: list[str] = typer.Option(  # noqa: B008
        ..., "--purpose", help="inference and/or usage_admin (repeat the option for both)."
    ),
    mode: str | None = typer.Option(
        None,
        "--mode",
        help="admin (organization admin key) or standard; default admin when "
        "--purpose usage_admin is given, else standard.",
    ),
    org_id: str | None = typer.Option(None, "--org-id", help="OpenAI organization id header."),
    project_id: str | None = typer.Option(None, "--project-id", help="OpenAI project id header."),
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="Base URL: OpenAI/Anthropic/Gemini root (e.g. the simulator "
        "http://127.0.0.1:8090), an OpenAI-compatible provider's base URL with its /v1 part, "
        "https://<resource>.openai.azure.com; default: the family's or preset's public URL.",
    ),
    price_provider: str | None = typer.Option(
        None,
        "--price-provider",
        help="genai-prices provider id pricing its models (default: the family's or "
        "preset's; 'none': the prices file only).",
    ),
    api_version: str | None = typer.Option(
        None, "--api-version", help="Azure OpenAI api-version (default 2024-10-21)."
    ),
    azure_path_style: str | None = typer.Option(
        None,
        "--azure-path-style",
        help="Azure: deployments (/openai/deployments/<model>/…, default) or v1 (/openai/v1/…).",
    ),
    region: str | None = typer.Option(None, "--region", help="Bedrock: the AWS region."),
    aws_access_key_id: str | None = typer.Option(
        None,
        "--aws-access-key-id",
        help="Bedrock: the access key id (the secret access key is read like any secret).",
    ),
    bedrock_api: str | None = typer.Option(
        None,
        "--bedrock-api",
        help="Bedrock: auto (InvokeModel for Claude, Converse otherwise), converse or invoke.",
    ),
    secret_ref: str | None = typer.Option(
        None,
        "--secret-ref",
        help="Reference instead of a stored secret: env:NAME or file:/absolute/path.",
    ),
) -> None:
    """Store a provider API key for a workspace, encrypted with the master key.

    The key is read from a hidden prompt, or from stdin when stdin is not a
    terminal; it is never taken from the command line (for Bedrock: the AWS
    secret access key). Usage sync needs an admin key (--purpose usage_admin
    --mode admin; OpenAI and Anthropic only): neither has a per-key usage
    endpoint for standard keys. docs/providers.md has every family's setup.

    Examples:

        printf %s "$OPENAI_ADMIN_KEY" | metis provider-key add --workspace acme \\
            --provider openai --purpose usage_admin --org-id org_123

        printf %s "$GROQ_API_KEY" | metis provider-key add --workspace acme \\
            --provider groq --purpose inference

        printf %s "$AWS_SECRET_ACCESS_KEY" | metis provider-key add --workspace acme \\
            --provider bedrock --purpose inference --region us-east-1 \\
            --aws-access-key-id AKIAIOSFODNN7EXAMPLE
    """
    from metis.gateway.upstreams import catalog

    # refuse before asking for the secret
    _, fam, _, _ = validate_request(provider, purpose, mode, family)
    options = catalog.check_options(
        fam,
        api_version=api_version,
        path_style=azure_path_style,
        region=region,
        access_key_id=aws_access_key_id,
        bedrock_api=bedrock_api,
    )
    catalog.check_price_provider(price_provider)
    s = settings()
    secret = None if secret_ref else _read_secret()
    with transaction() as conn:
        ws = resolve.workspace(conn, workspace)
        cred = add_credential(
            conn,
            s,
            workspace_id=ws.id,
            provider=provider,
            purposes=purpose,
            mode=mode,
            secret=secret,
            secret_ref=secret_ref,
            org_id=org_id,
            project_id=project_id,
            base_url=base_url,
            family=fam,
            price_provider=price_provider,
            options=options,
        )
    del secret
    console.print(
        f"added credential {cred.id}: {cred.provider} ({cred.family}) "
        f"{','.join(cred.purposes)} ({cred.mode}) key {_shown(cred)} for workspace {ws.name}"
    )


@app.command("list")
def list_(
    workspace: str | None = typer.Option(None, "--workspace", "-w", help="Only this workspace."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """List provider keys (only the last four characters of a key are shown).

    Other commands take a credential by id, by provider (when the workspace
    has one key of it), as WORKSPACE/PROVIDER, or by its last four characters.

    Example:

        metis provider-key list --workspace acme
    """
    with transaction() as conn:
        names = {w.id: w.name for w in list_workspaces(conn)}
        ws_id = resolve.workspace(conn, workspace).id if workspace else None
        creds = list_credentials(conn, workspace_id=ws_id)
    if json_out:
        print_json(
            [
                {
                    "id": c.id,
                    "workspace_id": c.workspace_id,
                    "workspace": names.get(c.workspace_id),
                    "provider": c.provider,
                    "family": c.family,
                    "price_provider": c.effective_price_provider,
                    "options": c.options,
                    "purposes": list(c.purposes),
                    "mode": c.mode,
                    "org_id": c.org_id,
                    "project_id": c.project_id,
                    "base_url": c.base_url,
                    "last4": c.last4,
                    "secret_ref": c.secret_ref,
                    "created_at": iso(c.created_at),
                }
                for c in creds
            ]
        )
        return
    if not creds:
        console.print("no provider keys yet: add one with `metis provider-key add`")
        return
    print_table(
        "Provider keys",
        ["id", "workspace", "provider", "family", "purposes", "mode", "key", "base url", "created"],
        [
            (
                c.id,
                names.get(c.workspace_id, c.workspace_id),
                c.provider,
                c.family,
                ",".join(c.purposes),
                c.mode,
                _shown(c),
                c.base_url or f"{c.api_root} (default)",
                iso(c.created_at),
            )
            for c in creds
        ],
        wide=wide,
    )


@app.command("test")
def test(
    credential: str = typer.Argument(
        ..., help="Credential: id (cred_…), provider, WORKSPACE/PROVIDER or last four."
    ),
) -> None:
    """Make one cheap authenticated call with a key and report ok or the provider's error.

    Example:

        metis provider-key test acme/openai
    """
    from metis.ingest.providers.check import check_credential

    s = settings()
    engine = ready_engine(s)
    try:
        with engine.connect() as conn:
            cred = resolve.credential(conn, credential)
        result = check_credential(engine, s, cred.id)
    finally:
        engine.dispose()
    if result.ok:
        console.print(f"ok: {result.detail}")
        return
    typer.echo(f"error: provider rejected the call: {result.detail}", err=True)
    raise typer.Exit(1)


@app.command("remove")
def remove(
    credential: str = typer.Argument(
        ..., help="Credential: id (cred_…), provider, WORKSPACE/PROVIDER or last four."
    ),
) -> None:
    """Remove a key: its ciphertext is erased; past usage and runs keep their reference.

    Example:

        metis provider-key remove cred_01J9Z8Q4M6W2X3Y4Z5A6B7C8D9
    """
    with transaction() as conn:
        cred = remove_credential(conn, resolve.credential(conn, credential).id)
    console.print(f"removed credential {cred.id} ({cred.provider})")
