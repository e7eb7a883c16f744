//! The phased run's entry: starts the embedded server when no URL is given, builds the plan,
//! runs the shards with the phase driver (`driver.rs`, one room per phase in `phases/`) on
//! this thread, and assembles the one report every mode produces — figures (`figures.rs`),
//! SLA verdicts, the leak check, the time series. Part of `scenario/`.

pub use super::driver::PhasedOptions;
use super::driver::{Driver, Halt, Segment};
use super::logic::Fault;
use crate::engine::control::Shared;
use crate::engine::embedded::EmbeddedServer;
use crate::engine::metrics::{Counter, ShardMetrics};
use crate::engine::plan::{EnginePlan, RunOptions};
use crate::report::{self, Leak, MachineInfo, PhaseStatus, RunReport};
use std::time::Duration;

/// Why a phased run produced no report at all (exit code 2): the machine, the options or the
/// plan refused it before any connection opened.
#[derive(Debug)]
pub enum RunError {
    /// io_uring is off or lacks what the engine needs (the kernel probe's reason).
    Kernel(crate::ring::RingError),
    /// The embedded server (no URL given) did not start.
    EmbeddedServer(String),
    /// Options that cannot go together here (a fault that needs the embedded server, source
    /// addresses without IORING_OP_BIND).
    Options(String),
    /// The plan refused the options: a limit that would stop the run, with its fix.
    Plan(String),
    /// The shards could not be driven.
    Engine(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Kernel(e) => write!(f, "{e}"),
            RunError::EmbeddedServer(e) => write!(f, "the embedded server: {e}"),
            RunError::Options(e) | RunError::Plan(e) | RunError::Engine(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for RunError {}

fn recovery_runs_of(options: &PhasedOptions) -> bool {
    !options.skip.iter().any(|s| s == "failure_recovery")
}

/// Starts the embedded server (`--replicas N`: N of them, replicas of one service) and points
/// the run at it: its URLs, which replica each belongs to, its pid, the default tool.
fn start_embedded(
    run_options: &mut RunOptions,
    pki: Option<&crate::tls::server::ThrowawayPki>,
) -> Result<Vec<EmbeddedServer>, RunError> {
    let sockets = run_options
        .connections
        .saturating_add(crate::engine::plan::streams_among(
            run_options.connections,
            run_options.streams_percent,
        ));
    let mut extra_args: Vec<String> = match run_options.embedded_notify_every {
        Some(every) => vec![
            "--notify-every".into(),
            format!("{}ms", every.as_millis().max(1)),
        ],
        None => Vec::new(),
    };
    if run_options.legacy_sse {
        extra_args.push("--legacy-sse".into());
    }
    let replicas = u32::from(run_options.embedded_replicas.max(1));
    // Each replica is sized for what it holds once one of them has failed over to the rest.
    let per_replica = if replicas > 1 {
        sockets.div_ceil(replicas - 1)
    } else {
        sockets
    };
    let mut servers = Vec::with_capacity(replicas as usize);
    run_options.urls.clear();
    run_options.replica_of_url.clear();
    for replica in 0..replicas {
        let server = EmbeddedServer::start(per_replica, pki, &extra_args)
            .map_err(|e| RunError::EmbeddedServer(format!("replica {}: {e}", replica + 1)))?;
        for url in &server.urls {
            run_options.urls.push(url.clone());
            run_options.replica_of_url.push(replica as u16);
        }
        servers.push(server);
    }
    if replicas < 2 {
        run_options.replica_of_url.clear();
    }
    if run_options.legacy_sse {
        // The legacy transport's URL is its stream's.
        for url in &mut run_options.urls {
            if let Some(base) = url.strip_suffix("/mcp") {
                *url = format!("{base}/sse");
            }
        }
    }
    run_options.server_pid = servers.first().map(EmbeddedServer::pid);
    if run_options.mix.is_none() && run_options.tool.is_none() {
        run_options.tool = Some("echo".into());
    }
    Ok(servers)
}

/// Runs the phases. `Err` = the run could not start (exit 2); a report otherwise, also for a
/// run that found nothing to measure (`could_not_run`, exit 2), aborted, was interrupted or
/// lost a shard (then `partial` or a verdict says so).
pub fn run(options: &PhasedOptions) -> Result<RunReport, RunError> {
    // A segment's options carry its share of every rate (`--segment I/N`).
    let scaled = super::segmented::scaled(options)?;
    let options = &scaled;
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Before anything is sized for N: the base of the total bytes per connection.
    let rss_idle_bytes = crate::engine::rss_bytes();
    let features = crate::ring::probe_kernel().map_err(RunError::Kernel)?;
    let mut run_options = options.run.clone();
    if run_options.embedded_tls && !run_options.urls.is_empty() {
        return Err(RunError::Options(
            "--tls gives the embedded server a throwaway certificate; against a URL, write it https:// (with --cacert or --insecure)".into(),
        ));
    }
    if run_options.embedded_notify_every.is_some() && !run_options.urls.is_empty() {
        return Err(RunError::Options(
            "--notify-every is the embedded server's (no URL); a server of your own sends its notifications itself".into(),
        ));
    }
    // `run --tls`: a CA and certificate of this run only, deleted with it.
    let throwaway = if run_options.embedded_tls {
        let dir = std::env::temp_dir().join(format!("mcpstorm-tls-{}", std::process::id()));
        let pki = crate::tls::server::throwaway_pki(&dir).map_err(RunError::EmbeddedServer)?;
        run_options.tls.cacert = Some(pki.ca_file.clone());
        Some(TempDir { dir, pki })
    } else {
        None
    };
    let pki = throwaway.as_ref().map(|t| &t.pki);
    // Checked on the options, before any server starts.
    let embedded_replicas = if run_options.urls.is_empty() {
        usize::from(run_options.embedded_replicas.max(1))
    } else {
        0
    };
    if let Fault::KillReplica { replica } = options.fault
        && recovery_runs_of(options)
        && (embedded_replicas < 2 || replica > embedded_replicas)
    {
        return Err(RunError::Options(if embedded_replicas < 2 {
            "--fault kill-replica:K kills one of the embedded replicas: start them with --replicas N (no URL); against replicas of your own use --failover with --fault exec:'CMD'".into()
        } else {
            format!(
                "--fault kill-replica:{replica}: there are {embedded_replicas} replicas (numbered from 1)"
            )
        }));
    }
    let server_rss_idle_bytes = if run_options.urls.is_empty() {
        // Each replica starts the same way: the idle cost is theirs together.
        EmbeddedServer::idle_rss_bytes(pki).map(|b| b * u64::from(run_options.embedded_replicas))
    } else {
        None
    };
    let mut embedded = if run_options.urls.is_empty() {
        start_embedded(&mut run_options, pki)?
    } else {
        Vec::new()
    };
    if !features.bind_op && run_options.source_ips.is_some() {
        return Err(RunError::Options(
            "--source-ips needs IORING_OP_BIND (Linux 6.11 or newer)".into(),
        ));
    }
    if matches!(options.fault, Fault::Restart { .. })
        && embedded.is_empty()
        && !options.skip.iter().any(|s| s == "failure_recovery")
    {
        return Err(RunError::Options(
            "--fault restart needs the embedded server (no URL); against a URL use --fault drop:10% or --fault exec:'CMD'"
                .into(),
        ));
    }
    let recovery_runs = recovery_runs_of(options);
    let nofile = crate::ring::raise_nofile_limit();
    let cpus: Vec<usize> = core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    let mut plan = EnginePlan::from_options(&run_options, nofile, &cpus).map_err(RunError::Plan)?;
    let labels: Vec<String> = plan.entries.iter().map(|e| e.label()).collect();
    if let Some(unknown) = options.sla.entries.keys().find(|l| !labels.contains(l)) {
        return Err(RunError::Options(format!(
            "--sla bounds {unknown:?}, which is no entry of the mix; its entries are: {}",
            labels.join(", ")
        )));
    }
    let discovery = if options.discovery {
        let (tools, mut discovery) = discover(&plan, options.quiet)?;
        if let Some(tools) = tools {
            discovery.mirrored_tools = plan.mirror_params(&tools).map_err(RunError::Options)?;
        }
        Some(discovery)
    } else {
        None
    };
    // A network fault's guard starts before any connection: a missing tool or right refuses
    // the run here, not in the middle of it.
    let net_guard = match &options.fault {
        Fault::Network { impairment, .. } if recovery_runs => {
            let mut targets: Vec<std::net::SocketAddr> =
                plan.targets.iter().map(|t| t.addr).collect();
            targets.sort();
            targets.dedup();
            let fault = crate::netfault::NetFault {
                impairment: *impairment,
                targets,
                owner_pid: std::process::id(),
            };
            Some(
                crate::netfault::guard::Guard::start(&fault)
                    .map_err(|e| RunError::Options(format!("--fault: {e}")))?,
            )
        }
        _ => None,
    };
    crate::sys::signal::install_stop_handler();
    // The segments' common start: everything above (the server, the plan, discovery) is
    // ready by then, so the phases begin together.
    if let Some(port) = options.clock_serve {
        super::segmented::serve_clock(port)?;
    }
    let clock = match &options.clock_ref {
        Some(reference) => super::segmented::measure_clock(reference, options.start_at_unix_ms)?,
        None => None,
    };
    let late_ms = match options.start_at_unix_ms {
        Some(at) => Some(super::segmented::wait_for_start(at)?),
        None => None,
    };
    let phases_started_unix_ms = super::segmented::unix_now_ms();
    let shared = Shared::new(plan.shards.len(), plan.replicas.len());
    let (segment_sender, segment_receiver) = std::sync::mpsc::channel();
    let mut driver = Driver::new(
        options,
        &plan,
        &shared,
        segment_receiver,
        run_options.server_pid,
        &mut embedded,
    );
    driver.rss_idle_bytes = rss_idle_bytes;
    driver.net_guard = net_guard;
    driver.server_rss_idle_bytes = server_rss_idle_bytes;
    let driven = crate::engine::drive(&plan, &features, &shared, Some(segment_sender), |feed| {
        let halt = super::phases::run_all(&mut driver, feed).err();
        if let Some(halt) = &halt {
            driver.halt(halt);
        }
        halt
    })
    .map_err(RunError::Engine)?;
    driver.finish_progress();
    driver.drain_segments();
    for (segment, metrics) in &driven.final_metrics {
        driver.merged.entry(*segment).or_default().merge(metrics);
    }
    let could_not_run = match &driven.outcome {
        Some(Halt::CouldNotRun(reason)) => {
            let merged = driver.merged.get(&Segment::Baseline.id());
            let why = explain_no_session(reason.clone(), merged, &plan);
            if let Some(baseline) = driver
                .phases
                .iter_mut()
                .find(|p| p.report.name == "baseline")
            {
                baseline.report.status = PhaseStatus::Aborted;
                baseline.report.note = Some(why.clone());
            }
            Some(why)
        }
        _ => None,
    };
    if !driven.shard_errors.is_empty() {
        driver.interrupted = true;
        if let Some(last) = driver
            .phases
            .iter_mut()
            .rev()
            .find(|p| p.report.status != PhaseStatus::NotRun)
        {
            last.report.note = Some(format!(
                "the run stopped: {} (its figures are missing)",
                driven.shard_errors.join("; ")
            ));
        }
    }
    // The shards have closed every connection: the server's memory now vs its baseline.
    let leak = driver.leak_baseline_bytes.and_then(|baseline| {
        std::thread::sleep(Duration::from_millis(300));
        let after = driver.server_rss_bytes()?;
        Some(Leak {
            server_rss_baseline_bytes: baseline,
            server_rss_after_bytes: after,
            sessions_deleted: 0,
        })
    });
    let end_s = driver.now_s();
    let cool_down_deleted = driver
        .merged
        .get(&Segment::CoolDown.id())
        .map_or(0, |m| m.get(Counter::sessions_deleted));
    let shard_epoch_s = driver
        .start
        .saturating_duration_since(shared.epoch)
        .as_secs_f64();
    let interrupted = driver.interrupted;
    let mut whole_run = ShardMetrics::new();
    for metrics in driver.merged.values() {
        whole_run.merge(metrics);
    }
    let counters = Counter::ALL
        .iter()
        .map(|c| (c.name().to_string(), whole_run.get(*c)))
        .collect();
    let errors_by_cause = super::figures::errors_by_cause(&whole_run);
    let phases_run = std::mem::take(&mut driver.phases);
    let mut phases =
        super::figures::finish_phases(phases_run, &driver.merged, end_s, shard_epoch_s, &labels);
    if let Some(cool_down) = phases
        .iter_mut()
        .find(|p| p.name == "cool_down" && p.status == PhaseStatus::Completed)
    {
        cool_down.leak = leak.map(|leak| Leak {
            sessions_deleted: cool_down_deleted,
            ..leak
        });
    }
    let sessions = report::Sessions {
        target: plan.connections as u64,
        established: whole_run.established,
        failed: whole_run.failed,
        held_max: phases
            .iter()
            .map(|p| p.sessions.held_max)
            .max()
            .unwrap_or(0),
        established_per_s: phases
            .iter()
            .find(|p| p.name == "ramp_up")
            .and_then(|p| p.sessions.established_per_s),
    };
    let streams_planned: u64 = plan.shards.iter().map(|s| u64::from(s.streams)).sum();
    let streams = (streams_planned > 0).then(|| {
        // Most held at once over the run: the largest of the phases'.
        let held = phases
            .iter()
            .filter_map(|p| p.streams.as_ref().map(|s| s.held))
            .max()
            .unwrap_or(0);
        report::StreamsReport {
            held,
            ..super::figures::streams_of(&whole_run, Some(streams_planned))
        }
    });
    let sla = report::sla::evaluate(&options.sla, &phases);
    let verdict = report::sla::overall(&sla);
    drop(driver);
    drop(embedded);
    Ok(RunReport {
        schema: report::SCHEMA_ID.into(),
        mcpstorm_version: env!("CARGO_PKG_VERSION").into(),
        started_unix_s,
        duration_s: end_s,
        partial: interrupted,
        targets: run_options.urls.clone(),
        endpoints: endpoint_reports(&plan),
        headers: plan.headers.iter().map(|h| h.display()).collect(),
        tls: plan.tls.as_ref().map(|t| match (&t.cacert, t.insecure) {
            _ if run_options.embedded_tls => {
                "verified against this run's throwaway CA (--tls)".to_string()
            }
            (_, true) => "--insecure: the server's certificate was NOT verified".to_string(),
            (Some(file), false) => format!("verified against --cacert {}", file.display()),
            (None, false) => "verified against the system roots".to_string(),
        }),
        mix: plan
            .entries
            .iter()
            .map(|e| report::MixEntryReport {
                entry: e.label(),
                weight: e.weight,
            })
            .collect(),
        seed: plan.seed,
        embedded_server: options.run.urls.is_empty(),
        connections: plan.connections as u64,
        machine: machine_info(nofile),
        phases,
        sla,
        verdict,
        series: driven.samples,
        sessions,
        errors_by_cause,
        counters,
        engine: report::EngineInfo {
            shards: plan.shards.len(),
            rings: plan.shards.iter().map(|s| s.rings).sum(),
            conn_slot_bytes: crate::engine::conn::CONN_BYTES,
        },
        streams,
        server_requests: super::figures::server_requests_of(&whole_run),
        segment: super::segmented::info(options, late_ms, phases_started_unix_ms, clock),
        merged_from: None,
        discovery,
        could_not_run,
    })
}

/// Discovery at baseline: one session lists the server's surface; a mix that names what the
/// server lacks stops the run before any session opens. A server that cannot be probed is not
/// refused here: the baseline then says why it gets no session.
/// Lists the server's surface and checks the mix against it; the tools as listed (for their
/// `x-mcp-header` declarations), `None` when discovery could not run; and what it did.
fn discover(
    plan: &EnginePlan,
    quiet: bool,
) -> Result<(Option<Vec<serde_json::Value>>, report::DiscoveryReport), RunError> {
    if plan.legacy_sse {
        // The probe speaks streamable HTTP; the legacy transport's sessions are the run's.
        return Ok((
            None,
            report::DiscoveryReport {
                sessions: 0,
                requests: 0,
                outcome: "skipped: --transport sse (discovery speaks streamable HTTP); the mix is not checked against the server's lists".into(),
                mirrored_tools: Vec::new(),
            },
        ));
    }
    // A server that stalls the probe delays the start by one timeout at most: discovery
    // stops at its first unanswered request.
    let timeout = plan.request_timeout.min(Duration::from_secs(5));
    let mut client = crate::probe::client_for_plan(plan, timeout).map_err(RunError::Options)?;
    let opened = client.open_session();
    let surface = match opened {
        Ok(crate::probe::client::Answer { outcome: Ok(_), .. }) => {
            crate::probe::discover(&mut client, &mut Vec::new())
        }
        Ok(crate::probe::client::Answer {
            outcome: Err((code, message)),
            ..
        }) => Err(crate::probe::client::ProbeError::Protocol(format!(
            "error {code}: {message}"
        ))),
        Err(e) => Err(e),
    };
    let sessions = u64::from(client.session.is_some());
    client.close();
    let mut discovery = report::DiscoveryReport {
        sessions,
        requests: client.requests_sent,
        outcome: String::new(),
        mirrored_tools: Vec::new(),
    };
    match surface {
        Ok(surface) => {
            discovery.outcome = format!("the server lists {}", surface.summary());
            if !quiet {
                eprintln!("mcpstorm run: {}", discovery.outcome);
            }
            surface.check(&plan.entries).map_err(RunError::Options)?;
            Ok((Some(surface.tools.unwrap_or_default()), discovery))
        }
        Err(e) => {
            discovery.outcome = format!("skipped: {e}");
            if !quiet {
                eprintln!("mcpstorm run: discovery {}", discovery.outcome);
            }
            Ok((None, discovery))
        }
    }
}

fn machine_info(nofile_hard: u64) -> MachineInfo {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    MachineInfo {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read("/proc/sys/kernel/osrelease"),
        nofile_hard,
        hostname: read("/proc/sys/kernel/hostname"),
    }
}

/// The throwaway certificate files of `run --tls`, removed when the run ends.
struct TempDir {
    dir: std::path::PathBuf,
    pki: crate::tls::server::ThrowawayPki,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every endpoint with the addresses it resolved to and the connections planned to each.
fn endpoint_reports(plan: &EnginePlan) -> Vec<report::EndpointReport> {
    let per_target = plan.connections_per_target();
    plan.endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| report::EndpointReport {
            url: endpoint.url.clone(),
            endpoint: endpoint.display(),
            addresses: plan
                .targets
                .iter()
                .zip(&per_target)
                .filter(|(t, _)| t.endpoint == index)
                .map(|(t, &connections)| report::AddressReport {
                    address: t.addr.to_string(),
                    connections,
                })
                .collect(),
        })
        .collect()
}

/// The message of a run whose baseline got no session: what the target did instead.
fn explain_no_session(reason: String, metrics: Option<&ShardMetrics>, plan: &EnginePlan) -> String {
    let target = plan
        .endpoints
        .first()
        .map(|e| e.url.clone())
        .unwrap_or_default();
    let path = plan.targets.first().map_or("/", |t| t.path.as_str());
    let Some(m) = metrics else {
        return reason;
    };
    let sent: Vec<String> = plan.headers.iter().map(|h| h.name.clone()).collect();
    if m.get(Counter::error_http_401) > 0 {
        return if sent.is_empty() {
            format!(
                "{target} answered 401 Unauthorized: it wants credentials; pass them with --header-env 'Authorization=VAR' (VAR holding e.g. \"Bearer …\")"
            )
        } else {
            format!(
                "{target} answered 401 Unauthorized to the headers sent ({}): are the credentials right?",
                sent.join(", ")
            )
        };
    }
    if m.get(Counter::error_http_403) > 0 {
        return format!(
            "{target} answered 403 Forbidden{}: the credentials are not allowed here",
            if sent.is_empty() {
                String::new()
            } else {
                format!(" to the headers sent ({})", sent.join(", "))
            }
        );
    }
    if m.get(Counter::error_tls_certificate) > 0 {
        return format!(
            "{target}: the server's TLS certificate failed verification ({}); give its CA with --cacert FILE, or --insecure to skip the check",
            plan.tls.as_ref().and_then(|t| t.cacert.as_ref()).map_or(
                "system roots".to_string(),
                |f| format!("--cacert {}", f.display())
            )
        );
    }
    if m.get(Counter::error_tls_alert)
        + m.get(Counter::error_tls_protocol)
        + m.get(Counter::error_tls_truncated)
        > 0
    {
        return format!(
            "{target}: TLS failed (alert {}, protocol error {}, record cut off {}): does the server speak TLS 1.2/1.3 with ALPN http/1.1 on that port?",
            m.get(Counter::error_tls_alert),
            m.get(Counter::error_tls_protocol),
            m.get(Counter::error_tls_truncated)
        );
    }
    if m.get(Counter::error_http_404) > 0 {
        return format!("POST {path} returned 404: is --path right? (target {target})");
    }
    if m.get(Counter::error_connect_refused) > 0 {
        return format!("connection refused by {target}: is the server running?");
    }
    if m.get(Counter::error_connect_timeout) > 0 {
        return format!("connecting to {target} timed out: is the address right?");
    }
    let causes: Vec<String> = m
        .errors_by_cause()
        .into_iter()
        .map(|(cause, count)| format!("{cause} {count}"))
        .collect();
    if causes.is_empty() {
        reason
    } else {
        format!(
            "{target} does not speak MCP over streamable HTTP: initialize failed ({}) — {reason}",
            causes.join(", ")
        )
    }
}
