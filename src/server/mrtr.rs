//! Multi round-trip requests (SEP-2322, 2026-07-28): a tool or prompt that needs the client's
//! input answers `resultType: "input_required"` with `inputRequests` (elicitation, sampling,
//! roots) and an opaque `requestState`; the client retries the same request with
//! `inputResponses` and the state, and the server completes or asks again. The server keeps
//! nothing between rounds: every `requestState` carries its own payload and an HMAC-SHA256 of
//! it under a key of this process, so a state the server did not write (or one tampered with)
//! is refused with -32602 instead of being trusted.
//!
//! These are the conformance suite's MRTR fixtures (`test_input_required_result_*`). Part of
//! `server/`; I/O-free. Off the load path, so it parses with `serde_json` (a DOM per request)
//! rather than the zero-allocation scanner the hot methods use.

use super::catalog::RpcError;
use serde_json::{Value, json};

const INVALID_PARAMS: i32 = -32602;

/// The fixture tools' `tools/list` entries (array members, no brackets).
macro_rules! tools_list_entries {
    () => {
        concat!(
            r#"{"name":"test_input_required_result_elicitation","description":"Asks the client for a name (elicitation), then greets it.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_sampling","description":"Asks the client's model a question (sampling), then answers with its reply.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_list_roots","description":"Asks for the client's roots, then counts them.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_request_state","description":"Asks for a confirmation and carries a requestState to the next round.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_multiple_inputs","description":"Asks for a name, a sampled greeting and the roots at once.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_multi_round","description":"Asks in two rounds, each with its own requestState.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_tampered_state","description":"Refuses a requestState that is not the one it signed.","inputSchema":{"type":"object","properties":{}}},"#,
            r#"{"name":"test_input_required_result_capabilities","description":"Asks only for what the client's capabilities allow.","inputSchema":{"type":"object","properties":{}}}"#,
        )
    };
}
pub(crate) use tools_list_entries;

/// The fixture prompt's `prompts/list` entry.
macro_rules! prompts_list_entries {
    () => {
        r#"{"name":"test_input_required_result_prompt","description":"Asks the client for context (elicitation) before it is rendered"}"#
    };
}
pub(crate) use prompts_list_entries;

/// A round's answer: the result object, and whether it completes the request (`false`: an
/// `input_required` result, which carries its own `resultType`).
#[derive(Debug)]
pub struct Answer {
    pub result: Value,
    pub complete: bool,
}

/// Signs and checks request states.
pub struct StateKey {
    key: ring::hmac::Key,
    nonce: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

impl StateKey {
    /// A key of this process (states do not outlive it: a restarted server asks again).
    pub fn generate() -> StateKey {
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &os_bytes()));
        StateKey {
            key,
            nonce: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `HEX(HMAC).PAYLOAD`, the payload a JSON object with a nonce (two rounds never share a
    /// state).
    fn sign(&self, mut payload: Value) -> String {
        let nonce = self
            .nonce
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        payload["nonce"] = json!(nonce);
        let data = payload.to_string();
        let tag = ring::hmac::sign(&self.key, data.as_bytes());
        let mut state: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        state.push('.');
        state.push_str(&data);
        state
    }

    /// The payload of a state this key signed; `None` for any other string.
    fn verify(&self, state: &str) -> Option<Value> {
        let (hex, data) = state.split_once('.')?;
        if hex.len() != 64 {
            return None;
        }
        let tag: Option<Vec<u8>> = (0..32)
            .map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect();
        ring::hmac::verify(&self.key, data.as_bytes(), &tag?).ok()?;
        serde_json::from_str(data).ok()
    }
}

/// Fallback key material should the system RNG fail (it does not on Linux): time and pid.
fn os_bytes() -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    bytes[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    bytes
}

/// The client's answers of this round, checked: `Err` for a protocol error (not an object).
struct Round<'a> {
    responses: Option<&'a serde_json::Map<String, Value>>,
    state: Option<Value>,
}

impl<'a> Round<'a> {
    fn read(params: &'a Value, key: &StateKey) -> Result<Round<'a>, RpcError> {
        let responses = match params.get("inputResponses") {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err((INVALID_PARAMS, "inputResponses must be an object")),
        };
        let state = match params.get("requestState") {
            None | Some(Value::Null) => None,
            Some(Value::String(state)) => Some(
                key.verify(state)
                    .ok_or((INVALID_PARAMS, "requestState integrity check failed"))?,
            ),
            Some(_) => return Err((INVALID_PARAMS, "requestState must be a string")),
        };
        Ok(Round { responses, state })
    }

    fn response(&self, key: &str) -> Option<&'a Value> {
        self.responses?.get(key)
    }

