//! The fixtures of the official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! the "everything" server's surface): tools that answer with each content type, with an error
//! result, with progress and log notifications, and the 2026-07-28 diagnostics; the `test://`
//! resources and template; the `test_*` prompts. `serve` carries them so that the suite scores
//! it as the reference server it is meant to be. Part of `server/`; I/O-free: each function
//! writes a JSON-RPC `result` value (and its notifications through a callback) for `mcp.rs` to
//! frame. None of it is on the load path: `echo` and `ping` are matched before any fixture.

use super::catalog::RpcError;
use crate::proto::json;

const INVALID_PARAMS: i32 = -32602;
/// 2026-07-28's "missing required client capability".
pub const MISSING_CAPABILITY: i32 = -32021;

/// A 1×1 PNG, as the suite's reference server sends it.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV of one silent sample.
const WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// The fixture tools' `tools/list` entries (a JSON array's members, no brackets), listed after
/// `serve`'s own tools. A macro, so the lists are joined by `concat!` at compile time.
macro_rules! tools_list_entries {
    () => {
        concat!(
    r#"{"name":"test_simple_text","description":"Answers with one text item.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_image_content","description":"Answers with one PNG image.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_audio_content","description":"Answers with one WAV audio item.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_embedded_resource","description":"Answers with an embedded text resource.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_multiple_content_types","description":"Answers with text, an image and an embedded resource.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_error_handling","description":"Answers with a tool error result (isError).","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_tool_with_progress","description":"Sends three progress notifications for the request's progressToken, then answers.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_tool_with_logging","description":"Sends three log notifications at level info (as the log level allows), then answers.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_logging_tool","description":"Logs one info message when the request's log level allows it, then answers.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_missing_capability","description":"Needs the client's sampling capability: without it, -32021.","inputSchema":{"type":"object","properties":{}}},"#,
    r#"{"name":"test_streaming_elicitation","description":"Answers on its stream with notifications and the result only, never a request.","inputSchema":{"type":"object","properties":{}}},"#,
        r#"{"name":"test_sampling","description":"Asks the client's model (sampling/createMessage on this call's stream), then answers with its reply.","inputSchema":{"type":"object","properties":{"prompt":{"type":"string","description":"What to ask the model"}},"required":["prompt"]}},"#,
        r#"{"name":"test_elicitation","description":"Asks the user for a name and an email (elicitation/create on this call's stream).","inputSchema":{"type":"object","properties":{"message":{"type":"string","description":"What to tell the user"}},"required":["message"]}},"#,
        r#"{"name":"test_elicitation_sep1034_defaults","description":"Asks the user with a form whose fields have defaults (SEP-1034).","inputSchema":{"type":"object","properties":{}}},"#,
        r#"{"name":"test_elicitation_sep1330_enums","description":"Asks the user with enum fields, titled and untitled, single and multiple (SEP-1330).","inputSchema":{"type":"object","properties":{}}},"#,
    r##"{"name":"json_schema_2020_12_tool","description":"A tool whose input schema uses JSON Schema 2020-12 keywords.","inputSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","$defs":{"address":{"$anchor":"addressDef","type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"}}}},"properties":{"name":{"type":"string"},"address":{"$ref":"#/$defs/address"},"contactMethod":{"type":"string","enum":["phone","email"]},"phone":{"type":"string"},"email":{"type":"string"}},"allOf":[{"anyOf":[{"required":["phone"]},{"required":["email"]}]}],"if":{"properties":{"contactMethod":{"const":"phone"}},"required":["contactMethod"]},"then":{"required":["phone"]},"else":{"required":["email"]},"additionalProperties":false}}"##,
)
    };
}
pub(crate) use tools_list_entries;

/// What the request carries beyond the tool's arguments.
pub struct CallContext<'a> {
    /// `params._meta.progressToken`, a raw JSON token (string or number), echoed as is.
    pub progress_token: Option<&'a [u8]>,
    /// The log level in force: the session's (`logging/setLevel`) or the request's
    /// (2026-07-28 `_meta`), as an index into `catalog::LOG_LEVELS`; `None` = none set.
    pub log_level: Option<usize>,
    /// 2026-07-28 `_meta` client capabilities (a JSON object); `None` on a session.
    pub client_capabilities: Option<&'a [u8]>,
}

