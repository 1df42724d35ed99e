#!/usr/bin/env bash
# Install the real agent CLIs the client tests drive (tests/clients/): Claude Code,
# OpenAI Codex CLI and Gemini CLI, pinned by tests/clients/node/package-lock.json, into
# tests/clients/node/node_modules (git-ignored). Idempotent: when the installed
# versions already match the lock it does nothing (well under a second).
#   scripts/clients.sh            # install if needed, then print the three versions
# Needs node and npm; as root (CI) it installs Debian's nodejs/npm when node is missing.
# Both packages ship their native binary in a platform package (an optional dependency);
# Claude Code's postinstall copies it over its bin/claude.exe placeholder. That step is run
# explicitly here (npm 11 may skip dependency install scripts), so the result does not
# depend on the npm version. Nothing here runs at test time: a test that finds no CLI fails.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=tests/clients/node
CLAUDE="$DIR/node_modules/.bin/claude"
CODEX="$DIR/node_modules/.bin/codex"
GEMINI="$DIR/node_modules/.bin/gemini"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing nodejs and npm from Debian packages..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm) >&2
  else
    echo "error: node and npm are needed for the client tests; install Debian's nodejs and npm" >&2
    exit 1
  fi
fi

want() {  # the version package-lock.json pins for package $1
  node -e 'const l=require(process.argv[1]);console.log(l.packages["node_modules/"+process.argv[2]].version)' \
    "$PWD/$DIR/package-lock.json" "$1"
}
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
have() {  # the version a CLI reports, or nothing (run with a scratch HOME: nothing written to ~)
  HOME="$scratch" CODEX_HOME="$scratch" CLAUDE_CONFIG_DIR="$scratch" GEMINI_CLI_HOME="$scratch" \
    "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n1 || true
}
claude_want=$(want @anthropic-ai/claude-code)
codex_want=$(want @openai/codex)
gemini_want=$(want @google/gemini-cli)

if [ "$(have "$CLAUDE")" != "$claude_want" ] || [ "$(have "$CODEX")" != "$codex_want" ] \
  || [ "$(have "$GEMINI")" != "$gemini_want" ]; then
  echo "installing Claude Code $claude_want, Codex CLI $codex_want and Gemini CLI $gemini_want (npm ci)..." >&2
  start=$(date +%s)
  (cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  # Claude Code's postinstall: link the platform's native binary over the placeholder.
  (cd "$DIR" && node node_modules/@anthropic-ai/claude-code/install.cjs >&2)
  echo "installed in $(( $(date +%s) - start ))s" >&2
fi

got_claude=$(have "$CLAUDE"); got_codex=$(have "$CODEX"); got_gemini=$(have "$GEMINI")
if [ "$got_claude" != "$claude_want" ] || [ "$got_codex" != "$codex_want" ] \
  || [ "$got_gemini" != "$gemini_want" ]; then
  echo "error: expected Claude Code $claude_want, Codex $codex_want and Gemini CLI $gemini_want," \
    "found '${got_claude}', '${got_codex}' and '${got_gemini}'" >&2
  exit 1
fi
echo "claude $got_claude"
echo "codex $got_codex"
echo "gemini $got_gemini"
