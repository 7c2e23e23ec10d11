"""The MCP server: the official SDK's low-level Server with lorechat's tools and resources, on Streamable HTTP.

Stateless, JSON responses: each POST to /mcp carries its own request and credential and gets one JSON body back,
so any replica answers any call and nothing is kept between calls (a turn's history is the conversation's, in
SQL). The route is a plain ASGI one (like the chat route), behind the app's middleware (request id, body limit)
and error handlers: a caller is authenticated before the SDK reads a byte (auth.py), and a refusal there is an
HTTP error in the API's shape. The SDK's session manager runs inside the app's lifespan (`McpServer.running`).

Tool failures are tool results marked isError (tools.py); an unknown tool or resource is a JSON-RPC error
(-32602), as the protocol asks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextContent,
    TextResourceContents,
    Tool,
    ToolAnnotations,
)
from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from backend.errors import LorechatError
from backend.mcp import resources, tools
from backend.mcp.auth import CALLER, Caller, authenticate
from backend.settings import Settings

PATH = "/mcp"

INSTRUCTIONS = (
    "lorechat answers questions from creators' own content (articles, pages, talk transcripts) and nothing else. "
    "Use search_knowledge to find passages, ask for a cited answer (check each citation's `supported`), "
    "list_creators or the lorechat://creators/… resources to see who can be asked. Errors come as JSON with a "
    "code, a message and, when waiting helps, retry_after in seconds."
)

Handler = Callable[[Request, Caller, Any], Awaitable[dict[str, Any]]]
_HANDLERS: dict[str, Handler] = {
    "search_knowledge": tools.search_knowledge,
    "ask": tools.ask,
    "list_creators": tools.list_creators,
}
_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITES = ToolAnnotations(read_only_hint=False, open_world_hint=False)  # `ask` stores a conversation turn


def _caller(ctx: ServerRequestContext[Any, Any]) -> tuple[Request, Caller]:
    request = ctx.request
    assert isinstance(request, Request), "served over HTTP only"
    return request, request.scope[CALLER]


async def _list_tools(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None) -> ListToolsResult:
    return ListToolsResult(
        tools=[
            Tool(
                name=name,
                description=description,
                input_schema=tools.input_schema(model),
                annotations=_WRITES if name == "ask" else _READ_ONLY,
            )
            for name, (model, description) in tools.TOOLS.items()
        ]
    )


async def _call_tool(ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> CallToolResult:
    request, caller = _caller(ctx)
    handler = _HANDLERS.get(params.name)
    if handler is None:
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name[:100]}")
    try:
        result = await handler(request, caller, tools.parse(params.name, params.arguments))
    except LorechatError as exc:
        return _failed(exc.body(getattr(request.state, "request_id", None)))
    except tools.TurnFailed as exc:
        return _failed(exc.body())
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(result, ensure_ascii=False))], structured_content=result
    )


def _failed(body: dict[str, Any]) -> CallToolResult:
    wrapped = body if "error" in body else {"error": body}
    return CallToolResult(
        content=[TextContent(type="text", text=tools.error_text(wrapped))], structured_content=wrapped, is_error=True
    )


async def _list_resources(
    ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
) -> ListResourcesResult:
    request, caller = _caller(ctx)
    return ListResourcesResult(resources=await resources.list_resources(request, caller))


async def _list_templates(
    ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
) -> ListResourceTemplatesResult:
    return ListResourceTemplatesResult(resource_templates=resources.TEMPLATES)


async def _read_resource(ctx: ServerRequestContext[Any, Any], params: ReadResourceRequestParams) -> ReadResourceResult:
    request, caller = _caller(ctx)
    uri = str(params.uri)
    try:
        text = await resources.read_resource(request, caller, uri)
    except resources.ResourceNotFound as exc:
        raise MCPError(exc.code, str(exc), data={"uri": exc.uri}) from None
    return ReadResourceResult(contents=[TextResourceContents(uri=uri, text=text, mime_type=resources.JSON)])


class McpServer:
    """The server and its Streamable HTTP endpoint; an ASGI app (authenticate, then the SDK's transport)."""

    def __init__(self, settings: Settings) -> None:
        self.server: Server[Any] = Server(
            "lorechat",
            version="0.1.0",
            title="lorechat",
            instructions=INSTRUCTIONS,
            on_list_tools=_list_tools,
            on_call_tool=_call_tool,
            on_list_resources=_list_resources,
            on_list_resource_templates=_list_templates,
            on_read_resource=_read_resource,
        )
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,
            json_response=True,
            # Host and Origin checks guard a local server against DNS rebinding; this one is reached by name behind
            # a proxy and every call carries a bearer credential (no cookie a page could ride on).
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=settings.server.max_body_bytes,
        )

    def running(self) -> AbstractAsyncContextManager[None]:
        """The SDK's session manager, for the app's lifespan (once per app)."""
        return self.manager.run()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[CALLER] = await authenticate(Request(scope, receive))
        await self.manager.handle_request(scope, receive, send)


class McpRoute(Route):
    """/mcp as a plain ASGI route that names itself in the scope, as the chat route does (request metrics)."""

    def __init__(self, server: McpServer) -> None:
        super().__init__(PATH, endpoint=server, methods=["GET", "POST", "DELETE"], name="mcp")
        self.app = server

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope
