"""The gateway: OpenAI- and Anthropic-compatible proxy with attribution, pricing and hard caps.

See `metis.gateway.app` for the request lifecycle and the seams routing plugs into.
"""
