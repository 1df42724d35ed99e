import os
from pathlib import Path

import pytest

from metis.secrets.refs import SecretRefError, parse_ref, resolve_ref
from tests.conftest import Cli


def test_env_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY_1", " sk-abc \n")
    assert resolve_ref("env:MY_KEY_1") == "sk-abc"
    monkeypatch.delenv("MY_KEY_1")
    with pytest.raises(SecretRefError, match="not set"):
        resolve_ref("env:MY_KEY_1")


def test_file_ref(tmp_path: Path) -> None:
    f = tmp_path / "key.txt"
    f.write_text("sk-file-key\n")
    assert resolve_ref(f"file:{f}") == "sk-file-key"
    with pytest.raises(SecretRefError, match="no such"):
        resolve_ref(f"file:{tmp_path / 'missing'}")
    with pytest.raises(SecretRefError, match="no such"):
        resolve_ref(f"file:{tmp_path}")  # a directory
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretRefError, match="empty"):
        resolve_ref(f"file:{tmp_path / 'empty'}")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("file:relative/key", "absolute"),
        ("file:./key", "absolute"),
        ("file:/etc/../etc/passwd", r"'\.\.'"),
        ("env:BAD-NAME", "variable name"),
        ("env:", "variable name"),
        ("vault:foo", "env:NAME or file"),
        ("sk-plain-secret", "env:NAME or file"),
    ],
)
def test_bad_refs(text: str, why: str) -> None:
    with pytest.raises(SecretRefError, match=why):
        parse_ref(text)


def test_canonical_text() -> None:
    assert str(parse_ref("file:/a//b/")) == "file:/a/b"
    assert str(parse_ref(" env:X ")) == "env:X"


# ------------------------------------------------------------ file policy (docs/security.md)

CANARY = "sk-canary-ref-content-7f3a9c"


def _refused(ref: str, why: str) -> str:
    """Resolving ``ref`` fails naming the rule; the message never holds the content."""
    with pytest.raises(SecretRefError, match=why) as exc:
        resolve_ref(ref)
    msg = str(exc.value)
    assert CANARY not in msg and CANARY[4:-4] not in msg
    return msg


@pytest.mark.parametrize(
    "text",
    ["file:/srv/../etc/shadow", "file:/srv/keys/../../root/key", "file:/a/b/..", "file:/../x"],
)
def test_dotdot_escapes_are_refused(text: str) -> None:
    with pytest.raises(SecretRefError, match=r"'\.\.' is not allowed"):
        parse_ref(text)


def test_long_or_nul_paths_are_refused() -> None:
    for text in ("file:/" + "a" * 5000, "file:/tmp/a\x00b", "file:"):
        with pytest.raises(SecretRefError, match="empty, too long or invalid path"):
            parse_ref(text)


def test_dotdot_inside_a_name_is_just_a_name(tmp_path: Path) -> None:
    """Kubernetes mounts secrets as ``..data/key`` symlinks: ``..data`` is a name, not ``..``."""
    data = tmp_path / "..2026_11_30"
    data.mkdir()
    (data / "key").write_text(CANARY + "\n")
    (tmp_path / "..data").symlink_to(data.name)
    (tmp_path / "key").symlink_to("..data/key")
    assert resolve_ref(f"file:{tmp_path / 'key'}") == CANARY
    assert resolve_ref(f"file:{tmp_path / '..data' / 'key'}") == CANARY


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a reader opening a FIFO would block forever without O_NONBLOCK
    _refused(f"file:{fifo}", "it is a FIFO")
    _refused(f"file:{tmp_path}", "it is a directory")
    _refused("file:/dev/null", "it is a device")
    link = tmp_path / "to-fifo"
    link.symlink_to(fifo)
    _refused(f"file:{link}", "it is a FIFO")  # the link is followed, the target checked


