"""Run a real Hermes Agent with its real plugin loader (executed by Hermes' own Python).

Usage: python hermes_driver.py BASE_URL API_KEY MODEL N_CALLS

HERMES_HOME must hold a config.yaml enabling the ``metis`` plugin; METIS_INGEST_URL
and METIS_INGEST_TOKEN configure the plugin. Prints one JSON line: the loaded
plugin's state, the agent's session id, and how many batches the sender delivered.
"""

import json
import sys

from hermes_cli.plugins import discover_plugins, get_plugin_manager


def main() -> None:
    base_url, api_key, model, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    discover_plugins()
    plugins = {p["name"]: p for p in get_plugin_manager().list_plugins()}
    import os
    from pathlib import Path

    from hermes_state import SessionDB
    from run_agent import AIAgent

    agent = AIAgent(
        session_db=SessionDB(Path(os.environ["HERMES_HOME"]) / "state.db"),
        base_url=base_url,
        api_key=api_key,
        provider="custom",
        model=model,
        quiet_mode=True,
        enabled_toolsets=[],
        skip_context_files=True,
        skip_memory=True,
        max_iterations=2,
        platform="cli",
    )
    replies = [agent.chat(f"say hello number {i}") for i in range(n)]
    import metis_hermes

    sender = metis_hermes.sender()
    assert sender is not None, "plugin did not start its sender"
    sender.close(timeout=10)
    print(
        json.dumps(
            {
                "plugin": plugins.get("metis"),
                "session_id": agent.session_id,
                "replies": [r[:40] if isinstance(r, str) else str(r)[:40] for r in replies],
                "sent_batches": sender.sent_batches,
                "rejected": sender.rejected,
                "spooled": len(list(sender.spool_dir.glob("batch-*.json"))),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
