from pathlib import Path

import pytest

from metis.secrets.refs import SecretRefError, parse_ref, resolve_ref


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