    /// The state's `kind` (or `round`) when the state is present.
    fn state_field(&self, field: &str) -> Option<&Value> {
        self.state.as_ref()?.get(field)
    }

    /// An accepted elicitation's `content.FIELD` string: `Ok(None)` when the key is absent,
    /// `Err` when the answer is not an elicitation result.
    fn elicited(&self, key: &str, field: &str) -> Result<Option<String>, RpcError> {
        let Some(answer) = self.response(key) else {
            return Ok(None);
        };
        let Some(answer) = answer.as_object() else {
            return Err((
                INVALID_PARAMS,
                "an inputResponses entry must be the result object of its request",
            ));
        };
        if answer.get("action").and_then(Value::as_str) != Some("accept") {
            // Declined or cancelled: ask again.
            return Ok(None);
        }
        Ok(answer
            .get("content")
            .and_then(|c| c.get(field))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)))
    }
}

fn elicit(message: &str, property: &str, kind: &str) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": {
                "type": "object",
                "properties": { property: { "type": kind } },
                "required": [property]
            }
        }
    })
}

fn sample(text: &str, max_tokens: u32) -> Value {
    json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": text } }],
            "maxTokens": max_tokens
        }
    })
}

fn roots() -> Value {
    json!({ "method": "roots/list", "params": {} })
}

fn ask(requests: Value, state: Option<String>) -> Answer {
    let mut result = json!({ "resultType": "input_required", "inputRequests": requests });
    if let Some(state) = state {
        result["requestState"] = json!(state);
    }
    Answer {
        result,
        complete: false,
    }
}

fn text(text: String) -> Answer {
    Answer {
        result: json!({ "content": [{ "type": "text", "text": text }] }),
        complete: true,
    }
}

/// A sampling result's text, or `None`.
fn sampled_text(answer: Option<&Value>) -> Option<String> {
    answer?
        .get("content")?
        .get("text")?
        .as_str()
        .map(str::to_string)
}

/// `tools/call` of an MRTR fixture: `None` when `name` is none of them. `params` is the whole
/// request's params; `capabilities` the request's client capabilities.
pub fn call_tool(
    name: &str,
    params: &Value,
    capabilities: &Value,
    key: &StateKey,
) -> Option<Result<Answer, RpcError>> {
    if !name.starts_with("test_input_required_result_") {
        return None;
    }
    let round = match Round::read(params, key) {
        Ok(round) => round,
        Err(e) => return Some(Err(e)),
    };
    tool_round(name, &round, capabilities, key)
}

