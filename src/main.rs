//! Thin main: parse options, build a validated plan, run it, map the result to an exit code
//! (0 success, 1 an SLA failed, 2 could not run). All logic lives in the library.

use clap::Parser;
use mcpstorm::cli::{
    Cli, Command, DoctorArgs, InitArgs, ProbeArgs, ReportArgs, RunArgs, ServeArgs,
};
use mcpstorm::server::{self, ServeOptions, ServerPlan};
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Run(args) => match with_scenario_file(*args) {
            Ok(args) => run(args),
            Err(e) => {
                eprintln!("mcpstorm run: {e}");
                ExitCode::from(2)
            }
        },
        Command::Init(args) => init(args),
        Command::Probe(args) => probe(args),
        Command::Doctor(args) => doctor(args),
        Command::Report(args) => report(args),
        Command::Merge(args) => merge(args),
        Command::Kubernetes(args) => kubernetes(args),
        Command::Clock(args) => clock(args),
        Command::FaultGuard { spec } => {
            ExitCode::from(mcpstorm::netfault::guard::main(&spec).clamp(0, 255) as u8)
        }
    }
}

/// `run --config FILE`: the file's flags placed before the command line's, parsed again, so
/// one parser checks both and the command line overrides the file.
fn with_scenario_file(args: RunArgs) -> Result<RunArgs, String> {
    let Some(path) = &args.config else {
        return Ok(args);
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let file = mcpstorm::scenario::config::parse(&text)
        .map_err(|e| format!("--config {}: {e}", path.display()))?;
    let from_file = file
        .to_args(args.urls.is_empty())
        .map_err(|e| format!("--config {}: {e}", path.display()))?;
    let command_line: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let run_at = command_line
        .iter()
        .position(|a| a == "run")
        .ok_or("--config: no `run` on the command line")?;
    // The file's positional URLs sit behind its `--`; the command line's flags go first then.
    let (file_flags, file_urls) = match from_file.iter().position(|a| a == "--") {
        Some(at) => (&from_file[..at], &from_file[at..]),
        None => (&from_file[..], &from_file[..0]),
    };
    let argv = command_line[..=run_at]
        .iter()
        .cloned()
        .chain(file_flags.iter().map(Into::into))
        .chain(command_line[run_at + 1..].iter().cloned())
        .chain(file_urls.iter().map(Into::into));
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(args),
        }) => Ok(*args),
        Ok(_) => Err("--config: not a run".into()),
        Err(e) => Err(format!(
            "--config {} with the command line: {}",
            path.display(),
            e.render()
                .to_string()
                .trim_start_matches("error: ")
                .trim_end()
        )),
    }
}

/// `mcpstorm probe URL`: exit 0 every request answered, 1 some failed, 2 no session.
fn probe(args: ProbeArgs) -> ExitCode {
    let fail = |e: String| {
        eprintln!("mcpstorm probe: {e}");
        ExitCode::from(2)
    };
    let env = |var: &str| std::env::var(var).ok();
    let headers = match mcpstorm::engine::headers::collect(&args.header, &args.header_env, &env) {
        Ok(headers) => headers,
        Err(e) => return fail(e),
    };
    let local = mcpstorm::sys::interfaces::local_addresses();
    let is_local = |ip: std::net::IpAddr| local.contains(&ip);
    let mut net = mcpstorm::engine::plan::HostNet {
        resolve: &mut mcpstorm::engine::target::system_resolve,
        is_local: &is_local,
        can_bind: &mcpstorm::sys::interfaces::can_bind,
    };
    let target = match mcpstorm::engine::plan::resolve_urls(
        std::slice::from_ref(&args.url),
        &args.resolve,
        &args.allow_host,
        &mut net,
    ) {
        Ok((_, targets)) => match targets.into_iter().next() {
            Some(t) => t,
            None => return fail(format!("{} resolves to no address", args.url)),
        },
        Err(e) => return fail(e),
    };
    let tls = if target.tls_name.is_some() {
        let options = mcpstorm::tls::TlsOptions {
            cacert: args.cacert.clone(),
            insecure: args.insecure,
            no_resumption: true,
        };
        match mcpstorm::tls::client_config(&options, 1) {
            Ok(config) => Some(config),
            Err(e) => return fail(e),
        }
    } else {
        None
    };
    let mut client = mcpstorm::probe::client::ProbeClient::new(
        target,
        headers,
        tls,
        &args.protocol_version,
        args.timeout,
    );
    let mut tool_args = Vec::new();
    for spec in &args.args {
        let parsed = spec.split_once('=').and_then(|(name, json)| {
            serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .filter(|v| v.is_object())
                .map(|v| (name.to_string(), v))
        });
        match parsed {
            Some(pair) => tool_args.push(pair),
            None => return fail(format!("--args {spec:?}: want NAME={{JSON object}}")),
        }
    }
    let (surface, rows) = match mcpstorm::probe::walk(&mut client, &tool_args) {
        Ok(walked) => walked,
        Err(e) => return fail(format!("{}: no session: {e}", args.url)),
    };
    if args.json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "method": r.method, "name": r.name, "ok": r.ok,
                    "outcome": r.outcome, "latency_us": r.latency_us
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "url": args.url, "summary": surface.summary(), "requests": rows })
        );
    } else {
        print!("{}", mcpstorm::probe::render(&args.url, &surface, &rows));
    }
    if rows.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `mcpstorm init [FILE]`: the commented example scenario file.
fn init(args: InitArgs) -> ExitCode {
    let example = mcpstorm::scenario::config::EXAMPLE;
    if args.file.as_os_str() == "-" {
        print!("{example}");
        return ExitCode::SUCCESS;
    }
    if args.file.exists() && !args.force {
        eprintln!(
            "mcpstorm init: {} exists (--force replaces it)",
            args.file.display()
        );
        return ExitCode::from(2);
    }
    match std::fs::write(&args.file, example) {
        Ok(()) => {
            println!(
                "mcpstorm init: wrote {}; run it with: mcpstorm run --config {}",
                args.file.display(),
                args.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpstorm init: {}: {e}", args.file.display());
            ExitCode::from(2)
        }
    }
}

/// `mcpstorm report FILE.json [--html OUT]`: the saved run's text report again, its HTML if
/// asked, and the run's exit code (0 every SLA passed, 1 not, 2 unreadable file).
fn report(args: ReportArgs) -> ExitCode {
    let report = match mcpstorm::report::load(&args.file) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("mcpstorm report: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", mcpstorm::report::text::render(&report));
    if let Err(e) = mcpstorm::report::write_files(&report, None, args.html.as_deref()) {
        eprintln!("mcpstorm report: {e}");
        return ExitCode::from(2);
    }
    ExitCode::from(report.exit_code())
}

/// `mcpstorm merge`: one report from a run's segments (exit as `run`; 2 when they cannot be
/// merged).
fn merge(args: mcpstorm::cli::MergeArgs) -> ExitCode {
    let mut sla = mcpstorm::report::sla::SlaSpec::default();
    if let Err(e) = args.sla.iter().try_for_each(|text| sla.apply(text)) {
        eprintln!("mcpstorm merge: {e}");
        return ExitCode::from(2);
    }
    let reports = match &args.dir {
        Some(dir) => match reports_in(dir, args.segments, args.wait) {
            Ok(reports) => reports,
            Err(e) => {
                eprintln!("mcpstorm merge: {e}");
                return ExitCode::from(2);
            }
        },
        None => {
            let mut reports = Vec::with_capacity(args.files.len());
            for file in &args.files {
                match mcpstorm::report::load(file) {
                    Ok(report) => reports.push(report),
                    Err(e) => {
                        eprintln!("mcpstorm merge: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            reports
        }
    };
    let merged = match mcpstorm::report::merge::merge(&reports, &sla) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("mcpstorm {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", mcpstorm::report::text::render(&merged));
    if let Err(e) =
        mcpstorm::report::write_files(&merged, args.json.as_deref(), args.html.as_deref())
    {
        eprintln!("mcpstorm merge: {e}");
        return ExitCode::from(2);
    }
    ExitCode::from(merged.exit_code())
}

/// The segment reports in `dir` (`*.json` that are segments; a merged report there is not
/// one of them), waiting up to `wait` until `segments` distinct segments are present.
fn reports_in(
    dir: &std::path::Path,
    segments: Option<u32>,
    wait: std::time::Duration,
) -> Result<Vec<mcpstorm::report::RunReport>, String> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let mut reports = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let mut paths: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        for path in paths {
            // A report being written is not there yet (written whole, then renamed).
            if let Ok(report) = mcpstorm::report::load(&path)
                && report.segment.is_some()
            {
                reports.push(report);
            }
        }
        if let (Some(n), Some(other)) = (
            segments,
            reports
                .iter()
                .filter_map(|r| r.segment.as_ref())
                .find(|s| Some(s.count) != segments),
        ) {
            return Err(format!(
                "{}: reports of a run of {} segments, not {n}",
                dir.display(),
                other.count
            ));
        }
        let mut present: Vec<u32> = reports
            .iter()
            .filter_map(|r| r.segment.as_ref().map(|s| s.index))
            .collect();
        present.sort_unstable();
        present.dedup();
        let complete = segments.is_none_or(|n| present.len() as u32 >= n);
        if complete || std::time::Instant::now() >= deadline {
            if reports.is_empty() {
                return Err(format!("no segment report in {}", dir.display()));
            }
            return Ok(reports);
        }
        if mcpstorm::sys::signal::stop_requested() {
            return Err("interrupted while waiting for the segments' reports".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `mcpstorm clock`: a reference clock for the segments, until SIGINT/SIGTERM.
fn clock(args: mcpstorm::cli::ClockArgs) -> ExitCode {
    let socket = match mcpstorm::scenario::clock::bind(args.listen) {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("mcpstorm clock: {e}");
            return ExitCode::from(2);
        }
    };
    mcpstorm::sys::signal::install_stop_handler();
    mcpstorm::scenario::clock::serve(socket);
    eprintln!("mcpstorm clock: answering on {}", args.listen);
    while !mcpstorm::sys::signal::stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ExitCode::SUCCESS
}

/// `mcpstorm kubernetes`: the manifests of a segmented run, on stdout.
fn kubernetes(args: mcpstorm::cli::KubernetesArgs) -> ExitCode {
    use clap::Parser;
    let fail = |e: String| {
        eprintln!("mcpstorm kubernetes: {e}");
        ExitCode::from(2)
    };
    if let Err(e) = mcpstorm::kubernetes::check_name(&args.name) {
        return fail(e);
    }
    if args.segments == 0 || args.segments > mcpstorm::engine::segment::SEGMENTS_MAX {
        return fail(format!(
            "--segments 1 to {}",
            mcpstorm::engine::segment::SEGMENTS_MAX
        ));
    }
    for taken in [
        "--segment",
        "--segment-from-env",
        "--segments",
        "--start-at",
        "--clock-serve",
        "--clock-ref",
        "--json",
        "--html",
    ] {
        if args
            .run_args
            .iter()
            .any(|a| a == taken || a.starts_with(&format!("{taken}=")))
        {
            return fail(format!("{taken} is set by the manifests for each segment"));
        }
    }
    // The run's options are checked as `run` would read them, here, not in the pods.
    let mut argv = vec!["mcpstorm".to_string(), "run".to_string()];
    argv.extend(args.run_args.iter().cloned());
    let run = match mcpstorm::cli::Cli::try_parse_from(&argv) {
        Ok(mcpstorm::cli::Cli {
            command: Command::Run(run),
        }) => run,
        Ok(_) => return fail("the arguments after -- are run's".into()),
        Err(e) => return fail(format!("the run arguments: {e}")),
    };
    if run.urls.is_empty() {
        return fail("the segments of a run load one server: give its URL".into());
    }
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let options = mcpstorm::kubernetes::KubernetesOptions {
        name: args.name,
        namespace: args.namespace,
        image: args.image,
        segments: args.segments,
        run_args: args.run_args,
        connections: run.connections.map_or(1000, u64::from),
        shards: run.shards.unwrap_or(2) as u32,
        start_at_unix_s: now_s + args.start_in.as_secs(),
        results_claim: args.results_claim,
        merge_wait_s: args.merge_wait.as_secs(),
    };
    print!("{}", mcpstorm::kubernetes::manifests(&options));
    ExitCode::SUCCESS
}

/// `mcpstorm doctor`: exit 0 when nothing blocks the connection count, 1 when something does,
/// 2 when the options are wrong.
fn doctor(args: DoctorArgs) -> ExitCode {
    use mcpstorm::sys::doctor::{Need, Verdict, diagnose};
    let local = mcpstorm::sys::interfaces::local_addresses();
    let is_local = |ip: std::net::IpAddr| local.contains(&ip);
    let mut net = mcpstorm::engine::plan::HostNet {
        resolve: &mut mcpstorm::engine::target::system_resolve,
        is_local: &is_local,
        can_bind: &mcpstorm::sys::interfaces::can_bind,
    };
    // doctor opens no connection: every address may be diagnosed.
    let allow_all = ["0.0.0.0/0".to_string(), "::/0".to_string()];
    let mut targets: Vec<std::net::SocketAddr> =
        match mcpstorm::engine::plan::resolve_urls(&args.urls, &args.resolve, &allow_all, &mut net)
        {
            Ok((_, targets)) => targets.iter().map(|t| t.addr).collect(),
            Err(e) => {
                eprintln!("mcpstorm doctor: {e}");
                return ExitCode::from(2);
            }
        };
    if args.segments == 0 || args.segments > mcpstorm::engine::segment::SEGMENTS_MAX {
        eprintln!(
            "mcpstorm doctor: --segments 1 to {}",
            mcpstorm::engine::segment::SEGMENTS_MAX
        );
        return ExitCode::from(2);
    }
    let segmented = args.segments > 1;
    // Each host's need: the largest share (segment 0 takes the remainder first).
    let segment = mcpstorm::engine::segment::ExecutionSegment {
        index: 0,
        count: args.segments,
    };
    let connections = segment.share(args.connections);
    let connect_rate = segment.share(args.connect_rate);
    // Split over load hosts, the server is on none of them (`run` needs its URL then).
    let target_on_this_host = !segmented
        && targets
            .iter()
            .all(|t| t.ip().is_loopback() || is_local(t.ip()));
    targets.sort();
    targets.dedup();
    let source_ips = match args
        .source_ips
        .as_deref()
        .map(mcpstorm::engine::plan::parse_source_ips)
    {
        None => 1,
        Some(Ok(ips)) => ips.len() as u64,
        Some(Err(e)) => {
            eprintln!("mcpstorm doctor: {e}");
            return ExitCode::from(2);
        }
    };
    let streams = u64::from(mcpstorm::engine::plan::streams_among(
        connections.min(u64::from(u32::MAX)) as u32,
        args.streams,
    ));
    let need = Need {
        connections: connections + streams,
        streams,
        targets: targets.len() as u64,
        source_ips,
        connect_rate_per_s: connect_rate,
        // No URL = the embedded server here; a loopback or own address: its sockets live here.
        target_on_this_host,
    };
    let diagnosis = diagnose(&mcpstorm::sys::facts::read_facts(), &need);
    if args.json {
        match serde_json::to_string_pretty(&diagnosis) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("mcpstorm doctor: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        if segmented {
            println!(
                "per load host: segment 0 of {} (the largest share) holds {connections} of {} connections, opening {connect_rate} of {} sessions/s; the server on a host of its own",
                args.segments, args.connections, args.connect_rate
            );
        }
        print!("{}", diagnosis.render_text());
    }
    if diagnosis.verdict == Verdict::Block {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn run(args: RunArgs) -> ExitCode {
    let phased = args.phases == "all";
    let connections = match (args.connections, phased) {
        (Some(n), _) => n,
        (None, false) => 100,
        (None, true) if !args.urls.is_empty() => 1000,
        (None, true) => default_embedded_connections(args.connect_rate),
    };
    let env = |var: &str| std::env::var(var).ok();
    let headers = match mcpstorm::engine::headers::collect(&args.header, &args.header_env, &env) {
        Ok(headers) => headers,
        Err(e) => {
            eprintln!("mcpstorm run: {e}");
            return ExitCode::from(2);
        }
    };
    let legacy_sse = args.transport == "sse";
    let segment = match execution_segment(&args) {
        Ok(segment) => segment,
        Err(e) => {
            eprintln!("mcpstorm run: {e}");
            return ExitCode::from(2);
        }
    };
    let mut client_replies = mcpstorm::engine::client_reply::ClientReplies::default();
    for text in &args.client_reply {
        if let Err(e) = client_replies.add(text) {
            eprintln!("mcpstorm run: {e}");
            return ExitCode::from(2);
        }
    }
    if args.replicas.is_some() && !args.urls.is_empty() {
        eprintln!(
            "mcpstorm run: --replicas starts embedded servers (no URL); to load replicas of your own, give their URLs and --failover round-robin|least-loaded"
        );
        return ExitCode::from(2);
    }
    let failover = match (&args.failover, args.replicas) {
        (Some(policy), _) => match mcpstorm::engine::replicas::FailoverPolicy::parse(policy) {
            Ok(policy) => Some(policy),
            Err(e) => {
                eprintln!("mcpstorm run: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(n)) if n > 1 => Some(mcpstorm::engine::replicas::FailoverPolicy::RoundRobin),
        (None, _) => None,
    };
    let options = mcpstorm::engine::plan::RunOptions {
        urls: args.urls,
        connections,
        shards: args.shards,
        connect_rate_per_s: args.connect_rate,
        reconnect_rate_per_s: args.reconnect_rate,
        connect_timeout: args.connect_timeout,
        connect_retries: args.connect_retries,
        request_timeout: args.request_timeout,
        ramp_timeout: args.ramp_timeout,
        source_ips: args.source_ips,
        resolve: args.resolve,
        allow_hosts: args.allow_host,
        headers,
        tls: mcpstorm::tls::TlsOptions {
            cacert: args.cacert,
            insecure: args.insecure,
            no_resumption: args.tls_no_resumption,
        },
        embedded_tls: args.tls,
        mix: args.mix,
        tool: args.tool,
        tool_args_json: args.tool_args,
        args: args.args,
        seed: args.seed.unwrap_or_else(|| {
            // Any seed will do; the report prints it so the run can be repeated.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            nanos ^ (std::process::id() as u64) << 32
        }),
        protocol_version: if legacy_sse {
            mcpstorm::engine::plan::LEGACY_SSE_PROTOCOL_VERSION.into()
        } else {
            args.protocol_version
        },
        ring_slots: args.ring_slots,
        server_pid: args.server_pid,
        recv_multishot: args.recv == "multishot",
        streams_percent: if legacy_sse { 100 } else { args.streams },
        legacy_sse,
        embedded_notify_every: args.notify_every,
        failover,
        replica_of_url: Vec::new(),
        embedded_replicas: args.replicas.unwrap_or(1),
        client_replies,
        segment,
    };
    let fault_text = args.fault.unwrap_or_else(|| {
        if options.urls.is_empty() {
            "restart".into()
        } else {
            "drop:10%".into()
        }
    });
    let parsed = mcpstorm::scenario::logic::Fault::parse(&fault_text, args.down.as_secs_f64())
        .and_then(|fault| {
            let mut sla = mcpstorm::report::sla::SlaSpec::default();
            args.sla
                .iter()
                .try_for_each(|text| sla.apply(text))
                .map(|()| (fault, sla))
        })
        .and_then(|(fault, sla)| {
            for name in &args.skip {
                if !mcpstorm::report::PHASE_NAMES.contains(&name.as_str())
                    || name == "ramp_up"
                    || name == "cool_down"
                {
                    return Err(format!(
                        "--skip {name}: phases that can be skipped are baseline, sustained, failure_recovery, performance"
                    ));
                }
            }
            Ok((fault, sla))
        });
    let (fault, sla) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("mcpstorm run: {e}");
            return ExitCode::from(2);
        }
    };
    // Against the embedded server the rate is known to fit (20K req/s); against a URL
    // without --rate it is derived from what the server carries (a probe after the ramp);
    // `--phases sustained` is closed loop unless told.
    let rate_per_s = match (args.rate, phased, options.urls.is_empty()) {
        (Some(rate), _, _) => Some(rate),
        (None, false, _) => Some(0),
        (None, true, true) => Some(20_000),
        (None, true, false) => None,
    };
    // `--phases sustained`: the same driver and report, with the ramp and one load phase of
    // --duration (the baseline still proves the target speaks MCP, unmeasured).
    let mut skip = args.skip;
    if !phased {
        for name in ["baseline", "failure_recovery", "performance"] {
            if !skip.iter().any(|s| s == name) {
                skip.push(name.to_string());
            }
        }
    }
    let sustain = if phased { args.sustain } else { args.duration };
    let phased_options = mcpstorm::scenario::run::PhasedOptions {
        run: options,
        rate_per_s,
        sla,
        skip,
        baseline: args.baseline,
        sustain,
        fault,
        recovery_timeout: args.recovery_timeout,
        step: args.step,
        step_factor: args.step_factor,
        steps_max: args.steps_max,
        quiet: args.quiet,
        discovery: !args.no_discovery,
        start_at_unix_ms: args.start_at.map(|t| (t.max(0.0) * 1000.0) as u64),
        clock_serve: args.clock_serve,
        clock_ref: args.clock_ref,
    };
    let report = match mcpstorm::scenario::run::run(&phased_options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("mcpstorm run: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", mcpstorm::report::text::render(&report));
    if let Err(e) =
        mcpstorm::report::write_files(&report, args.json.as_deref(), args.html.as_deref())
    {
        eprintln!("mcpstorm run: {e}");
        return ExitCode::from(2);
    }
    if let Some(reason) = &report.could_not_run {
        eprintln!("mcpstorm run: {reason}");
    }
    ExitCode::from(report.exit_code())
}

/// `--segment I/N`, or `--segment-from-env VAR --segments N`; the whole run otherwise.
fn execution_segment(
    args: &RunArgs,
) -> Result<mcpstorm::engine::segment::ExecutionSegment, String> {
    use mcpstorm::engine::segment::ExecutionSegment;
    match (&args.segment, &args.segment_from_env, args.segments) {
        (Some(text), _, _) => ExecutionSegment::parse(text),
        (None, Some(var), Some(count)) => ExecutionSegment::from_env_value(
            var,
            std::env::var(var).ok().as_deref(),
            count,
            args.segment_base,
        ),
        (None, None, Some(_)) => Err("--segments N goes with --segment-from-env VAR".into()),
        _ => Ok(ExecutionSegment::WHOLE),
    }
}

/// The default session count against the embedded server: 100K when `doctor` finds nothing
/// on this host that blocks it, else the largest count that fits (said on stderr, with the
/// fix).
fn default_embedded_connections(connect_rate_per_s: u64) -> u32 {
    use mcpstorm::sys::doctor::{Need, Verdict, diagnose};
    const WANTED: u64 = 100_000;
    let need = Need {
        connections: WANTED,
        streams: 0,
        targets: WANTED.div_ceil(mcpstorm::engine::embedded::CONNECTIONS_PER_PORT as u64),
        source_ips: 1,
        connect_rate_per_s,
        target_on_this_host: true,
    };
    let diagnosis = diagnose(&mcpstorm::sys::facts::read_facts(), &need);
    if diagnosis.verdict != Verdict::Block {
        return WANTED as u32;
    }
    let fitting = diagnosis.connections_max_fitting.clamp(1, WANTED) as u32;
    eprintln!("mcpstorm run: this host cannot hold {WANTED} sessions; running {fitting} instead:");
    for check in diagnosis
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Block)
    {
        eprintln!(
            "  {}: {} (needs {}); fix: {}",
            check.name, check.value, check.needs, check.fix
        );
    }
    fitting
}

fn serve(args: ServeArgs) -> ExitCode {
    let options = ServeOptions {
        listen: args.listen,
        path: args.path,
        shards: args.shards,
        response_mode: args.response,
        max_sessions: args.max_sessions,
        max_connections: args.max_connections,
        session_idle_timeout_s: args.session_idle_timeout.as_secs().min(u32::MAX as u64) as u32,
        ring_slots: args.ring_slots,
        recv_buffers: args.recv_buffers,
        service_time: args.service_time,
        concurrency: args.concurrency,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        notify_every: args.notify_every,
        notify_to: args.notify_to,
        legacy_sse: args.legacy_sse,
    };
    let plan = match ServerPlan::from_options(&options) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("mcpstorm serve: {e}");
            return ExitCode::from(2);
        }
    };
    server::install_stop_handler();
    let shards = plan.shards;
    let rings = plan.rings_per_shard;
    let slots = plan.slots_per_ring;
    let path = options.path.clone();
    let scheme = if options.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let ready_file = args.ready_file;
    let result = server::run(plan, |bound| {
        for addr in bound {
            println!(
                "mcpstorm serve: listening on {scheme}://{addr}{path} ({shards} shards × {rings} rings × {slots} direct descriptors)"
            );
        }
        if let Some(file) = &ready_file {
            let text: String = bound.iter().map(|a| format!("{a}\n")).collect();
            // Written beside and renamed: a script polling for the file never reads half of it.
            let partial = file.with_extension("partial");
            if let Err(e) =
                std::fs::write(&partial, text).and_then(|()| std::fs::rename(&partial, file))
            {
                eprintln!(
                    "mcpstorm serve: cannot write --ready-file {}: {e}",
                    file.display()
                );
            }
        }
    });
    match result {
        Ok(summary) => {
            println!("{}", summary.line());
            for line in summary.explanations() {
                eprintln!("mcpstorm serve: {line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcpstorm serve: {e}");
            ExitCode::from(2)
        }
    }
}
