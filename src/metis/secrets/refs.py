"""Secret references: a credential can point at its secret instead of storing it.

Two forms are accepted:

- ``env:NAME``: the value of environment variable ``NAME`` (``[A-Za-z_][A-Za-z0-9_]*``)
  in the process that uses the credential (the server or the sync worker).
- ``file:/absolute/path``: the contents of a file, stripped of surrounding
  whitespace. The path must be absolute and free of ``..`` components, and
  must name a regular file (symlinks are resolved, and must still not escape
  through ``..``). A relative path is refused because it would depend on the
  working directory of whichever process reads it.

Errors are `SecretRefError` with a message naming the reference (never the value).
"""

import os
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from metis.errors import MetisError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,199}$")
MAX_SECRET_BYTES = 64 * 1024


class SecretRefError(MetisError):
    """A secret reference is malformed or cannot be resolved."""


@dataclass(frozen=True)
class SecretRef:
    """A parsed reference; ``str(ref)`` gives back the canonical text."""

    kind: Literal["env", "file"]
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


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
        return SecretRef("env", target)
    if kind == "file":
        if "\x00" in target or not target:
            raise SecretRefError("invalid secret reference: empty or invalid path")
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
    real = os.path.realpath(r.target)
    if not os.path.isfile(real):
        raise SecretRefError(f"secret reference {r}: no such regular file")
    try:
        size = os.path.getsize(real)
        if size > MAX_SECRET_BYTES:
            raise SecretRefError(f"secret reference {r}: file is too large to be a key")
        with open(real, encoding="utf-8") as f:
            value = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretRefError(
            f"secret reference {r}: cannot read file ({type(exc).__name__})"
        ) from None
    if not value:
        raise SecretRefError(f"secret reference {r}: file is empty")
    return value
