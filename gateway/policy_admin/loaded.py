"""An ISA as loaded: the policy, the exact text it came from and that text's SHA-256.

The policy engine and every caller of it take a `Policy`; what decided a view must also name
the exact text, so that IG can fetch it (the `policy_version` table, keyed by the hash). Rather
than change every signature that carries a `Policy`, each policy loaded here is remembered with
its hash, and `sha256_of(policy)` finds it again. This module imports nothing of the gateway, so
that any feature (the view's audit) can ask it without an import cycle.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from policies import Policy, PolicyError, load_policy_text

SHIPPED_SOURCE = "policies/isa/default.yaml"


@dataclass(frozen=True)
class LoadedPolicy:
    """An ISA in force: the validated policy, its exact text, and the SHA-256 of that text (UTF-8)."""

    policy: Policy
    sha256: str
    text: str

    @property
    def label(self) -> str:
        """Return `id@version`, as audit events name a policy."""
        return f"{self.policy.id}@{self.policy.version}"


# Every policy this process has loaded, by the hash of its text and by the policy object's id.
# The entries keep their policies alive, so an id here can never be reused by another object. They
# are as many as the distinct texts loaded, and the same text loaded again (a reload, another app
# in the same process) gets the same policy back: a Policy is immutable once validated.
_BY_SHA256: dict[str, LoadedPolicy] = {}
_BY_POLICY: dict[int, LoadedPolicy] = {}
_LOCK = threading.Lock()


def parse_policy(raw: bytes, *, source: str) -> LoadedPolicy:
    """Validate an ISA from the bytes of its file; a PolicyError names the source, the line and the field."""
    sha256 = hashlib.sha256(raw).hexdigest()
    with _LOCK:
        known = _BY_SHA256.get(sha256)
    if known is not None:
        return known
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise PolicyError(f"{source}: not UTF-8 text (byte {bad.start})") from None
    loaded = LoadedPolicy(policy=load_policy_text(text, source=source), sha256=sha256, text=text)
    with _LOCK:
        # Two threads loading the same text at once: the first one kept wins, for both.
        loaded = _BY_SHA256.setdefault(sha256, loaded)
        _BY_POLICY[id(loaded.policy)] = loaded
    return loaded


def read_policy(path: Path | None) -> LoadedPolicy:
    """Load the ISA file at `path` (GATEWAY_POLICY_PATH), or the one shipped when None."""
    if path is None:
        return parse_policy(resources.files("policies").joinpath("isa/default.yaml").read_bytes(), source=SHIPPED_SOURCE)
    try:
        raw = Path(path).read_bytes()
    except OSError as unreadable:
        raise PolicyError(f"{path}: cannot be read ({unreadable.strerror})") from None
    return parse_policy(raw, source=str(path))


def loaded_for(policy: Policy) -> LoadedPolicy | None:
    """Return how a policy was loaded, or None for one not loaded here (built in a test, say)."""
    with _LOCK:
        return _BY_POLICY.get(id(policy))


def sha256_of(policy: Policy) -> str | None:
    """Return the SHA-256 of the text a policy was loaded from, or None when not loaded here."""
    loaded = loaded_for(policy)
    return None if loaded is None else loaded.sha256
