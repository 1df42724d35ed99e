"""Cross-cutting defences: stored-field limits (`fields`), failed-auth throttling
(`throttle`)."""
