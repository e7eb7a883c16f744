//! The load a run sends: the weighted mix of entries (`--mix`), each a method with its target
//! (a tool, a resource URI, a prompt, a log level) and its arguments (`--args`), and the value
//! generators that make requests differ as they do in production (`{{int 1 100}}`…). Part of
//! `engine/`, I/O-free: `plan.rs` parses the options into entries once, `template.rs` encodes
//! each into a request template, and the send path expands generators into a reused buffer.
//!
//! Generators, written inside a name or an arguments object:
//! - `{{seq}}`: a sequence number unique across the run's shards;
//! - `{{int A B}}`: a uniform integer from A to B;
//! - `{{choice a|b|c}}`: one of the listed texts;
//! - `{{str N}}`: N random characters from `[a-z0-9]`;
//! - `{{line FILE}}`: a random line of FILE (read once, before the run).
//!
//! Generated text is written JSON-string-escaped (a no-op for digits and letters), so a
//! generator may sit inside a JSON string or, where it yields a number, outside one.

use super::schedule::Rng;
use super::template::Method;
use crate::proto::json;

/// One entry of the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadEntry {
    pub method: Method,
    /// Tool name, resource URI, prompt name or log level, as written (generators included).
    pub name: Option<Text>,
    /// The arguments object (tools/call, prompts/get, completion/complete).
    pub args: Option<Text>,
    pub weight: u32,
    /// A `tools/call` that names no tool (it calls `--tool`): labelled by its method alone.
    pub name_implied: bool,
}

impl LoadEntry {
    /// How the report names the entry: the method, then its target as written (`tools/call`
    /// alone when the tool is `--tool`'s).
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) if !self.name_implied => format!("{} {}", self.method.name(), name.source),
            _ => self.method.name().to_string(),
        }
    }
}

/// A generator of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generator {
    Seq,
    Int {
        low: i64,
        high: i64,
    },
    Choice(Vec<String>),
    Str {
        len: usize,
    },
    /// Index into `Lines` (the files read at plan time).
    Line {
        file: usize,
    },
}

/// A piece of text: literal bytes or a generated value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(Vec<u8>),
    Gen(Generator),
}

/// Text with generators in it, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// As the user wrote it (for labels and messages).
    pub source: String,
    pub pieces: Vec<Piece>,
}

/// The lines of every `{{line FILE}}` file, read at plan time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lines {
    pub files: Vec<(String, Vec<String>)>,
}

/// What the generators draw from on one shard: its random stream and its sequence.
pub struct GenState<'a> {
    pub rng: &'a mut Rng,
    pub lines: &'a Lines,
    /// The shard's next sequence number and the step between them (the shard count), so
    /// sequence numbers never repeat across shards.
    pub seq: &'a mut u64,
    pub seq_step: u64,
}

impl Text {
    /// Parses `{{…}}` generators; `read_lines` opens a `{{line FILE}}` file (plan time).
    pub fn parse(
        source: &str,
        lines: &mut Lines,
        read_lines: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
    ) -> Result<Text, String> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Literal(rest.as_bytes()[..open].to_vec()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("{source:?}: `{{{{` without `}}}}`"))?;
            pieces.push(Piece::Gen(parse_generator(
                after[..close].trim(),
                lines,
                read_lines,
            )?));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.as_bytes().to_vec()));
        }
        Ok(Text {
            source: source.to_string(),
            pieces,
        })
    }

    pub fn is_static(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// Appends the text with every generator drawn (JSON-string-escaped values).
    pub fn expand(&self, out: &mut Vec<u8>, state: &mut GenState<'_>) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::Gen(generator) => generate(generator, out, state),
            }
        }
    }

    /// The text with each generator at its first value (plan-time checks).
    pub fn sample(&self, lines: &Lines) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(bytes) => out.extend_from_slice(bytes),
                Piece::Gen(Generator::Seq) => out.push(b'0'),
                Piece::Gen(Generator::Int { low, .. }) => {
                    out.extend_from_slice(low.to_string().as_bytes())
                }
                Piece::Gen(Generator::Choice(items)) => escape_into(&mut out, &items[0]),
                Piece::Gen(Generator::Str { len }) => out.extend(std::iter::repeat_n(b'a', *len)),
                Piece::Gen(Generator::Line { file }) => {
                    escape_into(&mut out, &lines.files[*file].1[0])
                }
            }
        }
        out
    }
}

