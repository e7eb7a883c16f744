//! Command-line options (clap derive) and the human-friendly value parsers they use:
//! durations like `30s`/`15m`/`500ms`, counts like `100k`. No I/O here: `main.rs` turns these
//! into validated plans.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "mcpstorm",
    version,
    about = "io_uring load engine and reference server for MCP over streamable HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded MCP server (streamable HTTP) until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Open MCP sessions against URL(s) with io_uring shards and load them.
    Run(Box<RunArgs>),
    /// Read kernel and process limits; say what blocks N connections and how to fix it.
    Doctor(DoctorArgs),
    /// Render a saved run report (`--json FILE`) again: text on stdout, optionally HTML.
    Report(ReportArgs),
    /// Add the segments of one run (`run --segment I/N --json FILE` on each host) into one
    /// report: counters summed, latencies from the segments' histograms added (exact), a row
    /// per segment, the SLA judged on the merged figures; exit code as `run`. Merged
    /// reports merge again (merge of merges = merge of all).
    Merge(MergeArgs),
    /// Answer the clock probes of a run's segments (`run --clock-ref`) until interrupted: a
    /// reference clock on a host of its own.
    Clock(ClockArgs),
    /// Print the Kubernetes manifests that run `mcpstorm run ARGS…` as N segments (an
    /// Indexed Job, one pod per node) and merge their reports (a second Job): apply them
    /// with `kubectl apply -f -`.
    Kubernetes(KubernetesArgs),
    /// Write a commented scenario file for `run --config` that runs as is against the
    /// embedded server.
    Init(InitArgs),
    /// Walk a server's surface once: open a session, list its tools, resources and prompts,
    /// call each tool with arguments from its schema, read each resource, get each prompt;
    /// print what answered and how fast (exit 0 all answered, 1 some failed, 2 no session).
    Probe(ProbeArgs),
    /// Internal: the guard process of a network fault (`run --fault partition:3s`), started
    /// by `run` with the fault as JSON; it removes the fault's rules when its stdin closes.
    #[command(hide = true)]
    FaultGuard { spec: String },
}

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ProbeArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:8080/mcp.
    pub url: String,
    /// Allow a target beyond loopback and this host's addresses (as `run --allow-host`).
    #[arg(long, value_name = "HOST|CIDR")]
    pub allow_host: Vec<String>,
    /// HOST:PORT:ADDR[,ADDR…] (as `run --resolve`).
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Extra request header 'Name: value'. Repeatable.
    #[arg(short = 'H', long, value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    /// Header whose value is read from an environment variable, 'Name=VAR'.
    #[arg(long, value_name = "NAME=VAR")]
    pub header_env: Vec<String>,
    /// `https://`: trust only the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// `https://`: accept any server certificate.
    #[arg(long)]
    pub insecure: bool,
    /// 2025-11-25 (and older: `initialize`, a session) or 2026-07-28 (sessionless).
    #[arg(long, default_value = "2025-11-25")]
    pub protocol_version: String,
    /// Longest one request may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// NAME=JSON: call tool NAME with this arguments object instead of one made from its
    /// inputSchema. Repeatable.
    #[arg(long = "args", value_name = "NAME=JSON")]
    pub args: Vec<String>,
    /// Print the walk as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it (`-` = stdout).
    #[arg(default_value = "mcpstorm.toml")]
    pub file: std::path::PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A report written by `mcpstorm run --json FILE`.
    pub file: std::path::PathBuf,
    /// Write the HTML report here.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClockArgs {
    /// UDP address to answer on, e.g. 0.0.0.0:7907.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// Segments: pods of the Indexed Job, each on a node of its own.
    #[arg(long, value_name = "N")]
    pub segments: u32,
    /// The image with /mcpstorm (see the repository's Dockerfile).
    #[arg(long)]
    pub image: String,
    /// Name of the Jobs (and of the reports' claim).
    #[arg(long, default_value = "mcpstorm")]
    pub name: String,
    #[arg(long)]
    pub namespace: Option<String>,
    /// An existing ReadWriteMany claim for the reports (default: the manifests create one).
    #[arg(long, value_name = "CLAIM")]
    pub results_claim: Option<String>,
    /// The segments' common start, this long after the manifests are printed.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub start_in: Duration,
    /// How long the merge waits for every segment's report.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub merge_wait: Duration,
    /// The `mcpstorm run` arguments of the whole run (URL and options), after `--`.
    #[arg(last = true, required = true, allow_hyphen_values = true)]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Segment reports (`run --segment I/N --json FILE`) or reports merged before.
    #[arg(required_unless_present = "dir")]
    pub files: Vec<std::path::PathBuf>,
    /// Merge every report (`*.json`) in this directory instead (the segments' shared volume).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// With --dir: the run's segment count; wait (--wait) until each has its report.
    #[arg(long, value_name = "N", requires = "dir")]
    pub segments: Option<u32>,
    /// With --dir --segments: how long to wait for the reports; what is missing then is
    /// named and makes the merged report partial.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Write the merged JSON report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write the merged HTML report here.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
    /// SLA bounds over the defaults, as `run --sla` (give the segments' own).
    #[arg(long)]
    pub sla: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Target MCP endpoint(s) the run would use; none = the embedded server on this host.
    pub urls: Vec<String>,
    /// Connections the run would hold.
    #[arg(long, default_value = "100k", value_parser = parse_count)]
    pub connections: u64,
    /// The run is split into this many segments (`run --segment I/N`, one per load host):
    /// say what each host needs for its share (the largest), the server on a host of its own.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub segments: u32,
    /// Source addresses the run would bind, e.g. 127.0.0.2-127.0.0.9.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// HOST:PORT:ADDR[,ADDR…]: the addresses of HOST:PORT instead of the resolver's (as curl).
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Sessions opened per second during the ramp.
    #[arg(long, default_value = "20k", value_parser = parse_count)]
    pub connect_rate: u64,
    /// Share of the sessions that also hold a stream (as `run --streams`): one more
    /// connection each.
    #[arg(long, default_value = "off", value_parser = crate::engine::plan::parse_streams)]
    pub streams: u8,
    /// Print the diagnosis as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
