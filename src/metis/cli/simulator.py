"""``metis simulator``: run the local OpenAI/Anthropic provider simulator."""

import typer

from metis.errors import ValidationError

app = typer.Typer(
    help="The local OpenAI/Anthropic provider simulator.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(
        8090, "--port", min=0, max=65535, help="TCP port to listen on (0: any free port)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for token counts and generated text."),
    history_days: int = typer.Option(
        0,
        "--history-days",
        min=0,
        max=400,
        help="Add deterministic past usage for this many days before today.",
    ),
    fault: list[str] = typer.Option(  # noqa: B008 - typer idiom
        [],
        "--fault",
        help="ENDPOINT=KIND[,count=N][,delay=S][,retry_after=S]; repeatable. "
        "KIND: 429, 500, 503, 529, slow, drop, truncated, malformed, stream_cut.",
    ),
) -> None:
    """Serve a simulated OpenAI and Anthropic (inference, admin usage and cost APIs).

    OpenAI SDKs use base_url http://HOST:PORT/v1, Anthropic SDKs http://HOST:PORT.
    Inference accepts sk-... / sk-ant-... keys; admin endpoints accept only
    sk-admin-... / sk-ant-admin... keys. GET /_sim/ground_truth returns exact
    totals of everything served; POST /_sim/faults and /_sim/reset control it.

    Example:

        metis simulator serve --port 8090 --seed 7 --history-days 30 \\
            --fault '/v1/chat/completions=429,count=2'
    """
    import uvicorn

    from metis.simulator import create_app
    from metis.simulator.faults import FaultError, parse_spec

    try:
        faults = [parse_spec(f) for f in fault]
    except FaultError as exc:
        raise ValidationError(str(exc)) from exc
    from metis.cli.serve import base_url, listen

    app = create_app(seed=seed, history_days=history_days, faults=faults)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    sock = listen(host, port, config.backlog)
    try:
        url = base_url(sock)
        typer.echo(f"metis simulator listening on {url} (seed {seed}, history {history_days} d)")
        typer.echo(f"  OpenAI:    base_url {url}/v1, any sk-... key (admin reports: sk-admin-...)")
        typer.echo(f"  Anthropic: base_url {url}, any sk-ant-... key (admin: sk-ant-admin...)")
        typer.echo(f"  control:   {url}/_sim/ground_truth, POST /_sim/faults and /_sim/reset")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