fn tool_round(
    name: &str,
    round: &Round<'_>,
    capabilities: &Value,
    key: &StateKey,
) -> Option<Result<Answer, RpcError>> {
    let answer = match name {
        "test_input_required_result_elicitation" => match round.elicited("user_name", "name") {
            Err(e) => return Some(Err(e)),
            Ok(Some(name)) => text(format!("Hello, {name}!")),
            Ok(None) => ask(
                json!({ "user_name": elicit("What is your name?", "name", "string") }),
                None,
            ),
        },
        "test_input_required_result_sampling" => {
            match sampled_text(round.response("sample_request")) {
                Some(reply) => text(format!("Sampling result: {reply}")),
                None => ask(
                    json!({ "sample_request": sample("What is the capital of France?", 100) }),
                    None,
                ),
            }
        }
        "test_input_required_result_list_roots" => {
            match round
                .response("roots_request")
                .and_then(|r| r.get("roots"))
                .and_then(Value::as_array)
            {
                Some(list) => text(format!("Found {} root(s)", list.len())),
                None => ask(json!({ "roots_request": roots() }), None),
            }
        }
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            let kind = if name.ends_with("request_state") {
                "request-state"
            } else {
                "tamper-test"
            };
            let confirmed = match round.elicited("confirm", "ok") {
                Err(e) => return Some(Err(e)),
                Ok(ok) => ok.as_deref() == Some("true"),
            };
            if confirmed && round.state_field("kind") == Some(&json!(kind)) {
                text(if kind == "request-state" {
                    "state-ok: requestState validated".into()
                } else {
                    "integrity-ok: state verified".into()
                })
            } else {
                ask(
                    json!({ "confirm": elicit("Please confirm", "ok", "boolean") }),
                    Some(key.sign(json!({ "kind": kind }))),
                )
            }
        }
        "test_input_required_result_multiple_inputs" => {
            let user = match round.elicited("user_name", "name") {
                Err(e) => return Some(Err(e)),
                Ok(user) => user,
            };
            let greeting = sampled_text(round.response("greeting"));
            let roots_found = round
                .response("client_roots")
                .and_then(|r| r.get("roots"))
                .and_then(Value::as_array)
                .map(Vec::len);
            match (user, greeting, roots_found) {
                (Some(user), Some(greeting), Some(roots))
                    if round.state_field("kind") == Some(&json!("multiple-inputs")) =>
                {
                    text(format!(
                        "Name: {user}; Greeting: {greeting}; Roots: {roots}"
                    ))
                }
                _ => ask(
                    json!({
                        "user_name": elicit("What is your name?", "name", "string"),
                        "greeting": sample("Generate a greeting", 50),
                        "client_roots": roots()
                    }),
                    Some(key.sign(json!({ "kind": "multiple-inputs" }))),
                ),
            }
        }
        "test_input_required_result_multi_round" => {
            let step1 = || {
                ask(
                    json!({ "step1": elicit("Step 1: What is your name?", "name", "string") }),
                    Some(key.sign(json!({ "round": 1 }))),
                )
            };
            match round.state_field("round").and_then(Value::as_u64) {
                Some(1) => match round.elicited("step1", "name") {
                    Err(e) => return Some(Err(e)),
                    Ok(Some(user)) => ask(
                        json!({ "step2": elicit("Step 2: What is your favorite color?", "color", "string") }),
                        Some(key.sign(json!({ "round": 2, "name": user }))),
                    ),
                    Ok(None) => step1(),
                },
                Some(2) => match round.elicited("step2", "color") {
                    Err(e) => return Some(Err(e)),
                    Ok(Some(color)) => {
                        let user = round
                            .state_field("name")
                            .and_then(Value::as_str)
                            .unwrap_or("friend");
                        text(format!("Multi-round complete for {user} who likes {color}"))
                    }
                    Ok(None) => step1(),
                },
                _ => step1(),
            }
        }
        "test_input_required_result_capabilities" => {
            if round.responses.is_some_and(|r| !r.is_empty()) {
                let keys: Vec<&str> = round
                    .responses
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.as_str())
                    .collect();
                text(format!("capabilities-ok: received {}", keys.join(",")))
            } else {
                let mut requests = serde_json::Map::new();
                if capabilities
                    .get("elicitation")
                    .is_some_and(Value::is_object)
                {
                    requests.insert(
                        "elicit_input".into(),
                        elicit("Elicitation input", "value", "string"),
                    );
                }
                if capabilities.get("sampling").is_some_and(Value::is_object) {
                    requests.insert("sample_input".into(), sample("Sample request", 50));
                }
                if requests.is_empty() {
                    text("No supported capabilities declared".into())
                } else {
                    ask(
                        Value::Object(requests),
                        Some(key.sign(json!({ "kind": "capabilities-test" }))),
                    )
                }
            }
        }
        _ => return None,
    };
    Some(Ok(answer))
}