// A later option wins over an earlier one (scripts append their overrides).
#[command(args_override_self = true)]
pub struct RunArgs {
    /// Target MCP endpoint(s), e.g. http://127.0.0.1:8080/mcp, http://localhost:8080/mcp,
    /// http://[::1]:8080/mcp (a host name connects to every address it resolves to). A target
    /// that is not loopback nor an address of this host needs --allow-host. None: start the
    /// embedded server (`mcpstorm serve`) as a child process and load it.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// A scenario file (TOML; `mcpstorm init` writes an example): its keys are this command's
    /// flags, grouped in sections; flags given here override it, URLs given here replace its
    /// targets.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<std::path::PathBuf>,
    /// MCP sessions to open and hold (one TCP connection each) [default: 100k against the
    /// embedded server when this machine's limits allow it, else the largest count that fits;
    /// 1000 against a URL; 100 with --phases sustained]. An explicit count is never lowered.
    #[arg(long, value_parser = parse_count_u32)]
    pub connections: Option<u32>,
    /// `all`: the six phases (baseline, ramp_up, sustained, failure_recovery, performance,
    /// cool_down) over one set of held sessions; `sustained`: the same run and report with
    /// only the ramp, one load phase of --duration and cool_down.
    #[arg(long, default_value = "all", value_parser = ["all", "sustained"])]
    pub phases: String,
    /// Phases to leave out, e.g. failure_recovery,performance.
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Length of the baseline phase's load (closed loop, one request in flight at a time: the
    /// server's unloaded service time).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub baseline: Duration,
    /// Length of the sustained phase.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub sustain: Duration,
    /// The failure_recovery fault: restart (SIGKILL the embedded server and start it again),
    /// drop:10% (close that share of the connections), exec:'CMD', kill-replica:K (SIGKILL
    /// embedded replica K of --replicas N for the rest of the run), or on the path to the
    /// targets (root; nftables and iptables): partition:3s, latency:100ms[,jitter:20ms][,for:5s],
    /// loss:5%[,for:5s] (for: defaults to --down) [default: restart against the embedded
    /// server, drop:10% against a URL].
    #[arg(long)]
    pub fault: Option<String>,
    /// How long a restarted server stays down.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub down: Duration,
    /// Longest the failure_recovery phase waits for the sessions to answer again.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub recovery_timeout: Duration,
    /// Length of each performance step.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub step: Duration,
    /// Offered-rate factor from one performance step to the next.
    #[arg(long, default_value = "1.5")]
    pub step_factor: f64,
    /// Most performance steps (the search grows by --step-factor, then bisects).
    #[arg(long, default_value = "12")]
    pub steps_max: usize,
    /// SLA bounds over the defaults, e.g. p95=100ms,errors=0.05%,throughput=10k,mem=2KB,
    /// recovery=5s (`off` disables one); one mix entry's: p95[tools/call search]=50ms,
    /// errors[ping]=0.1%. Repeatable: a later one overrides an earlier one key by key.
    #[arg(long)]
    pub sla: Vec<String>,
    /// Write the HTML report here.
    #[arg(long)]
    pub html: Option<std::path::PathBuf>,
    /// No live progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Shard threads, each pinned to a CPU [default: online CPUs].
    #[arg(long)]
    pub shards: Option<usize>,
    /// New sessions per second over all shards; 0 = as fast as the handshake window allows.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub connect_rate: u64,
    /// Reconnects per second over all shards (sessions that lost their connection, after a
    /// fault or a server's close); 0 = as fast as the handshake window allows. A reconnect
    /// storm that overflows the server's accept queue shows in the recovery's kernel counters.
    #[arg(long, default_value = "0", value_parser = parse_count)]
    pub reconnect_rate: u64,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Connect attempts repeated after a failure (refused, timed out, bind error), each after
    /// a jittered exponential backoff from 100 ms.
    #[arg(long, default_value = "3")]
    pub connect_retries: u8,
    /// Longest the ramp (opening every session) may take; the load then starts with the
    /// sessions held, and the rest count as `ramp_timeout` errors.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ramp_timeout: Duration,
    /// A request (initialize included) unanswered this long fails and its connection closes.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Source addresses to bind, e.g. 127.0.0.2-127.0.0.9 or fd00::2-fd00::9: addresses of
    /// this host, checked before the run (ports are assigned by the plan).
    #[arg(long)]
    pub source_ips: Option<String>,
    /// HOST:PORT:ADDR[,ADDR…]: connect to these addresses for HOST:PORT instead of resolving
    /// it (as curl's --resolve; Host still names HOST). Repeatable.
    #[arg(long)]
    pub resolve: Vec<String>,
    /// Allow targets beyond loopback and this host's own addresses: a host name as the URL
    /// writes it, an address, or a CIDR block (10.0.0.0/8). Repeatable. Without it such a
    /// target is refused (exit 2): 100K connections should never hit a host by a typo.
    #[arg(long, value_name = "HOST|CIDR")]
    pub allow_host: Vec<String>,
    /// Extra request header 'Name: value', sent on every request (initialize, load, DELETE).
    /// Repeatable; a later one replaces an earlier one of the same name.
    #[arg(short = 'H', long, value_name = "NAME: VALUE")]
    pub header: Vec<String>,
    /// With no URL: the embedded server speaks TLS with a throwaway certificate of this run
    /// (its CA trusted for the run only), so TLS sessions are measured end to end.
    #[arg(long)]
    pub tls: bool,
    /// `https://`: trust only the CA certificates in this PEM file (instead of the system's).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    /// `https://`: accept any server certificate (the report says so). Handshake signatures
    /// are still checked.
    #[arg(long)]
    pub insecure: bool,
    /// `https://`: never resume a TLS session, so every connection and reconnect does the full
    /// handshake [default: resume from a ticket of an earlier connection].
    #[arg(long)]
    pub tls_no_resumption: bool,
    /// Header whose value is read from an environment variable, 'Name=VAR' (e.g.
    /// Authorization=MCP_TOKEN): a secret, never printed, logged or written into a report.
    #[arg(long, value_name = "NAME=VAR")]
    pub header_env: Vec<String>,
    /// Total requests/s (open model); 0 = closed loop [default: 20k against the embedded
    /// server; against a URL, half of what the server carried in a closed-loop probe after
    /// the ramp; 0 with --phases sustained]. The performance search starts from it.
    #[arg(long, value_parser = parse_count)]
    pub rate: Option<u64>,
    /// Length of the load phase of --phases sustained, after every session is established.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Weighted mix of METHOD[=NAME][:WEIGHT] entries: any of ping, tools/list, tools/call=TOOL,
    /// resources/list, resources/read=URI, resources/templates/list, prompts/list,
    /// prompts/get=PROMPT, completion/complete=PROMPT, logging/setLevel=LEVEL; e.g.
    /// tools/call=search:60,resources/read=file:///a.md:30,ping:10. Names and arguments may hold
    /// generators: {{seq}}, {{int LOW HIGH}}, {{choice a|b}}, {{str N}}, {{line FILE}}
    /// [default: ping, or tools/call when --tool is given]. Each entry has its own latency
    /// figures.
    #[arg(long)]
    pub mix: Option<String>,
    /// Tool of a tools/call entry that names none [default: echo].
    #[arg(long)]
    pub tool: Option<String>,
    /// Arguments for --tool as a JSON object, generators allowed [default: {"text":"mcpstorm"}].
    #[arg(long)]
    pub tool_args: Option<String>,
    /// NAME=JSON: the arguments object of the tools/call, prompts/get or completion/complete
    /// entry naming NAME (a completion: {"ARGUMENT":"PARTIAL VALUE"}). Repeatable.
    #[arg(long = "args", value_name = "NAME=JSON")]
    pub args: Vec<String>,
    /// Seed of every generated value and random choice: the same seed sends the same values
    /// [default: drawn at start, printed in the report].
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "2025-11-25")]
    pub protocol_version: String,
    /// `streamable-http`, or `sse`: the legacy HTTP+SSE transport of 2024-11-05 (the URL is
    /// the SSE endpoint, e.g. http://host:8000/sse; each session GETs it, POSTs to the
    /// endpoint its `endpoint` event names and reads the answers on the stream). Implies
    /// --protocol-version 2024-11-05 and --streams all.
    #[arg(long, default_value = "streamable-http", value_parser = ["streamable-http", "sse"])]
    pub transport: String,
    /// With no URL: start N embedded servers as replicas of one service (sessions spread over
    /// them; a session whose replica dies moves to another, see --failover and
    /// --fault kill-replica:K).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replicas: Option<u16>,
    /// The URLs are replicas of one service: a session whose replica refuses (or times out)
    /// its connect moves to another and initializes a new session there — `round-robin`, or
    /// `least-loaded` (the replica with the fewest sessions) [default with --replicas:
    /// round-robin; without either, each URL is loaded on its own].
    #[arg(long, value_parser = ["round-robin", "least-loaded"])]
    pub failover: Option<String>,
    /// Direct descriptors per ring [default and maximum: RLIMIT_NOFILE].
    #[arg(long, value_parser = parse_count_u32)]
    pub ring_slots: Option<u32>,
    /// How responses are received: `multishot` keeps one multishot receive armed on every
    /// connection (notices a server closing an idle connection at once); `armed` arms a
    /// single-shot receive only while a response is awaited (idle connections hold no
    /// receive request in the kernel).
    #[arg(long, default_value = "multishot", value_parser = ["multishot", "armed"])]
    pub recv: String,
    /// Report this process's RSS growth per session as the server's memory figure.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Share of the sessions that also hold their server-to-client stream on a second
    /// connection: all, off or N% (GET with Accept: text/event-stream in the 2025 eras,
    /// subscriptions/listen under 2026-07-28), opened after the session, reopened when the
    /// server ends it (after its retry:, with Last-Event-ID); notifications are counted by
    /// method and timed when they carry their send time.
    #[arg(long, default_value = "off", value_parser = crate::engine::plan::parse_streams)]
    pub streams: u8,
    /// With no URL: the embedded server sends a notification with its send time to every
    /// open stream this often (its --notify-every), so fan-out latency is measured.
    #[arg(long, value_parser = parse_duration)]
    pub notify_every: Option<Duration>,
    /// Carry segment I of N of the run (0-based): a deterministic share of the connections,
    /// of every rate and of the source ports, so N processes with the same options (on N
    /// hosts) offer together what one run would; `mcpstorm merge` adds their reports.
    #[arg(long, value_name = "I/N", conflicts_with = "segment_from_env")]
    pub segment: Option<String>,
    /// Read the segment index from this environment variable (JOB_COMPLETION_INDEX of a
    /// Kubernetes Indexed Job, SLURM_ARRAY_TASK_ID of a Slurm array); needs --segments.
    #[arg(long, value_name = "VAR", requires = "segments")]
    pub segment_from_env: Option<String>,
    /// How many segments the run has (with --segment-from-env).
    #[arg(long, value_name = "N")]
    pub segments: Option<u32>,
    /// The first index --segment-from-env's variable takes (a Slurm array 1-3: 1).
    #[arg(long, value_name = "B", default_value_t = 0)]
    pub segment_base: u32,
    /// Begin the phases at this UNIX time (seconds, fractions allowed): the common start of
    /// a run's segments. A segment started after it says how late it was.
    #[arg(long, value_name = "UNIX_TIME")]
    pub start_at: Option<f64>,
    /// Answer the segments' clock probes on this UDP port while the run lasts (segment 0's
    /// job: the others measure their clock offset against it with --clock-ref).
    #[arg(long, value_name = "PORT")]
    pub clock_serve: Option<u16>,
    /// Measure this host's clock offset against the reference at HOST:PORT (UDP) before the
    /// phases; the report and the merge carry it.
    #[arg(long, value_name = "HOST:PORT")]
    pub clock_ref: Option<String>,
    /// Answer server-to-client requests of METHOD with this JSON result (repeatable), e.g.
    /// sampling/createMessage='{"role":"assistant","content":{"type":"text","text":"ok"},"model":"m"}'.
    /// Every request the server sends — on a session's stream or on a POST's response stream —
    /// is answered on a connection of its own (never the session's, which may await the call
    /// that asked): ping with {}, roots/list no roots, sampling a fixed text, elicitation
    /// declined, others -32601, unless given here. The initialize then declares the
    /// capability of each method given (roots, sampling, elicitation).
    #[arg(long, value_name = "METHOD=JSON")]
    pub client_reply: Vec<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Do not list the server's tools, resources and prompts before the ramp [default: one
    /// session lists them, and a mix that names a tool, resource or prompt the server lacks
    /// stops the run (exit 2) with what it has].
    #[arg(long)]
    pub no_discovery: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; repeat for several (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// HTTP path of the MCP endpoint.
    #[arg(long, default_value = "/mcp")]
    pub path: String,
    /// Shard threads, each pinned to a CPU [default: online CPUs].
    #[arg(long)]
    pub shards: Option<usize>,
    /// How POST requests are answered.
    #[arg(long, value_enum, default_value = "json")]
    pub response: crate::server::mcp::ResponseMode,
    /// Sessions held at once; initialize beyond this gets 503.
    #[arg(long, default_value = "131072", value_parser = parse_count_u32)]
    pub max_sessions: u32,
    /// Connections the server sizes its rings for (rings per shard = this ÷ shards ÷ ring slots).
    #[arg(long, default_value = "120k", value_parser = parse_count_u32)]
    pub max_connections: u32,
    /// A session unused for this long is ended.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub session_idle_timeout: Duration,
    /// Direct descriptors per ring [default and maximum: RLIMIT_NOFILE]. Lower values force
    /// several rings per shard (used by tests of the multi-ring path).
    #[arg(long, value_parser = parse_count_u32)]
    pub ring_slots: Option<u32>,
    /// Write the bound addresses, one per line, to this file once listening (for scripts).
    #[arg(long)]
    pub ready_file: Option<std::path::PathBuf>,
    /// Provided receive buffers per ring (a power of two, 2 KiB each). Tests lower it to
    /// exercise the path taken when every buffer is in use.
    #[arg(long, default_value = "2048", value_parser = parse_recv_buffers)]
    pub recv_buffers: u16,
    /// Calibrated target: `ping` and `tools/call` take this long (a `sleep` tool's ms is
    /// added), so capacity and unloaded latency are known by construction.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub service_time: Duration,
    /// Calibrated target: at most this many served at once over all shards, the rest wait in
    /// line (0 = unlimited). Capacity = concurrency ÷ service time.
    #[arg(long, default_value = "0", value_parser = parse_count_u32)]
    pub concurrency: u32,
    /// Speak TLS (1.2/1.3, ALPN http/1.1) on every listener with this certificate chain (PEM);
    /// needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Push a `notifications/message` to every held listen stream (GET stream or
    /// subscriptions/listen) this often, its send time in `_meta["mcpstorm/sentAtUs"]`
    /// (UNIX µs), so clients can measure fan-out latency.
    #[arg(long, value_parser = parse_notify_every)]
    pub notify_every: Option<Duration>,
    /// With --notify-every: `all` streams, or at most N of them (split over the shards).
    #[arg(long, value_parser = parse_notify_to, requires = "notify_every", value_name = "all|N")]
    pub notify_to: Option<u32>,
    /// Also answer the legacy HTTP+SSE transport (2024-11-05): `GET /sse` opens a session's
    /// stream naming its endpoint `/messages?session_id=…`; POSTs there are answered 202 and
    /// their answers go out on the stream (what `run --transport sse` loads).
    #[arg(long)]
    pub legacy_sse: bool,
}

