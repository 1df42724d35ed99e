"""Run the real agent CLIs (Claude Code, OpenAI Codex CLI, Gemini CLI) against a local server.

The CLIs are the pinned npm packages of tests/clients/node (installed by
``scripts/clients.sh``, which ``make test`` and CI run). A test that cannot find
one FAILS with a message saying how to install it; it never skips.

Every run is isolated and offline:

- a fresh HOME (and the CLI's own config dir: ``CLAUDE_CONFIG_DIR`` /
  ``CODEX_HOME``) and working directory under the test's tmp dir; the
  environment is built from scratch (the developer's own keys, proxies and
  configs never reach the CLI);
- the base URL points at the server under test; the ``gw_`` key travels in an
  environment variable (``ANTHROPIC_API_KEY`` / ``ANTHROPIC_AUTH_TOKEN`` for
  Claude Code, the provider's ``env_key`` for Codex, ``GEMINI_API_KEY`` with
  ``GOOGLE_GEMINI_BASE_URL`` for Gemini CLI), never on argv;
- every switch the CLIs document for their own traffic (telemetry, updates,
  error reporting, feedback, feature flags, plugin marketplaces) is turned off,
  and ``HTTPS_PROXY``/``HTTP_PROXY`` point at an `EgressTrap` (loopback
  excluded) that records and refuses anything that still tries to leave;
- stdin is closed, a hard timeout kills the whole process group, and stdout /
  stderr are captured and shown when a run fails (`CliRun.ok`).

Fixtures: ``egress_trap``, ``recorder_factory`` (a recording server, see
tests/clients/recorder.py), ``claude_code``, ``codex_cli`` and ``gemini_cli``
(runners bound to this test's tmp dir and trap).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metis.util.server_thread import ServerThread
from tests.clients.egress import EgressTrap
from tests.clients.recorder import Recorder

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "clients" / "node"
INSTALL_HINT = "run scripts/clients.sh (make test and .ci/run do) to install the pinned CLIs"

CLAUDE_CODE_OFFLINE = {
    # documented as DISABLE_AUTOUPDATER + DISABLE_BUG_COMMAND + DISABLE_ERROR_REPORTING
    # + DISABLE_TELEMETRY; each is also set on its own
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
}
"""Claude Code's switches for its own traffic (names from its env-var reference and binary)."""

CODEX_OFFLINE_TOML = """\
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[features]
# without this, codex exec 0.171.0 connects to github.com, api.github.com and chatgpt.com
# (plugin marketplace sync) on every run
plugins = false
apps = false
"""
"""Codex's config for its own traffic (keys from its config reference)."""

GEMINI_OFFLINE_SETTINGS: dict[str, Any] = {
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "ide": {"enabled": False},
    "security": {"folderTrust": {"enabled": False}, "auth": {"selectedType": "gemini-api-key"}},
}
"""Gemini CLI's settings for its own traffic (keys from its configuration reference):
no auto-update or update check, no usage statistics (Clearcut), no telemetry, no IDE
companion; folder trust off (the run's scratch directory would need trusting). Auth is
the Gemini API key (``GEMINI_API_KEY``): ``GOOGLE_GEMINI_BASE_URL`` is documented for
``gemini-api-key`` auth, and 0.61.0 refuses the ``gateway`` auth type it would otherwise
infer from that variable ("Invalid auth method selected")."""

GEMINI_OFFLINE_ENV = {"GEMINI_TELEMETRY_ENABLED": "false"}
"""The environment form of the telemetry switch (overrides the setting)."""


def pinned_version(package: str) -> str:
    """The version package-lock.json pins for an npm package."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{package}"]["version"])


def cli_binary(name: str) -> Path:
    """The installed CLI ``name`` (``claude`` / ``codex``); a test failure when missing."""
    path = NODE_DIR / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.fail(f"the {name} CLI is not installed at {path}: {INSTALL_HINT}", pytrace=False)
    return path


@dataclass
class CliRun:
    """One finished (or killed) CLI run."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    def report(self, limit: int = 6000) -> str:
        state = "timed out (killed)" if self.timed_out else f"exit {self.returncode}"
        return (
            f"$ {' '.join(self.argv)}\n{state} after {self.seconds:.1f}s\n"
            f"--- stdout ---\n{self.stdout[-limit:]}\n--- stderr ---\n{self.stderr[-limit:]}"
        )

    def ok(self) -> CliRun:
        """Assert a clean exit (showing the run's output when not); returns self."""
        assert not self.timed_out and self.returncode == 0, self.report()
        return self

    def json(self) -> Any:
        """stdout as one JSON document (``--output-format json``)."""
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"stdout is not JSON\n{self.report()}") from None


