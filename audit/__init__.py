"""The audit trail: append-only, hash-chained, each event a leaf of an RFC 9162 Merkle tree with signed checkpoints."""

from .actions import ActorType, AuditAction, Outcome, ReviewReason
from .checkpoint import Checkpoint, CheckpointError, NoteSigner, NoteVerifier
from .log import (
    Actor,
    AppendOnlyViolation,
    AuditRecord,
    ItemDecisionRef,
    decode_items,
    install_append_only_guard,
    integrate,
    record,
    stage,
)
from .models import AuditBase, AuditCheckpoint, AuditEvent, AuditNode, AuditPending
from .store import (
    ConsistencyProof,
    InclusionProof,
    UnknownTreeSize,
    checkpoint_of_size,
    consistency_proof,
    inclusion_proof,
    latest_checkpoint,
    sign_checkpoint,
    tree_size,
)
from .tree import ProofError, verify_consistency, verify_inclusion
from .verifier import VerificationResult, verify

__all__ = [
    "Actor",
    "ActorType",
    "AppendOnlyViolation",
    "AuditAction",
    "AuditBase",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditNode",
    "AuditPending",
    "AuditRecord",
    "Checkpoint",
    "CheckpointError",
    "ConsistencyProof",
    "InclusionProof",
    "ItemDecisionRef",
    "NoteSigner",
    "NoteVerifier",
    "Outcome",
    "ProofError",
    "ReviewReason",
    "UnknownTreeSize",
    "VerificationResult",
    "checkpoint_of_size",
    "consistency_proof",
    "decode_items",
    "inclusion_proof",
    "install_append_only_guard",
    "integrate",
    "latest_checkpoint",
    "record",
    "sign_checkpoint",
    "stage",
    "tree_size",
    "verify",
    "verify_consistency",
    "verify_inclusion",
]
