"""Fixtures for simulator tests (shared by other areas).

``simulator``: a fresh in-process provider simulator (OpenAI + Anthropic on one
port) for the test, served by uvicorn in a thread::

    def test_x(simulator):
        client = openai.OpenAI(base_url=simulator.openai_base_url,
                               api_key=simulator.openai_key, max_retries=0)
        ...
        truth = simulator.ground_truth()          # /_sim/ground_truth as a dict
        simulator.set_fault("/v1/chat/completions", "503", count=1)
        simulator.reset()                          # forget calls, faults, cache

``simulator_factory(seed=..., history_days=..., faults=[...])`` starts more
(or differently configured) simulators; all stop at test end.
``simulator_shared``: one simulator for the whole session, reset (calls,
prompt cache, faults) before each test that uses it: faster when many tests
need a plain simulator, but its generated keys are the same for every test.
Keys are generated per simulator; any other ``sk-...`` / ``sk-ant-...`` key
works too (`new_openai_key()` etc. in `metis.simulator.keys`).
"""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from metis.simulator import create_app
from metis.simulator.faults import Fault
from metis.simulator.keys import (
    anthropic_identity,
    new_anthropic_admin_key,
    new_anthropic_key,
    new_openai_admin_key,
    new_openai_key,
    openai_identity,
)
from metis.util.server_thread import ServerThread


class Simulator:
    """A running simulator and the keys generated for it."""

    def __init__(self, server: ServerThread, app: Any) -> None:
        self.server = server
        self.app = app
        self.url = server.url
        self.openai_base_url = f"{server.url}/v1"
        self.anthropic_base_url = server.url
        self.openai_key = new_openai_key()
        self.openai_key_2 = new_openai_key()
        self.anthropic_key = new_anthropic_key()
        self.anthropic_key_2 = new_anthropic_key()
        self.openai_admin_key = new_openai_admin_key()
        self.anthropic_admin_key = new_anthropic_admin_key()

    @property
    def state(self) -> Any:
        """The in-process `SimState` (ledger, faults) for white-box assertions."""
        return self.app.state.sim

    @staticmethod
    def openai_key_id(key: str) -> str:
        return openai_identity(key).api_key_id

    @staticmethod
    def anthropic_key_id(key: str) -> str:
        return anthropic_identity(key).api_key_id

    def _get(self, path: str, **params: str) -> Any:
        r = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        r.raise_for_status()
        return r.json()

    def ground_truth(self, origin: str | None = None) -> dict[str, Any]:
        """Exact totals (see `metis.simulator.ledger.Ledger.ground_truth`)."""
        return self._get("/_sim/ground_truth", **({"origin": origin} if origin else {}))  # type: ignore[no-any-return]

    def calls(self, origin: str | None = None) -> list[dict[str, Any]]:
        """Every recorded call (ids, tokens, cost)."""
        return self._get("/_sim/calls", **({"origin": origin} if origin else {}))["calls"]  # type: ignore[no-any-return]

    def set_fault(
        self, endpoint: str, kind: str, count: int | None = None, **opts: Any
    ) -> list[dict[str, Any]]:
        """Add a fault (see `metis.simulator.faults`); returns the active faults."""
        body = {"endpoint": endpoint, "kind": kind, "count": count, **opts}
        r = httpx.post(f"{self.url}/_sim/faults", json=body, timeout=10)
        r.raise_for_status()
        return r.json()["faults"]  # type: ignore[no-any-return]

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/_sim/faults", timeout=10).raise_for_status()

    def reset(self) -> None:
        """Forget served calls, prompt cache and added faults (history stays)."""
        httpx.post(f"{self.url}/_sim/reset", timeout=10).raise_for_status()


SimulatorFactory = Callable[..., Simulator]


@pytest.fixture
def simulator_factory() -> Iterator[SimulatorFactory]:
    """Start simulators with ``create_app`` keyword arguments; stopped at test end."""
    servers: list[ServerThread] = []

    def start(
        *, seed: int = 0, history_days: int = 0, faults: list[Fault] | None = None, **kw: Any
    ) -> Simulator:
        app = create_app(seed=seed, history_days=history_days, faults=faults, **kw)
        srv = ServerThread(app).start()
        servers.append(srv)
        return Simulator(srv, app)

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def simulator(simulator_factory: SimulatorFactory) -> Simulator:
    """A fresh simulator (seed 0, no history, no faults) for this test."""
    return simulator_factory()


@pytest.fixture(scope="session")
def _simulator_session() -> Iterator[Simulator]:
    app = create_app()
    srv = ServerThread(app).start()
    yield Simulator(srv, app)
    srv.stop()


@pytest.fixture
def simulator_shared(_simulator_session: Simulator) -> Simulator:
    """The session's simulator, reset for this test (seed 0, no history)."""
    _simulator_session.reset()
    return _simulator_session
