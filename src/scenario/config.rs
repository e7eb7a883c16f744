//! The scenario file of `mcpstorm run --config FILE.toml`: targets, sessions, phases, the
//! weighted method mix with its arguments, the fault, SLA bounds (per mix entry too) and
//! outputs, kept next to the code they guard. Part of `scenario/`; I/O-free (`main.rs` reads
//! the file and hands its text here).
//!
//! Every key is the `run` flag of the same name (`connect_rate` is `--connect-rate`), grouped
//! in sections. The file is turned into the flags it stands for, placed *before* the command
//! line's, so one parser checks both and a flag given on the command line overrides the file
//! (`run` takes the last of a repeated option; repeatable ones — headers, --args, --sla — are
//! applied in order, a later one replacing an earlier one of the same name). Positional URLs
//! on the command line replace the file's `target.urls`.
//!
//! Unknown keys are errors naming the key's path (`load.mix[1].wieght`), values are checked as
//! they are read, and `schema/scenario.schema.json` is generated from these structs (a test
//! keeps it current). `mcpstorm init` writes [`EXAMPLE`].

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The commented example `mcpstorm init` writes; it runs as is against the embedded server.
pub const EXAMPLE: &str = include_str!("example.toml");

/// The whole file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mcpstorm scenario file (mcpstorm run --config FILE.toml)")]
pub struct ScenarioFile {
    pub target: Option<TargetSection>,
    pub service: Option<ServiceSection>,
    pub sessions: Option<SessionsSection>,
    pub phases: Option<PhasesSection>,
    pub load: Option<LoadSection>,
    pub fault: Option<FaultSection>,
    pub sla: Option<SlaSection>,
    pub output: Option<OutputSection>,
}

/// What to load and how to reach it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// MCP endpoints; none (or the key left out) = the embedded server.
    pub urls: Option<Vec<String>>,
    /// Hosts, addresses or CIDR blocks beyond this host that may be loaded (`--allow-host`).
    pub allow_host: Option<Vec<String>>,
    /// `HOST:PORT:ADDR[,ADDR…]` overrides of name resolution (`--resolve`).
    pub resolve: Option<Vec<String>>,
    /// Extra request headers, `Name: value` (`--header`).
    pub header: Option<Vec<String>>,
    /// Headers read from the environment, `Name=VAR` (`--header-env`): keep secrets out of
    /// the file.
    pub header_env: Option<Vec<String>>,
    pub protocol_version: Option<String>,
    /// The embedded server speaks TLS (`--tls`).
    pub tls: Option<bool>,
    pub cacert: Option<String>,
    pub insecure: Option<bool>,
    pub tls_no_resumption: Option<bool>,
    /// The server's process id, for its memory figure (`--server-pid`).
    pub server_pid: Option<u32>,
}

/// Replicas of one service: a session whose replica fails moves to another (`--failover`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// The replicas' URLs (instead of `target.urls`; the command line's URLs replace them).
    pub replicas: Option<Vec<String>>,
    /// With no URL: embedded servers to start as replicas (`--replicas N`).
    pub embedded_replicas: Option<u16>,
    /// `round-robin` or `least-loaded` [default: round-robin].
    pub failover: Option<String>,
}

/// The sessions held and how they are opened.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    pub connections: Option<u32>,
    pub connect_rate: Option<u64>,
    pub reconnect_rate: Option<u64>,
    pub connect_timeout: Option<DurationText>,
    pub connect_retries: Option<u8>,
    pub ramp_timeout: Option<DurationText>,
    pub request_timeout: Option<DurationText>,
    pub source_ips: Option<String>,
    pub shards: Option<usize>,
    pub ring_slots: Option<u32>,
    pub recv: Option<RecvMode>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecvMode {
    Multishot,
    Armed,
}

