"""The `gateway` command: keys, migrations, serving, the demo, dev tokens and audit verification."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gateway.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from audit import NoteVerifier
    from gateway.policy_admin.loaded import LoadedPolicy

app = typer.Typer(help="MACPT interagency data-sharing gateway.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="Key management.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
link_app = typer.Typer(help="Identity linking.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports as a registered agency system.", no_args_is_help=True)
webhook_app = typer.Typer(help="Teams' outbound notification webhooks.", no_args_is_help=True)
schools_app = typer.Typer(help="Who receives a school's Operation Encompass notices.", no_args_is_help=True)
policy_app = typer.Typer(help="The information-sharing agreement (ISA) file.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(link_app, name="link")
app.add_typer(import_app, name="import")
app.add_typer(webhook_app, name="webhook")
app.add_typer(schools_app, name="schools")
app.add_typer(policy_app, name="policy")


@contextlib.contextmanager
def _migrated_session(settings: Settings) -> Iterator[Session]:
    """Yield a session on the configured database (refused unless migrated to head); dispose after."""
    _require_head(settings)
    with _audit_session(settings) as session:
        yield session


@keys_app.command("create")
def keys_create() -> None:
    """Create the token-signing, data-encryption and blind-index keys where missing."""
    from gateway.keys import KeyFolder

    settings = Settings()
    created = KeyFolder(settings.keys_dir).create_missing(audit_origin=settings.audit_origin)
    for path in created:
        typer.echo(f"created {path}")
    if not created:
        typer.echo(f"all keys already present in {settings.keys_dir}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration up to head."""
    from gateway.kit.db import build_engine
    from gateway.kit.migrate import head_revision, upgrade

    settings = Settings()
    engine = build_engine(settings.database_url)
    upgrade(engine)
    typer.echo(f"database at {head_revision()} ({engine.url.render_as_string(hide_password=True)})")


def _require_head(settings: Settings) -> None:
    from gateway.kit.db import build_engine
    from gateway.kit.migrate import current_revision, head_revision

    engine = build_engine(settings.database_url)
    with engine.connect() as connection:
        current = current_revision(connection)
    engine.dispose()
    if current != head_revision():
        typer.echo(f"the database is at {current}, not {head_revision()}: run `gateway db upgrade`", err=True)
        raise typer.Exit(code=1)


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the gateway (migrations must be at head)."""
    settings = Settings()
    _require_head(settings)
    _run_server(settings, host=host, port=port, workers=workers)


def _run_server(settings: Settings, *, host: str, port: int, workers: int) -> None:
    import uvicorn

    from gateway.kit.logging import uvicorn_log_config
    from gateway.kit.serving import ReusePortMultiprocess, reuse_port_spreads_connections

    app_factory = "gateway.app:create_app"
    # No access log: request lines carry child ids. Request spans and JSON logs take its place.
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "access_log": False,
        "log_config": uvicorn_log_config(settings.log_level),
    }
    if workers > 1 and reuse_port_spreads_connections():
        # Workers sharing uvicorn's one socket do not share the load; see gateway/kit/serving.py.
        ReusePortMultiprocess(uvicorn.Config(app_factory, **options)).run()
    else:
        uvicorn.run(app_factory, **options)


@app.command("demo")
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    children: Annotated[int, typer.Option(help="How many synthetic children.")] = 36,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data.")] = 2026,
    load_only: Annotated[bool, typer.Option("--load-only", help="Load the demo data, then exit.")] = False,
    info_file: Annotated[Path, typer.Option(help="Where to write the demo's child ids, as JSON.")] = Path(
        "var/demo.json"
    ),
) -> None:
    """Create the database, load a synthetic partnership, and serve it on http://HOST:PORT."""
    from gateway.demo.loader import load_demo
    from gateway.keys import KeyFolder
    from gateway.kit.db import build_engine
    from gateway.kit.migrate import upgrade

    settings = Settings()
    KeyFolder(settings.keys_dir).create_missing(audit_origin=settings.audit_origin)
    engine = build_engine(settings.database_url, settings.database_limits())
    upgrade(engine)
    summary = load_demo(settings, engine, children=children, seed=seed)
    engine.dispose()
    info_file.parent.mkdir(parents=True, exist_ok=True)
    info_file.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    typer.echo(summary.describe(host=host, port=port))
    if not load_only:
        _run_server(settings, host=host, port=port, workers=1)


