"""The GraphQL side of the sandbox: schema, resolvers, validation and execution."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from .state import Account, ApiError, User, page


@lru_cache(maxsize=1)
def load_schema() -> GraphQLSchema:
    """Build the schema from schema.graphql and attach the sandbox resolvers."""
    text = resources.files(__package__).joinpath("schema.graphql").read_text("utf-8")
    schema = build_schema(text)
    for type_name, resolvers in _RESOLVERS.items():
        graphql_type = schema.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType)
        for field_name, resolver in resolvers.items():
            graphql_type.fields[field_name].resolve = resolver
    return schema


@dataclass
class Context:
    """What resolvers need: the account and who is calling."""

    account: Account
    caller: User


@dataclass
class Operation:
    """A parsed request: its document, chosen operation and top-level field names."""

    document: DocumentNode | None = None
    definition: OperationDefinitionNode | None = None
    kind: str | None = None
    fields: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    syntax_error: str | None = None


@dataclass
class Outcome:
    """The HTTP answer to a GraphQL request and whether it ran."""

    status: int
    body: dict[str, Any]
    executed: bool = False
    applied: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def analyse(query: str, operation_name: str | None) -> Operation:
    """Parse a query and find the operation and top-level fields it asks for."""
    try:
        document = parse(query)
    except GraphQLError as error:
        return Operation(syntax_error=error.message)

    definitions = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = None
    if operation_name:
        chosen = next((d for d in definitions if d.name and d.name.value == operation_name), None)
    elif len(definitions) == 1:
        chosen = definitions[0]
    if chosen is None:
        return Operation(document=document)

    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    names: list[str] = []
    aliases: list[str] = []
    _collect(chosen.selection_set, fragments, names, aliases, set())
    return Operation(
        document=document,
        definition=chosen,
        kind=chosen.operation.value,
        fields=tuple(dict.fromkeys(names)),
        aliases=tuple(dict.fromkeys(aliases)),
    )


def _collect(
    selection_set: SelectionSetNode,
    fragments: dict[str, SelectionSetNode],
    names: list[str],
    aliases: list[str],
    seen: set[str],
) -> None:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            names.append(selection.name.value)
            aliases.append((selection.alias or selection.name).value)
        elif isinstance(selection, InlineFragmentNode):
            _collect(selection.selection_set, fragments, names, aliases, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:
                seen.add(name)
                _collect(fragments[name], fragments, names, aliases, seen)


def query_analysis_error(message: str) -> Outcome:
    """Return the 400 answer RSC gives to a query that does not fit its schema."""
    return Outcome(
        400,
        {"code": 400, "uri": "/api/graphql", "message": f"[QueryAnalysisError] {message}"},
    )


def run(
    operation: Operation,
    variables: dict[str, Any] | None,
    operation_name: str | None,
    context: Context,
) -> Outcome:
    """Validate and execute an analysed request against the account."""
    if operation.syntax_error is not None:
        return query_analysis_error(operation.syntax_error)
    assert operation.document is not None
    schema = load_schema()
    problems = validate(schema, operation.document)
    if problems:
        return query_analysis_error("; ".join(p.message for p in problems))
    if operation.definition is None:
        return query_analysis_error("operation to execute is missing or ambiguous")
    coerced = get_variable_values(
        schema, operation.definition.variable_definitions or (), variables or {}
    )
    if isinstance(coerced, list):
        return query_analysis_error("; ".join(e.message for e in coerced))

    result = execute_sync(
        schema,
        operation.document,
        variable_values=variables or {},
        operation_name=operation_name,
        context_value=context,
    )
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [format_error(e.message, e.path, e) for e in result.errors]
    return Outcome(200, body, executed=True, applied=not result.errors)


def format_error(
    message: str, path: Any, error: GraphQLError | None = None, code: int | None = None
) -> dict[str, Any]:
    """Shape one GraphQL error the way RSC does, with code and trace extensions."""
    original = getattr(error, "original_error", None)
    if isinstance(original, ApiError):
        code = original.code
    elif code is None:
        code = 500
        if error is not None and original is None:
            message = f"INTERNAL: {message}"
    locations = []
    if error is not None and error.locations:
        locations = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    return {
        "message": message,
        "path": list(path) if path else [],
        "locations": locations,
        "extensions": {
            "code": code,
            "trace": {
                "operation": "/api/graphql",
                "traceId": uuid.uuid4().hex,
                "spanId": uuid.uuid4().hex[:16],
            },
        },
    }


# Resolvers -------------------------------------------------------------------


def _ctx(info: GraphQLResolveInfo) -> Context:
    context: Context = info.context
    return context


def _deployment_version(_root: Any, info: GraphQLResolveInfo) -> str:
    return _ctx(info).account.deployment_version


def _account_id(_root: Any, info: GraphQLResolveInfo) -> str:
    return _ctx(info).account.account_id


def _current_user(_root: Any, info: GraphQLResolveInfo) -> User:
    return _ctx(info).caller


def _login_context(_root: Any, info: GraphQLResolveInfo) -> dict[str, Any]:
    context = _ctx(info)
    return {
        "accountName": context.account.account_name,
        "orgId": context.account.org_id,
        "user": context.caller,
    }


def _user_already_exists(_root: Any, info: GraphQLResolveInfo, **args: Any) -> dict[str, bool]:
    exists = _ctx(info).account.user_exists(args["emailOrUsername"], args["userDomain"])
    return {"doesExist": exists}


def _users(_root: Any, info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
    users = _ctx(info).account.list_users(args.get("sortBy"), args.get("filter"))
    return page(users, args.get("first"), args.get("after"), args.get("last"), args.get("before"))


def _roles_connection(_root: Any, info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
    roles = _ctx(info).account.list_roles(
        args.get("nameFilter"), args.get("assignedRoleIds"), args.get("sortOrder") == "DESC"
    )
    return page(roles, args.get("first"), args.get("after"), args.get("last"), args.get("before"))


def _roles_by_ids(_root: Any, info: GraphQLResolveInfo, **args: Any) -> list[Any]:
    roles = _ctx(info).account.roles
    missing = [r for r in args["roleIds"] if r not in roles]
    if missing:
        raise ApiError("NOT_FOUND", f"role {missing[0]} does not exist")
    return [roles[r] for r in args["roleIds"]]


def _create_user(_root: Any, info: GraphQLResolveInfo, **args: Any) -> str:
    return _ctx(info).account.create_user(args["email"], args["roleIds"]).id


def _delete_users(_root: Any, info: GraphQLResolveInfo, **args: Any) -> bool:
    _ctx(info).account.delete_users(args["ids"])
    return True


_RESOLVERS: dict[str, dict[str, Callable[..., Any]]] = {
    "Query": {
        "deploymentVersion": _deployment_version,
        "accountId": _account_id,
        "currentUser": _current_user,
        "currentUserLoginContext": _login_context,
        "userAlreadyExists": _user_already_exists,
        "usersInCurrentAndDescendantOrganization": _users,
        "getAllRolesInOrgConnection": _roles_connection,
        "getRolesByIds": _roles_by_ids,
    },
    "Mutation": {
        "createUser": _create_user,
        "deleteUsersFromAccount": _delete_users,
    },
}
