#!/usr/bin/env bash
# Install the real Claude Code CLI, pinned by tests/clients/claude-code/package-lock.json,
# for tests/integrations/test_claude_code_otel.py. Prints the path of its `claude`
# binary; prints nothing (and exits 0) when it cannot be installed, in which case
# that test skips and says why. Needs node and npm (CI installs them, .ci/run).
set -uo pipefail
cd "$(dirname "$0")/../tests/clients/claude-code"
BIN="$PWD/node_modules/.bin/claude"
ok() { "$BIN" --version >/dev/null 2>&1; }
if ! ok; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "warning: npm not found; the Claude Code test will skip" >&2
    exit 0
  fi
  npm ci --no-audit --no-fund --loglevel=error >&2 || true
  # npm may leave the postinstall (which puts the native binary in place) unrun.
  if ! ok && [ -f node_modules/@anthropic-ai/claude-code/install.cjs ]; then
    (cd node_modules/@anthropic-ai/claude-code && node install.cjs) >&2 || true
  fi
  if ! ok; then
    echo "warning: could not install @anthropic-ai/claude-code; the Claude Code test will skip" >&2
    exit 0
  fi
fi
echo "$BIN"