@app.command("dev-token")
def dev_token(
    subject: Annotated[str | None, typer.Option(help="Staff member's sign-in subject.")] = None,
    agency: Annotated[str | None, typer.Option(help="Staff member's agency.")] = None,
    role: Annotated[str | None, typer.Option(help="Staff member's role.")] = None,
    client: Annotated[str | None, typer.Option(help="Mint a token for this registered client instead.")] = None,
) -> None:
    """Print a short-lived access token for the demo and tests (never for production)."""
    from gateway.auth.principal import Principal, PrincipalKind
    from gateway.auth.tokens import mint_access_token
    from gateway.keys import KeyFolder
    from policies import Agency

    settings = Settings()
    try:
        known_agency = Agency(agency or Agency.HEALTH)
    except ValueError:
        typer.echo(f"--agency must be one of: {', '.join(Agency)}", err=True)
        raise typer.Exit(code=2) from None
    if client:
        principal = Principal(kind=PrincipalKind.CLIENT, subject=client, agency=known_agency)
    elif subject and agency and role:
        principal = Principal(kind=PrincipalKind.STAFF, subject=subject, agency=known_agency, role=role)
    else:
        typer.echo("give --subject, --agency and --role for staff, or --client for an agency system", err=True)
        raise typer.Exit(code=2)
    token = mint_access_token(
        KeyFolder(settings.keys_dir).signing_keys(),
        issuer=settings.issuer,
        audience=settings.audience,
        principal=principal,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
    typer.echo(token)


@app.command("dev-assertion")
def dev_assertion(
    client: Annotated[str, typer.Argument(help="A demo client's id, e.g. demo-trust-epr.")],
) -> None:
    """Print a client assertion signed with a demo client's private key (for POST /oauth/token)."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    from gateway.demo.loader import demo_client_key_path

    settings = Settings()
    path = demo_client_key_path(settings, client)
    if not path.exists():
        typer.echo(f"no demo key for client {client!r} at {path}: run `gateway demo` first", err=True)
        raise typer.Exit(code=1)
    key = ECKey.import_key(json.loads(path.read_text()))
    now = int(time.time())
    claims = {
        "iss": client,
        "sub": client,
        "aud": settings.token_endpoint,
        "exp": now + 240,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    typer.echo(jwt.encode({"alg": "ES384", "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=["ES384"]))


@contextlib.contextmanager
def _audit_session(settings: Settings) -> Iterator[Session]:
    from gateway.kit.db import build_engine, build_sessionmaker

    engine = build_engine(settings.database_url, settings.database_limits())
    try:
        with build_sessionmaker(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _verifier(settings: Settings, public_key: Path | None) -> NoteVerifier:
    from audit import CheckpointError, NoteVerifier
    from gateway.keys import KeyFolder

    try:
        if public_key is not None:
            return NoteVerifier.parse(public_key.read_text(encoding="ascii"))
        return KeyFolder(settings.keys_dir).audit_signer().verifier()
    except (OSError, CheckpointError, RuntimeError) as unreadable:
        typer.echo(f"cannot read the public key: {unreadable}", err=True)
        raise typer.Exit(code=2) from None


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint of the log as it stands (unless the newest covers it) and print it."""
    from audit import sign_checkpoint
    from gateway.keys import KeyFolder

    settings = Settings()
    signer = KeyFolder(settings.keys_dir).audit_signer()
    with _audit_session(settings) as session:
        signed = sign_checkpoint(session, signer)
        session.commit()
        typer.echo(signed.note, nl=False)


@audit_app.command("public-key")
def audit_public_key() -> None:
    """Print the verifier key of the log's checkpoints (give it to anyone who checks the log)."""
    from gateway.keys import KeyFolder

    typer.echo(KeyFolder(Settings().keys_dir).audit_signer().verifier().vkey())


@audit_app.command("proof")
def audit_proof(
    seq: Annotated[int, typer.Argument(help="The event's seq.")],
    tree_size: Annotated[int | None, typer.Option(help="A checkpoint's tree size; the newest when omitted.")] = None,
) -> None:
    """Print the inclusion proof of an event against a checkpoint, as JSON."""
    from gateway.ig.service import prove_inclusion
    from gateway.kit.errors import NotFound

    settings = Settings()
    with _audit_session(settings) as session:
        try:
            proof = prove_inclusion(session, seq, tree_size)
        except NotFound as missing:
            typer.echo(missing.detail, err=True)
            raise typer.Exit(code=1) from None
    typer.echo(proof.model_dump_json(indent=2))


@audit_app.command("export")
def audit_export(
    output: Annotated[Path, typer.Argument(help="The file to write (JSON Lines).")],
    since: Annotated[datetime, typer.Option("--from", help="First instant (inclusive), e.g. 2026-11-01T00:00:00Z.")],
    until: Annotated[datetime, typer.Option("--to", help="Last instant (exclusive).")],
) -> None:
    """Export the events of a period with a fresh checkpoint and their proofs, for offline checking."""
    from audit import sign_checkpoint
    from audit.export import export_lines, seq_range
    from gateway.keys import KeyFolder

    if since.tzinfo is None or until.tzinfo is None:
        typer.echo("--from and --to need a time zone (e.g. 2026-11-01T00:00:00Z)", err=True)
        raise typer.Exit(code=2)
    settings = Settings()
    signer = KeyFolder(settings.keys_dir).audit_signer()
    with _audit_session(settings) as session:
        signed = sign_checkpoint(session, signer)
        session.commit()
        found = seq_range(session, since, until)
        if found is None:
            typer.echo("no events in that period", err=True)
            raise typer.Exit(code=1)
        with output.open("w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(export_lines(session, signed, *found))
    typer.echo(f"exported events {found[0]} to {found[1]} with the checkpoint of {signed.tree_size} to {output}")


@audit_app.command("verify")
def audit_verify(
    export: Annotated[Path | None, typer.Option(help="Check this export file instead of the database.")] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="A file holding the verifier key; else the key in GATEWAY_KEYS_DIR.")
    ] = None,
    trusted: Annotated[
        Path | None, typer.Option(help="A checkpoint (signed note) you trust: check only what came after it.")
    ] = None,
) -> None:
    """Check the log (or an export): every event, node and checkpoint; name the first bad one."""
    from audit import CheckpointError, verify
    from audit.export import verify_export

    settings = Settings()
    verifier = _verifier(settings, public_key)
    if export is not None:
        with export.open("rb") as handle:
            checked = verify_export(handle, verifier)
        if checked.ok:
            size = checked.checkpoint.tree_size if checked.checkpoint else 0
            typer.echo(f"export intact: {checked.events_checked} events, proven against the checkpoint of {size}")
            return
        typer.echo(f"EXPORT BROKEN at line {checked.line}: {checked.problem}", err=True)
        raise typer.Exit(code=1)
    start = None
    if trusted is not None:
        try:
            start = verifier.open(trusted.read_text(encoding="utf-8"))
        except (OSError, CheckpointError) as bad:
            typer.echo(f"the trusted checkpoint does not verify: {bad}", err=True)
            raise typer.Exit(code=1) from None
    with _audit_session(settings) as session:
        result = verify(session, verifier=verifier, trusted=start)
    if result.ok:
        typer.echo(
            f"audit trail intact: {result.events_checked} events, {result.checkpoints_checked} signed checkpoints, "
            f"root {result.root_hash or '(empty)'}"
        )
        if result.pending:
            typer.echo(f"{result.pending} staged events wait to be integrated (a running gateway does so within a second)")
        return
    typer.echo(f"AUDIT TRAIL BROKEN: {result.problem}", err=True)
    if result.first_broken_seq is not None:
        typer.echo(f"first broken event: {result.first_broken_seq}", err=True)
    if result.bad_checkpoint is not None:
        typer.echo(f"bad checkpoint: tree size {result.bad_checkpoint}", err=True)
    raise typer.Exit(code=1)


