"""Secret handling: the master key, the AES-GCM envelope, secret references."""
