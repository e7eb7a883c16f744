//! Extra request headers from `-H/--header 'Name: value'` and `--header-env 'Name=VAR'`: sent
//! on every request (initialize, load, DELETE). A value read from the environment is a secret:
//! its `Debug` and `display` print only where it came from, so no message, log or report ever
//! holds it. Part of `engine/`, I/O-free except the environment lookup passed in.

/// One header the user asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub name: String,
    pub value: String,
    /// Read from this environment variable: the value is never shown.
    pub secret_from: Option<String>,
}

impl std::fmt::Debug for RequestHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl RequestHeader {
    /// `Name: value`, or `Name: <redacted: $VAR>` for a secret.
    pub fn display(&self) -> String {
        match &self.secret_from {
            Some(var) => format!("{}: <redacted: ${var}>", self.name),
            None => format!("{}: {}", self.name, self.value),
        }
    }
}

/// Headers the engine writes itself: a user copy would be a duplicate the server may reject.
const ENGINE_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "connection",
];

fn check_name(name: &str, flag: &str) -> Result<(), String> {
    // RFC 9110 token characters.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{flag}: {name:?} is not a header name"));
    }
    if ENGINE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{flag}: {name} is set by mcpstorm on every request and cannot be overridden"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// `-H 'Name: value'`.
/// Adds `header`, replacing an earlier one of the same name (a command-line `-H` over the
/// scenario file's, `--header-env` over `--header`).
pub fn push_replacing(headers: &mut Vec<RequestHeader>, header: RequestHeader) {
    headers.retain(|h| !h.name.eq_ignore_ascii_case(&header.name));
    headers.push(header);
}

/// Every `--header`, then every `--header-env` (read through `env`), a later one replacing an
/// earlier one of the same name.
pub fn collect(
    headers: &[String],
    headers_env: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<RequestHeader>, String> {
    let mut all = Vec::new();
    for text in headers {
        push_replacing(&mut all, parse_header(text)?);
    }
    for text in headers_env {
        push_replacing(&mut all, parse_header_env(text, env)?);
    }
    Ok(all)
}

pub fn parse_header(text: &str) -> Result<RequestHeader, String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("--header {text:?}: expected 'Name: value'"))?;
    let name = name.trim();
    check_name(name, "--header")?;
    let value = value.trim();
    if !check_value(value) {
        return Err(format!("--header {name}: the value has control characters"));
    }
    Ok(RequestHeader {
        name: name.to_string(),
        value: value.to_string(),
        secret_from: None,
    })
}

/// `--header-env 'Name=VAR'`: the value is the environment variable's (never shown).
pub fn parse_header_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RequestHeader, String> {
    let (name, var) = text
        .split_once('=')
        .ok_or_else(|| format!("--header-env {text:?}: expected 'Name=ENVVAR'"))?;
    let (name, var) = (name.trim(), var.trim());
    check_name(name, "--header-env")?;
    let value = env(var)
        .ok_or_else(|| format!("--header-env {name}: environment variable ${var} is not set"))?;
    let value = value.trim().to_string();
    if value.is_empty() || !check_value(&value) {
        return Err(format!(
            "--header-env {name}: ${var} is empty or has control characters"
        ));
    }
    Ok(RequestHeader {
        name: name.to_string(),
        value,
        secret_from: Some(var.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_headers() {
        let h = parse_header("X-Tenant:  blue ").unwrap();
        assert_eq!((h.name.as_str(), h.value.as_str()), ("X-Tenant", "blue"));
        assert_eq!(h.display(), "X-Tenant: blue");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
        assert!(parse_header("X: a\r\nInjected: b").is_err());
        let e = parse_header("Host: other").unwrap_err();
        assert!(e.contains("cannot be overridden"), "{e}");
        assert!(parse_header("mcp-session-id: x").is_err());
    }

    #[test]
    fn secrets_are_never_shown() {
        let env = |var: &str| (var == "TOKEN").then(|| "Bearer s3cr3t".to_string());
        let h = parse_header_env("Authorization=TOKEN", &env).unwrap();
        assert_eq!(h.value, "Bearer s3cr3t");
        for shown in [
            h.display(),
            format!("{h:?}"),
            format!("{:?}", vec![h.clone()]),
        ] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("$TOKEN"), "{shown}");
        }
        let e = parse_header_env("Authorization=MISSING", &env).unwrap_err();
        assert!(e.contains("$MISSING is not set"), "{e}");
        assert!(parse_header_env("Authorization", &env).is_err());
    }

    #[test]
    fn a_later_header_of_the_same_name_replaces_the_earlier() {
        let env = |var: &str| (var == "TOKEN").then(|| "s3cret".to_string());
        let headers = collect(
            &[
                "X-A: 1".into(),
                "Authorization: from-file".into(),
                "x-a: 2".into(),
            ],
            &["Authorization=TOKEN".into()],
            &env,
        )
        .unwrap();
        let shown: Vec<String> = headers.iter().map(|h| h.display()).collect();
        assert_eq!(shown, ["x-a: 2", "Authorization: <redacted: $TOKEN>"]);
        assert!(collect(&["bad".into()], &[], &env).is_err());
    }
}