def test_world_writable_files_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text(CANARY)
    f.chmod(0o666)
    _refused(f"file:{f}", "world-writable")
    f.chmod(0o644)  # world-readable is allowed (Kubernetes' default); 0600/0400 is advised
    assert resolve_ref(f"file:{f}") == CANARY


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (CANARY + "\nsecond line\n", "more than one line"),
        ("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/bin/sh\n", "more than one line"),
        (CANARY + "\x07bell", "control characters"),
        (b"\xff\xfe" + CANARY.encode(), "not UTF-8"),
        ("x" * (64 * 1024 + 1), "too large"),
        ("  \n\n", "empty"),
    ],
)
def test_file_must_hold_one_line_of_text(tmp_path: Path, content: str | bytes, why: str) -> None:
    f = tmp_path / "key"
    if isinstance(content, bytes):
        f.write_bytes(content)
    else:
        f.write_text(content)
    _refused(f"file:{f}", why)


def test_unreadable_file_says_so(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    f = tmp_path / "key"
    f.write_text(CANARY)
    f.chmod(0)
    _refused(f"file:{f}", "cannot open file")


def test_metis_own_secret_files_are_refused_by_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """master.key, master.key.next and the database, by any name (symlink, hard link)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("METIS_HOME", str(home))
    monkeypatch.delenv("METIS_MASTER_KEY", raising=False)
    db = tmp_path / "elsewhere" / "ledger.db"
    db.parent.mkdir()
    monkeypatch.setenv("METIS_DATABASE_URL", f"sqlite:///{db}")
    (home / "master.key").write_text(CANARY + "\n")
    (home / "master.key.next").write_text(CANARY + "\n")
    db.write_text(CANARY + "\n")
    (tmp_path / "db-wal").write_text(CANARY)
    os.link(tmp_path / "db-wal", db.with_name("ledger.db-wal"))
    (tmp_path / "innocent").symlink_to(home / "master.key")
    os.link(home / "master.key.next", tmp_path / "hardlink")
    for ref, name in [
        (f"file:{home / 'master.key'}", "master.key"),
        (f"file:{tmp_path / 'innocent'}", "master.key"),
        (f"file:{tmp_path / 'hardlink'}", "master.key.next"),
        (f"file:{db}", "ledger.db"),
        (f"file:{tmp_path / 'db-wal'}", "ledger.db-wal"),
    ]:
        msg = _refused(ref, "Metis's own secret file")
        assert name in msg
    # a key file of its own in METIS_HOME is fine
    (home / "openai.key").write_text(CANARY)
    assert resolve_ref(f"file:{home / 'openai.key'}") == CANARY


@pytest.mark.parametrize(
    "name",
    [
        "METIS_MASTER_KEY",
        "METIS_ADMIN_TOKEN",
        "METIS_CRON_SECRET",
        "METIS_DATABASE_URL",
        "metis_master_key",
        "METIS_ALERT_WEBHOOK_SECRET",
    ],
)
def test_metis_own_secret_settings_are_refused(name: str) -> None:
    with pytest.raises(SecretRefError, match="Metis's own secret settings"):
        parse_ref(f"env:{name}")


def test_other_metis_prefixed_variables_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METIS_HOOK_SECRET", CANARY)  # docs/alerts.md uses this name
    assert resolve_ref("env:METIS_HOOK_SECRET") == CANARY


def test_cli_refuses_a_bad_ref_at_add_time_and_stores_nothing(
    cli: type[Cli], tmp_path: Path
) -> None:
    cli.ok("workspace", "add", "acme")
    wide = tmp_path / "wide.key"
    wide.write_text(CANARY)
    wide.chmod(0o666)
    base = ["provider-key", "add", "--workspace", "acme", "--provider", "openai"]
    base += ["--purpose", "inference"]
    for ref, why in [
        ("env:METIS_MASTER_KEY", "own secret settings"),
        (f"file:{wide}", "world-writable"),
        ("file:/etc/../etc/passwd", "'..' is not allowed"),
        ("file:/etc/passwd", "more than one line"),
    ]:
        r = cli.run(*base, "--secret-ref", ref)
        assert r.exit_code != 0, ref
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0], r.stderr
        assert CANARY not in r.output and "root:" not in r.output
    # a reference that only resolves in the server's environment is still accepted
    cli.ok(*base, "--secret-ref", f"file:{tmp_path / 'not-yet-there.key'}")
    listed = cli.ok("provider-key", "list", "--json").stdout
    assert listed.count("cred_") == 1 and "not-yet-there" in listed