/// A fixture tool's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum ToolAnswer {
    /// `out` holds the result object.
    Result,
    /// The tool needs a client capability the request did not declare: -32021 with
    /// `data.requiredCapabilities` (this JSON object).
    MissingCapability(&'static str),
    /// No fixture of that name.
    Unknown,
}

/// Index of `info` in `catalog::LOG_LEVELS`.
const INFO: usize = 1;

/// Calls the fixture tool `name`: its result into `out`, each notification (a whole JSON-RPC
/// message) through `notify`, in the order they are sent before the result.
pub fn call_tool(
    name: &str,
    context: &CallContext<'_>,
    out: &mut Vec<u8>,
    notify: &mut dyn FnMut(&[u8]),
) -> ToolAnswer {
    let text_result = |out: &mut Vec<u8>, text: &str, is_error: bool| {
        out.extend_from_slice(b"{\"content\":[{\"type\":\"text\",\"text\":");
        json::write_escaped_str(out, text);
        out.extend_from_slice(if is_error {
            b"}],\"isError\":true}"
        } else {
            b"}]}"
        });
    };
    // Sent when the level in force lets `info` through (a client that set none gets none on
    // the sessionless wire, where a request without a level asks for no logs).
    let log = |notify: &mut dyn FnMut(&[u8]), message: &str| {
        if context.log_level.is_some_and(|level| level <= INFO) {
            let mut frame = Vec::new();
            frame.extend_from_slice(
                br#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"mcpstorm","data":"#,
            );
            json::write_escaped_str(&mut frame, message);
            frame.extend_from_slice(b"}}");
            notify(&frame);
        }
    };
    match name {
        "test_simple_text" => {
            text_result(out, "This is a simple text response for testing.", false)
        }
        "test_image_content" => {
            out.extend_from_slice(b"{\"content\":[{\"type\":\"image\",\"data\":\"");
            out.extend_from_slice(PNG_BASE64.as_bytes());
            out.extend_from_slice(b"\",\"mimeType\":\"image/png\"}]}");
        }
        "test_audio_content" => {
            out.extend_from_slice(b"{\"content\":[{\"type\":\"audio\",\"data\":\"");
            out.extend_from_slice(WAV_BASE64.as_bytes());
            out.extend_from_slice(b"\",\"mimeType\":\"audio/wav\"}]}");
        }
        "test_embedded_resource" => out.extend_from_slice(
            br#"{"content":[{"type":"resource","resource":{"uri":"test://embedded-resource","mimeType":"text/plain","text":"This is an embedded resource content."}}]}"#,
        ),
        "test_multiple_content_types" => {
            out.extend_from_slice(
                br#"{"content":[{"type":"text","text":"Multiple content types test:"},{"type":"image","data":""#,
            );
            out.extend_from_slice(PNG_BASE64.as_bytes());
            out.extend_from_slice(
                br#"","mimeType":"image/png"},{"type":"resource","resource":{"uri":"test://mixed-content-resource","mimeType":"application/json","text":"{\"test\":\"data\",\"value\":123}"}}]}"#,
            );
        }
        "test_error_handling" => text_result(
            out,
            "This tool intentionally returns an error for testing",
            true,
        ),
        "test_tool_with_progress" => {
            if let Some(token) = context.progress_token {
                for progress in [0, 50, 100] {
                    let mut frame = Vec::new();
                    frame.extend_from_slice(
                        br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"#,
                    );
                    frame.extend_from_slice(token);
                    frame.extend_from_slice(
                        format!(",\"progress\":{progress},\"total\":100}}}}").as_bytes(),
                    );
                    notify(&frame);
                }
            }
            text_result(out, "Tool with progress completed", false);
        }
        "test_tool_with_logging" => {
            for message in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ] {
                log(notify, message);
            }
            text_result(out, "Tool with logging executed successfully", false);
        }
        "test_logging_tool" => {
            log(notify, "test_logging_tool ran");
            text_result(out, "Logged as the log level allows", false);
        }
        "test_missing_capability" => {
            let has_sampling = context
                .client_capabilities
                .and_then(|c| json::object_member(c, "sampling").ok().flatten())
                .is_some_and(|s| s.first() == Some(&b'{'));
            if !has_sampling {
                return ToolAnswer::MissingCapability(r#"{"sampling":{}}"#);
            }
            text_result(out, "The client declared sampling", false);
        }
        "test_streaming_elicitation" => text_result(
            out,
            "Answered without asking: this server sends no request on a response stream",
            false,
        ),
        "json_schema_2020_12_tool" => text_result(out, "Arguments accepted", false),
        _ => return ToolAnswer::Unknown,
    }
    ToolAnswer::Result
}

