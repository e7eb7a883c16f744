//! What a server lists — tools, resources, resource templates, prompts — and whether a run's
//! mix names only things it has: a tool, prompt or resource it lacks stops the run before a
//! single session opens (exit 2), with the list of what it does have. Part of `probe/`;
//! I/O-free.

use crate::engine::template::Method;
use crate::engine::workload::{LoadEntry, Piece};
use serde_json::Value;

/// A server's surface; `None` for a list the server does not offer (-32601 or not asked).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Surface {
    pub tools: Option<Vec<Value>>,
    pub resources: Option<Vec<Value>>,
    pub templates: Option<Vec<Value>>,
    pub prompts: Option<Vec<Value>>,
}

fn names<'a>(list: &'a [Value], key: &str) -> Vec<&'a str> {
    list.iter().filter_map(|v| v.get(key)?.as_str()).collect()
}

/// The literal part of an RFC 6570 template or of a generated URI before its first
/// variable or generator: `items://{id}` → `items://`.
fn fixed_prefix(template: &str) -> &str {
    &template[..template.find('{').unwrap_or(template.len())]
}

impl Surface {
    /// Checks every entry of the mix against the surface; the message names what is missing
    /// and what the server has.
    pub fn check(&self, entries: &[LoadEntry]) -> Result<(), String> {
        let mut missing = Vec::new();
        for entry in entries {
            let Some(name) = &entry.name else { continue };
            let literal = name.is_static();
            let source = name.source.as_str();
            match entry.method {
                Method::ToolsCall if literal => {
                    if let Some(tools) = &self.tools {
                        let have = names(tools, "name");
                        if !have.contains(&source) {
                            missing.push(format!(
                                "tool {source:?} (the server has: {})",
                                have.join(", ")
                            ));
                        }
                    }
                }
                Method::PromptsGet | Method::CompletionComplete if literal => {
                    if let Some(prompts) = &self.prompts {
                        let have = names(prompts, "name");
                        if !have.contains(&source) {
                            missing.push(format!(
                                "prompt {source:?} (the server has: {})",
                                have.join(", ")
                            ));
                        }
                    }
                }
                Method::ResourcesRead => {
                    let (Some(resources), Some(templates)) = (&self.resources, &self.templates)
                    else {
                        continue;
                    };
                    let uris = names(resources, "uri");
                    let patterns = names(templates, "uriTemplate");
                    // A generated URI: its literal start must be a template's.
                    let start = match name.pieces.first() {
                        Some(Piece::Literal(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                        _ => String::new(),
                    };
                    let found = if literal {
                        uris.contains(&source)
                            || patterns.iter().any(|t| {
                                let prefix = fixed_prefix(t);
                                !prefix.is_empty() && source.starts_with(prefix)
                            })
                    } else {
                        patterns.iter().any(|t| {
                            let prefix = fixed_prefix(t);
                            prefix.starts_with(&start) || start.starts_with(prefix)
                        }) || uris.iter().any(|u| u.starts_with(&start))
                    };
                    if !found {
                        missing.push(format!(
                            "resource {source:?} (the server has: {}; templates: {})",
                            uris.join(", "),
                            patterns.join(", ")
                        ));
                    }
                }
                _ => {}
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the server lacks what the mix names: {}",
                missing.join("; ")
            ))
        }
    }

    /// One line for the run's stderr: how much the server lists.
    pub fn summary(&self) -> String {
        let count =
            |list: &Option<Vec<Value>>| list.as_ref().map_or("—".into(), |l| l.len().to_string());
        format!(
            "{} tools, {} resources, {} resource templates, {} prompts",
            count(&self.tools),
            count(&self.resources),
            count(&self.templates),
            count(&self.prompts)
        )
    }
}

/// Arguments for a tool from its `inputSchema`: every required property gets a value of its
/// type (the first `enum` value or `default` when there is one).
pub fn arguments_for(schema: &Value) -> Value {
    let mut args = serde_json::Map::new();
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in required {
        let property = &schema["properties"][name];
        args.insert(name.to_string(), value_for(property));
    }
    Value::Object(args)
}

fn value_for(property: &Value) -> Value {
    if let Some(default) = property.get("default") {
        return default.clone();
    }
    if let Some(first) = property.get("enum").and_then(|e| e.get(0)) {
        return first.clone();
    }
    match property.get("type").and_then(Value::as_str) {
        Some("integer") | Some("number") => {
            let low = property.get("minimum").and_then(Value::as_i64).unwrap_or(1);
            Value::from(low.max(0))
        }
        Some("boolean") => Value::Bool(true),
        Some("array") => Value::Array(Vec::new()),
        Some("object") => arguments_for(property),
        Some("null") => Value::Null,
        _ => Value::String("mcpstorm".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::workload::{Lines, parse_mix};
    use serde_json::json;

    fn entries(mix: &str) -> Vec<LoadEntry> {
        parse_mix(mix, "echo", &mut Lines::default(), &mut |_| Ok(Vec::new())).unwrap()
    }

    fn surface() -> Surface {
        Surface {
            tools: Some(vec![json!({"name": "echo"}), json!({"name": "search"})]),
            resources: Some(vec![json!({"uri": "docs://readme"})]),
            templates: Some(vec![json!({"uriTemplate": "items://{id}"})]),
            prompts: Some(vec![json!({"name": "greet"})]),
        }
    }

    #[test]
    fn what_the_server_has_passes() {
        let mix = "tools/call=search:1,resources/read=docs://readme:1,resources/read=items://{{int 1 9}}:1,resources/read=items://7:1,prompts/get=greet:1,ping:1";
        surface().check(&entries(mix)).unwrap();
        // A list the server does not offer is not held against the mix.
        Surface::default()
            .check(&entries("tools/call=nope:1"))
            .unwrap();
    }

    #[test]
    fn what_it_lacks_is_named_with_what_it_has() {
        let e = surface().check(&entries("tools/call=serch:1")).unwrap_err();
        assert!(e.contains("\"serch\"") && e.contains("echo, search"), "{e}");
        let e = surface().check(&entries("prompts/get=gret:1")).unwrap_err();
        assert!(e.contains("greet"), "{e}");
        let e = surface()
            .check(&entries("resources/read=file:///{{int 1 9}}:1"))
            .unwrap_err();
        assert!(e.contains("items://{id}"), "{e}");
        let e = surface()
            .check(&entries("resources/read=docs://other:1"))
            .unwrap_err();
        assert!(e.contains("docs://readme"), "{e}");
    }

    #[test]
    fn arguments_follow_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "q": {"type": "string"},
                "n": {"type": "integer", "minimum": 3},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "deep": {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]},
                "optional": {"type": "string"}
            },
            "required": ["q", "n", "mode", "deep"]
        });
        assert_eq!(
            arguments_for(&schema),
            json!({"q": "mcpstorm", "n": 3, "mode": "fast", "deep": {"x": true}})
        );
    }
}
