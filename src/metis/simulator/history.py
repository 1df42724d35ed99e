"""Deterministic past usage (``--history-days D``): filled in later in this issue."""

from metis.simulator.ledger import Call


def generate(seed: int, days: int, now: float) -> list[Call]:
    return []
