//! What the client answers to a server-to-client request (`ping`, `roots/list`,
//! `sampling/createMessage`, `elicitation/create`, …) that came on a session's stream or on a
//! POST's response stream, and which capabilities its initialize declares for them. Part of
//! `engine/`, I/O-free: the plan builds it from `--client-reply METHOD=JSON`, the shard writes
//! each reply body with it, `reply_conn.rs` carries the reply to the server.
//!
//! Defaults follow the spec's shapes: `ping` an empty result, `roots/list` no roots,
//! `sampling/createMessage` a fixed assistant text, `elicitation/create` declined, anything
//! else -32601. A configured reply replaces the `result` for its method.

/// The client's answers, by method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientReplies {
    /// `(method, result JSON)` from `--client-reply`, in the order given (a later one for the
    /// same method wins).
    configured: Vec<(String, String)>,
}

/// The capability a method's answer needs declared (MCP: a server must not send the request
/// to a client that did not declare it).
fn capability_of(method: &str) -> Option<&'static str> {
    match method {
        "roots/list" => Some("roots"),
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        _ => None,
    }
}

impl ClientReplies {
    /// Parses one `--client-reply METHOD=JSON`: the result object the client answers
    /// `METHOD` with.
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        let (method, result) = text.split_once('=').ok_or_else(|| {
            format!(
                "--client-reply {text:?}: give METHOD=JSON, e.g. sampling/createMessage='{{\"role\":\"assistant\",\"content\":{{\"type\":\"text\",\"text\":\"ok\"}},\"model\":\"m\"}}'"
            )
        })?;
        let method = method.trim();
        if method.is_empty() || method.contains(['"', '\\']) {
            return Err(format!(
                "--client-reply {text:?}: no method name before '='"
            ));
        }
        let value: serde_json::Value = serde_json::from_str(result)
            .map_err(|e| format!("--client-reply {method}: the result is not JSON: {e}"))?;
        if !value.is_object() {
            return Err(format!(
                "--client-reply {method}: a result is a JSON object, not {result}"
            ));
        }
        self.configured.retain(|(m, _)| m != method);
        // Re-encoded compactly: the bytes go into every reply as they are.
        self.configured
            .push((method.to_string(), value.to_string()));
        Ok(())
    }

    /// The initialize's `capabilities`: one entry per configured method that needs one
    /// (`{}` when none is configured: the client then declares nothing, as before).
    pub fn capabilities_json(&self) -> String {
        let mut names: Vec<&str> = self
            .configured
            .iter()
            .filter_map(|(method, _)| capability_of(method))
            .collect();
        names.sort_unstable();
        names.dedup();
        let members: Vec<String> = names.iter().map(|n| format!("\"{n}\":{{}}")).collect();
        format!("{{{}}}", members.join(","))
    }

    /// Appends the JSON-RPC reply to request `id` (the raw token it came with) of `method`.
    pub fn write(&self, out: &mut Vec<u8>, id: &[u8], method: &str) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        out.extend_from_slice(id);
        if let Some((_, result)) = self.configured.iter().find(|(m, _)| m == method) {
            out.extend_from_slice(b",\"result\":");
            out.extend_from_slice(result.as_bytes());
            out.push(b'}');
            return;
        }
        out.extend_from_slice(match method {
            "ping" => b",\"result\":{}}".as_slice(),
            "roots/list" => b",\"result\":{\"roots\":[]}}",
            "sampling/createMessage" => {
                b",\"result\":{\"role\":\"assistant\",\"content\":{\"type\":\"text\",\"text\":\"mcpstorm\"},\"model\":\"mcpstorm\",\"stopReason\":\"endTurn\"}}"
            }
            "elicitation/create" => b",\"result\":{\"action\":\"decline\"}}",
            _ => b",\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}",
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(replies: &ClientReplies, id: &str, method: &str) -> serde_json::Value {
        let mut out = Vec::new();
        replies.write(&mut out, id.as_bytes(), method);
        serde_json::from_slice(&out).expect("a reply is JSON")
    }

    #[test]
    fn default_replies_are_the_ones_the_spec_names() {
        let replies = ClientReplies::default();
        assert_eq!(
            reply(&replies, "1", "ping")["result"],
            serde_json::json!({})
        );
        assert_eq!(reply(&replies, "\"r\"", "roots/list")["id"], "r");
        assert_eq!(
            reply(&replies, "2", "roots/list")["result"]["roots"],
            serde_json::json!([])
        );
        let sampled = reply(&replies, "3", "sampling/createMessage");
        assert_eq!(sampled["result"]["role"], "assistant");
        assert_eq!(sampled["result"]["content"]["type"], "text");
        assert_eq!(
            reply(&replies, "4", "elicitation/create")["result"]["action"],
            "decline"
        );
        assert_eq!(reply(&replies, "5", "tasks/get")["error"]["code"], -32601);
        assert_eq!(replies.capabilities_json(), "{}");
    }

    #[test]
    fn configured_replies_replace_the_result_and_declare_their_capability() {
        let mut replies = ClientReplies::default();
        replies
            .add(r#"roots/list={"roots":[{"uri":"file:///w","name":"w"}]}"#)
            .unwrap();
        replies
            .add(r#"elicitation/create={"action":"accept","content":{"name":"a"}}"#)
            .unwrap();
        replies.add(r#"ping={ "x" : 1 }"#).unwrap();
        replies.add(r#"ping={"x":2}"#).unwrap();
        assert_eq!(
            reply(&replies, "7", "roots/list")["result"]["roots"][0]["uri"],
            "file:///w"
        );
        assert_eq!(
            reply(&replies, "8", "elicitation/create")["result"]["content"]["name"],
            "a"
        );
        assert_eq!(
            reply(&replies, "9", "ping")["result"]["x"],
            2,
            "the last wins"
        );
        assert_eq!(
            replies.capabilities_json(),
            r#"{"elicitation":{},"roots":{}}"#
        );
        let capabilities: serde_json::Value =
            serde_json::from_str(&replies.capabilities_json()).unwrap();
        assert!(capabilities.is_object());
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        let mut replies = ClientReplies::default();
        for bad in ["ping", "=%7B%7D", "ping={", "ping=[1]", "ping=3"] {
            let error = replies.add(bad).unwrap_err();
            assert!(error.starts_with("--client-reply"), "{bad}: {error}");
        }
        assert_eq!(replies, ClientReplies::default());
    }

    #[test]
    fn every_reply_is_one_json_object_for_any_id_token() {
        let replies = ClientReplies::default();
        for method in ["ping", "roots/list", "sampling/createMessage", "x/y"] {
            for id in ["0", "-3", "\"a\\\"b\"", "1e3"] {
                let value = reply(&replies, id, method);
                assert_eq!(value["jsonrpc"], "2.0");
                assert!(value.get("result").is_some() != value.get("error").is_some());
            }
            let mut out = Vec::new();
            replies.write(&mut out, b"9", method);
            assert!(
                crate::proto::json::scan_rpc_response(&out).is_ok(),
                "{method}: the server's scanner takes it"
            );
        }
    }
}