/// The fixture tools that ask their client on the 2025 wire: the method and params of the
/// server-to-client request `name` sends on its call's stream; `None` for any other tool.
pub fn client_request(name: &str, arguments: Option<&[u8]>) -> Option<(&'static str, String)> {
    let argument = |key: &str| {
        arguments
            .and_then(|a| json::object_member(a, key).ok().flatten())
            .and_then(json::str_unescaped)
            .map(|v| v.into_owned())
    };
    let (method, params) = match name {
        "test_sampling" => (
            "sampling/createMessage",
            serde_json::json!({
                "messages": [{
                    "role": "user",
                    "content": { "type": "text", "text": argument("prompt").unwrap_or_default() }
                }],
                "maxTokens": 100
            }),
        ),
        "test_elicitation" => (
            "elicitation/create",
            serde_json::json!({
                "message": argument("message").unwrap_or_default(),
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" }
                    },
                    "required": ["username", "email"]
                }
            }),
        ),
        "test_elicitation_sep1034_defaults" => (
            "elicitation/create",
            serde_json::json!({
                "message": "Please review and update the form fields with defaults",
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "User name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User age", "default": 30 },
                        "score": { "type": "number", "description": "User score", "default": 95.5 },
                        "status": {
                            "type": "string",
                            "description": "User status",
                            "enum": ["active", "inactive", "pending"],
                            "default": "active"
                        },
                        "verified": { "type": "boolean", "description": "Verification status", "default": true }
                    },
                    "required": []
                }
            }),
        ),
        "test_elicitation_sep1330_enums" => (
            "elicitation/create",
            serde_json::json!({
                "message": "Please select options from the enum fields",
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "untitledSingle": {
                            "type": "string",
                            "description": "Select one option",
                            "enum": ["option1", "option2", "option3"]
                        },
                        "titledSingle": {
                            "type": "string",
                            "description": "Select one option with titles",
                            "oneOf": [
                                { "const": "value1", "title": "First Option" },
                                { "const": "value2", "title": "Second Option" },
                                { "const": "value3", "title": "Third Option" }
                            ]
                        },
                        "legacyEnum": {
                            "type": "string",
                            "description": "Select one option (legacy)",
                            "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]
                        },
                        "untitledMulti": {
                            "type": "array",
                            "description": "Select multiple options",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                        },
                        "titledMulti": {
                            "type": "array",
                            "description": "Select multiple options with titles",
                            "minItems": 1,
                            "maxItems": 3,
                            "items": {
                                "anyOf": [
                                    { "const": "value1", "title": "First Choice" },
                                    { "const": "value2", "title": "Second Choice" },
                                    { "const": "value3", "title": "Third Choice" }
                                ]
                            }
                        }
                    },
                    "required": []
                }
            }),
        ),
        _ => return None,
    };
    Some((method, params.to_string()))
}

