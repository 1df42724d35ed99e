"""Secret references: a credential can point at its secret instead of storing it.

Two forms are accepted:

- ``env:NAME``: the value of environment variable ``NAME`` (``[A-Za-z_][A-Za-z0-9_]*``)
  in the process that uses the credential (the server or the sync worker).
  Metis's own secret settings (``METIS_MASTER_KEY``, ``METIS_ADMIN_TOKEN``,
  ``METIS_CRON_SECRET``, ``METIS_DATABASE_URL``, every other secret setting)
  are refused: a credential must never send them upstream.
- ``file:/absolute/path``: the contents of a file, stripped of surrounding
  whitespace.

The file policy (docs/security.md, "Secret references"), checked when the
reference is parsed and again, on the open file itself, each time it is read:

1. The path is absolute (a relative one would depend on the reader's working
   directory), at most 4096 characters, without ``..`` components or NUL.
2. Symlinks are followed (Kubernetes mounts secrets through them), but every
   check below is made on what was actually opened (``fstat`` of the open
   descriptor), so swapping a link between check and read gains nothing.
3. It must be a regular file: a directory, FIFO (which would block the
   reader), socket or device is refused.
4. It must not be world-writable: anyone on the host could swap the key.
5. It must not be one of Metis's own secret files, the master key(s) or the
   SQLite database with its journal files, whatever name it is reached by
   (compared by device and inode, so symlinks and hard links do not help).
   Otherwise a credential pointing at them, with a ``--base-url`` of the
   attacker's, would send them upstream as a bearer token.
6. It holds one line of at most 64 KiB of UTF-8 without control characters:
   a secret alone, not an arbitrary file.

Errors are `SecretRefError` with a message naming the reference and the rule
it broke (never the value). `SecretRefRefused` (a subclass) means the file
exists but breaks a rule, which is worth refusing even where the reference
might only resolve in another process's environment.
"""

import os
import re
import stat
import typing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from metis.errors import MetisError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
MAX_SECRET_BYTES = 64 * 1024
MAX_PATH_CHARS = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SecretRefError(MetisError):
    """A secret reference is malformed or cannot be resolved."""


class SecretRefRefused(SecretRefError):
    """The referenced file exists but breaks the file policy (see the module docstring)."""


@dataclass(frozen=True)
class SecretRef:
    """A parsed reference; ``str(ref)`` gives back the canonical text."""

    kind: Literal["env", "file"]
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def _own_secret_settings() -> frozenset[str]:
    """``METIS_*`` variables holding Metis's own secrets: every `SecretStr` setting + the DB URL."""
    from pydantic import SecretStr

    from metis.config import Settings

    names = {"METIS_DATABASE_URL"}
    for name, field in Settings.model_fields.items():
        if SecretStr in typing.get_args(field.annotation) or field.annotation is SecretStr:
            names.add("METIS_" + name.upper())
    return frozenset(names)


def parse_ref(text: str) -> SecretRef:
    """Parse ``env:NAME`` or ``file:/abs/path``; raise `SecretRefError` otherwise."""
    kind, sep, target = text.strip().partition(":")
    if not sep:
        raise SecretRefError("invalid secret reference: use env:NAME or file:/absolute/path")
    if kind == "env":
        if not _ENV_NAME.match(target):
            raise SecretRefError(
                "invalid secret reference: env:NAME needs a variable name "
                "of letters, digits and '_'"
            )
        if target.upper() in _own_secret_settings():
            raise SecretRefError(
                f"invalid secret reference: env:{target} is one of Metis's own secret "
                "settings; put the provider key in a variable of its own"
            )
        return SecretRef("env", target)
    if kind == "file":
        if "\x00" in target or not target or len(target) > MAX_PATH_CHARS:
            raise SecretRefError("invalid secret reference: empty, too long or invalid path")
        p = PurePosixPath(target)
        if not p.is_absolute():
            raise SecretRefError(
                "invalid secret reference: file: needs an absolute path "
                "(a relative one would depend on the reader's working directory)"
            )
        if ".." in p.parts:
            raise SecretRefError("invalid secret reference: '..' is not allowed in paths")
        return SecretRef("file", str(p))
    raise SecretRefError("invalid secret reference: use env:NAME or file:/absolute/path")


def resolve_ref(ref: SecretRef | str) -> str:
    """The secret a reference points at; `SecretRefError` if missing or empty."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    if r.kind == "env":
        value = os.environ.get(r.target)
        if value is None or not value.strip():
            raise SecretRefError(f"secret reference {r}: environment variable is not set or empty")
        return value.strip()
    return _read_file(r)


def _protected_files() -> list[Path]:
    """Metis's own secret files: the master key(s) and the SQLite database files."""
    from metis.config import get_settings
    from metis.db.engine import normalize_url, sqlite_path

    settings = get_settings()
    out = [settings.home / "master.key", settings.home / "master.key.next"]
    db = sqlite_path(normalize_url(settings.effective_database_url))
    if db is not None:
        out += [db, *(db.with_name(db.name + sfx) for sfx in ("-wal", "-shm", "-journal"))]
    return out


def _same_file(st: os.stat_result, paths: list[Path]) -> Path | None:
    for p in paths:
        try:
            other = os.stat(p)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            return p
    return None


def _read_file(r: SecretRef) -> str:
    try:
        # O_NONBLOCK: opening a FIFO must not hang the reader; fstat refuses it below.
        fd = os.open(r.target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretRefError(f"secret reference {r}: no such regular file") from None
    except OSError as exc:
        raise SecretRefError(
            f"secret reference {r}: cannot open file ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretRefRefused(
                f"secret reference {r}: no such regular file (it is a "
                f"{_kind(st.st_mode)}; point at the file holding the key)"
            )
        if st.st_mode & stat.S_IWOTH:
            raise SecretRefRefused(
                f"secret reference {r}: file is world-writable, so anyone on this host could "
                "replace the key; chmod o-w it (0600 or 0400 is best)"
            )
        own = _same_file(st, _protected_files())
        if own is not None:
            raise SecretRefRefused(
                f"secret reference {r}: refers to Metis's own secret file {own.name}; "
                "a provider key must live in a file of its own"
            )
        if st.st_size > MAX_SECRET_BYTES:
            raise SecretRefRefused(f"secret reference {r}: file is too large to be a key")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretRefError(
            f"secret reference {r}: cannot read file ({exc.strerror or type(exc).__name__})"
        ) from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretRefRefused(f"secret reference {r}: file is too large to be a key")
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretRefRefused(f"secret reference {r}: file is not UTF-8 text") from None
    if not value:
        raise SecretRefError(f"secret reference {r}: file is empty")
    if "\n" in value or "\r" in value:
        raise SecretRefRefused(
            f"secret reference {r}: file holds more than one line; it must hold the key alone"
        )
    if _CONTROL.search(value):
        raise SecretRefRefused(f"secret reference {r}: file holds control characters")
    return value


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
