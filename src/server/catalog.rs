//! What `serve` offers besides its tools, as a reference server must: resources (a text and a
//! binary resource, and a template whose every URI reads), prompts (one without arguments, one
//! with), completion of prompt arguments and of the template's variable, and logging levels.
//! The conformance suite's fixtures (`fixtures.rs`) are listed and served beside them.
//! Part of `server/`; I/O-free: each function writes a JSON-RPC `result` value (or says why
//! not) for `mcp.rs` to frame. Reads are generated from the URI, not stored: a load with
//! generated URIs (`resources/read=mcpstorm://items/{{int 1 100000}}`) costs no memory.

use crate::proto::json;
use std::io::Write;

/// A JSON-RPC error: code and message.
pub type RpcError = (i32, &'static str);

const INVALID_PARAMS: i32 = -32602;
/// MCP's "resource not found" before 2026-07-28 (which answers -32602 with `data.uri`).
pub const RESOURCE_NOT_FOUND: i32 = -32002;

pub const README_URI: &str = "mcpstorm://docs/readme";
pub const BLOB_URI: &str = "mcpstorm://blobs/1k";
pub const ITEMS_PREFIX: &str = "mcpstorm://items/";

const README_TEXT: &str =
    "# mcpstorm\\n\\nThe reference server of mcpstorm: tools, resources, prompts, completions.\\n";

pub const RESOURCES_LIST_RESULT: &[u8] = concat!(
    r#"{"resources":[{"uri":"mcpstorm://docs/readme","name":"readme","title":"About this server","description":"What this server is","mimeType":"text/markdown"},{"uri":"mcpstorm://blobs/1k","name":"blob-1k","title":"1 KiB of binary data","description":"The bytes 0 to 255, four times","mimeType":"application/octet-stream","size":1024},"#,
    super::fixtures::resources_list_entries!(),
    "]}"
)
.as_bytes();

pub const RESOURCE_TEMPLATES_LIST_RESULT: &[u8] = concat!(
    r#"{"resourceTemplates":[{"uriTemplate":"mcpstorm://items/{id}","name":"item","title":"An item by id (any id reads)","description":"A JSON item made from its id","mimeType":"application/json"},"#,
    super::fixtures::resource_templates_list_entries!(),
    "]}"
)
.as_bytes();

pub const PROMPTS_LIST_RESULT: &[u8] = concat!(
    r#"{"prompts":[{"name":"simple","title":"A prompt without arguments","description":"A prompt without arguments"},{"name":"greet","title":"Greets someone","description":"Greets someone by name","arguments":[{"name":"name","description":"Who to greet","required":true}]},"#,
    super::fixtures::prompts_list_entries!(),
    ",",
    super::mrtr::prompts_list_entries!(),
    "]}"
)
.as_bytes();

/// Names `completion/complete` offers for `greet`'s `name`.
const NAMES: [&str; 8] = [
    "Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Grace", "Linus",
];

/// The 1 KiB blob, Base64: the bytes 0..=255 four times.
fn write_blob_base64(out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> shift) as usize & 63]
            } else {
                b'='
            });
        }
    }
}

fn param<'a>(params: Option<&'a [u8]>, key: &str) -> Option<&'a [u8]> {
    params.and_then(|p| json::object_member(p, key).ok().flatten())
}