fn parse_notify_every(text: &str) -> Result<Duration, String> {
    let every = parse_duration(text)?;
    if every < Duration::from_millis(1) {
        return Err("at least 1ms".into());
    }
    Ok(every)
}

/// `all` is no limit (`None` once clap unwraps the Option: a limit of u32::MAX never binds).
fn parse_notify_to(text: &str) -> Result<u32, String> {
    if text == "all" {
        return Ok(u32::MAX);
    }
    parse_count_u32(text)
}

/// Parses `250ms`, `30s`, `15m`, `2h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 30s, 15m, 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?} (use ms, s, m or h)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("duration out of range: {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses `20000`, `100k`, `1.5m` (million), `20_000`.
pub fn parse_count(text: &str) -> Result<u64, String> {
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|&c| c != '_' && c != ',')
        .collect();
    let (number, multiplier) = match cleaned.chars().last() {
        Some('k') | Some('K') => (&cleaned[..cleaned.len() - 1], 1e3),
        Some('m') | Some('M') => (&cleaned[..cleaned.len() - 1], 1e6),
        _ => (&cleaned[..], 1.0),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("not a count: {text:?} (try 20000 or 100k)"))?;
    let count = value * multiplier;
    if !count.is_finite() || count < 0.0 || count.fract() != 0.0 || count > u64::MAX as f64 {
        return Err(format!("count out of range: {text:?}"));
    }
    Ok(count as u64)
}

fn parse_recv_buffers(text: &str) -> Result<u16, String> {
    let count = parse_count(text)?;
    if !(2..=32768).contains(&count) || !count.is_power_of_two() {
        return Err(format!(
            "--recv-buffers {text}: a power of two from 2 to 32768"
        ));
    }
    Ok(count as u16)
}

pub fn parse_count_u32(text: &str) -> Result<u32, String> {
    let count = parse_count(text)?;
    u32::try_from(count).map_err(|_| format!("count too large: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("100k").unwrap(), 100_000);
        assert_eq!(parse_count("1.5m").unwrap(), 1_500_000);
        assert_eq!(parse_count("20_000").unwrap(), 20_000);
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("lots").is_err());
        assert!(parse_count_u32("5000000k").is_err());
    }
}