fn parse_generator(
    spec: &str,
    lines: &mut Lines,
    read_lines: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
) -> Result<Generator, String> {
    let (kind, arg) = spec.split_once(' ').unwrap_or((spec, ""));
    let arg = arg.trim();
    let bad = |why: &str| format!("{{{{{spec}}}}}: {why}");
    match kind {
        "seq" if arg.is_empty() => Ok(Generator::Seq),
        "int" => {
            let mut bounds = arg.split_whitespace().map(str::parse::<i64>);
            match (bounds.next(), bounds.next(), bounds.next()) {
                (Some(Ok(low)), Some(Ok(high)), None) if low <= high => {
                    Ok(Generator::Int { low, high })
                }
                _ => Err(bad("int takes two integers LOW HIGH, LOW ≤ HIGH")),
            }
        }
        "choice" => {
            let items: Vec<String> = arg.split('|').map(str::to_string).collect();
            if arg.is_empty() {
                return Err(bad("choice takes items separated by |"));
            }
            Ok(Generator::Choice(items))
        }
        "str" => match arg.parse::<usize>() {
            Ok(len) if (1..=4096).contains(&len) => Ok(Generator::Str { len }),
            _ => Err(bad("str takes a length from 1 to 4096")),
        },
        "line" if !arg.is_empty() => {
            if let Some(index) = lines.files.iter().position(|(path, _)| path == arg) {
                return Ok(Generator::Line { file: index });
            }
            let file_lines: Vec<String> = read_lines(arg)?
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect();
            if file_lines.is_empty() {
                return Err(bad("the file has no line"));
            }
            lines.files.push((arg.to_string(), file_lines));
            Ok(Generator::Line {
                file: lines.files.len() - 1,
            })
        }
        _ => Err(bad(
            "unknown generator (seq, int LOW HIGH, choice a|b, str N, line FILE)",
        )),
    }
}

/// Writes `text` JSON-string-escaped, without the quotes.
fn escape_into(out: &mut Vec<u8>, text: &str) {
    let start = out.len();
    json::write_escaped_str(out, text);
    // `write_escaped_str` writes the quotes: drop them.
    out.remove(start);
    out.pop();
}

pub(crate) fn generate(generator: &Generator, out: &mut Vec<u8>, state: &mut GenState<'_>) {
    match generator {
        Generator::Seq => {
            let value = *state.seq;
            *state.seq += state.seq_step;
            crate::proto::http_response::write_u64_decimal(out, value);
        }
        Generator::Int { low, high } => {
            let span = (*high as i128 - *low as i128 + 1) as u128;
            let value = *low as i128 + (state.rng.next_u64() as u128 % span) as i128;
            if value < 0 {
                out.push(b'-');
            }
            crate::proto::http_response::write_u64_decimal(out, value.unsigned_abs() as u64);
        }
        Generator::Choice(items) => {
            let item = &items[(state.rng.next_u64() % items.len() as u64) as usize];
            escape_into(out, item);
        }
        Generator::Str { len } => {
            const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            for _ in 0..*len {
                out.push(ALPHABET[(state.rng.next_u64() % 36) as usize]);
            }
        }
        Generator::Line { file } => {
            let lines = &state.lines.files[*file].1;
            let line = &lines[(state.rng.next_u64() % lines.len() as u64) as usize];
            escape_into(out, line);
        }
    }
}

/// Which methods take a name, and what it is called in messages.
pub fn name_kind(method: Method) -> Option<&'static str> {
    match method {
        Method::ToolsCall => Some("tool"),
        Method::ResourcesRead => Some("resource URI"),
        Method::PromptsGet | Method::CompletionComplete => Some("prompt"),
        Method::LoggingSetLevel => Some("log level"),
        _ => None,
    }
}

