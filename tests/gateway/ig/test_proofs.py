"""The log's signed checkpoint and key, and inclusion and consistency proofs against signed roots."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlalchemy.orm import Session

from audit import (
    AuditAction,
    AuditCheckpoint,
    AuditEvent,
    AuditNode,
    NoteSigner,
    NoteVerifier,
    ProofError,
    latest_checkpoint,
    sign_checkpoint,
    tree_size,
    verify_consistency,
    verify_inclusion,
)
from gateway.auth.keys import SigningKeys
from gateway.keys import KeyFolder
from gateway.kit.crypto import DataKeyring
from gateway.settings import Settings
from tests.gateway.helpers import last_event
from tests.tamper import disable_audit_triggers
from tests.gateway.ig.helpers import bearer, ig_token, member_token, partnership, pushed_child, view


def b64(text: str) -> bytes:
    """Decode standard base64."""
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class TwoCheckpoints:
    """Checkpoints signed at two sizes, with events after the first."""

    first: AuditCheckpoint
    second: AuditCheckpoint
    verifier: NoteVerifier
    token: str


@pytest.fixture
def two_checkpoints(
    client: TestClient,
    app: FastAPI,
    session: Session,
    settings: Settings,
    signing_keys: SigningKeys,
    keyring: DataKeyring,
) -> TwoCheckpoints:
    """Push and view a child, sign; push and view more, sign again."""
    signer: NoteSigner = app.state.audit_signer
    seeded = partnership(client, session, settings, signing_keys, keyring)
    _member, token = member_token(session, settings, signing_keys, seeded.team, agency="police", role="police_officer")
    assert view(client, token, seeded.children[0]).status_code == 200
    first = sign_checkpoint(session, signer)
    session.commit()
    for n in range(3):
        pushed_child(client, session, keyring, seeded.source_token, patient_id=f"later-{n}")
    assert view(client, token, seeded.children[0]).status_code == 200
    second = sign_checkpoint(session, signer)
    session.commit()
    # Two sizes, with room between them for a size no checkpoint was signed at.
    assert first.tree_size + 2 <= second.tree_size
    return TwoCheckpoints(first, second, signer.verifier(), ig_token(signing_keys, settings))


def test_the_checkpoint_is_the_stored_note_byte_for_byte_and_opens_with_the_public_key(
    client: TestClient, session: Session, settings: Settings, two_checkpoints: TwoCheckpoints
) -> None:
    note = client.get("/api/v1/audit/checkpoint", headers=bearer(two_checkpoints.token))
    key = client.get("/api/v1/audit/public-key", headers=bearer(two_checkpoints.token))

    assert note.status_code == 200, note.text
    assert note.headers["content-type"] == "text/plain; charset=utf-8"
    stored = latest_checkpoint(session)
    assert stored is not None and stored.tree_size == two_checkpoints.second.tree_size
    assert note.content == stored.note.encode("utf-8")
    assert key.status_code == 200, key.text
    assert key.headers["content-type"] == "text/plain; charset=utf-8"
    # The key served is the one in the key folder, whoever asks.
    assert key.text == KeyFolder(settings.keys_dir).audit_signer().verifier().vkey() + "\n"
    opened = NoteVerifier.parse(key.text).open(note.text)
    assert opened.origin == settings.audit_origin
    assert opened.tree_size == stored.tree_size == tree_size(session)
    assert opened.root_hash == stored.root_hash


def test_the_checkpoint_is_404_before_any_is_signed(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys
) -> None:
    if latest_checkpoint(session) is not None:
        pytest.skip("this database already holds a committed checkpoint: no empty table to test against")

    response = client.get("/api/v1/audit/checkpoint", headers=bearer(ig_token(signing_keys, settings)))

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("no checkpoint has been signed yet")


def test_an_inclusion_proof_verifies_against_the_signed_root_of_the_size_asked_for(
    client: TestClient, session: Session, two_checkpoints: TwoCheckpoints
) -> None:
    first, second, verifier = two_checkpoints.first, two_checkpoints.second, two_checkpoints.verifier
    first_root = verifier.open(first.note).root_hash
    viewed = last_event(session, AuditAction.STAFF_VIEW_OPENED)  # after the first checkpoint
    assert first.tree_size < viewed.seq <= second.tree_size
    # Every leaf of the first tree, the first and last above all, proves into the first root.
    for seq in range(1, first.tree_size + 1):
        response = client.get(
            f"/api/v1/audit/proof/{seq}", params={"tree_size": first.tree_size}, headers=bearer(two_checkpoints.token)
        )
        assert response.status_code == 200, response.text
        proof = response.json()
        assert (proof["leaf_index"], proof["tree_size"]) == (seq - 1, first.tree_size)
        event_hash = session.get_one(AuditEvent, seq).hash
        assert b64(proof["leaf_hash"]) == bytes.fromhex(event_hash)
        verify_inclusion(
            leaf_index=proof["leaf_index"],
            tree_size=proof["tree_size"],
            leaf_hash=b64(proof["leaf_hash"]),
            path=[b64(node) for node in proof["path"]],
            root=first_root,
        )


def test_an_inclusion_proof_without_a_size_is_against_the_newest_checkpoint(
    client: TestClient, session: Session, two_checkpoints: TwoCheckpoints
) -> None:
    verifier = two_checkpoints.verifier
    second_root = verifier.open(two_checkpoints.second.note).root_hash
    viewed = last_event(session, AuditAction.STAFF_VIEW_OPENED)
    size_before = tree_size(session)

    response = client.get(f"/api/v1/audit/proof/{viewed.seq}", headers=bearer(two_checkpoints.token))

    assert response.status_code == 200, response.text
    proof = response.json()
    assert proof["tree_size"] == two_checkpoints.second.tree_size
    assert proof["leaf_index"] == viewed.seq - 1
    assert b64(proof["leaf_hash"]) == bytes.fromhex(viewed.hash)
    path = [b64(node) for node in proof["path"]]
    verify_inclusion(
        leaf_index=viewed.seq - 1, tree_size=proof["tree_size"], leaf_hash=bytes.fromhex(viewed.hash), path=path,
        root=second_root,
    )
    # The proof is of the second tree: it does not lead to the first tree's root.
    with pytest.raises(ProofError):
        verify_inclusion(
            leaf_index=viewed.seq - 1, tree_size=proof["tree_size"], leaf_hash=bytes.fromhex(viewed.hash), path=path,
            root=verifier.open(two_checkpoints.first.note).root_hash,
        )
    # A proof holds no personal data: asking for one is not itself audited.
    assert tree_size(session) == size_before


def test_proofs_of_what_no_checkpoint_covers_are_404(
    client: TestClient, two_checkpoints: TwoCheckpoints
) -> None:
    first, second, headers = two_checkpoints.first.tree_size, two_checkpoints.second.tree_size, bearer(
        two_checkpoints.token
    )
    cases = {
        "a size no checkpoint was signed at": (f"/api/v1/audit/proof/1?tree_size={first + 1}", "tree size"),
        "an event past the newest tree": (f"/api/v1/audit/proof/{second + 1}", f"event {second + 1} is not in"),
        "an event past the tree asked for": (f"/api/v1/audit/proof/{first + 1}?tree_size={first}", "is not in"),
        "seq 0": ("/api/v1/audit/proof/0", "event 0 is not in"),
        "a negative seq": ("/api/v1/audit/proof/-3", "event -3 is not in"),
    }
    for case, (url, detail) in cases.items():
        response = client.get(url, headers=headers)
        assert response.status_code == 404, (case, response.text)
        assert response.headers["content-type"] == "application/problem+json", case
        assert detail in response.json()["detail"], (case, response.json())


def test_a_tree_size_below_one_is_422(client: TestClient, two_checkpoints: TwoCheckpoints) -> None:
    response = client.get("/api/v1/audit/proof/1?tree_size=0", headers=bearer(two_checkpoints.token))

    assert response.status_code == 422
    assert [e["location"] for e in response.json()["errors"]] == ["query.tree_size"]


def test_a_consistency_proof_verifies_between_both_signed_roots(
    client: TestClient, two_checkpoints: TwoCheckpoints
) -> None:
    verifier = two_checkpoints.verifier
    first, second = verifier.open(two_checkpoints.first.note), verifier.open(two_checkpoints.second.note)

    response = client.get(
        "/api/v1/audit/consistency",
        params={"first": first.tree_size, "second": second.tree_size},
        headers=bearer(two_checkpoints.token),
    )

    assert response.status_code == 200, response.text
    proof = response.json()
    assert (proof["first"], proof["second"]) == (first.tree_size, second.tree_size)
    path = [b64(node) for node in proof["path"]]
    assert path
    verify_consistency(
        first=first.tree_size, second=second.tree_size, first_root=first.root_hash, second_root=second.root_hash,
        path=path,
    )
    with pytest.raises(ProofError):  # and not between the second root and a forged one
        verify_consistency(
            first=first.tree_size, second=second.tree_size, first_root=second.root_hash,
            second_root=second.root_hash, path=path,
        )

    same = client.get(
        "/api/v1/audit/consistency",
        params={"first": second.tree_size, "second": second.tree_size},
        headers=bearer(two_checkpoints.token),
    )
    assert same.status_code == 200, same.text
    assert same.json() == {"first": second.tree_size, "second": second.tree_size, "path": []}


def test_consistency_of_sizes_out_of_order_is_422_and_of_an_unknown_size_404(
    client: TestClient, two_checkpoints: TwoCheckpoints
) -> None:
    first, second = two_checkpoints.first.tree_size, two_checkpoints.second.tree_size
    headers = bearer(two_checkpoints.token)

    backwards = client.get("/api/v1/audit/consistency", params={"first": second, "second": first}, headers=headers)
    unknown = client.get("/api/v1/audit/consistency", params={"first": first + 1, "second": second}, headers=headers)
    unknown_second = client.get(
        "/api/v1/audit/consistency", params={"first": first, "second": second + 1}, headers=headers
    )
    missing = client.get("/api/v1/audit/consistency", params={"first": first}, headers=headers)

    assert backwards.status_code == 422
    assert backwards.headers["content-type"] == "application/problem+json"
    assert backwards.json()["detail"] == f"first ({second}) must not be larger than second ({first})"
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == f"no checkpoint of tree size {first + 1}"
    assert unknown_second.status_code == 404
    assert unknown_second.json()["detail"] == f"no checkpoint of tree size {second + 1}"
    assert missing.status_code == 422
    assert [e["location"] for e in missing.json()["errors"]] == ["query.second"]


def test_a_proof_the_damaged_store_cannot_make_is_a_fault_not_a_404(
    client: TestClient, session: Session, settings: Settings, signing_keys: SigningKeys, two_checkpoints: TwoCheckpoints
) -> None:
    """A deleted node is tampering: the answer says to verify the log, not that nothing was found."""
    size = two_checkpoints.second.tree_size
    disable_audit_triggers(session)
    session.execute(delete(AuditNode).where(AuditNode.level == 1, AuditNode.position == 0))
    session.commit()

    answer = client.get(f"/api/v1/audit/proof/3?tree_size={size}", headers=bearer(two_checkpoints.token))

    assert answer.status_code == 500, answer.text
    assert answer.json()["detail"] == (
        "the stored tree cannot make this proof (the stored tree lacks node 1/0): run `gateway audit verify`"
    )
