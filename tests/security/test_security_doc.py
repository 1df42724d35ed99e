"""docs/security.md names real tests: every ``file::test`` it cites exists.

A promise whose proof was renamed or deleted would otherwise keep pointing at
nothing. ``…::name`` means "the same file as the previous reference".
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
REF = re.compile(r"(tests/[\w/]+\.py|…)(?:::(\w+))?")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def test_every_cited_test_exists() -> None:
    text = DOC.read_text()
    last: str | None = None
    cited: list[tuple[str, str | None]] = []
    for m in REF.finditer(text):
        file, name = m.group(1), m.group(2)
        if file == "…":
            if name is None:
                continue
            assert last is not None, f"'…::{name}' before any file"
            file = last
        last = file
        cited.append((file, name))
    missing = []
    for file, name in cited:
        path = ROOT / file
        if not path.exists():
            missing.append(file)
        elif name is not None and name not in _tests_in(path):
            missing.append(f"{file}::{name}")
    # bare names in backticks (e.g. in the secret-reference list) must exist somewhere cited
    known = set().union(*(_tests_in(ROOT / f) for f, _ in cited if (ROOT / f).exists()))
    for bare in re.findall(r"`(test_\w+)`", text):
        if bare not in known:
            missing.append(bare)
    assert len(cited) > 30
    assert missing == [], f"docs/security.md cites tests that do not exist: {missing}"