/// `prompts/get` of the MRTR fixture prompt: `None` for any other prompt.
pub fn get_prompt(name: &str, params: &Value, key: &StateKey) -> Option<Result<Answer, RpcError>> {
    if name != "test_input_required_result_prompt" {
        return None;
    }
    let round = match Round::read(params, key) {
        Ok(round) => round,
        Err(e) => return Some(Err(e)),
    };
    Some(match round.elicited("user_context", "context") {
        Err(e) => Err(e),
        Ok(Some(context)) => Ok(Answer {
            result: json!({
                "messages": [{
                    "role": "user",
                    "content": { "type": "text", "text": format!("Prompt with context: {context}") }
                }]
            }),
            complete: true,
        }),
        Ok(None) => Ok(ask(
            json!({
                "user_context": elicit("What context should the prompt use?", "context", "string")
            }),
            None,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(content: Value) -> Value {
        json!({ "action": "accept", "content": content })
    }

    fn call(name: &str, params: Value, key: &StateKey) -> Result<Answer, RpcError> {
        call_tool(
            name,
            &params,
            &json!({ "elicitation": {}, "sampling": {} }),
            key,
        )
        .unwrap()
    }

    #[test]
    fn elicitation_asks_then_completes_and_refuses_garbage() {
        let key = StateKey::generate();
        let first = call("test_input_required_result_elicitation", json!({}), &key).unwrap();
        assert!(!first.complete);
        assert_eq!(first.result["resultType"], "input_required");
        assert_eq!(
            first.result["inputRequests"]["user_name"]["method"],
            "elicitation/create"
        );
        let done = call(
            "test_input_required_result_elicitation",
            json!({ "inputResponses": { "user_name": accept(json!({ "name": "Ada" })), "extra": 1 } }),
            &key,
        )
        .unwrap();
        assert!(done.complete);
        assert_eq!(done.result["content"][0]["text"], "Hello, Ada!");
        // A wrong key: asked again; a number or null: a protocol error.
        let again = call(
            "test_input_required_result_elicitation",
            json!({ "inputResponses": { "wrong_key": accept(json!({ "data": "x" })) } }),
            &key,
        )
        .unwrap();
        assert!(!again.complete);
        for bad in [json!({ "user_name": 12345 }), Value::Null] {
            let e = call(
                "test_input_required_result_elicitation",
                json!({ "inputResponses": bad }),
                &key,
            )
            .unwrap_err();
            assert_eq!(e.0, -32602);
        }
    }

    #[test]
    fn states_are_signed_and_a_tampered_one_is_refused() {
        let key = StateKey::generate();
        let first = call("test_input_required_result_tampered_state", json!({}), &key).unwrap();
        let state = first.result["requestState"].as_str().unwrap().to_string();
        let confirm = json!({ "confirm": accept(json!({ "ok": true })) });
        let done = call(
            "test_input_required_result_tampered_state",
            json!({ "inputResponses": confirm, "requestState": state }),
            &key,
        )
        .unwrap();
        assert_eq!(
            done.result["content"][0]["text"],
            "integrity-ok: state verified"
        );
        for forged in [
            format!("{state}-TAMPERED"),
            state.replacen("tamper-test", "request-state", 1),
            "{\"kind\":\"tamper-test\"}".to_string(),
        ] {
            let e = call(
                "test_input_required_result_tampered_state",
                json!({ "inputResponses": confirm, "requestState": forged }),
                &key,
            )
            .unwrap_err();
            assert_eq!(e.1, "requestState integrity check failed");
        }
        // Another process's key signed a different state.
        let other = StateKey::generate();
        assert!(other.verify(&state).is_none());
    }

    #[test]
    fn multi_round_moves_through_two_states() {
        let key = StateKey::generate();
        let name = "test_input_required_result_multi_round";
        let r1 = call(name, json!({}), &key).unwrap();
        let s1 = r1.result["requestState"].as_str().unwrap().to_string();
        let r2 = call(
            name,
            json!({ "inputResponses": { "step1": accept(json!({ "name": "Ada" })) }, "requestState": s1 }),
            &key,
        )
        .unwrap();
        assert!(!r2.complete);
        assert!(r2.result["inputRequests"]["step2"].is_object());
        let s2 = r2.result["requestState"].as_str().unwrap().to_string();
        assert_ne!(s1, s2);
        let r3 = call(
            name,
            json!({ "inputResponses": { "step2": accept(json!({ "color": "blue" })) }, "requestState": s2 }),
            &key,
        )
        .unwrap();
        assert_eq!(
            r3.result["content"][0]["text"],
            "Multi-round complete for Ada who likes blue"
        );
    }

    #[test]
    fn only_declared_capabilities_are_asked_for() {
        let key = StateKey::generate();
        let name = "test_input_required_result_capabilities";
        let sampling_only = call_tool(name, &json!({}), &json!({ "sampling": {} }), &key)
            .unwrap()
            .unwrap();
        let requests = sampling_only.result["inputRequests"].as_object().unwrap();
        assert!(
            requests
                .values()
                .all(|r| r["method"] != "elicitation/create")
        );
        assert!(requests.contains_key("sample_input"));
        let none = call_tool(name, &json!({}), &json!({}), &key)
            .unwrap()
            .unwrap();
        assert!(none.complete);
    }

    #[test]
    fn sampling_roots_multiple_and_prompt_complete_with_answers() {
        let key = StateKey::generate();
        let sampled = json!({ "role": "assistant", "content": { "type": "text", "text": "Paris" }, "model": "m" });
        let done = call(
            "test_input_required_result_sampling",
            json!({ "inputResponses": { "sample_request": sampled } }),
            &key,
        )
        .unwrap();
        assert_eq!(done.result["content"][0]["text"], "Sampling result: Paris");
        let roots_answer = json!({ "roots": [{ "uri": "file:///r", "name": "r" }] });
        let done = call(
            "test_input_required_result_list_roots",
            json!({ "inputResponses": { "roots_request": roots_answer } }),
            &key,
        )
        .unwrap();
        assert_eq!(done.result["content"][0]["text"], "Found 1 root(s)");
        let first = call(
            "test_input_required_result_multiple_inputs",
            json!({}),
            &key,
        )
        .unwrap();
        assert_eq!(first.result["inputRequests"].as_object().unwrap().len(), 3);
        let state = first.result["requestState"].clone();
        let done = call(
            "test_input_required_result_multiple_inputs",
            json!({
                "inputResponses": {
                    "user_name": accept(json!({ "name": "Ada" })),
                    "greeting": sampled,
                    "client_roots": roots_answer
                },
                "requestState": state
            }),
            &key,
        )
        .unwrap();
        assert_eq!(
            done.result["content"][0]["text"],
            "Name: Ada; Greeting: Paris; Roots: 1"
        );
        let prompt = get_prompt("test_input_required_result_prompt", &json!({}), &key)
            .unwrap()
            .unwrap();
        assert!(!prompt.complete);
        let prompt = get_prompt(
            "test_input_required_result_prompt",
            &json!({ "inputResponses": { "user_context": accept(json!({ "context": "tests" })) } }),
            &key,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            prompt.result["messages"][0]["content"]["text"],
            "Prompt with context: tests"
        );
        assert!(call_tool("echo", &json!({}), &json!({}), &key).is_none());
    }
}
