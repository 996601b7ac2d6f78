"""ISA versions for IG: stored with their hash when loaded, reloaded safely, explained and compared.

- store: every ISA text the gateway loads is kept once, under its SHA-256 (`policy_version`), and
  each load is audited, so that the hash a view's audit event names leads to the exact text;
- reload: the file is read again; a valid one replaces the policy in force (stored first), a
  broken one is refused and audited, and the policy in force stays;
- explain: what one team member would be shown of one child, item by item, and why;
- diff: what changes if the population's decisions are taken under another ISA file.

Explaining and comparing read facts about items (ids, agencies, kinds, categories, labels),
never their contents, and print ids and decisions only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

import anyio
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import State

from audit import Actor, ActorType, AuditAction, ItemDecisionRef, Outcome
from gateway.auth.principal import Principal, PrincipalKind
from gateway.cases import repository as cases_repository
from gateway.cases.access import ChildAccess
from gateway.child_view import repository as view_repository
from gateway.child_view import service as view_service
from gateway.child_view.repository import ItemRow
from gateway.kit.auditor import Auditor
from gateway.kit.errors import Conflict, NotFound
from gateway.kit.migrate import current_revision, head_revision
from gateway.models import Consent, Override, utcnow
from gateway.notifications.routing import routing_for
from gateway.settings import Settings
from policies import (
    Agency,
    ConsentState,
    Decision,
    DecisionKind,
    ItemFacts,
    PolicyError,
    Purpose,
    RecordKind,
    Relationship,
    Viewer,
    decide,
)

from . import repository
from .loaded import LoadedPolicy, read_policy
from .repository import MemberRow

log = logging.getLogger(__name__)

# Who loads, stores and reloads the ISA in the audit trail; and who runs `gateway policy …`.
POLICY_LOADER = Actor(type=ActorType.SYSTEM, id="policy-loader")
CLI = Actor(type=ActorType.SYSTEM, id="cli")

# How long a gateway that could not store its ISA at start (database not reachable, or not yet
# migrated) waits before trying again, in the background.
STORE_RETRY_S = 5.0


# -- store and reload ---------------------------------------------------------------------------


def store(session: Session, loaded: LoadedPolicy, *, auditor: Auditor) -> bool:
    """Store the ISA's text under its hash if new, and audit the load; say whether it was new."""
    policy = loaded.policy
    new = repository.add_version_if_new(
        session, sha256=loaded.sha256, policy_id=policy.id, version=policy.version, text=loaded.text
    )
    auditor.record(
        AuditAction.SYSTEM_POLICY_LOADED,
        policy_version=loaded.label,
        detail={"policy_id": policy.id, "version": policy.version, "sha256": loaded.sha256, "new": new},
    )
    return new


def store_at_start(factory: sessionmaker[Session], loaded: LoadedPolicy) -> bool:
    """Store and audit the ISA a gateway starts with, in its own transaction; False when the database is not at head.

    A database not yet migrated (readiness answers 503 until it is) has no table to store in:
    the caller tries again later instead of failing the start.
    """
    with factory() as session:
        if current_revision(session.connection()) != head_revision():
            return False
        store(session, loaded, auditor=Auditor(session, POLICY_LOADER))
        session.commit()
    return True


@dataclass(frozen=True)
class ReloadOutcome:
    """What a reload did: the ISA in force after it, whether it changed, and why it was refused if it was."""

    in_force: LoadedPolicy
    changed: bool
    error: str | None = None


def reload_policy(state: State, *, settings: Settings) -> ReloadOutcome:
    """Read the ISA file again: put a valid one in force (stored first); refuse a broken one, keeping the current.

    `state` is the app's state (`app.state`): its `loaded_policy`, `policy` and `routing` are
    swapped together, after the new version is committed, so that a view decided under it can
    always be traced to its stored text. A database error propagates, with nothing swapped.
    """
    current: LoadedPolicy = state.loaded_policy
    factory: sessionmaker[Session] = state.sessionmaker
    try:
        candidate = read_policy(settings.policy_path)
    except PolicyError as error:
        with factory() as session:
            Auditor(session, POLICY_LOADER).record(
                AuditAction.SYSTEM_POLICY_REJECTED,
                Outcome.FAILURE,
                policy_version=current.label,
                # The loader's message names the file, line and field, never the text around them.
                detail={"error": str(error), "in_force": current.label, "in_force_sha256": current.sha256},
            )
            session.commit()
        log.warning(
            "ISA reload refused; the one in force stays",
            extra={"error": str(error), "in_force": current.label, "sha256": current.sha256},
        )
        return ReloadOutcome(in_force=current, changed=False, error=str(error))
    with factory() as session:
        store(session, candidate, auditor=Auditor(session, POLICY_LOADER))
        session.commit()
    state.loaded_policy = candidate
    state.policy = candidate.policy
    state.routing = routing_for(settings, candidate.policy)
    changed = candidate.sha256 != current.sha256
    log.info("ISA reloaded", extra={"policy": candidate.label, "sha256": candidate.sha256, "changed": changed})
    return ReloadOutcome(in_force=candidate, changed=changed)


