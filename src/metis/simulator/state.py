"""The simulator's mutable state: seed, clock, ledger, faults, prompt cache, stored responses."""

import time
from collections.abc import Callable
from typing import Any

from metis.simulator.faults import Fault, Faults
from metis.simulator.ledger import Ledger
from metis.simulator.prompt_cache import PromptCache


class SimState:
    """Everything one simulator instance knows; `reset` forgets served calls."""

    def __init__(
        self,
        *,
        seed: int = 0,
        history_days: int = 0,
        faults: list[Fault] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.history_days = history_days
        self.clock = clock
        self.ledger = Ledger()
        self.faults = Faults(faults)
        self.cache = PromptCache()
        self.responses: dict[str, Any] = {}  # OpenAI stored responses (openai_responses.Stored)
        self.load_history()

    def load_history(self) -> None:
        if self.history_days > 0:
            from metis.simulator.history import generate

            for call in generate(self.seed, self.history_days, self.clock()):
                self.ledger.add(call)

    def reset(self) -> None:
        """Forget served calls, the prompt cache and added faults; keep history and seed."""
        self.ledger.clear()
        self.cache.clear()
        self.responses.clear()
        self.faults.reset()
        self.load_history()