/// Which phases run and how long.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhasesSection {
    /// `all` (the six phases) or `sustained` (`--phases`).
    pub mode: Option<PhasesMode>,
    pub skip: Option<Vec<SkippablePhase>>,
    pub baseline: Option<DurationText>,
    pub sustain: Option<DurationText>,
    /// The load phase of `mode = "sustained"`.
    pub duration: Option<DurationText>,
    pub step: Option<DurationText>,
    pub step_factor: Option<f64>,
    pub steps_max: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PhasesMode {
    All,
    Sustained,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkippablePhase {
    Baseline,
    Sustained,
    FailureRecovery,
    Performance,
}

/// What each session sends.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    /// Total requests/s (open model); 0 = closed loop.
    pub rate: Option<u64>,
    pub seed: Option<u64>,
    /// The tool of a `tools/call` entry that names none.
    pub tool: Option<String>,
    /// List the server's surface before the ramp and refuse a mix naming what it lacks
    /// [default: true].
    pub discovery: Option<bool>,
    pub tool_args: Option<ArgsValue>,
    /// The weighted mix; each entry has its own latency figures.
    pub mix: Option<Vec<MixEntry>>,
    /// Share of the sessions that also hold their server-to-client stream: `all`, `off` or
    /// `N%` (`--streams`).
    pub streams: Option<String>,
    /// The client's answers to server-to-client requests, by method: the result object
    /// (`--client-reply METHOD=JSON`; the initialize then declares the method's capability).
    pub client_replies: Option<std::collections::BTreeMap<String, ArgsValue>>,
}

/// One entry of the mix.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MixEntry {
    /// ping, tools/list, tools/call, resources/list, resources/read, resources/templates/list,
    /// prompts/list, prompts/get, completion/complete or logging/setLevel.
    pub method: String,
    /// The tool, resource URI, prompt or log level; generators allowed.
    pub target: Option<String>,
    /// Share of the requests relative to the other entries' weights.
    #[serde(default = "weight_one")]
    pub weight: u32,
    /// The arguments object of a tools/call, prompts/get or completion/complete entry.
    pub args: Option<ArgsValue>,
}

fn weight_one() -> u32 {
    1
}

/// An arguments object: a TOML table (string values may hold generators), or JSON text
/// where a generator stands for a whole value (`'{"n": {{int 1 9}}}'`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ArgsValue {
    Json(String),
    Table(serde_json::Map<String, serde_json::Value>),
}

impl ArgsValue {
    fn json_text(&self) -> String {
        match self {
            ArgsValue::Json(text) => text.clone(),
            ArgsValue::Table(table) => serde_json::Value::Object(table.clone()).to_string(),
        }
    }
}

/// The failure_recovery phase.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultSection {
    /// `restart`, `drop:10%`, `exec:'CMD'`, `partition:3s`, `latency:100ms[,jitter:20ms][,for:5s]`
    /// or `loss:5%[,for:5s]` (`--fault`).
    pub kind: Option<String>,
    pub down: Option<DurationText>,
    pub recovery_timeout: Option<DurationText>,
}

/// SLA bounds over the defaults; `"off"` disables one.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaSection {
    /// e.g. "100ms".
    pub p95: Option<String>,
    /// e.g. "0.05%".
    pub errors: Option<String>,
    /// e.g. "10k".
    pub throughput: Option<String>,
    /// e.g. "2KB".
    pub mem: Option<String>,
    /// e.g. "5s".
    pub recovery: Option<String>,
    /// e.g. "1%".
    pub dropped: Option<String>,
    /// Bounds of one mix entry, keyed by its label as the report prints it
    /// (`"tools/call search"`, `"ping"`).
    pub entries: Option<BTreeMap<String, EntrySlaSection>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntrySlaSection {
    pub p95: Option<String>,
    pub errors: Option<String>,
}

/// Where the report goes.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub json: Option<String>,
    pub html: Option<String>,
    pub quiet: Option<bool>,
}

/// A duration as the flags write it (`500ms`, `30s`, `15m`), checked when the file is read.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(try_from = "String")]
pub struct DurationText(String);

impl TryFrom<String> for DurationText {
    type Error = String;
    fn try_from(text: String) -> Result<DurationText, String> {
        crate::cli::parse_duration(&text)?;
        Ok(DurationText(text))
    }
}

/// Reads a scenario file's text; an error names the key's path and the position.
pub fn parse(text: &str) -> Result<ScenarioFile, String> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("at `{path}`: {inner}")
        }
    })
}

