"""Every query of a child's data goes through a function that takes the ChildAccess.

After polar's `org_scope` linter: a filter on `<Model>.child_id` for the models that hold a
child's data (items, identities through their links, links, consents, overrides) may only
appear in a function with a parameter annotated `ChildAccess`, which only
`cases.service.require_child_access` (through the access query) makes, or `LinkingAuthority`
(identity linking's own gate, gateway/identity/authority.py), which only a push and the
linking review make, or `RoutingScope` (a push reading where the children it filed records
for are at school, gateway/notifications/routing.py), which only the ingest service makes.
A new query that filters by a bare child id fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

CHILD_DATA_MODELS = frozenset({"Item", "Identity", "Link", "Consent", "Override"})
GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
# Where a model's child_id is declared or migrated, not queried.
NOT_QUERIES = ("models", "migrations")


def _filters_by_child(node: ast.AST) -> bool:
    """Say whether an expression compares `<ChildDataModel>.child_id` (==, !=, in_, is_…)."""
    def is_child_column(expr: ast.AST) -> bool:
        return (
            isinstance(expr, ast.Attribute)
            and expr.attr == "child_id"
            and isinstance(expr.value, ast.Name)
            and expr.value.id in CHILD_DATA_MODELS
        )

    if isinstance(node, ast.Compare):
        return is_child_column(node.left) or any(is_child_column(c) for c in node.comparators)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return is_child_column(node.func.value)
    return False


def _takes_access(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]
    return any(
        argument.annotation is not None
        and any(gate in ast.unparse(argument.annotation) for gate in ("ChildAccess", "LinkingAuthority", "RoutingScope"))
        for argument in arguments
    )


def unscoped_child_queries(source: str, filename: str = "<source>") -> list[str]:
    """Return `file:line function` for each child-data filter outside a ChildAccess function."""
    problems = []
    tree = ast.parse(source, filename)
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) or _takes_access(function):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.expr) and _filters_by_child(node):
                problems.append(f"{filename}:{node.lineno} {function.name}")
    return problems


def test_every_query_of_a_childs_data_takes_the_access() -> None:
    sources = [p for p in GATEWAY.rglob("*.py") if not p.relative_to(GATEWAY).parts[0] in NOT_QUERIES]
    assert len(sources) > 20, "the scan found too few files to prove anything"
    problems = [
        problem
        for path in sources
        for problem in unscoped_child_queries(path.read_text(), str(path.relative_to(GATEWAY.parent)))
    ]
    assert problems == [], "queries of a child's data that bypass ChildAccess:\n" + "\n".join(problems)


def test_only_the_access_query_builds_a_child_access() -> None:
    builders = sorted(
        f"{path.relative_to(GATEWAY.parent)}:{node.lineno}"
        for path in GATEWAY.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ChildAccess"
    )
    assert len(builders) == 1 and builders[0].startswith("gateway/cases/repository.py:"), builders


def test_only_a_push_and_the_linking_review_make_a_linking_authority() -> None:
    builders = sorted(
        str(path.relative_to(GATEWAY.parent))
        for path in GATEWAY.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "LinkingAuthority"
    )
    assert set(builders) == {"gateway/identity/authority.py", "gateway/identity/review.py"}, builders


def test_the_check_catches_a_query_by_a_bare_child_id() -> None:
    bypass = '''
def get_items(session, *, child_id):
    return session.scalars(select(Item).where(Item.child_id == child_id))

def get_links(session, child_ids):
    return session.scalars(select(Link).where(Link.child_id.in_(child_ids)))

def scoped(session, access: ChildAccess):
    return session.scalars(select(Consent).where(Consent.child_id == access.child_id))

def unrelated(session, child_id):
    return session.scalars(select(Case).where(Case.child_id == child_id))
'''
    assert unscoped_child_queries(bypass) == ["<source>:3 get_items", "<source>:6 get_links"]


def test_only_the_ingest_service_makes_a_routing_scope() -> None:
    builders = sorted(
        str(path.relative_to(GATEWAY.parent))
        for path in GATEWAY.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "RoutingScope"
    )
    assert builders == ["gateway/ingest/service.py"], builders
