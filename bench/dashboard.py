"""Dashboard benchmark: how long each ``/ui`` page takes on a large ledger.

Builds the same ledger as `bench/analytics.py` (its identity seed and bulk
loader: N usage records over 90 days, three overlapping sources, provider
coverage), rebuilds the rollups, then signs in to the dashboard of a real
Metis server thread and times every page over HTTP (median / max of
``--repeat`` runs) for a 7-day and a 90-day range, in the default reconciled
view and in the raw view.

    .venv/bin/python bench/dashboard.py --rows 1000000
    .venv/bin/python bench/dashboard.py --backend postgresql \\
        --pg-url postgresql://metis@127.0.0.1:55432/postgres --rows 1000000

Prints a Markdown table; results are recorded in docs/dashboard.md.
"""

import argparse
import os
import re
import secrets
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))

import analytics as ab
from metis.db.engine import make_engine, normalize_url
from metis.db.migrate import upgrade
from metis.ledger import rollups
from metis.secrets.master_key import generate_key_text

PAGES = (
    "/ui",
    "/ui/teams",
    "/ui/keys",
    "/ui/forecast",
    "/ui/savings",
    "/ui/routing",
    "/ui/reconciliation",
    "/ui/ingestion",
)


def bench_pages(repeat: int) -> list[tuple[str, str, str, float, float]]:
    from metis.server import create_app
    from metis.util.server_thread import ServerThread

    end = (ab.END - timedelta(days=1)).date()
    ranges = {
        "7 d": {"from": str(end - timedelta(days=6)), "to": str(end)},
        "90 d": {"from": str(end - timedelta(days=89)), "to": str(end)},
    }
    out = []
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url, timeout=600) as c:
        page = c.get("/ui/login")
        m = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert m
        r = c.post("/ui/login", data={"csrf": m.group(1), "token": os.environ["METIS_ADMIN_TOKEN"]})
        assert r.status_code == 303, r.text
        for label, rng in ranges.items():
            for view in ("reconciled", "raw"):
                for path in PAGES:
                    if view == "raw" and path in (
                        "/ui/reconciliation",
                        "/ui/ingestion",
                        "/ui/routing",
                    ):
                        continue  # these pages do not depend on the view
                    if label != "7 d" and path == "/ui/forecast":
                        continue  # always the current month (and the weeks and months before)

                    def get(path: str = path, rng: dict[str, str] = rng, view: str = view) -> None:
                        resp = c.get(path, params={**rng, "view": view})
                        assert resp.status_code == 200, resp.text[:300]

                    med, mx = ab.timed(get, repeat)
                    out.append((path, label, view, med, mx))
                    ab.log(f"{path} {label} {view}: {med * 1000:.0f} ms")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=os.environ.get("METIS_TEST_DATABASE_URL"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--reuse",
        metavar="URL",
        help="time the pages against a ledger `bench/analytics.py --keep` left (no load)",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="metis-bench-ui-"))
    tmp.chmod(0o700)
    admin = None
    if args.reuse:
        url_s = args.reuse
    elif args.backend == "postgresql":
        if not args.pg_url:
            sys.exit("--pg-url (or METIS_TEST_DATABASE_URL) is required for postgresql")
        admin = create_engine(normalize_url(args.pg_url), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text('DROP DATABASE IF EXISTS "metis_bench_ui" WITH (FORCE)'))
            c.execute(text('CREATE DATABASE "metis_bench_ui"'))
        url = make_url(normalize_url(args.pg_url)).set(database="metis_bench_ui")
        url_s = url.render_as_string(hide_password=False)
    else:
        url_s = f"sqlite:///{tmp / 'metis.db'}"
    os.environ.update(
        {
            "METIS_HOME": str(tmp),
            "METIS_DATABASE_URL": url_s,
            "METIS_MASTER_KEY": generate_key_text(),
            "METIS_ADMIN_TOKEN": "bench-" + secrets.token_urlsafe(16),
            "METIS_GATEWAY_URLS": ab.GATEWAY_URL,
            "METIS_INGEST_SCHEDULER": "false",
        }
    )
    engine = make_engine(url_s)
    load_s = 0.0
    try:
        upgrade(engine)
        if not args.reuse:
            keys = ab.seed_identity(engine)
            ab.log(f"loading {args.rows:,} rows into {args.backend}")
            load_s = ab.load(engine, args.rows, keys)
            with engine.begin() as c:
                rollups.rebuild(c)
        results = bench_pages(args.repeat)
        with engine.connect() as c:
            n = int(c.execute(text("SELECT count(*) FROM usage_records")).scalar() or 0)
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as c:
                c.execute(text('DROP DATABASE IF EXISTS "metis_bench_ui" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"backend {engine.dialect.name}, {n:,} usage records over {ab.DAYS} days "
          f"(load {load_s:.0f} s)")  # fmt: skip
    print()
    print("| page | range | view | median | max |")
    print("|---|---|---|---|---|")
    for path, label, view, med, mx in results:
        print(f"| `{path}` | {label} | {view} | {med * 1000:,.0f} ms | {mx * 1000:,.0f} ms |")


if __name__ == "__main__":
    main()