/// The result of a call that asked its client, made from the client's JSON-RPC response
/// (`None`: no answer came in time): a result object, `isError` when the client refused.
pub fn client_answered(tool: &str, response: Option<&[u8]>) -> Vec<u8> {
    let response: Option<serde_json::Value> = response.and_then(|r| serde_json::from_slice(r).ok());
    let (text, is_error) = match response.as_ref().map(|r| (r.get("result"), r.get("error"))) {
        None => (
            format!(
                "the client did not answer within {} s",
                super::pending::ANSWER_TIMEOUT_S
            ),
            true,
        ),
        Some((_, Some(error))) => (format!("the client refused: {error}"), true),
        Some((None, None)) => ("the client's answer has no result".to_string(), true),
        Some((Some(result), None)) => {
            let field = |key: &str| result.get(key).cloned().unwrap_or_default();
            let text = match tool {
                "test_sampling" => format!(
                    "LLM response: {}",
                    result
                        .get("content")
                        .and_then(|c| c.get("text"))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                ),
                "test_elicitation" => format!(
                    "User response: action={}, content={}",
                    field("action").as_str().unwrap_or_default(),
                    field("content")
                ),
                _ => format!(
                    "Elicitation completed: action={}, content={}",
                    field("action").as_str().unwrap_or_default(),
                    result
                        .get("content")
                        .cloned()
                        .unwrap_or_else(|| serde_json::json!({}))
                ),
            };
            (text, false)
        }
    };
    let result = if is_error {
        serde_json::json!({ "content": [{ "type": "text", "text": text }], "isError": true })
    } else {
        serde_json::json!({ "content": [{ "type": "text", "text": text }] })
    };
    result.to_string().into_bytes()
}

/// The fixture resources' `resources/list` entries (array members, no brackets).
macro_rules! resources_list_entries {
    () => {
        concat!(
    r#"{"uri":"test://static-text","name":"static-text","description":"A static text resource","mimeType":"text/plain"},"#,
    r#"{"uri":"test://static-binary","name":"static-binary","description":"A static PNG image","mimeType":"image/png"},"#,
    r#"{"uri":"test://watched-resource","name":"watched-resource","description":"A resource that can be subscribed to","mimeType":"text/plain"}"#,
)
    };
}
pub(crate) use resources_list_entries;

/// The fixture template's `resources/templates/list` entry.
macro_rules! resource_templates_list_entries {
    () => {
        r#"{"uriTemplate":"test://template/{id}/data","name":"template","description":"Data for an id","mimeType":"application/json"}"#
    };
}
pub(crate) use resource_templates_list_entries;