def run_cli(argv: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float) -> CliRun:
    """Run ``argv`` in its own process group; kill the group after ``timeout`` seconds."""
    t0 = time.monotonic()
    proc = subprocess.Popen(  # argv built by the harness, no shell
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    else:
        # reap anything the CLI left running in its group (tool subprocesses)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return CliRun(list(argv), proc.returncode, out, err, time.monotonic() - t0, timed_out)


class _Runner:
    """Shared layout: ``root/home`` (HOME), ``root/work`` (cwd), ``root/bin`` (first on PATH)."""

    def __init__(self, root: Path, trap: EgressTrap) -> None:
        self.root = root
        self.trap = trap
        self.home = root / "home"
        self.workdir = root / "work"
        self.bin = root / "bin"
        self.tmp = root / "tmp"
        for d in (self.home, self.workdir, self.bin, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        # Codex runs its shell tool as a login shell, which takes PATH from /etc/profile:
        # keep `bin` on it there too.
        (self.home / ".bash_profile").write_text(f'export PATH="{self.bin}:$PATH"\n')

    def base_env(self) -> dict[str, str]:
        node = shutil.which("node")
        path = [str(self.bin)]
        if node:
            path.append(str(Path(node).parent))
        path += ["/usr/local/bin", "/usr/bin", "/bin"]
        return {
            "PATH": os.pathsep.join(dict.fromkeys(path)),
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "NO_COLOR": "1",
            "SHELL": "/bin/bash",
            "USER": os.environ.get("USER", "metis"),
            **self.trap.proxy_env(),
        }

    def add_tool(self, name: str, script: str) -> Path:
        """Put an executable ``name`` on the CLI's PATH (a command its shell tool can run)."""
        path = self.bin / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)
        return path


class ClaudeCode(_Runner):
    """``claude -p`` (non-interactive print mode)."""

    def __init__(self, root: Path, trap: EgressTrap) -> None:
        super().__init__(root, trap)
        self.config_dir = self.home / ".claude"
        self.config_dir.mkdir(exist_ok=True)

    def env(self, base_url: str, key: str, *, auth: str = "api-key") -> dict[str, str]:
        """The environment for a run: ``auth`` ``api-key`` sends ``x-api-key: <key>``,
        ``bearer`` sends ``Authorization: Bearer <key>`` (``ANTHROPIC_AUTH_TOKEN``)."""
        env = self.base_env()
        env.update(CLAUDE_CODE_OFFLINE)
        env["ANTHROPIC_BASE_URL"] = base_url
        env["CLAUDE_CONFIG_DIR"] = str(self.config_dir)
        env["ANTHROPIC_AUTH_TOKEN" if auth == "bearer" else "ANTHROPIC_API_KEY"] = key
        return env

    def run(
        self,
        prompt: str,
        *,
        base_url: str,
        key: str,
        model: str | None,
        args: Sequence[str] = (),
        auth: str = "api-key",
        extra_env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> CliRun:
        """``model`` None: Claude Code's default model (no ``--model``)."""
        argv = [str(cli_binary("claude")), "-p", prompt, "--output-format", "json"]
        if model is not None:
            argv += ["--model", model]
        argv += args
        env = {**self.env(base_url, key, auth=auth), **(extra_env or {})}
        return run_cli(argv, env=env, cwd=self.workdir, timeout=timeout)


class Codex(_Runner):
    """``codex exec`` with a custom Responses provider named ``metis``."""

    KEY_VAR = "METIS_GATEWAY_KEY"

    def __init__(self, root: Path, trap: EgressTrap) -> None:
        super().__init__(root, trap)
        self.codex_home = self.home / ".codex"
        self.codex_home.mkdir(exist_ok=True)

    def config(
        self, base_url: str, *, model: str, supports_websockets: bool = False, extra: str = ""
    ) -> str:
        """config.toml: the gateway as provider ``metis`` (``base_url`` ends in ``/v1``)."""
        return (
            f'model = "{model}"\n'
            'model_provider = "metis"\n'
            f"{extra}\n"
            f"{CODEX_OFFLINE_TOML}\n"
            "[model_providers.metis]\n"
            'name = "Metis gateway"\n'
            f'base_url = "{base_url}"\n'
            f'env_key = "{self.KEY_VAR}"\n'
            'wire_api = "responses"\n'
            f"supports_websockets = {'true' if supports_websockets else 'false'}\n"
        )

    def run(
        self,
        prompt: str,
        *,
        base_url: str,
        key: str,
        model: str,
        args: Sequence[str] = (),
        supports_websockets: bool = False,
        config_extra: str = "",
        extra_env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> CliRun:
        cfg = self.config(
            base_url, model=model, supports_websockets=supports_websockets, extra=config_extra
        )
        (self.codex_home / "config.toml").write_text(cfg)
        argv = [str(cli_binary("codex")), "exec", "--skip-git-repo-check", *args, prompt]
        env = self.base_env()
        env["CODEX_HOME"] = str(self.codex_home)
        env[self.KEY_VAR] = key
        env.update(extra_env or {})
        return run_cli(argv, env=env, cwd=self.workdir, timeout=timeout)


class GeminiCli(_Runner):
    """``gemini -p`` (non-interactive) against a Gemini-API base URL (``GOOGLE_GEMINI_BASE_URL``,
    which Gemini CLI documents for gateways; the key in ``GEMINI_API_KEY``)."""

    def __init__(self, root: Path, trap: EgressTrap) -> None:
        super().__init__(root, trap)
        self.config_dir = self.home / ".gemini"
        self.config_dir.mkdir(exist_ok=True)

    def run(
        self,
        prompt: str,
        *,
        base_url: str,
        key: str,
        model: str,
        args: Sequence[str] = (),
        settings: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> CliRun:
        (self.config_dir / "settings.json").write_text(
            json.dumps({**GEMINI_OFFLINE_SETTINGS, **(settings or {})}, indent=2)
        )
        argv = [str(cli_binary("gemini")), "-p", prompt, "-m", model, *args]
        env = self.base_env()
        env.update(GEMINI_OFFLINE_ENV)
        env["GEMINI_CLI_HOME"] = str(self.home)
        env["GOOGLE_GEMINI_BASE_URL"] = base_url
        env["GEMINI_API_KEY"] = key
        env.update(extra_env or {})
        return run_cli(argv, env=env, cwd=self.workdir, timeout=timeout)


@pytest.fixture
def egress_trap() -> Iterator[EgressTrap]:
    """A started `EgressTrap` for this test."""
    with EgressTrap() as trap:
        yield trap


RecorderFactory = Callable[..., tuple[Recorder, str]]


@pytest.fixture
def recorder_factory() -> Iterator[RecorderFactory]:
    """Start recording servers: ``recorder_factory(upstream=None, secrets=(), ws_status=404)``
    returns ``(recorder, url)``; all stop at test end."""
    servers: list[ServerThread] = []

    def start(
        upstream: str | None = None, *, secrets: Sequence[str] = (), ws_status: int = 404
    ) -> tuple[Recorder, str]:
        rec = Recorder(upstream, secrets=secrets, ws_status=ws_status)
        srv = ServerThread(rec).start()
        servers.append(srv)
        return rec, srv.url

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def claude_code(tmp_path: Path, egress_trap: EgressTrap) -> ClaudeCode:
    return ClaudeCode(tmp_path / "claude", egress_trap)


@pytest.fixture
def codex_cli(tmp_path: Path, egress_trap: EgressTrap) -> Codex:
    return Codex(tmp_path / "codex", egress_trap)


@pytest.fixture
def gemini_cli(tmp_path: Path, egress_trap: EgressTrap) -> GeminiCli:
    return GeminiCli(tmp_path / "gemini", egress_trap)