/// The JSON schema of the file, as committed in `schema/scenario.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(ScenarioFile);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

impl ScenarioFile {
    /// The `run` flags this file stands for. `with_urls` = false when the command line names
    /// its own URLs (they replace the file's).
    pub fn to_args(&self, with_urls: bool) -> Result<Vec<String>, String> {
        let mut args = Args::default();
        if let Some(t) = &self.target {
            if with_urls {
                args.positional.extend(t.urls.iter().flatten().cloned());
            }
            args.each("--allow-host", &t.allow_host);
            args.each("--resolve", &t.resolve);
            args.each("--header", &t.header);
            args.each("--header-env", &t.header_env);
            args.value("--protocol-version", &t.protocol_version);
            args.switch("--tls", t.tls);
            args.value("--cacert", &t.cacert);
            args.switch("--insecure", t.insecure);
            args.switch("--tls-no-resumption", t.tls_no_resumption);
            args.value("--server-pid", &t.server_pid);
        }
        if let Some(service) = &self.service {
            if service.replicas.is_some() && self.target.as_ref().is_some_and(|t| t.urls.is_some())
            {
                return Err(
                    "service.replicas and target.urls both name URLs: give the replicas in one of them"
                        .into(),
                );
            }
            if service.replicas.is_some() && service.embedded_replicas.is_some() {
                return Err(
                    "service: replicas (URLs of your own) or embedded_replicas (no URL), not both"
                        .into(),
                );
            }
            if with_urls {
                args.positional
                    .extend(service.replicas.iter().flatten().cloned());
            }
            args.value("--replicas", &service.embedded_replicas);
            let failover = service
                .failover
                .clone()
                .or_else(|| service.replicas.as_ref().map(|_| "round-robin".to_string()));
            args.value("--failover", &failover);
        }
        if let Some(s) = &self.sessions {
            args.value("--connections", &s.connections);
            args.value("--connect-rate", &s.connect_rate);
            args.value("--reconnect-rate", &s.reconnect_rate);
            args.duration("--connect-timeout", &s.connect_timeout);
            args.value("--connect-retries", &s.connect_retries);
            args.duration("--ramp-timeout", &s.ramp_timeout);
            args.duration("--request-timeout", &s.request_timeout);
            args.value("--source-ips", &s.source_ips);
            args.value("--shards", &s.shards);
            args.value("--ring-slots", &s.ring_slots);
            if let Some(recv) = s.recv {
                let mode = match recv {
                    RecvMode::Multishot => "multishot",
                    RecvMode::Armed => "armed",
                };
                args.pair("--recv", mode);
            }
        }
        if let Some(p) = &self.phases {
            if let Some(mode) = p.mode {
                let mode = match mode {
                    PhasesMode::All => "all",
                    PhasesMode::Sustained => "sustained",
                };
                args.pair("--phases", mode);
            }
            for phase in p.skip.iter().flatten() {
                let name = match phase {
                    SkippablePhase::Baseline => "baseline",
                    SkippablePhase::Sustained => "sustained",
                    SkippablePhase::FailureRecovery => "failure_recovery",
                    SkippablePhase::Performance => "performance",
                };
                args.pair("--skip", name);
            }
            args.duration("--baseline", &p.baseline);
            args.duration("--sustain", &p.sustain);
            args.duration("--duration", &p.duration);
            args.duration("--step", &p.step);
            args.value("--step-factor", &p.step_factor);
            args.value("--steps-max", &p.steps_max);
        }
        if let Some(l) = &self.load {
            args.value("--rate", &l.rate);
            args.value("--seed", &l.seed);
            args.value("--tool", &l.tool);
            if l.discovery == Some(false) {
                args.flags.push("--no-discovery".into());
            }
            if let Some(tool_args) = &l.tool_args {
                args.pair("--tool-args", &tool_args.json_text());
            }
            if let Some(mix) = &l.mix {
                args.mix(mix)?;
            }
            args.value("--streams", &l.streams);
            for (method, result) in l.client_replies.iter().flatten() {
                args.pair(
                    "--client-reply",
                    &format!("{method}={}", result.json_text()),
                );
            }
        }
        if let Some(f) = &self.fault {
            args.value("--fault", &f.kind);
            args.duration("--down", &f.down);
            args.duration("--recovery-timeout", &f.recovery_timeout);
        }
        if let Some(sla) = &self.sla {
            args.sla(sla)?;
        }
        if let Some(o) = &self.output {
            args.value("--json", &o.json);
            args.value("--html", &o.html);
            args.switch("--quiet", o.quiet);
        }
        let mut all = args.flags;
        if !args.positional.is_empty() {
            // After `--`: a URL is never taken for a flag.
            all.push("--".into());
            all.extend(args.positional);
        }
        Ok(all)
    }
}