/// `resources/read` of a fixture URI (`uri` already unescaped): the `contents` members into
/// `out` after the caller wrote `{"contents":[{"uri":…`; false when `uri` is none of them.
pub fn read_resource(uri: &str, out: &mut Vec<u8>) -> bool {
    match uri {
        "test://static-text" => out.extend_from_slice(
            br#","mimeType":"text/plain","text":"This is the content of the static text resource.""#,
        ),
        "test://static-binary" => {
            out.extend_from_slice(b",\"mimeType\":\"image/png\",\"blob\":\"");
            out.extend_from_slice(PNG_BASE64.as_bytes());
            out.push(b'"');
        }
        "test://watched-resource" => {
            out.extend_from_slice(br#","mimeType":"text/plain","text":"Watched resource content""#)
        }
        _ => {
            let Some(id) = uri
                .strip_prefix("test://template/")
                .and_then(|rest| rest.strip_suffix("/data"))
                .filter(|id| !id.is_empty() && !id.contains('/'))
            else {
                return false;
            };
            out.extend_from_slice(b",\"mimeType\":\"application/json\",\"text\":");
            let data = serde_json::json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json::write_escaped_str(out, &data.to_string());
        }
    }
    true
}

/// The fixture prompts' `prompts/list` entries (array members, no brackets).
macro_rules! prompts_list_entries {
    () => {
        concat!(
    r#"{"name":"test_simple_prompt","description":"A prompt without arguments"},"#,
    r#"{"name":"test_prompt_with_arguments","description":"A prompt with two required arguments","arguments":[{"name":"arg1","description":"First test argument","required":true},{"name":"arg2","description":"Second test argument","required":true}]},"#,
    r#"{"name":"test_prompt_with_embedded_resource","description":"A prompt that embeds a resource","arguments":[{"name":"resourceUri","description":"URI of the resource to embed","required":true}]},"#,
    r#"{"name":"test_prompt_with_image","description":"A prompt with an image"}"#,
)
    };
}
pub(crate) use prompts_list_entries;

/// `prompts/get` of a fixture prompt: the result into `out`; `None` when `name` is none.
pub fn get_prompt(
    name: &str,
    arguments: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Option<Result<(), RpcError>> {
    let argument = |key: &str| {
        arguments
            .and_then(|a| json::object_member(a, key).ok().flatten())
            .and_then(json::str_unescaped)
    };
    let user_text = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(br#"{"role":"user","content":{"type":"text","text":"#);
        json::write_escaped_str(out, text);
        out.extend_from_slice(b"}}");
    };
    match name {
        "test_simple_prompt" => {
            out.extend_from_slice(b"{\"messages\":[");
            user_text(out, "This is a simple prompt for testing.");
            out.extend_from_slice(b"]}");
        }
        "test_prompt_with_arguments" => {
            let (Some(arg1), Some(arg2)) = (argument("arg1"), argument("arg2")) else {
                return Some(Err((
                    INVALID_PARAMS,
                    "test_prompt_with_arguments needs `arg1` and `arg2`",
                )));
            };
            out.extend_from_slice(b"{\"messages\":[");
            user_text(
                out,
                &format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
            );
            out.extend_from_slice(b"]}");
        }
        "test_prompt_with_embedded_resource" => {
            let Some(uri) = argument("resourceUri") else {
                return Some(Err((
                    INVALID_PARAMS,
                    "test_prompt_with_embedded_resource needs `resourceUri`",
                )));
            };
            out.extend_from_slice(
                br#"{"messages":[{"role":"user","content":{"type":"resource","resource":{"uri":"#,
            );
            json::write_escaped_str(out, &uri);
            out.extend_from_slice(
                br#","mimeType":"text/plain","text":"Embedded resource content for testing."}}},"#,
            );
            user_text(out, "Please process the embedded resource above.");
            out.extend_from_slice(b"]}");
        }
        "test_prompt_with_image" => {
            out.extend_from_slice(
                br#"{"messages":[{"role":"user","content":{"type":"image","data":""#,
            );
            out.extend_from_slice(PNG_BASE64.as_bytes());
            out.extend_from_slice(br#"","mimeType":"image/png"}},"#);
            user_text(out, "Please analyze the image above.");
            out.extend_from_slice(b"]}");
        }
        _ => return None,
    }
    Some(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn call(
        name: &str,
        context: &CallContext<'_>,
    ) -> (ToolAnswer, Vec<serde_json::Value>, Vec<u8>) {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let answer = call_tool(name, context, &mut out, &mut |n| notes.push(value(n)));
        (answer, notes, out)
    }

    const PLAIN: CallContext<'static> = CallContext {
        progress_token: None,
        log_level: None,
        client_capabilities: None,
    };

    #[test]
    fn every_listed_tool_answers_valid_json() {
        let list = value(format!("[{}]", tools_list_entries!().trim_end_matches(',')).as_bytes());
        for tool in list.as_array().unwrap() {
            let name = tool["name"].as_str().unwrap();
            assert!(tool["description"].is_string(), "{name}");
            if client_request(name, Some(b"{}")).is_some() {
                continue; // answered once its client answers (`asking_the_client_and_its_answer`)
            }
            let caps = CallContext {
                client_capabilities: Some(br#"{"sampling":{}}"#),
                ..PLAIN
            };
            let (answer, _, out) = call(name, &caps);
            assert_eq!(answer, ToolAnswer::Result, "{name}");
            let result = value(&out);
            assert!(
                result["content"].as_array().is_some_and(|c| !c.is_empty()),
                "{name}"
            );
        }
        assert_eq!(call("nope", &PLAIN).0, ToolAnswer::Unknown);
    }

    #[test]
    fn progress_echoes_the_token_as_sent() {
        for token in [&b"\"progress-test-1\""[..], b"7"] {
            let context = CallContext {
                progress_token: Some(token),
                ..PLAIN
            };
            let (_, notes, _) = call("test_tool_with_progress", &context);
            let progress: Vec<u64> = notes
                .iter()
                .map(|n| n["params"]["progress"].as_u64().unwrap())
                .collect();
            assert_eq!(progress, [0, 50, 100]);
            for n in &notes {
                assert_eq!(n["params"]["progressToken"], value(token));
            }
        }
        assert!(call("test_tool_with_progress", &PLAIN).1.is_empty());
    }

    #[test]
    fn logs_follow_the_level_in_force() {
        let at = |level| CallContext {
            log_level: level,
            ..PLAIN
        };
        assert_eq!(call("test_tool_with_logging", &at(Some(0))).1.len(), 3);
        assert_eq!(call("test_tool_with_logging", &at(Some(1))).1.len(), 3);
        assert!(call("test_tool_with_logging", &at(Some(3))).1.is_empty());
        assert!(call("test_logging_tool", &at(None)).1.is_empty());
        let (_, notes, _) = call("test_logging_tool", &at(Some(0)));
        assert_eq!(notes[0]["method"], "notifications/message");
        assert_eq!(notes[0]["params"]["level"], "info");
    }

    #[test]
    fn missing_sampling_is_named() {
        let none = CallContext {
            client_capabilities: Some(b"{}"),
            ..PLAIN
        };
        assert_eq!(
            call("test_missing_capability", &none).0,
            ToolAnswer::MissingCapability(r#"{"sampling":{}}"#)
        );
    }

    #[test]
    fn asking_the_client_and_its_answer() {
        let (method, params) =
            client_request("test_sampling", Some(br#"{"prompt":"Hi?"}"#)).unwrap();
        assert_eq!(method, "sampling/createMessage");
        let params = value(params.as_bytes());
        assert_eq!(params["messages"][0]["content"]["text"], "Hi?");
        for tool in [
            "test_elicitation",
            "test_elicitation_sep1034_defaults",
            "test_elicitation_sep1330_enums",
        ] {
            let (method, params) = client_request(tool, Some(b"{}")).unwrap();
            assert_eq!(method, "elicitation/create");
            assert!(value(params.as_bytes())["requestedSchema"]["properties"].is_object());
        }
        assert!(client_request("echo", None).is_none());
        let answered = value(&client_answered(
            "test_sampling",
            Some(br#"{"jsonrpc":"2.0","id":"mcpstorm-1","result":{"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m"}}"#),
        ));
        assert_eq!(answered["content"][0]["text"], "LLM response: Paris");
        let refused = value(&client_answered(
            "test_elicitation",
            Some(br#"{"jsonrpc":"2.0","id":"mcpstorm-1","error":{"code":-1,"message":"no"}}"#),
        ));
        assert_eq!(refused["isError"], true);
        assert_eq!(
            value(&client_answered("test_elicitation", None))["isError"],
            true
        );
    }

    #[test]
    fn resources_and_template_read() {
        for uri in [
            "test://static-text",
            "test://static-binary",
            "test://watched-resource",
            "test://template/123/data",
        ] {
            let mut out = b"{\"uri\":\"x\"".to_vec();
            assert!(read_resource(uri, &mut out), "{uri}");
            out.push(b'}');
            let read = value(&out);
            assert!(read["mimeType"].is_string(), "{uri}");
        }
        let mut out = b"{\"uri\":\"x\"".to_vec();
        read_resource("test://template/123/data", &mut out);
        out.push(b'}');
        let data = value(value(&out)["text"].as_str().unwrap().as_bytes());
        assert_eq!(data["id"], "123");
        for uri in [
            "test://template//data",
            "test://template/1/2/data",
            "test://other",
        ] {
            assert!(!read_resource(uri, &mut Vec::new()), "{uri}");
        }
    }

    #[test]
    fn prompts_answer_with_their_arguments() {
        let mut out = Vec::new();
        get_prompt(
            "test_prompt_with_arguments",
            Some(br#"{"arg1":"testValue1","arg2":"testValue2"}"#),
            &mut out,
        )
        .unwrap()
        .unwrap();
        let text = value(&out)["messages"][0]["content"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("testValue1") && text.contains("testValue2"));
        assert!(
            get_prompt("test_prompt_with_arguments", None, &mut Vec::new())
                .unwrap()
                .is_err()
        );
        let list = value(format!("[{}]", prompts_list_entries!()).as_bytes());
        for prompt in list.as_array().unwrap() {
            let name = prompt["name"].as_str().unwrap();
            let mut out = Vec::new();
            let arguments = br#"{"arg1":"a","arg2":"b","resourceUri":"test://example-resource"}"#;
            get_prompt(name, Some(arguments), &mut out)
                .unwrap()
                .unwrap();
            assert!(value(&out)["messages"].is_array(), "{name}");
        }
        assert!(get_prompt("nope", None, &mut Vec::new()).is_none());
    }
}
