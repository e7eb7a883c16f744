//! `mcpstorm probe URL` and the run's discovery at baseline: one session that walks a
//! server's surface before anything is loaded. `client.rs` is the blocking one-session client,
//! `surface.rs` what the server lists and the check of a mix against it (I/O-free). The probe
//! lists everything (with pagination), calls each tool once with arguments made from its
//! `inputSchema`, reads each resource, gets each prompt, and prints what answered, how fast,
//! and what failed: the pre-flight a user runs before a 100K run.

pub mod client;
pub mod surface;

use client::{Answer, ProbeClient, ProbeError};
use serde_json::{Value, json};
use surface::Surface;

/// Most pages of one list the probe follows (`nextCursor`), so a server that never stops
/// paging cannot hold it.
const PAGES_MAX: usize = 50;

/// One request of the walk and what came of it.
#[derive(Debug, Clone)]
pub struct Row {
    pub method: String,
    pub name: String,
    /// `ok`, `tool error`, `rpc error CODE: MESSAGE`, or the transport failure.
    pub outcome: String,
    pub ok: bool,
    pub latency_us: Option<u64>,
}

impl Row {
    fn of(method: &str, name: &str, answer: &Result<Answer, ProbeError>) -> Row {
        let (outcome, ok) = match answer {
            Ok(Answer {
                outcome: Ok(result),
                ..
            }) if result.get("isError") == Some(&Value::Bool(true)) => {
                let text = result["content"][0]["text"].as_str().unwrap_or_default();
                (format!("tool error: {}", clip(text)), false)
            }
            Ok(Answer {
                outcome: Ok(result),
                ..
            }) if result.get("resultType").and_then(Value::as_str) == Some("input_required") => {
                ("ok (input required)".to_string(), true)
            }
            Ok(Answer { outcome: Ok(_), .. }) => ("ok".to_string(), true),
            // A list the server does not offer is a fact about it, not a failure.
            Ok(Answer {
                outcome: Err((-32601, _)),
                ..
            }) if method.ends_with("/list") => ("not offered".to_string(), true),
            Ok(Answer {
                outcome: Err((code, message)),
                ..
            }) => (format!("rpc error {code}: {}", clip(message)), false),
            Err(e) => (e.to_string(), false),
        };
        Row {
            method: method.into(),
            name: name.into(),
            outcome,
            ok,
            latency_us: answer.as_ref().ok().map(|a| a.latency_us),
        }
    }
}

fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(80).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

