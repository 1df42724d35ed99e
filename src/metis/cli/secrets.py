"""``metis secrets``: master-key maintenance."""

import typer

from metis.cli._common import console, settings, transaction
from metis.secrets.keyring import finish_rotation, rotate_master_key

app = typer.Typer(help="Master key maintenance.", no_args_is_help=True)


@app.command("rotate-master-key")
def rotate() -> None:
    """Re-encrypt every stored provider key with a new master key, in one transaction.

    The new key is written to $METIS_HOME/master.key.next (0600) before the
    database changes. With the key in $METIS_HOME/master.key it then replaces
    that file. With METIS_MASTER_KEY set, Metis cannot change your
    environment: set METIS_MASTER_KEY to the contents of master.key.next,
    restart, then delete the file (until then it keeps decrypting).

    Example:

        metis secrets rotate-master-key
    """
    s = settings()
    with transaction() as conn:
        report = rotate_master_key(conn, s)
    finish_rotation(s, report)
    console.print(
        f"re-encrypted {report.reencrypted} credential(s): master key "
        f"{', '.join(report.old_key_ids)} -> {report.new_key_id}"
    )
    if report.env_mode:
        console.print(
            f"METIS_MASTER_KEY is set, so the new key was written to {report.new_key_file} "
            "(mode 0600). Set METIS_MASTER_KEY to its contents in every Metis process, "
            "restart them, then delete the file."
        )
    else:
        console.print(f"installed the new key in {s.home / 'master.key'}")
