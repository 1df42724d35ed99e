"""Identity: users, teams, gateway keys and the per-request principal (spec 003 §3-§4).

- `metis.identity.records`: the stored records (User, Team, GatewayKey).
- `metis.identity.users` / `teams` / `keys`: create, list, change (each mutation
  bumps the ``identity`` config version in the caller's transaction).
- `metis.identity.auth`: token -> Principal resolution for the gateway.
"""
