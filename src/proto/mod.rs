//! I/O-free wire code shared by the embedded server (`server/`) and the client engine
//! (`engine/`): HTTP/1.1 request parsing and response writing, chunked transfer coding, SSE,
//! a JSON scanner for JSON-RPC frames, and the MCP 2026-07-28 header values. Nothing in here touches a socket or a clock: bytes
//! (and, where needed, a time) come in as arguments, bytes or parsed views go out, so every
//! sequence a peer can send is testable byte by byte.

pub mod chunked;
pub mod http_request;
pub mod http_response;
pub mod json;
pub mod mcp_headers;
pub mod sse;
