// Official MCP TypeScript SDK (1.x) server used as a real peer for mcpstorm's client engine.
//
// Tools: echo(text) -> text; touch(uri) -> a resource update on the session's GET stream
// (streamable HTTP) or on its SSE stream (legacy).
// Transports: streamable HTTP at /mcp (stateful: McpServer + StreamableHTTPServerTransport, one
// transport per session in a map), or with --sse the deprecated SSEServerTransport of the legacy
// HTTP+SSE transport (2024-11-05): GET /sse, POST /messages?sessionId=...
//
//   NODE_PATH=$(tools/peers/setup-ts.sh | tail -n1)/node_modules node tests/peers/ts_server.cjs --port P [--sse]
//
// Prints `ts_server: listening on http://127.0.0.1:P/PATH` once it accepts connections.
// Loopback only (a test peer).
"use strict";

const { randomUUID } = require("node:crypto");
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { SSEServerTransport } = require("@modelcontextprotocol/sdk/server/sse.js");
const { createMcpExpressApp } = require("@modelcontextprotocol/sdk/server/express.js");
const { z } = require("zod");

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]);
const legacy = args.includes("--sse");
if (!Number.isInteger(port) || port <= 0) {
  console.error("ts_server: --port P is required");
  process.exit(2);
}

function buildServer() {
  const server = new McpServer({ name: "mcpstorm-ts-peer", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Echoes text", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  server.registerResource(
    "readme",
    "docs://readme",
    { mimeType: "text/markdown" },
    async (uri) => ({ contents: [{ uri: uri.href, text: "# ts peer" }] }),
  );
  server.registerTool(
    "touch",
    {
      description: "Sends notifications/resources/updated for uri on the session's stream",
      inputSchema: { uri: z.string() },
    },
    async ({ uri }) => {
      await server.server.sendResourceUpdated({ uri });
      return { content: [{ type: "text", text: `touched ${uri}` }] };
    },
  );
  return server;
}

const app = createMcpExpressApp({ host: "127.0.0.1" });
const transports = new Map();

if (legacy) {
  app.get("/sse", async (req, res) => {
    const transport = new SSEServerTransport("/messages", res);
    transports.set(transport.sessionId, transport);
    res.on("close", () => transports.delete(transport.sessionId));
    await buildServer().connect(transport);
  });
  app.post("/messages", async (req, res) => {
    const transport = transports.get(String(req.query.sessionId));
    if (!transport) {
      res.status(404).send("unknown session");
      return;
    }
    await transport.handlePostMessage(req, res, req.body);
  });
} else {
  app.all("/mcp", async (req, res) => {
    const id = req.headers["mcp-session-id"];
    let transport = id ? transports.get(id) : undefined;
    if (!transport) {
      if (id || req.method !== "POST") {
        res.status(404).json({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null });
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => transports.set(sid, transport),
      });
      transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
      await buildServer().connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  });
}

const listener = app.listen(port, "127.0.0.1", () => {
  const path = legacy ? "/sse" : "/mcp";
  console.log(`ts_server: listening on http://127.0.0.1:${port}${path}`);
});
listener.on("error", (e) => {
  console.error(`ts_server: ${e.message}`);
  process.exit(2);
});
