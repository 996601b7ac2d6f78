"""Writing secret files (keys): created once, readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path


def read_secret_file(path: Path) -> bytes:
    """Return a key file's bytes, or fail saying which file is missing and how to make it."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"key file {path} is missing: run `gateway keys create`") from None


def write_secret_file(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; refuse to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: never replace a key that exists (another process may have just made it), and the
    # mode is set at creation, so the key is never readable by others, even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