/// `resources/read`: the contents of `params.uri`.
pub fn read_resource(params: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RpcError> {
    let uri = param(params, "uri")
        .and_then(json::str_unescaped)
        .ok_or((INVALID_PARAMS, "resources/read needs a string `uri`"))?;
    out.extend_from_slice(b"{\"contents\":[{\"uri\":");
    json::write_escaped_str(out, &uri);
    if uri == README_URI {
        out.extend_from_slice(b",\"mimeType\":\"text/markdown\",\"text\":\"");
        out.extend_from_slice(README_TEXT.as_bytes());
        out.push(b'"');
    } else if uri == BLOB_URI {
        out.extend_from_slice(b",\"mimeType\":\"application/octet-stream\",\"blob\":\"");
        write_blob_base64(out);
        out.push(b'"');
    } else if let Some(id) = uri.strip_prefix(ITEMS_PREFIX)
        && !id.is_empty()
    {
        out.extend_from_slice(b",\"mimeType\":\"application/json\",\"text\":");
        let mut item = Vec::new();
        item.extend_from_slice(b"{\"id\":");
        json::write_escaped_str(&mut item, id);
        item.push(b'}');
        json::write_escaped_str(out, &String::from_utf8_lossy(&item));
    } else if !super::fixtures::read_resource(&uri, out) {
        return Err((RESOURCE_NOT_FOUND, "Resource not found"));
    }
    out.extend_from_slice(b"}]}");
    Ok(())
}

/// `prompts/get`: `simple`, or `greet` with its required `name`.
pub fn get_prompt(params: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RpcError> {
    let name = param(params, "name")
        .and_then(json::str_unescaped)
        .ok_or((INVALID_PARAMS, "prompts/get needs a string `name`"))?;
    let arguments = param(params, "arguments");
    match name.as_ref() {
        "simple" => out.extend_from_slice(
            br#"{"description":"A prompt without arguments","messages":[{"role":"user","content":{"type":"text","text":"Say something simple."}}]}"#,
        ),
        "greet" => {
            let who = arguments
                .and_then(|a| json::object_member(a, "name").ok().flatten())
                .and_then(json::str_unescaped)
                .ok_or((INVALID_PARAMS, "greet needs the argument `name`"))?;
            out.extend_from_slice(
                br#"{"description":"Greets someone","messages":[{"role":"user","content":{"type":"text","text":"#,
            );
            json::write_escaped_str(out, &format!("Hello, {who}!"));
            out.extend_from_slice(b"}}]}");
        }
        other => {
            return super::fixtures::get_prompt(other, arguments, out)
                .unwrap_or(Err((INVALID_PARAMS, "Unknown prompt")));
        }
    }
    Ok(())
}

/// `completion/complete`: names for `greet`'s `name`, ids for the items template's `id`.
pub fn complete(params: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RpcError> {
    let reference = param(params, "ref").ok_or((INVALID_PARAMS, "completion needs `ref`"))?;
    let kind = json::object_member(reference, "type")
        .ok()
        .flatten()
        .and_then(json::str_unescaped);
    let argument =
        param(params, "argument").ok_or((INVALID_PARAMS, "completion needs `argument`"))?;
    let field = |key: &str| {
        json::object_member(argument, key)
            .ok()
            .flatten()
            .and_then(json::str_unescaped)
    };
    let (Some(arg_name), Some(value)) = (field("name"), field("value")) else {
        return Err((
            INVALID_PARAMS,
            "completion's `argument` needs `name` and `value`",
        ));
    };
    let target = |key: &str| {
        json::object_member(reference, key)
            .ok()
            .flatten()
            .and_then(json::str_unescaped)
    };
    let mut values: Vec<String> = Vec::new();
    match kind.as_deref() {
        Some("ref/prompt") if target("name").as_deref() == Some("greet") && arg_name == "name" => {
            let prefix = value.to_lowercase();
            values.extend(
                NAMES
                    .iter()
                    .filter(|n| n.to_lowercase().starts_with(&prefix))
                    .map(|n| n.to_string()),
            );
        }
        Some("ref/resource")
            if target("uri").as_deref() == Some("mcpstorm://items/{id}") && arg_name == "id" =>
        {
            // Ids are any text: offer the value followed by each digit.
            values.extend((0..10).map(|d| format!("{value}{d}")));
        }
        Some("ref/prompt" | "ref/resource") => {}
        _ => {
            return Err((
                INVALID_PARAMS,
                "completion `ref.type` is ref/prompt or ref/resource",
            ));
        }
    }
    out.extend_from_slice(b"{\"completion\":{\"values\":[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_escaped_str(out, v);
    }
    let _ = write!(out, "],\"total\":{},\"hasMore\":false}}}}", values.len());
    Ok(())
}

/// The levels `logging/setLevel` accepts (RFC 5424's, as MCP names them).
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// `logging/setLevel`: the level, checked; the answer is empty.
pub fn set_level(params: Option<&[u8]>) -> Result<usize, RpcError> {
    let level = param(params, "level")
        .and_then(json::str_unescaped)
        .ok_or((INVALID_PARAMS, "logging/setLevel needs a string `level`"))?;
    LOG_LEVELS
        .iter()
        .position(|l| *l == level)
        .ok_or((INVALID_PARAMS, "unknown log level"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn every_listed_resource_and_any_item_reads() {
        let list = value(RESOURCES_LIST_RESULT);
        for resource in list["resources"].as_array().unwrap() {
            let params = format!(r#"{{"uri":"{}"}}"#, resource["uri"].as_str().unwrap());
            let mut out = Vec::new();
            read_resource(Some(params.as_bytes()), &mut out).unwrap();
            let read = value(&out);
            assert_eq!(read["contents"][0]["uri"], resource["uri"]);
            assert_eq!(read["contents"][0]["mimeType"], resource["mimeType"]);
        }
        let mut out = Vec::new();
        read_resource(Some(br#"{"uri":"mcpstorm://blobs/1k"}"#), &mut out).unwrap();
        let blob = value(&out)["contents"][0]["blob"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(blob.len(), 1368, "1024 bytes in Base64");
        assert!(blob.starts_with("AAECAwQF"));
        let mut out = Vec::new();
        read_resource(Some(br#"{"uri":"mcpstorm://items/4\"2"}"#), &mut out).unwrap();
        let text = value(&out)["contents"][0]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(value(text.as_bytes())["id"], "4\"2");
        assert_eq!(
            value(RESOURCE_TEMPLATES_LIST_RESULT)["resourceTemplates"][0]["name"],
            "item"
        );
        for bad in [
            &br#"{"uri":"mcpstorm://nothing"}"#[..],
            br#"{"uri":"mcpstorm://items/"}"#,
            br#"{}"#,
        ] {
            assert!(read_resource(Some(bad), &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn prompts_completions_and_levels() {
        let mut out = Vec::new();
        get_prompt(
            Some(br#"{"name":"greet","arguments":{"name":"Ada"}}"#),
            &mut out,
        )
        .unwrap();
        assert_eq!(value(&out)["messages"][0]["content"]["text"], "Hello, Ada!");
        let mut out = Vec::new();
        get_prompt(Some(br#"{"name":"simple"}"#), &mut out).unwrap();
        assert_eq!(value(&out)["messages"][0]["role"], "user");
        assert!(get_prompt(Some(br#"{"name":"greet"}"#), &mut Vec::new()).is_err());
        assert!(get_prompt(Some(br#"{"name":"nope"}"#), &mut Vec::new()).is_err());
        assert_eq!(
            value(PROMPTS_LIST_RESULT)["prompts"][1]["arguments"][0]["name"],
            "name"
        );

        let mut out = Vec::new();
        complete(
            Some(br#"{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"name","value":"a"}}"#),
            &mut out,
        )
        .unwrap();
        let completion = &value(&out)["completion"];
        assert_eq!(completion["values"], serde_json::json!(["Ada", "Alan"]));
        assert_eq!(completion["total"], 2);
        let mut out = Vec::new();
        complete(
            Some(br#"{"ref":{"type":"ref/resource","uri":"mcpstorm://items/{id}"},"argument":{"name":"id","value":"4"}}"#),
            &mut out,
        )
        .unwrap();
        assert_eq!(value(&out)["completion"]["values"][3], "43");
        assert!(
            complete(
                Some(br#"{"ref":{"type":"ref/x"},"argument":{"name":"a","value":"b"}}"#),
                &mut Vec::new()
            )
            .is_err()
        );

        assert_eq!(set_level(Some(br#"{"level":"warning"}"#)), Ok(3));
        assert!(set_level(Some(br#"{"level":"loud"}"#)).is_err());
    }
}
