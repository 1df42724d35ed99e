"""Helpers for tests that run the real ``metis`` command in a subprocess."""

import queue
import subprocess
import sys
import threading
import time

import httpx


def start_metis(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``metis ARGS`` in a subprocess (text pipes on stdout and stderr)."""
    return subprocess.Popen(
        [sys.executable, "-c", "from metis.cli.main import run; run()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_lines_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> list[str]:
    """stdout lines of ``proc`` up to the first one starting with ``prefix``.

    A thread reads the pipe (a select on a buffered text pipe can miss lines
    already in the buffer); the wait is on that condition, up to ``timeout``.
    """
    pipe = proc.stdout
    assert pipe is not None
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in pipe:
            out.put(line)

    threading.Thread(target=pump, daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not any(line.startswith(prefix) for line in lines):
        try:
            lines.append(out.get(timeout=max(deadline - time.monotonic(), 0.01)).rstrip("\n"))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"no line starting {prefix!r} in time; got {lines}") from None
    return lines


def get_until_up(url: str, timeout: float = 60) -> httpx.Response:
    """GET ``url``, retrying refused connections until ``timeout`` (the app may be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=30)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM ``proc``, wait for it, return its stderr."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err