class PolicyWatch:
    """The ISA's life in a serving process: stored at start (retried until the database can take it), reloaded on SIGHUP.

    SIGHUP reloads in the process that receives it: `gateway serve` with one worker. With
    several workers the supervisor takes SIGHUP and replaces each worker in turn (gateway/kit/serving.py):
    each new worker loads the file at start, and one that cannot (a broken file) never replaces
    the worker it was to replace, so the old ISA stays in force there too.
    """

    def __init__(self, state: State, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._signal_installed = False

    async def start(self) -> None:
        """Store the ISA in force (or keep trying in the background), and reload on SIGHUP where a signal can reach."""
        if not await self._store():
            self._spawn(self._store_until_stored())
        loop = asyncio.get_running_loop()
        # Signals reach the main thread only (an in-process test client runs its app elsewhere).
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
                self._signal_installed = True

    @property
    def reloads_on_sighup(self) -> bool:
        """Say whether SIGHUP reloads the ISA in this process (only the main thread's event loop gets signals)."""
        return self._signal_installed

    async def stop(self) -> None:
        """Stop reloading on SIGHUP and stop any retry still running."""
        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._signal_installed = False
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reload(self) -> None:
        """Reload the ISA in a thread (it reads a file and writes the database); log what happened."""
        try:
            await anyio.to_thread.run_sync(partial(reload_policy, self.state, settings=self.settings))
        except SQLAlchemyError as failure:
            log.error(
                "ISA reload failed: the database did not take it; the one in force stays",
                extra={"error": type(failure).__name__},
            )

    async def _store(self) -> bool:
        try:
            stored = await anyio.to_thread.run_sync(partial(store_at_start, self.state.sessionmaker, self.state.loaded_policy))
        except SQLAlchemyError as failure:
            log.warning("ISA in force not stored yet: database unavailable", extra={"error": type(failure).__name__})
            return False
        if not stored:
            log.warning("ISA in force not stored yet: the database is not migrated to head")
        return stored

    async def _store_until_stored(self) -> None:
        while True:
            await asyncio.sleep(STORE_RETRY_S)
            if await self._store():
                return

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def watch_policy(state: State, settings: Settings) -> PolicyWatch:
    """Start the ISA's watch for a serving app (see PolicyWatch); stop it when the app stops."""
    watch = PolicyWatch(state, settings)
    await watch.start()
    return watch


# -- explain ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainedItem:
    """One item and the decision the engine takes on it for the viewer (facts only, never contents)."""

    item_id: uuid.UUID
    agency: Agency
    kind: RecordKind
    category: str
    decision: Decision


@dataclass(frozen=True)
class Explanation:
    """What one viewer would be shown of one child for one purpose, and why, item by item."""

    child_id: uuid.UUID
    team_id: uuid.UUID
    viewer: str
    purpose: Purpose
    facts: Viewer
    member: bool
    policy: LoadedPolicy
    items: list[ExplainedItem]

    def by_decision(self) -> dict[DecisionKind, int]:
        """Count the items by decision kind (kinds with none left out), in the vocabulary's order."""
        counts = Counter(item.decision.kind for item in self.items)
        return {kind: counts[kind] for kind in DecisionKind if counts[kind]}

    def lines(self) -> list[str]:
        """Return the explanation as printed: a header, one line per item, and a summary."""
        if self.member:
            who = (
                f"viewer {self.viewer}: {self.facts.role} ({self.facts.agency}), member of allocated team "
                f"{self.team_id}: relationship {self.facts.relationship}"
            )
        else:
            who = (
                f"viewer {self.viewer} is not an active member of the team allocated to this child "
                f"(team {self.team_id}): relationship {self.facts.relationship}, so everything is withheld"
            )
        lines = [
            f"child {self.child_id}, purpose {self.purpose}, ISA {self.policy.label} (sha256 {self.policy.sha256})",
            who,
        ]
        lines += [
            f"{item.item_id}  {item.agency}  {item.kind}  {item.category}  {_decision_label(item.decision)}  "
            f"{item.decision.rule_id}  {item.decision.reason}"
            for item in self.items
        ]
        counts = ", ".join(f"{kind}: {count}" for kind, count in self.by_decision().items())
        lines.append(f"{len(self.items)} items" + (f": {counts}" if counts else ""))
        return lines


def explain(
    session: Session,
    *,
    auditor: Auditor,
    loaded: LoadedPolicy,
    child_id: uuid.UUID,
    viewer: str,
    purpose: Purpose,
    at: datetime | None = None,
) -> Explanation:
    """Decide every item of a child for one viewer and purpose, as their view would, and audit the explanation.

    The viewer is a team member's sign-in subject: their membership of the team allocated to
    the child gives their agency and role. Someone with none is explained as the engine sees
    them, with no relationship: everything withheld.
    """
    if not repository.child_exists(session, child_id=child_id):
        raise NotFound(f"No child {child_id} is known to the gateway.")
    case = repository.get_open_case(session, child_id=child_id)
    if case is None:
        raise Conflict(
            f"Child {child_id} has no open case: no team member has a relationship to it, and the engine "
            "withholds everything from a viewer with none."
        )
    membership = repository.get_membership_for_child(session, child_id=child_id, subject=viewer)
    # The items are read through the one gate to a child's data: the viewer's own access, or for
    # someone with none, the access of a member of the allocated team (whose own requests to see
    # are not applied: nothing of theirs is decided here).
    team = repository.get_active_members(session, team_ids={case.team_id})[case.team_id]
    reader = membership or (team[0] if team else None)
    if reader is None:
        raise Conflict(f"The team allocated to child {child_id} (team {case.team_id}) has no active member.")
    access = _access(session, reader, child_id=child_id)
    if membership is not None:
        facts = Viewer(agency=membership.agency, role=membership.role, relationship=access.relationship)
        approvals: dict[uuid.UUID, uuid.UUID] = view_repository.get_approved_requests(session, access, purpose=purpose)
    else:
        # The engine withholds everything from a viewer with no relationship, whatever their agency
        # and role; those of another membership of theirs are shown when there is one.
        elsewhere = repository.get_any_membership(session, subject=viewer)
        facts = Viewer(
            agency=elsewhere.agency if elsewhere else Agency.SOCIAL_CARE,
            role=elsewhere.role if elsewhere else "none",
            relationship=Relationship.NONE,
        )
        approvals = {}
    consent = _consent_state(
        view_repository.get_consents(session, access), view_repository.get_overrides(session, access), at=at or utcnow()
    )
    decisions: dict[ItemFacts, Decision] = {}
    explained = []
    for item in view_repository.get_items(session, access):
        item_facts = view_service.item_facts(item, approvals.get(item.id))
        alike = replace(item_facts, item_id="")  # the engine reads every fact but the id (its contract)
        decision = decisions.get(alike)
        if decision is None:
            decision = decisions[alike] = decide(
                loaded.policy, viewer=facts, purpose=purpose, item=item_facts, consent=consent
            )
        explained.append(ExplainedItem(item.id, item.agency, item.kind, item.category, decision))
    explanation = Explanation(
        child_id=child_id,
        team_id=case.team_id,
        viewer=viewer,
        purpose=purpose,
        facts=facts,
        member=membership is not None,
        policy=loaded,
        items=explained,
    )
    auditor.record(
        AuditAction.IG_POLICY_EXPLAINED,
        child_id=child_id,
        purpose=purpose,
        policy_version=loaded.label,
        items=[ItemDecisionRef(item.item_id, item.decision.kind.value, item.decision.rule_id) for item in explained],
        detail={
            "command": "explain",
            "viewer": viewer,
            "relationship": facts.relationship.value,
            "policy_sha256": loaded.sha256,
            "decisions": {kind.value: count for kind, count in explanation.by_decision().items()},
        },
    )
    return explanation


# -- diff ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChangedDecision:
    """One decision that differs between two ISAs: for whom, about which item, from what to what."""

    child_id: uuid.UUID
    viewer: str
    purpose: Purpose
    item_id: uuid.UUID
    old: Decision
    new: Decision


@dataclass
class PolicyDiff:
    """How the decisions over the current population change from one ISA to another."""

    old: LoadedPolicy
    new: LoadedPolicy
    limit: int
    children: int = 0
    decisions: int = 0
    # (old decision/rule, new decision/rule) → how many decisions changed so.
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[ChangedDecision] = field(default_factory=list)

    @property
    def changed(self) -> int:
        """Return how many decisions change."""
        return sum(self.changes.values())

    def lines(self) -> list[str]:
        """Return the comparison as printed: what was compared, the changes counted, and the first of them."""
        lines = [
            f"old: {self.old.label} (sha256 {self.old.sha256})",
            f"new: {self.new.label} (sha256 {self.new.sha256})",
            f"compared {self.decisions} decisions (children with an open case: {self.children}; every active "
            "member of each one's allocated team; both purposes)",
        ]
        if not self.changes:
            return [*lines, "no decisions change"]
        lines.append(f"{self.changed} decisions change:")
        lines += [
            f"  {count}  {old} -> {new}"
            for (old, new), count in sorted(self.changes.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        lines.append(f"first {len(self.examples)} of them (child, viewer, purpose, item, old -> new):")
        lines += [
            f"  {c.child_id}  {c.viewer}  {c.purpose}  {c.item_id}  {_change_labels(c.old, c.new)[0]} -> "
            f"{_change_labels(c.old, c.new)[1]}"
            for c in self.examples
        ]
        return lines

    def count(self, old: Decision, new: Decision, times: int) -> None:
        """Count `times` decisions that change from `old` to `new`."""
        self.changes[_change_labels(old, new)] += times


# Decisions of one kind of item for one kind of viewer and purpose, under the old and new ISA. Shared
# by every child whose consent state is empty (most of them); a child with consents has its own.
_Pair = tuple[Decision, Decision]
_EMPTY_CONSENT = ConsentState()


def diff(
    session: Session,
    *,
    auditor: Auditor,
    old: LoadedPolicy,
    new: LoadedPolicy,
    limit: int = 50,
    at: datetime | None = None,
) -> PolicyDiff:
    """Decide every current item of every open case's child, for every active member of its team and both purposes, under both ISAs.

    Items alike in every fact the engine reads are decided once per kind of viewer (as the view
    does); children with no consent recorded share those decisions. Audited once, with the counts.
    """
    moment = at or utcnow()
    result = PolicyDiff(old=old, new=new, limit=limit)
    cases = repository.get_open_cases(session)
    teams = repository.get_active_members(session, team_ids={case.team_id for case in cases})
    shared: dict[tuple[Viewer, Purpose, ItemFacts], _Pair] = {}
    for case in cases:
        members = teams[case.team_id]
        if not members:
            continue
        access = _access(session, members[0], child_id=case.child_id)
        consent = _consent_state(
            view_repository.get_consents(session, access), view_repository.get_overrides(session, access), at=moment
        )
        cache = shared if consent == _EMPTY_CONSENT else {}
        _diff_child(
            result,
            cache,
            child_id=case.child_id,
            members=members,
            items=view_repository.get_items(session, access),
            approvals=repository.get_approvals(session, access),
            consent=consent,
        )
        # One child at a time: its items are plain rows, and the session's identity map holds its
        # consents and overrides weakly, so nothing of the children already compared is kept.
        result.children += 1
    auditor.record(
        AuditAction.IG_POLICY_EXPLAINED,
        policy_version=new.label,
        detail={
            "command": "diff",
            "old": old.label,
            "old_sha256": old.sha256,
            "new": new.label,
            "new_sha256": new.sha256,
            "children": result.children,
            "decisions": result.decisions,
            "changed": result.changed,
        },
    )
    return result


def _diff_child(
    result: PolicyDiff,
    cache: dict[tuple[Viewer, Purpose, ItemFacts], _Pair],
    *,
    child_id: uuid.UUID,
    members: list[MemberRow],
    items: list[ItemRow],
    approvals: dict[tuple[str, Agency, Purpose], dict[uuid.UUID, uuid.UUID]],
    consent: ConsentState,
) -> None:
    # Items grouped by every fact the engine reads but the id, a request to see aside (that one
    # is a viewer's own): a group is decided once and counted at once.
    groups: dict[ItemFacts, list[ItemRow]] = {}
    for item in items:
        groups.setdefault(replace(view_service.item_facts(item), item_id=""), []).append(item)

    def pair(viewer: Viewer, purpose: Purpose, facts: ItemFacts) -> _Pair:
        key = (viewer, purpose, facts)
        decided = cache.get(key)
        if decided is None:
            decided = cache[key] = (
                decide(result.old.policy, viewer=viewer, purpose=purpose, item=facts, consent=consent),
                decide(result.new.policy, viewer=viewer, purpose=purpose, item=facts, consent=consent),
            )
        return decided

    for member in members:
        viewer = Viewer(agency=member.agency, role=member.role, relationship=Relationship.ALLOCATED_TEAM)
        for purpose in Purpose:
            approved = approvals.get((member.subject, member.agency, purpose), {})
            for facts, alike in groups.items():
                result.decisions += len(alike)
                own = [item for item in alike if item.id in approved] if approved else []
                plain = [item for item in alike if item.id not in approved] if own else alike
                if plain:
                    old, new = pair(viewer, purpose, facts)
                    if _differs(old, new):
                        result.count(old, new, len(plain))
                        _keep_examples(result, child_id, member.subject, purpose, plain, old, new)
                for item in own:  # an approved request to see is this member's alone: decided for the item
                    facts_own = replace(facts, approved_request=str(approved[item.id]))
                    old_own = decide(result.old.policy, viewer=viewer, purpose=purpose, item=facts_own, consent=consent)
                    new_own = decide(result.new.policy, viewer=viewer, purpose=purpose, item=facts_own, consent=consent)
                    if _differs(old_own, new_own):
                        result.count(old_own, new_own, 1)
                        _keep_examples(result, child_id, member.subject, purpose, [item], old_own, new_own)


def _keep_examples(
    result: PolicyDiff,
    child_id: uuid.UUID,
    viewer: str,
    purpose: Purpose,
    items: Iterable[ItemRow],
    old: Decision,
    new: Decision,
) -> None:
    for item in items:
        if len(result.examples) >= result.limit:
            return
        result.examples.append(ChangedDecision(child_id, viewer, purpose, item.id, old, new))


def _differs(old: Decision, new: Decision) -> bool:
    # What the viewer gets and why; the policy version always differs, and a reworded reason alone
    # changes nothing the viewer is shown.
    return (old.kind, old.rule_id, old.redacted_fields, old.lawful_basis) != (
        new.kind,
        new.rule_id,
        new.redacted_fields,
        new.lawful_basis,
    )


def _decision_label(decision: Decision) -> str:
    fields = f"[{','.join(decision.redacted_fields)}]" if decision.redacted_fields else ""
    return f"{decision.kind}{fields}"


def _change_labels(old: Decision, new: Decision) -> tuple[str, str]:
    before = f"{_decision_label(old)}/{old.rule_id}"
    after = f"{_decision_label(new)}/{new.rule_id}"
    if before == after:  # only the lawful basis changed: say so
        before, after = f"{before} ({old.lawful_basis})", f"{after} ({new.lawful_basis})"
    return before, after


# -- shared -------------------------------------------------------------------------------------


def _access(session: Session, member: MemberRow, *, child_id: uuid.UUID) -> ChildAccess:
    # Through the access query, as the member's own request would be: the one gate to a child's data.
    principal = Principal(PrincipalKind.STAFF, member.subject, member.agency, member.role)
    access = cases_repository.get_child_access(session, principal, child_id=child_id)
    if access is None:  # the membership was read a moment ago in this transaction
        raise Conflict(f"{member.subject} lost access to child {child_id} while it was being explained.")
    return access


def _consent_state(consents: Iterable[Consent], overrides: Iterable[Override], *, at: datetime) -> ConsentState:
    """Return the child's consent state as the view builds it (the one call to follow if that changes)."""
    return view_service.consent_state(consents, overrides, at=at)
