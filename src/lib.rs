//! mcpstorm: an io_uring, thread-per-core load engine and reference server for MCP
//! (Model Context Protocol) over streamable HTTP. See ../shared/ARCHITECTURE.md.

pub mod proto;