/// Parses `--mix`: `METHOD[=NAME][:WEIGHT]` entries separated by commas, e.g.
/// `tools/call=search:60,resources/read=file:///a.md:20,ping:20`. The weight is after the
/// last `:` when that is all digits (a URI keeps its own colons). `default_tool` names the
/// tool of a `tools/call` without one (`--tool`).
pub fn parse_mix(
    text: &str,
    default_tool: &str,
    lines: &mut Lines,
    read_lines: &mut dyn FnMut(&str) -> Result<Vec<String>, String>,
) -> Result<Vec<LoadEntry>, String> {
    let mut entries: Vec<LoadEntry> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (spec, weight) = match part.rsplit_once(':') {
            Some((spec, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => (
                spec,
                w.parse::<u32>()
                    .map_err(|_| format!("--mix: bad weight in {part:?}"))?,
            ),
            _ => (part, 1),
        };
        let (method_name, name) = match spec.split_once('=') {
            Some((m, n)) => (m, Some(n)),
            None => (spec, None),
        };
        let method = Method::from_name(method_name).ok_or_else(|| {
            format!(
                "--mix: unknown method {method_name:?} (use {})",
                Method::LOAD.map(Method::name).join(", ")
            )
        })?;
        let name = match (name_kind(method), name) {
            (Some(_), Some(n)) if !n.is_empty() => Some(n),
            (Some(_), _) if method == Method::ToolsCall => Some(default_tool),
            (Some(kind), _) => {
                return Err(format!(
                    "--mix: {method_name} needs its {kind}: {method_name}=NAME[:WEIGHT]"
                ));
            }
            (None, Some(_)) => return Err(format!("--mix: {method_name} takes no name")),
            (None, None) => None,
        };
        if weight == 0 {
            continue;
        }
        let name_implied = method == Method::ToolsCall
            && !matches!(spec.split_once('='), Some((_, n)) if !n.is_empty());
        let entry = LoadEntry {
            name_implied,
            method,
            name: name
                .map(|n| Text::parse(n, lines, read_lines))
                .transpose()?,
            args: None,
            weight,
        };
        if entries.iter().any(|e| e.label() == entry.label()) {
            return Err(format!("--mix: {} is listed twice", entry.label()));
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err("--mix: no method with a weight above 0".into());
    }
    Ok(entries)
}

/// Gives each entry its arguments: `--args NAME=JSON` (for the tool, prompt or completion
/// of that name), `--tool-args` for the default tool. Each arguments text must be a JSON
/// object once its generators are drawn.
pub fn attach_args(
    entries: &mut [LoadEntry],
    args: &[(String, Text)],
    default_tool: &str,
    default_tool_args: &Text,
    lines: &Lines,
) -> Result<(), String> {
    for (name, _) in args {
        let used = entries.iter().any(|e| {
            e.name.as_ref().is_some_and(|n| &n.source == name)
                && matches!(
                    e.method,
                    Method::ToolsCall | Method::PromptsGet | Method::CompletionComplete
                )
        });
        if !used {
            return Err(format!(
                "--args {name}=…: no tools/call, prompts/get or completion/complete entry of --mix names {name:?}"
            ));
        }
    }
    for entry in entries.iter_mut() {
        let Some(name) = &entry.name else { continue };
        // A later --args for the same name wins (a command-line flag over the scenario file's).
        let given = args
            .iter()
            .rev()
            .find(|(n, _)| *n == name.source)
            .map(|(_, t)| t);
        entry.args = match entry.method {
            Method::ToolsCall if given.is_none() && name.source == default_tool => {
                Some(default_tool_args.clone())
            }
            Method::ToolsCall => Some(given.cloned().unwrap_or_else(|| Text::literal("{}"))),
            Method::PromptsGet => given.cloned(),
            Method::CompletionComplete => {
                let args = given.ok_or_else(|| {
                    format!(
                        "completion/complete={0} needs --args '{0}={{\"ARGUMENT\":\"PARTIAL VALUE\"}}'",
                        name.source
                    )
                })?;
                Some(args.clone())
            }
            _ => None,
        };
        if let Some(args) = &entry.args {
            let sample = args.sample(lines);
            let object =
                sample.trim_ascii_start().starts_with(b"{") && json::validate(&sample).is_ok();
            if !object {
                return Err(format!(
                    "arguments of {} must be a JSON object, got {:?}",
                    entry.label(),
                    args.source
                ));
            }
            if entry.method == Method::CompletionComplete && completion_argument(&sample).is_none()
            {
                return Err(format!(
                    "arguments of {}: one member, the argument's name and its partial value as a string",
                    entry.label()
                ));
            }
        }
    }
    Ok(())
}

/// The single `"NAME":"VALUE"` member of a completion's arguments, as raw JSON string
/// tokens (quotes included).
pub fn completion_argument(object: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut members = json::members(object).ok()?;
    let only = members.next()?.ok()?;
    if members.next().is_some() || only.value.first() != Some(&b'"') {
        return None;
    }
    Some((only.key_raw, only.value))
}

impl Text {
    pub fn literal(text: &str) -> Text {
        Text {
            source: text.to_string(),
            pieces: vec![Piece::Literal(text.as_bytes().to_vec())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_files(path: &str) -> Result<Vec<String>, String> {
        Err(format!("{path}: not in this test"))
    }

    fn parse(text: &str) -> Text {
        Text::parse(text, &mut Lines::default(), &mut no_files).unwrap()
    }

    fn draw(text: &Text, lines: &Lines, rng: &mut Rng, seq: &mut u64) -> String {
        let mut out = Vec::new();
        text.expand(
            &mut out,
            &mut GenState {
                rng,
                lines,
                seq,
                seq_step: 2,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn generators_draw_within_their_bounds_and_repeat_with_the_seed() {
        let text =
            parse(r#"{"n":{{int -3 3}},"s":"{{str 5}}","c":"{{choice a|b"c}}","q":{{seq}}}"#);
        assert!(!text.is_static());
        let lines = Lines::default();
        let (mut rng, mut seq) = (Rng::new(42), 1);
        let mut seen_n = std::collections::BTreeSet::new();
        let mut first = Vec::new();
        for i in 0..200 {
            let value = draw(&text, &lines, &mut rng, &mut seq);
            let parsed: serde_json::Value = serde_json::from_str(&value).unwrap();
            let n = parsed["n"].as_i64().unwrap();
            assert!((-3..=3).contains(&n));
            seen_n.insert(n);
            assert_eq!(parsed["s"].as_str().unwrap().len(), 5);
            assert!(["a", "b\"c"].contains(&parsed["c"].as_str().unwrap()));
            assert_eq!(parsed["q"].as_u64().unwrap(), 1 + 2 * i);
            if i < 5 {
                first.push(value);
            }
        }
        assert_eq!(seen_n.len(), 7, "every integer of the range comes up");
        let (mut again, mut seq) = (Rng::new(42), 1);
        let replay: Vec<String> = (0..5)
            .map(|_| draw(&text, &lines, &mut again, &mut seq))
            .collect();
        assert_eq!(replay, first, "the same seed draws the same values");
    }

    #[test]
    fn lines_come_from_the_file_escaped() {
        let mut lines = Lines::default();
        let mut read = |path: &str| {
            assert_eq!(path, "words.txt");
            Ok(vec![
                "alpha".to_string(),
                String::new(),
                "be\"ta".to_string(),
            ])
        };
        let text = Text::parse(r#"{"w":"{{line words.txt}}"}"#, &mut lines, &mut read).unwrap();
        let (mut rng, mut seq) = (Rng::new(1), 0);
        for _ in 0..20 {
            let value = draw(&text, &lines, &mut rng, &mut seq);
            let parsed: serde_json::Value = serde_json::from_str(&value).unwrap();
            assert!(["alpha", "be\"ta"].contains(&parsed["w"].as_str().unwrap()));
        }
    }

    #[test]
    fn bad_generators_are_refused_with_the_reason() {
        for (text, why) in [
            ("{{int 5 1}}", "LOW ≤ HIGH"),
            ("{{int 1}}", "two integers"),
            ("{{str 0}}", "length"),
            ("{{nope}}", "unknown generator"),
            ("{{int 1 2", "without"),
            ("{{line missing.txt}}", "not in this test"),
        ] {
            let error = Text::parse(text, &mut Lines::default(), &mut no_files).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn mix_entries_with_names_uris_and_weights() {
        let mut lines = Lines::default();
        let entries = parse_mix(
            "tools/call=search:60, resources/read=file:///a.md:20,ping:10,tools/call:5,prompts/get=greet,resources/list",
            "echo",
            &mut lines,
            &mut no_files,
        )
        .unwrap();
        let labels: Vec<(String, u32)> = entries.iter().map(|e| (e.label(), e.weight)).collect();
        assert_eq!(
            labels,
            [
                ("tools/call search".to_string(), 60),
                ("resources/read file:///a.md".to_string(), 20),
                ("ping".to_string(), 10),
                ("tools/call".to_string(), 5),
                ("prompts/get greet".to_string(), 1),
                ("resources/list".to_string(), 1),
            ]
        );
        for (bad, why) in [
            ("resources/read", "needs its resource URI"),
            ("ping=x", "takes no name"),
            ("tools/call=a,tools/call=a", "listed twice"),
            ("nope", "unknown method"),
            ("ping:0", "no method"),
        ] {
            let error = parse_mix(bad, "echo", &mut lines, &mut no_files).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn arguments_attach_by_name_and_must_be_objects() {
        let mut lines = Lines::default();
        let mut entries = parse_mix(
            "tools/call=search,tools/call,prompts/get=greet,completion/complete=greet",
            "echo",
            &mut lines,
            &mut no_files,
        )
        .unwrap();
        let args = vec![
            ("search".to_string(), parse(r#"{"q":"{{str 4}}"}"#)),
            ("greet".to_string(), parse(r#"{"name":"Al"}"#)),
        ];
        attach_args(
            &mut entries,
            &args,
            "echo",
            &parse(r#"{"text":"x"}"#),
            &lines,
        )
        .unwrap();
        let sources: Vec<Option<&str>> = entries
            .iter()
            .map(|e| e.args.as_ref().map(|a| a.source.as_str()))
            .collect();
        assert_eq!(
            sources,
            [
                Some(r#"{"q":"{{str 4}}"}"#),
                Some(r#"{"text":"x"}"#),
                Some(r#"{"name":"Al"}"#),
                Some(r#"{"name":"Al"}"#)
            ]
        );
        let mut entries =
            parse_mix("tools/call=search", "echo", &mut lines, &mut no_files).unwrap();
        let not_object = vec![("search".to_string(), parse("[1]"))];
        assert!(attach_args(&mut entries, &not_object, "echo", &parse("{}"), &lines).is_err());
        let unused = vec![("other".to_string(), parse("{}"))];
        assert!(attach_args(&mut entries, &unused, "echo", &parse("{}"), &lines).is_err());
    }
}
