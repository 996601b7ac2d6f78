"""Authentication: access tokens, client credentials, and the caller as a Principal."""