@link_app.command("batch")
def link_batch(
    file: Annotated[Path, typer.Argument(help="Identity claims, one JSON object per line (see --help of the module).")],
    database: Annotated[
        str | None, typer.Option(help="Database URL to link into; a temporary SQLite file when omitted.")
    ] = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option(help="Keys to seal and index with; GATEWAY_KEYS_DIR with --database, else temporary ones."),
    ] = None,
) -> None:
    """Link a file of identity claims through the linking service, in file order; one JSON line out per claim."""
    import sys
    import tempfile

    from rich.console import Console
    from rich.progress import Progress

    from gateway.identity.batch import link_lines, open_scratch

    if not file.is_file():
        typer.echo(f"no such file: {file}", err=True)
        raise typer.Exit(code=2)
    with tempfile.TemporaryDirectory(prefix="link-batch-") as work:
        keys = keys_dir or (Settings().keys_dir if database else Path(work) / "keys")
        scratch = open_scratch(database, keys, work)
        try:
            with file.open(encoding="utf-8") as handle:
                total = sum(1 for _ in handle)
            errors = 0
            # A bar only for files big enough to wait for, and only on standard error.
            with Progress(console=Console(stderr=True), transient=True, disable=total < 1000) as progress:
                task = progress.add_task("linking", total=total)
                with file.open(encoding="utf-8") as handle:
                    for result in link_lines(handle, factory=scratch.factory, keyring=scratch.keyring):
                        errors += "error" in result.output
                        sys.stdout.write(json.dumps(result.output) + "\n")
                        progress.advance(task)
        finally:
            scratch.close()
    if errors:
        typer.echo(f"{errors} line(s) could not be linked (see their error lines)", err=True)


