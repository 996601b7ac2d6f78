"""Identity linking: which child a source's claim is about."""
