"""``metis demo``: a seeded, running Metis for someone evaluating it.

The demo is the real product on throwaway data, not a mock-up: the provider
simulator stands in for OpenAI and Anthropic, and everything else (workspace,
encrypted provider keys, users, teams, caps, gateway keys, routing rules,
gateway traffic over HTTP, plugin pushes, a provider sync) goes through the
same library functions and HTTP endpoints a real deployment uses.

Modules: `seed` (identities, credentials, tokens, routing rules), `traffic`
(the burst of gateway calls), `plugin` (an agent calling the provider
directly and pushing its usage), `runner` (the whole sequence and the serving
loop); the command is `metis.cli.demo`.
"""