@import_app.command("education")
def import_education(
    file: Annotated[Path, typer.Argument(help="A termly attendance extract: CSV with the education/v1 columns.")],
    client: Annotated[str, typer.Option(help="The registered school or LA system the rows come from.")],
    atomic: Annotated[bool, typer.Option(help="All rows or none: one bad row stores nothing.")] = False,
    chunk: Annotated[int, typer.Option(min=1, max=1000, help="Rows stored per transaction (ignored with --atomic).")] = 250,
    report: Annotated[
        Path | None, typer.Option(help="Write each row's outcome here as JSON (the HTTP route's answer).")
    ] = None,
) -> None:
    """Import a CSV as POST /education/v1/records.csv would, with a progress bar; rejected rows on stderr."""
    from rich.console import Console
    from rich.progress import Progress

    from adapters import AdapterError
    from adapters.batch import BatchSubmission
    from adapters.education import EducationAdapter
    from gateway.auth.principal import Principal, PrincipalKind
    from gateway.ingest.bulk import ingest_batch
    from gateway.kit.auditor import Auditor, commit_refusal
    from gateway.keys import KeyFolder
    from gateway.kit.db import build_engine, build_sessionmaker
    from gateway.kit.errors import GatewayError
    from gateway.models import Client
    from gateway.notifications.routing import routing_for

    settings = Settings()
    _require_head(settings)
    if not file.is_file():
        typer.echo(f"no such file: {file}", err=True)
        raise typer.Exit(code=2)
    adapter = EducationAdapter()
    try:
        submission = adapter.parse(file.read_bytes(), "text/csv", max_entries=settings.max_csv_rows)
    except AdapterError as error:
        for issue in error.issues:
            typer.echo(f"refused: {issue.location}: {issue.message}", err=True)
        raise typer.Exit(code=2) from None
    assert isinstance(submission, BatchSubmission)  # the education adapter's own kind of submission
    submission = dataclasses.replace(submission, atomic=atomic)
    if atomic and len(submission.records) > settings.max_atomic_records:
        typer.echo(
            f"refused: an all-or-nothing import takes at most {settings.max_atomic_records} rows "
            f"(GATEWAY_MAX_ATOMIC_RECORDS); import without --atomic, or split the file",
            err=True,
        )
        raise typer.Exit(code=2)
    engine = build_engine(settings.database_url)
    factory = build_sessionmaker(engine, deferred_audit=settings.audit_deferred())
    with factory() as session:
        registered = session.get(Client, client)
        agency = registered.agency if registered is not None else None
    if agency is None:
        typer.echo(f"no registered client {client!r}", err=True)
        raise typer.Exit(code=2)
    principal = Principal(PrincipalKind.CLIENT, client, agency)
    keys = KeyFolder(settings.keys_dir)
    started = time.monotonic()
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress, factory() as session:
            task = progress.add_task("importing", total=len(submission.records))
            outcomes = ingest_batch(
                session,
                principal,
                auditor=Auditor(session, principal.actor()),
                keyring=keys.data_keyring(),
                routing=routing_for(settings, settings.load_policy()),
                submission=submission,
                chunk=chunk,
                progress=lambda records: progress.advance(task, records),
            )
            session.commit()
    except GatewayError as error:
        if error.audit:
            with factory() as session:
                commit_refusal(session, error)  # a refused import is audited, as over HTTP
        typer.echo(f"refused: {error.detail}", err=True)
        for detail in error.errors[:20]:
            typer.echo(f"  {detail.location}: {detail.message}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        if settings.audit_deferred():
            from gateway.ig.checkpointer import integrate_pending

            integrate_pending(factory, wait=True)
        engine.dispose()
    answer = adapter.render(submission, outcomes).body
    if report is not None:
        report.write_text(json.dumps(answer, indent=1))
    for outcome in answer["outcomes"]:
        for error_line in outcome["errors"]:
            typer.echo(f"{error_line['location']}: {error_line['message']}", err=True)
    summary = answer["summary"]
    seconds = time.monotonic() - started
    typer.echo(
        f"{len(answer['outcomes'])} rows in {seconds:.1f} s: {summary['created']} created, "
        f"{summary['unchanged']} unchanged, {summary['rejected']} rejected"
    )
    if summary["rejected"]:
        raise typer.Exit(code=1)


@webhook_app.command("set")
def webhook_set(
    team: Annotated[uuid.UUID, typer.Option(help="The team's id.")],
    url: Annotated[str, typer.Option(help="Where to POST the team's notifications (https).")],
) -> None:
    """Send a team's notifications to a URL too, signed (Standard Webhooks); print the secret, once."""
    from gateway.keys import KeyFolder
    from gateway.notifications.webhooks import WebhookError, set_webhook

    settings = Settings()
    try:
        with _migrated_session(settings) as session:
            secret = set_webhook(
                session,
                KeyFolder(settings.keys_dir).data_keyring(),
                team_id=team,
                url=url,
                allow_http=settings.webhook_allow_http,
            )
            session.commit()
    except WebhookError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo("signing secret (give it to the receiving system; it is not shown again):")
    typer.echo(secret)


@webhook_app.command("remove")
def webhook_remove(team: Annotated[uuid.UUID, typer.Option(help="The team's id.")]) -> None:
    """Stop sending a team's notifications to its webhook (deliveries not yet sent stay unsent)."""
    from gateway.notifications.webhooks import remove_webhook

    with _migrated_session(Settings()) as session:
        removed = remove_webhook(session, team_id=team)
        session.commit()
    typer.echo("webhook removed" if removed else "the team had no active webhook")


@schools_app.command("add-contact")
def schools_add_contact(
    subject: Annotated[str, typer.Option(help="The staff member's sign-in subject.")],
    name: Annotated[str, typer.Option(help="Their name, as the inbox shows it.")],
    urn: Annotated[
        str | None, typer.Option(help="The school's six-digit URN; omit for the LA's education safeguarding lead.")
    ] = None,
    deputy: Annotated[bool, typer.Option(help="A deputy designated safeguarding lead.")] = False,
) -> None:
    """Register a school's DSL (or deputy), or the LA's education safeguarding lead, for Encompass notices."""
    import re

    from sqlalchemy import select

    from gateway.models import SchoolContact, SchoolContactRole

    if urn is not None and not re.fullmatch(r"\d{6}", urn):
        typer.echo("refused: a school's URN is six digits", err=True)
        raise typer.Exit(code=2)
    if urn is None and deputy:
        typer.echo("refused: a deputy belongs to a school (give --urn)", err=True)
        raise typer.Exit(code=2)
    role = (
        SchoolContactRole.LA_EDUCATION_SAFEGUARDING_LEAD
        if urn is None
        else SchoolContactRole.DEPUTY_DESIGNATED_SAFEGUARDING_LEAD
        if deputy
        else SchoolContactRole.DESIGNATED_SAFEGUARDING_LEAD
    )
    with _migrated_session(Settings()) as session:
        existing = session.scalar(select(SchoolContact).where(SchoolContact.subject == subject, _same_urn(urn)))
        if existing is None:
            session.add(SchoolContact(urn=urn, subject=subject, display_name=name, role=role))
        else:
            existing.display_name, existing.role, existing.active = name, role, True
        session.commit()
    typer.echo(f"{subject} receives Operation Encompass notices for {'URN ' + urn if urn else 'children with no school'} ({role})")


@schools_app.command("remove-contact")
def schools_remove_contact(
    subject: Annotated[str, typer.Option(help="The staff member's sign-in subject.")],
    urn: Annotated[str | None, typer.Option(help="The school's URN; omit for the LA's lead.")] = None,
) -> None:
    """Stop a contact receiving a school's notices (kept, inactive: their acknowledgements stay theirs)."""
    from sqlalchemy import update

    from gateway.models import SchoolContact

    with _migrated_session(Settings()) as session:
        stopped = session.execute(
            update(SchoolContact)
            .where(SchoolContact.subject == subject, _same_urn(urn))
            .values(active=False)
            .returning(SchoolContact.id)
        ).first()
        session.commit()
    typer.echo("contact removed" if stopped is not None else "no such contact")


@policy_app.command("check")
def policy_check(file: Annotated[Path, typer.Argument(help="An ISA file (YAML).")]) -> None:
    """Validate an ISA file as the gateway would load it; name the line and field at fault."""
    from policies import PolicyError, load_policy

    try:
        policy = load_policy(file)
    except PolicyError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(
        f"ok: {policy.id} version {policy.version}: {len(policy.rules)} rules, "
        f"{len(policy.lawful_bases)} lawful bases, {len(policy.notifiable_categories)} notifiable categories"
    )


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the ISA file's JSON Schema (policies/isa/schema.json), for editors and CI checks."""
    from policies.isa import isa_json_schema

    typer.echo(json.dumps(isa_json_schema(), indent=2, sort_keys=True))


@policy_app.command("explain")
def policy_explain(
    child: Annotated[uuid.UUID, typer.Option(help="The child's id.")],
    viewer: Annotated[str, typer.Option(help="A team member's sign-in subject.")],
    purpose: Annotated[str, typer.Option(help="child_protection or family_help.")],
    database_url: Annotated[str | None, typer.Option(help="Database URL; GATEWAY_DATABASE_URL when omitted.")] = None,
) -> None:
    """Print, item by item, what the ISA in force decides for one viewer of one child, and why (ids and facts only)."""
    from gateway.kit.auditor import Auditor
    from gateway.kit.errors import GatewayError
    from gateway.policy_admin.service import CLI, explain
    from policies import Purpose

    try:
        chosen = Purpose(purpose)
    except ValueError:
        typer.echo(f"--purpose must be one of: {', '.join(Purpose)}", err=True)
        raise typer.Exit(code=2) from None
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    loaded = _read_policy_or_exit(settings.policy_path)
    with _migrated_session(settings) as session:
        try:
            explanation = explain(
                session, auditor=Auditor(session, CLI), loaded=loaded, child_id=child, viewer=viewer, purpose=chosen
            )
        except GatewayError as error:
            typer.echo(f"refused: {error.detail}", err=True)
            raise typer.Exit(code=1) from None
        session.commit()
    for line in explanation.lines():
        typer.echo(line)


@policy_app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="The ISA file in force (YAML).")],
    new: Annotated[Path, typer.Argument(help="The ISA file proposed (YAML).")],
    limit: Annotated[int, typer.Option(min=0, help="How many changed decisions to list.")] = 50,
    database_url: Annotated[str | None, typer.Option(help="Database URL; GATEWAY_DATABASE_URL when omitted.")] = None,
) -> None:
    """Count the decisions over every open case that change from OLD to NEW, and list the first of them."""
    from gateway.kit.auditor import Auditor
    from gateway.policy_admin.service import CLI, diff

    before, after = _read_policy_or_exit(old), _read_policy_or_exit(new)
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    with _migrated_session(settings) as session:
        compared = diff(session, auditor=Auditor(session, CLI), old=before, new=after, limit=limit)
        session.commit()
    for line in compared.lines():
        typer.echo(line)


def _read_policy_or_exit(path: Path | None) -> LoadedPolicy:
    from gateway.policy_admin.loaded import read_policy
    from policies import PolicyError

    try:
        return read_policy(path)
    except PolicyError as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(code=1) from None


def _same_urn(urn: str | None) -> Any:
    from gateway.models import SchoolContact

    return SchoolContact.urn.is_(None) if urn is None else SchoolContact.urn == urn
