"""Fixtures shared by the ledger tests: ``ws_engine`` (a workspace with an OpenAI
usage_admin credential, see tests/ledger/test_reconcile.py)."""

from tests.ledger.test_reconcile import ws_engine  # noqa: F401
