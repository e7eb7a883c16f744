#!/usr/bin/env python3
"""Official MCP Python SDK (2.x) client used as a real peer against an MCP server (mcpstorm's).

    py_client.py URL [--expect-tools echo,add,sleep] [--sessions N] [--concurrency C]
                     [--timeout S] [--linger S] [--auto] [--cacert PEM] [--verbose]

Per session: initialize, tools/list (expected names present), tools/call add {a:2,b:3} == 5,
tools/call echo {"text": "hello ☃"} == "hello ☃", a call to an unknown tool must fail (JSON-RPC
error or isError result), then close (the SDK sends DELETE when the server gave a session id).
Every HTTP exchange is traced through httpx2 event hooks; the DELETE must be answered with
200/202/204/405 (405 = server does not allow termination, which the spec permits).

--auto negotiates the way `mcp.Client(url)` does by default: a `server/discover` probe at protocol
2026-07-28 first, falling back to `initialize` on a JSON-RPC error (e.g. -32601).

Exit 0 with last line `py_client: ok sessions=N`; non-zero with `py_client: FAIL ...` otherwise.
--timeout bounds the whole run (default 30 s); a watchdog hard-exits 5 s after that if
cancellation itself gets stuck, so this never hangs a test.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

try:
    from mcp import MCPError
except ImportError:  # pragma: no cover - 1.x spelling
    from mcp.shared.exceptions import McpError as MCPError  # type: ignore[no-redef]

ECHO_TEXT = "hello \u2603"
DELETE_OK = {200, 202, 204, 405}


class CheckFailed(Exception):
    pass


def say(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class HttpTrace:
    """Request/response lines seen by httpx2 for one session."""

    sid: int
    verbose: bool
    events: list[tuple[str, str, int | None]] = field(default_factory=list)  # (method, session-id hdr, status)
    pending: dict[int, str] = field(default_factory=dict)

    async def on_request(self, request: httpx2.Request) -> None:
        self.pending[id(request)] = request.method
        if self.verbose:
            hdrs = {k: v for k, v in request.headers.items() if k.lower() in ("accept", "mcp-session-id", "mcp-protocol-version", "last-event-id")}
            body = request.content.decode("utf-8", "replace") if request.method == "POST" else ""
            say(f"  [s{self.sid}] -> {request.method} {request.url.path} {hdrs} {body[:160]}")

    async def on_response(self, response: httpx2.Response) -> None:
        req = response.request
        self.pending.pop(id(req), None)
        self.events.append((req.method, req.headers.get("mcp-session-id", ""), response.status_code))
        if self.verbose:
            ctype = response.headers.get("content-type", "")
            sess = response.headers.get("mcp-session-id")
            say(f"  [s{self.sid}] <- {req.method} {response.status_code} content-type={ctype!r}" + (f" mcp-session-id={sess}" if sess else ""))


def text_of(result: Any) -> list[str]:
    return [c.text for c in result.content if getattr(c, "type", None) == "text"]


def describe(result: Any) -> str:
    content = [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in result.content]
    return json.dumps(
        {"content": content, "structuredContent": result.structured_content, "isError": result.is_error},
        ensure_ascii=False,
    )


def is_five(result: Any) -> bool:
    """add(2,3) is 5 if the text is "5"/"5.0"/any numeral equal to 5, or structured content holds 5."""
    for t in text_of(result):
        try:
            if float(t) == 5:
                return True
        except ValueError:
            pass
    sc = result.structured_content
    if isinstance(sc, (int, float)) and not isinstance(sc, bool) and sc == 5:
        return True
    if isinstance(sc, dict) and any(isinstance(v, (int, float)) and not isinstance(v, bool) and v == 5 for v in sc.values()):
        return True
    return False


async def one_session(
    url: str,
    sid: int,
    expect: list[str],
    verbose: bool,
    linger: float = 0.0,
    auto: bool = False,
    cacert: str | None = None,
) -> None:
    trace = HttpTrace(sid, verbose)
    timeout = httpx2.Timeout(30.0, read=300.0)  # the SDK's own defaults (create_mcp_http_client)
    # https://: trust exactly the given CA (the test's), as a deployment pins its own.
    verify: Any = ssl.create_default_context(cafile=cacert) if cacert else True
    async with httpx2.AsyncClient(
        timeout=timeout,
        verify=verify,
        event_hooks={"request": [trace.on_request], "response": [trace.on_response]},
    ) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                if auto:
                    # What `mcp.Client(url)` does by default (mode="auto"): POST server/discover at
                    # 2026-07-28 first; a JSON-RPC error (e.g. -32601) falls back to initialize.
                    from mcp.client._probe import negotiate_auto

                    await negotiate_auto(session)
                    how = "server/discover" if session.discover_result is not None else "initialize fallback"
                    info = session.server_info
                    say(
                        f"py_client[s{sid}]: negotiated protocolVersion={session.protocol_version} via {how} "
                        f"server={info.name if info else '?'}/{info.version if info else '?'}"
                    )
                else:
                    init = await session.initialize()
                    say(
                        f"py_client[s{sid}]: initialized protocolVersion={init.protocol_version} "
                        f"server={init.server_info.name}/{init.server_info.version}"
                    )

                tools = await session.list_tools()
                names = [t.name for t in tools.tools]
                missing = [n for n in expect if n not in names]
                if missing:
                    raise CheckFailed(f"tools/list lacks {missing}; server has {names}")
                say(f"py_client[s{sid}]: tools={names}")

                r = await session.call_tool("add", {"a": 2, "b": 3})
                say(f"py_client[s{sid}]: add(2,3) raw={describe(r)} text={text_of(r)!r}")
                if r.is_error or not is_five(r):
                    raise CheckFailed(f"add(2,3) did not return 5: {describe(r)}")

                r = await session.call_tool("echo", {"text": ECHO_TEXT})
                if r.is_error or ECHO_TEXT not in text_of(r):
                    raise CheckFailed(f"echo returned {describe(r)}, want text {ECHO_TEXT!r}")
                say(f"py_client[s{sid}]: echo ok text={text_of(r)!r}")

                try:
                    r = await session.call_tool("no_such_tool_mcpstorm", {})
                except MCPError as e:
                    say(f"py_client[s{sid}]: unknown tool -> JSON-RPC error code={e.code} message={e.message!r}")
                else:
                    if not r.is_error:
                        raise CheckFailed(f"unknown tool call succeeded: {describe(r)}")
                    say(f"py_client[s{sid}]: unknown tool -> isError result {describe(r)}")
                if linger > 0:
                    await anyio.sleep(linger)  # keep the session (and its GET stream) open a while
            # leaving streamable_http_client sends DELETE (if the server issued a session id)
        session_id = next((s for (m, s, _) in trace.events if m == "POST" and s), "")
        deletes = [st for (m, _, st) in trace.events if m == "DELETE"]
        lost = sorted(trace.pending.values())
        gets = [st for (m, _, st) in trace.events if m == "GET"]
        say(f"py_client[s{sid}]: closed session_id={session_id or '-'} GET={gets} DELETE={deletes}")
        if session_id:
            if "DELETE" in lost:
                raise CheckFailed("DELETE got no HTTP response")
            if not deletes:
                raise CheckFailed("server issued a session id but no DELETE was answered at close")
            if deletes[-1] not in DELETE_OK:
                raise CheckFailed(f"DELETE answered {deletes[-1]}, want one of {sorted(DELETE_OK)}")


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(leaves(e))
        return out
    return [exc]


async def run(args: argparse.Namespace, expect: list[str]) -> None:
    limiter = anyio.CapacityLimiter(max(1, args.concurrency))

    async def guarded(i: int) -> None:
        async with limiter:
            await one_session(args.url, i, expect, args.verbose, args.linger, args.auto, args.cacert)

    with anyio.fail_after(args.timeout):
        if args.concurrency <= 1:
            for i in range(args.sessions):
                await one_session(args.url, i, expect, args.verbose, args.linger, args.auto, args.cacert)
        else:
            async with anyio.create_task_group() as tg:
                for i in range(args.sessions):
                    tg.start_soon(guarded, i)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--expect-tools", default="echo,add,sleep")
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=1, help="sessions run at once (default 1 = sequential)")
    ap.add_argument("--timeout", type=float, default=30.0, help="overall limit in seconds (default 30)")
    ap.add_argument("--linger", type=float, default=0.0, help="seconds to keep each session open before closing")
    ap.add_argument(
        "--auto",
        action="store_true",
        help="negotiate like mcp.Client's default mode='auto' (server/discover probe, then initialize fallback)",
    )
    ap.add_argument("--cacert", help="https://: the CA certificate (PEM) to trust")
    ap.add_argument("--verbose", "-v", action="store_true", help="trace every HTTP request/response")
    args = ap.parse_args()
    expect = [t for t in args.expect_tools.split(",") if t]

    def watchdog() -> None:
        time.sleep(args.timeout + 5)
        print(f"py_client: FAIL hard timeout after {args.timeout + 5:.0f}s (cancellation stuck)", file=sys.stderr, flush=True)
        os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()

    try:
        anyio.run(run, args, expect)
    except BaseException as exc:  # noqa: BLE001 - report everything, including groups
        if isinstance(exc, KeyboardInterrupt):
            raise
        for e in leaves(exc):
            if isinstance(e, TimeoutError):
                why = f"timed out after {args.timeout}s"
            elif isinstance(e, CheckFailed):
                why = str(e)
            elif isinstance(e, MCPError):
                why = f"MCP error code={e.code} message={e.message!r}"
            else:
                why = f"{type(e).__name__}: {e}"
            print(f"py_client: FAIL {why}", file=sys.stderr, flush=True)
        return 1
    say(f"py_client: ok sessions={args.sessions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
