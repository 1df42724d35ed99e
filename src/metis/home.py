"""Setting up ``$METIS_HOME``: folder, master key, database, migrations.

`initialize` is idempotent: running it on a set-up home changes nothing.
"""

import stat
from dataclasses import dataclass, field

from metis.config import Settings
from metis.db.engine import make_engine
from metis.db.migrate import current_revision, head_revision, upgrade
from metis.secrets.master_key import ensure_master_key


@dataclass
class InitReport:
    """What `initialize` did, for the CLI to print."""

    created: list[str] = field(default_factory=list)
    migrated_from: str | None = None
    migrated_to: str | None = None


def ensure_home(settings: Settings) -> bool:
    """Create ``$METIS_HOME`` with mode 0700; True when it was created."""
    home = settings.home
    if home.exists():
        if stat.S_IMODE(home.stat().st_mode) & 0o077:
            home.chmod(0o700)
        return False
    home.mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    return True


def initialize(settings: Settings) -> InitReport:
    """Create the home folder, master key and database, and migrate to head."""
    report = InitReport()
    if ensure_home(settings):
        report.created.append(str(settings.home))
    if ensure_master_key(settings):
        report.created.append(str(settings.home / "master.key"))
    engine = make_engine(settings=settings)
    try:
        before = current_revision(engine)
        head = head_revision()
        if before != head:
            upgrade(engine)
            report.migrated_from, report.migrated_to = before, head
    finally:
        engine.dispose()
    return report
