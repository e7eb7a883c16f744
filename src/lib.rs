//! mcpstorm: an io_uring, thread-per-core load engine and reference server for MCP
//! (Model Context Protocol) over streamable HTTP. Data flows one way: options → plan →
//! shards → merged figures → report (see ../shared/ARCHITECTURE.md).

pub mod cli;
pub mod engine;
pub mod kubernetes;
pub mod netfault;
pub mod probe;
pub mod proto;
pub mod report;
pub mod ring;
pub mod scenario;
pub mod server;
pub mod sys;
pub mod tls;
