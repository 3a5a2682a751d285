"""Which document a request runs: automatic persisted queries as Apollo's link sends them
(`extensions.persistedQuery {version: 1, sha256Hash}`), and, with COACHGRAPH_TRUSTED_DOCUMENTS,
only the operations of a persisted-query manifest (Apollo's format, or Relay's `{id: body}`).

`coachgraph trusted-documents` writes such a manifest from `.graphql` files (`manifest_for`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    Node,
    OperationDefinitionNode,
    parse,
    print_ast,
    validate,
    visit,
)
from graphql.language import Visitor

from coachgraph.config import SettingsError
from coachgraph.stores.documents import DocumentStore

MANIFEST_FORMAT = "apollo-persisted-query-manifest"
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
OPERATION_NOT_TRUSTED = "OPERATION_NOT_TRUSTED"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DocumentError(Exception):
    """The request names no document it may run: a coded GraphQL error, and the HTTP status
    it answers with under application/graphql-response+json (`json_status`: application/json,
    where Apollo's link expects 200 for PersistedQueryNotFound)."""

    def __init__(self, code: str, message: str, status: int, json_status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.json_status = json_status

    def as_graphql_error(self) -> GraphQLError:
        return GraphQLError(self.message, extensions={"code": self.code})


def _not_found() -> DocumentError:
    # Apollo's link retries with the query on this message or code; it gives up on APQ for
    # good on a 400 or 500, hence 200 (application/json) or 404 (as Apollo's router answers)
    return DocumentError(PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound", 404, 200)


def _not_trusted() -> DocumentError:
    return DocumentError(
        OPERATION_NOT_TRUSTED,
        "Only the operations of the trusted-documents manifest run here",
        403,
        403,
    )


def _bad(message: str) -> DocumentError:
    return DocumentError("BAD_USER_INPUT", message, 400, 400)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Trusted:
    """A manifest's operations: bodies by id, and the digests of the bodies."""

    by_id: Mapping[str, str]
    digests: frozenset[str]

    @classmethod
    def of(cls, by_id: Mapping[str, str]) -> Trusted:
        return cls(dict(by_id), frozenset(sha256(body) for body in by_id.values()))


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document to run; `learn`: the digest to remember it by once it has run (APQ)."""

    query: str | None
    learn: str | None = None
    persisted: bool = False  # named by its hash (a GET of it may be cached)


async def resolve(
    query: str | None,
    extensions: Mapping[str, Any] | None,
    *,
    store: DocumentStore,
    trusted: Trusted | None,
) -> Resolved:
    """The request's document, or a DocumentError."""
    digest = _digest(extensions)
    if trusted is not None:
        return _trusted(query, digest, trusted)
    if digest is None:
        return Resolved(query)
    if query is not None:
        if sha256(query) != digest:
            raise _bad("provided sha does not match query")
        return Resolved(query, learn=digest, persisted=True)
    found = await store.get(digest)
    if found is None:
        raise _not_found()
    return Resolved(found, persisted=True)


def trusted_query(
    query: str | None, extensions: Mapping[str, Any] | None, trusted: Trusted
) -> str | None:
    """The document a WebSocket operation may run under a manifest, or a DocumentError."""
    return _trusted(query, _digest(extensions), trusted).query


def _trusted(query: str | None, digest: str | None, trusted: Trusted) -> Resolved:
    if query is None:
        if digest is None:
            return Resolved(None)  # no document at all: the view's own refusal
        body = trusted.by_id.get(digest)
        if body is None:
            raise _not_trusted()
        return Resolved(body, persisted=True)
    own = sha256(query)
    if digest is not None and digest != own and trusted.by_id.get(digest) != query:
        raise _bad("provided sha does not match query")
    if own not in trusted.digests:
        raise _not_trusted()
    return Resolved(query, persisted=digest is not None)


def _digest(extensions: Mapping[str, Any] | None) -> str | None:
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise _bad("extensions.persistedQuery must be {version: 1, sha256Hash: <hex>}")
    digest = persisted.get("sha256Hash")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
        raise _bad("extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits")
    return digest.lower()


# --- manifests ---------------------------------------------------------------------------------


def load_manifest(path: Path) -> Trusted:
    """A persisted-query manifest: Apollo's `{"format", "version": 1, "operations": [{id, body,
    ...}]}` or Relay's `{id: body}`; SettingsError when it cannot be read or is neither."""
    name = "COACHGRAPH_TRUSTED_DOCUMENTS"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SettingsError(f"{name}: cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise SettingsError(f"{name}: {path} is not JSON ({err})") from None
    if isinstance(raw, dict) and raw.get("format") == MANIFEST_FORMAT:
        if raw.get("version") != 1:
            raise SettingsError(f"{name}: {path}: only version 1 of {MANIFEST_FORMAT} is known")
        operations = raw.get("operations")
        if not isinstance(operations, list) or not all(
            isinstance(op, dict)
            and isinstance(op.get("id"), str)
            and isinstance(op.get("body"), str)
            for op in operations
        ):
            raise SettingsError(f"{name}: {path}: operations must be a list of {{id, body}}")
        return Trusted.of({op["id"]: op["body"] for op in operations})
    if isinstance(raw, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        return Trusted.of(raw)
    raise SettingsError(
        f"{name}: {path} is neither an {MANIFEST_FORMAT} nor a map of ids to documents"
    )


def graphql_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the `.graphql`/`.gql` files under the directories named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in {".graphql", ".gql"})
        else:
            found.append(path)
    return found


def manifest_for(sources: Mapping[str, str], schema: GraphQLSchema) -> dict[str, Any]:
    """Apollo's manifest of every named operation in `sources` (name to GraphQL text), each
    with the fragments it spreads, checked against `schema`; ValueError says what is wrong."""
    operations: dict[str, tuple[str, OperationDefinitionNode]] = {}
    fragments: dict[str, FragmentDefinitionNode] = {}
    for origin, text in sources.items():
        try:
            document = parse(text)
        except GraphQLError as err:
            raise ValueError(f"{origin}: {err.message}") from None
        for definition in document.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                fragments[definition.name.value] = definition
            elif isinstance(definition, OperationDefinitionNode):
                if definition.name is None:
                    raise ValueError(f"{origin}: an operation without a name")
                name = definition.name.value
                if name in operations:
                    raise ValueError(f"{origin}: operation {name} is also in {operations[name][0]}")
                operations[name] = (origin, definition)
    listed = []
    for name, (origin, operation) in sorted(operations.items()):
        document = DocumentNode(definitions=(operation, *_needed(operation, fragments, origin)))
        errors = validate(schema, document)
        if errors:
            raise ValueError(f"{origin}: {name}: {errors[0].message}")
        body = print_ast(document)
        listed.append(
            {"id": sha256(body), "name": name, "type": operation.operation.value, "body": body}
        )
    return {"format": MANIFEST_FORMAT, "version": 1, "operations": listed}


def _needed(
    node: Node, fragments: Mapping[str, FragmentDefinitionNode], origin: str
) -> list[FragmentDefinitionNode]:
    """The fragments `node` spreads, directly or through others, by name."""
    seen: dict[str, FragmentDefinitionNode] = {}
    pending: list[Node] = [node]
    while pending:
        for name in _spreads(pending.pop()):
            if name in seen:
                continue
            if name not in fragments:
                raise ValueError(f"{origin}: unknown fragment {name}")
            seen[name] = fragments[name]
            pending.append(fragments[name])
    return [seen[name] for name in sorted(seen)]


def _spreads(node: Node) -> list[str]:
    names: list[str] = []

    class Spreads(Visitor):
        def enter_fragment_spread(self, spread: FragmentSpreadNode, *_: Any) -> None:
            names.append(spread.name.value)

    visit(node, Spreads())
    return names