/// The flags being built.
#[derive(Default)]
struct Args {
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Args {
    fn pair(&mut self, flag: &str, value: &str) {
        // `--flag=value`: a value starting with `-` is never read as a flag.
        self.flags.push(format!("{flag}={value}"));
    }

    fn value<T: std::fmt::Display>(&mut self, flag: &str, value: &Option<T>) {
        if let Some(value) = value {
            self.pair(flag, &value.to_string());
        }
    }

    fn duration(&mut self, flag: &str, value: &Option<DurationText>) {
        if let Some(DurationText(text)) = value {
            self.pair(flag, text);
        }
    }

    fn each(&mut self, flag: &str, values: &Option<Vec<String>>) {
        for value in values.iter().flatten() {
            self.pair(flag, value);
        }
    }

    fn switch(&mut self, flag: &str, on: Option<bool>) {
        if on == Some(true) {
            self.flags.push(flag.into());
        }
    }

    /// `load.mix` as `--mix` and one `--args` per entry with arguments.
    fn mix(&mut self, mix: &[MixEntry]) -> Result<(), String> {
        let mut text = Vec::new();
        let mut named_args: Vec<(String, String)> = Vec::new();
        for (i, entry) in mix.iter().enumerate() {
            let at = |what: &str| format!("at `load.mix[{i}]`: {what}");
            if entry.method.contains([',', '=', ':']) {
                return Err(at(&format!("{:?} is not a method", entry.method)));
            }
            let mut spec = entry.method.clone();
            if let Some(target) = &entry.target {
                if target.contains(',') {
                    return Err(at(&format!(
                        "target {target:?}: a comma cannot be part of a mix entry's target"
                    )));
                }
                spec.push('=');
                spec.push_str(target);
            }
            spec.push_str(&format!(":{}", entry.weight));
            text.push(spec);
            if let Some(entry_args) = &entry.args {
                let Some(target) = &entry.target else {
                    return Err(at(
                        "args need a target (the tool, prompt or completion it is sent to)",
                    ));
                };
                let json = entry_args.json_text();
                if let Some((_, earlier)) = named_args.iter().find(|(n, _)| n == target)
                    && *earlier != json
                {
                    return Err(at(&format!(
                        "{target:?} has other args in an earlier entry: arguments belong to a name, give them once"
                    )));
                }
                named_args.push((target.clone(), json));
            }
        }
        if !text.is_empty() {
            self.pair("--mix", &text.join(","));
        }
        named_args.dedup();
        for (name, json) in named_args {
            self.pair("--args", &format!("{name}={json}"));
        }
        Ok(())
    }

    /// `[sla]` as one `--sla`, each value checked here so an error names its key.
    fn sla(&mut self, sla: &SlaSection) -> Result<(), String> {
        let mut items = Vec::new();
        let mut add = |key: String, path: String, value: &Option<String>| -> Result<(), String> {
            if let Some(value) = value {
                let item = format!("{key}={value}");
                crate::report::sla::SlaSpec::parse_over_defaults(&item)
                    .map_err(|e| format!("at `{path}`: {e}"))?;
                items.push(item);
            }
            Ok(())
        };
        for (key, value) in [
            ("p95", &sla.p95),
            ("errors", &sla.errors),
            ("throughput", &sla.throughput),
            ("mem", &sla.mem),
            ("recovery", &sla.recovery),
            ("dropped", &sla.dropped),
        ] {
            add(key.into(), format!("sla.{key}"), value)?;
        }
        for (label, bounds) in sla.entries.iter().flatten() {
            if label.contains([',', ']']) {
                return Err(format!(
                    "at `sla.entries.{label:?}`: a mix entry's label holds no ',' or ']'"
                ));
            }
            for (key, value) in [("p95", &bounds.p95), ("errors", &bounds.errors)] {
                add(
                    format!("{key}[{label}]"),
                    format!("sla.entries.{label:?}.{key}"),
                    value,
                )?;
            }
        }
        if !items.is_empty() {
            self.pair("--sla", &items.join(","));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_parses_and_stands_for_flags() {
        let file = parse(EXAMPLE).unwrap();
        let args = file.to_args(true).unwrap();
        assert!(args.iter().any(|a| a.starts_with("--mix=")), "{args:?}");
        assert!(args.iter().any(|a| a.starts_with("--sla=")), "{args:?}");
        // The example runs against the embedded server: no URL.
        assert!(!args.iter().any(|a| a == "--"), "{args:?}");
    }

    #[test]
    fn streams_and_client_replies_stand_for_their_flags() {
        let file = parse(
            "[load]\nstreams = \"25%\"\n[load.client_replies]\n\"roots/list\" = { roots = [{ uri = \"file:///w\" }] }\nping = '{}'\n",
        )
        .unwrap();
        let args = file.to_args(true).unwrap();
        assert!(args.iter().any(|a| a == "--streams=25%"), "{args:?}");
        assert!(
            args.iter()
                .any(|a| a == r#"--client-reply=roots/list={"roots":[{"uri":"file:///w"}]}"#),
            "{args:?}"
        );
        assert!(
            args.iter().any(|a| a == "--client-reply=ping={}"),
            "{args:?}"
        );
    }

    #[test]
    fn a_service_block_names_replicas() {
        let args = |text: &str| parse(text).and_then(|f| f.to_args(true));
        let a = args(
            "[service]\nreplicas = [\"http://127.0.0.1:9/mcp\", \"http://127.0.0.1:10/mcp\"]\n",
        )
        .unwrap();
        assert!(a.iter().any(|x| x == "--failover=round-robin"), "{a:?}");
        assert!(a.iter().any(|x| x == "http://127.0.0.1:10/mcp"), "{a:?}");
        let a = args("[service]\nembedded_replicas = 3\nfailover = \"least-loaded\"\n").unwrap();
        assert!(a.iter().any(|x| x == "--replicas=3"), "{a:?}");
        assert!(a.iter().any(|x| x == "--failover=least-loaded"), "{a:?}");
        let e = args("[target]\nurls = [\"http://127.0.0.1:9/mcp\"]\n[service]\nreplicas = [\"http://127.0.0.1:10/mcp\"]\n")
            .unwrap_err();
        assert!(e.contains("one of them"), "{e}");
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e =
            parse("[load]\nrate = 5\n[[load.mix]]\nmethod = \"ping\"\nwieght = 3\n").unwrap_err();
        assert!(e.contains("load.mix[0]"), "{e}");
        assert!(e.contains("wieght"), "{e}");
        let e = parse("[sesions]\nconnections = 5\n").unwrap_err();
        assert!(e.contains("sesions"), "{e}");
        let e =
            parse("[sessions]\nconnections = 5\nconnect_timeout = \"5 parsecs\"\n").unwrap_err();
        assert!(e.contains("sessions.connect_timeout"), "{e}");
        let e = parse("[sla]\np95 = \"100ms\"\nerorrs = \"1%\"\n").unwrap_err();
        assert!(e.contains("erorrs"), "{e}");
    }

    #[test]
    fn every_section_maps_to_its_flags() {
        let file = parse(
            r#"
[target]
urls = ["http://127.0.0.1:9/mcp", "http://[::1]:9/mcp"]
header = ["X-Tenant: load"]
header_env = ["Authorization=TOKEN"]
allow_host = ["10.0.0.0/8"]
[sessions]
connections = 300
connect_rate = 50
request_timeout = "5s"
recv = "armed"
[phases]
mode = "sustained"
skip = ["performance", "failure_recovery"]
duration = "4s"
step_factor = 1.25
[load]
rate = 600
seed = 7
[[load.mix]]
method = "tools/call"
target = "search"
weight = 3
args = { query = "q{{seq}}", limit = 5 }
[[load.mix]]
method = "resources/read"
target = "items://{{int 1 9}}"
[[load.mix]]
method = "prompts/get"
target = "greet"
args = '{"name": "{{choice ann|bob}}"}'
[fault]
kind = "drop:5%"
[sla]
p95 = "250ms"
throughput = "off"
[sla.entries."tools/call search"]
p95 = "50ms"
errors = "1%"
[output]
json = "r.json"
quiet = true
"#,
        )
        .unwrap();
        let args = file.to_args(true).unwrap();
        let has = |a: &str| args.iter().any(|x| x == a);
        for expected in [
            "--header=X-Tenant: load",
            "--header-env=Authorization=TOKEN",
            "--allow-host=10.0.0.0/8",
            "--connections=300",
            "--connect-rate=50",
            "--request-timeout=5s",
            "--recv=armed",
            "--phases=sustained",
            "--skip=performance",
            "--skip=failure_recovery",
            "--duration=4s",
            "--step-factor=1.25",
            "--rate=600",
            "--seed=7",
            "--mix=tools/call=search:3,resources/read=items://{{int 1 9}}:1,prompts/get=greet:1",
            "--args=search={\"limit\":5,\"query\":\"q{{seq}}\"}",
            "--args=greet={\"name\": \"{{choice ann|bob}}\"}",
            "--fault=drop:5%",
            "--sla=p95=250ms,throughput=off,p95[tools/call search]=50ms,errors[tools/call search]=1%",
            "--json=r.json",
            "--quiet",
        ] {
            assert!(has(expected), "{expected} missing from {args:?}");
        }
        let tail: Vec<&String> = args.iter().skip_while(|a| *a != "--").collect();
        assert_eq!(tail, ["--", "http://127.0.0.1:9/mcp", "http://[::1]:9/mcp"]);
        // URLs on the command line replace the file's.
        assert!(!file.to_args(false).unwrap().iter().any(|a| a == "--"));
    }

    #[test]
    fn values_are_checked_where_they_are_written() {
        let sla = parse("[sla]\np95 = \"fast\"\n")
            .unwrap()
            .to_args(true)
            .unwrap_err();
        assert!(sla.contains("sla.p95"), "{sla}");
        let entry = parse("[sla.entries.\"tools/call x\"]\nerrors = \"1\"\n")
            .unwrap()
            .to_args(true)
            .unwrap_err();
        assert!(
            entry.contains("sla.entries.\"tools/call x\".errors"),
            "{entry}"
        );
        let no_target = parse("[[load.mix]]\nmethod = \"tools/call\"\nargs = { a = 1 }\n")
            .unwrap()
            .to_args(true)
            .unwrap_err();
        assert!(no_target.contains("load.mix[0]"), "{no_target}");
        let twice = parse(
            "[[load.mix]]\nmethod = \"tools/call\"\ntarget = \"t\"\nargs = { a = 1 }\n\
             [[load.mix]]\nmethod = \"completion/complete\"\ntarget = \"t\"\nargs = { a = 2 }\n",
        )
        .unwrap()
        .to_args(true)
        .unwrap_err();
        assert!(twice.contains("load.mix[1]"), "{twice}");
        let mode = parse("[phases]\nmode = \"some\"\n").unwrap_err();
        assert!(mode.contains("phases.mode"), "{mode}");
        let skip = parse("[phases]\nskip = [\"ramp_up\"]\n").unwrap_err();
        assert!(skip.contains("phases.skip"), "{skip}");
    }

    #[test]
    fn committed_schema_matches_the_structs() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/scenario.schema.json");
        let generated = json_schema();
        if std::env::var_os("MCPSTORM_WRITE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "schema/scenario.schema.json is stale: run MCPSTORM_WRITE_SCHEMA=1 cargo test --lib committed_schema"
        );
    }
}