/// Every page of `method`'s list under `key`; `Ok(None)` when the server does not offer it.
fn list_all(
    client: &mut ProbeClient,
    method: &str,
    key: &str,
    rows: &mut Vec<Row>,
) -> Result<Option<Vec<Value>>, ProbeError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..PAGES_MAX {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let answer = client.request(method, params);
        rows.push(Row::of(method, "", &answer));
        let result = match answer?.outcome {
            Ok(result) => result,
            Err(_) => return Ok(None),
        };
        items.extend(result[key].as_array().cloned().unwrap_or_default());
        cursor = result["nextCursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    Ok(Some(items))
}

/// Lists the server's tools, resources, templates and prompts over an open session.
pub fn discover(client: &mut ProbeClient, rows: &mut Vec<Row>) -> Result<Surface, ProbeError> {
    Ok(Surface {
        tools: list_all(client, "tools/list", "tools", rows)?,
        resources: list_all(client, "resources/list", "resources", rows)?,
        templates: list_all(
            client,
            "resources/templates/list",
            "resourceTemplates",
            rows,
        )?,
        prompts: list_all(client, "prompts/list", "prompts", rows)?,
    })
}

/// The whole walk: open the session, list, call, read, get; every request a row. A tool
/// named in `tool_args` is called with those arguments instead of ones made from its schema.
pub fn walk(
    client: &mut ProbeClient,
    tool_args: &[(String, Value)],
) -> Result<(Surface, Vec<Row>), ProbeError> {
    let mut rows = Vec::new();
    let opened = client.open_session();
    let method = if client.modern() {
        "server/discover"
    } else {
        "initialize"
    };
    rows.push(Row::of(method, "", &opened));
    if !rows[0].ok {
        return Err(opened
            .err()
            .unwrap_or(ProbeError::Protocol(rows[0].outcome.clone())));
    }
    let surface = discover(client, &mut rows)?;
    for tool in surface.tools.iter().flatten() {
        let Some(name) = tool["name"].as_str() else {
            continue;
        };
        // SEP-2243: a tool with an invalid `x-mcp-header` is excluded, never called.
        let declared = match crate::proto::mcp_headers::declarations(&tool["inputSchema"]) {
            Ok(declared) => declared,
            Err(e) => {
                rows.push(Row {
                    method: "tools/call".into(),
                    name: name.into(),
                    outcome: format!("not called: {e} (a client must exclude the tool)"),
                    ok: false,
                    latency_us: None,
                });
                continue;
            }
        };
        let args = match tool_args.iter().find(|(n, _)| n == name) {
            Some((_, args)) => args.clone(),
            None => surface::arguments_for(&tool["inputSchema"]),
        };
        client.param_headers = declared;
        let answer = client.request("tools/call", json!({ "name": name, "arguments": args }));
        client.param_headers.clear();
        rows.push(Row::of("tools/call", name, &answer));
    }
    for resource in surface.resources.iter().flatten() {
        let Some(uri) = resource["uri"].as_str() else {
            continue;
        };
        let answer = client.request("resources/read", json!({ "uri": uri }));
        rows.push(Row::of("resources/read", uri, &answer));
    }
    for prompt in surface.prompts.iter().flatten() {
        let Some(name) = prompt["name"].as_str() else {
            continue;
        };
        let mut args = serde_json::Map::new();
        for argument in prompt["arguments"].as_array().into_iter().flatten() {
            if argument["required"] == Value::Bool(true)
                && let Some(arg) = argument["name"].as_str()
            {
                args.insert(arg.into(), json!("mcpstorm"));
            }
        }
        let answer = client.request("prompts/get", json!({ "name": name, "arguments": args }));
        rows.push(Row::of("prompts/get", name, &answer));
    }
    client.close();
    Ok((surface, rows))
}

/// The probe's table.
pub fn render(url: &str, surface: &Surface, rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.method.len() + 1 + r.name.chars().count())
        .max()
        .unwrap_or(10)
        .clamp(10, 70);
    let mut out = format!("mcpstorm probe {url}: {}\n", surface.summary());
    out.push_str(&format!(
        "  {:<width$} {:>10}  outcome\n",
        "request", "latency"
    ));
    for row in rows {
        let request = format!("{} {}", row.method, row.name);
        let latency = row.latency_us.map_or("—".into(), crate::report::format_us);
        out.push_str(&format!(
            "  {:<width$} {:>10}  {}\n",
            request.trim_end(),
            latency,
            row.outcome
        ));
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    out.push_str(&format!(
        "{} requests, {} answered ok, {} failed\n",
        rows.len(),
        rows.len() - failed,
        failed
    ));
    out
}

/// A client for the plan's first target, with its headers, TLS settings and protocol version.
pub fn client_for_plan(
    plan: &crate::engine::plan::EnginePlan,
    timeout: std::time::Duration,
) -> Result<ProbeClient, String> {
    let target = plan.targets.first().cloned().ok_or("no target to probe")?;
    let tls = match (&plan.tls, &target.tls_name) {
        (Some(options), Some(_)) => Some(crate::tls::client_config(options, 1)?),
        _ => None,
    };
    Ok(ProbeClient::new(
        target,
        plan.headers.clone(),
        tls,
        &plan.protocol_version,
        timeout,
    ))
}
