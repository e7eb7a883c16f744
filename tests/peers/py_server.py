#!/usr/bin/env python3
"""Official MCP Python SDK (2.x) server used as a real peer for mcpstorm's client engine.

Tools: echo(text) -> text, add(a, b) -> number (add(2, 3) renders as "5"), sleep(ms) -> "slept <ms>ms",
search(q, n) -> text (records q), touch(uri) -> a resource update on the session's GET stream,
with --asks-client also: ping_client() -> "pong" once the client answered a ping sent on its GET stream,
ask_roots(expect) -> the client's first root, from roots/list on its GET stream (a tool error
unless it is `expect`), ask_model(prompt) -> the client's sampling/createMessage answer, asked on
the call's own response stream (the call waits for it),
seen() -> JSON of how many distinct search queries and item ids
it has been asked for (a test checks generated arguments on the server side).
Resources: docs://readme, items://{id} (a template; records id). Prompt: greet(name).
Completion: greet's name from a fixed list.
Endpoint: http://HOST:PORT/mcp (Streamable HTTP).

    py_server.py --port P [--host 127.0.0.1] [--json-response] [--stateless] [--sse] [--asks-client]

Prints `py_server: listening on http://HOST:PORT/mcp` (flushed) once uvicorn accepts connections.
Install the SDK with tools/peers/setup-python.sh and run with the venv's python.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import Completion, SamplingMessage, TextContent


def build_server(asks_client: bool = False) -> MCPServer:
    server = MCPServer("mcpstorm-py-peer")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    def add(a: float, b: float) -> int | float:
        """Add two numbers (integral sums come back as integers, so add(2, 3) renders "5")."""
        s = a + b
        return int(s) if float(s).is_integer() and abs(s) < 2**53 else s

    @server.tool()
    async def sleep(ms: int) -> str:
        """Sleep for `ms` milliseconds, then answer."""
        await asyncio.sleep(max(ms, 0) / 1000.0)
        return f"slept {ms}ms"

    seen_queries: set[str] = set()
    seen_items: set[str] = set()

    @server.tool()
    def search(q: str, n: int) -> str:
        """Pretend to search: records the query."""
        seen_queries.add(q)
        return f"{n} results for {q}"

    @server.tool()
    def seen() -> str:
        """How many distinct search queries and item ids this server was asked for."""
        return json.dumps({"queries": len(seen_queries), "items": len(seen_items)})

    @server.tool()
    async def touch(uri: str, ctx: Context) -> str:
        """Sends notifications/resources/updated for `uri` on the session's GET stream (not on
        the call's own response): what a client holding that stream must receive."""
        await ctx.session.send_resource_updated(uri)
        return f"touched {uri}"

    if asks_client:
        add_asking_tools(server)

    @server.resource("docs://readme", mime_type="text/markdown")
    def readme() -> str:
        """About this peer."""
        return "# py peer"

    @server.resource("items://{id}", mime_type="application/json")
    def item(id: str) -> str:
        """An item by id: records the id."""
        seen_items.add(id)
        return json.dumps({"id": id})

    @server.prompt()
    def greet(name: str) -> str:
        """Greets someone."""
        return f"Hello, {name}!"

    @server.completion()
    async def complete(ref, argument, context):
        names = ["Ada", "Alan", "Barbara", "Grace"]
        return Completion(values=[n for n in names if n.lower().startswith(argument.value.lower())])

    return server


def add_asking_tools(server: MCPServer) -> None:
    """The tools that ask their client (`--asks-client`): a client that answers no
    server-to-client request, or holds no GET stream, waits on them until their timeout."""

    @server.tool()
    async def ping_client(ctx: Context) -> str:
        """Pings the client on its GET stream (no related request: the standalone channel) and
        answers once the client's reply came back on another POST."""
        await asyncio.wait_for(ctx.session.send_ping(), timeout=20)
        return "pong"

    @server.tool()
    async def ask_roots(expect: str, ctx: Context) -> str:
        """Asks the client for its roots on the GET stream; fails unless the first is `expect`."""
        result = await asyncio.wait_for(ctx.session.list_roots(), timeout=20)
        first = str(result.roots[0].uri) if result.roots else ""
        if first != expect:
            raise ValueError(f"first root {first!r}, expected {expect!r}")
        return first

    @server.tool()
    async def ask_model(prompt: str, ctx: Context) -> str:
        """Asks the client's model on this call's own response stream, then answers with its text."""
        result = await asyncio.wait_for(
            ctx.session.create_message(
                messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
                max_tokens=16,
                related_request_id=ctx.request_id,
            ),
            timeout=20,
        )
        return getattr(result.content, "text", "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--json-response", action="store_true", help="answer POSTs with application/json, not SSE")
    ap.add_argument("--stateless", action="store_true", help="stateless_http=True: no Mcp-Session-Id")
    ap.add_argument(
        "--sse",
        action="store_true",
        help="the legacy HTTP+SSE transport (2024-11-05): GET /sse, POST /messages/",
    )
    ap.add_argument(
        "--asks-client",
        action="store_true",
        help="also list ping_client, ask_roots and ask_model (tools that ask their client)",
    )
    ap.add_argument("--log-level", default="WARNING", help="uvicorn/SDK log level (default WARNING)")
    args = ap.parse_args()

    # Test peer: loopback only.
    host = args.host
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        print(f"py_server: refusing non-loopback host {host!r}", file=sys.stderr)
        return 2

    import uvicorn

    server = build_server(asks_client=args.asks_client)
    # Same app MCPServer.run(transport="streamable-http", host=, port=, json_response=,
    # stateless_http=) builds (mcp 2.3.0: run -> run_streamable_http_async -> streamable_http_app),
    # driven here by our own uvicorn.Server so we can print once it is really listening.
    if args.sse:
        # What MCPServer.run(transport="sse") serves (run_sse_async -> sse_app).
        app = server.sse_app(host=host)
        path = "/sse"
    else:
        app = server.streamable_http_app(
            streamable_http_path="/mcp",
            json_response=args.json_response,
            stateless_http=args.stateless,
            host=host,
        )
        path = "/mcp"
    config = uvicorn.Config(app, host=host, port=args.port, log_level=args.log_level.lower())
    uv = uvicorn.Server(config)

    async def run() -> None:
        serve = asyncio.create_task(uv.serve())
        while not uv.started:
            if serve.done():
                await serve  # re-raise a bind error etc.
                raise SystemExit("py_server: uvicorn exited before starting")
            await asyncio.sleep(0.02)
        shown = f"[{host}]" if ":" in host else host
        mode = "legacy sse" if args.sse else f"json_response={args.json_response} stateless={args.stateless}"
        print(f"py_server: listening on http://{shown}:{args.port}{path} ({mode})", flush=True)
        await serve

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
