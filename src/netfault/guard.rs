//! The guard: a child process (`mcpstorm fault-guard SPEC`) that owns a network fault's rules
//! for the run, and its handle in the run (`Guard`). Part of `netfault/`.
//!
//! Why a process and not a `Drop`: a run may be SIGKILLed, crash or lose its terminal, and a
//! partition left installed cuts the host off its targets for good. The guard reads commands
//! on its stdin — a pipe from the run — and when that pipe closes, for whatever reason the run
//! ended, the kernel hands it EOF and it removes everything. It runs in a process group of its
//! own, so the terminal's Ctrl-C reaches the run (which reports and closes the pipe) and not
//! the guard first.
//!
//! The exchange is lines: the guard prints `ready` (or `error: …`) once it checked its tools
//! and bound its queue; then `on` installs (answer `ok`), `off` removes (answer `ok STATS`
//! with the delay line's figures as JSON). Any failure is answered `error: …` and the run
//! notes it; the guard never exits with rules installed.

use super::delay::{DelayStats, Delayer};
use super::{Impairment, NetFault, leftovers, rules};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long the run waits for the guard's answer to a command (rules are a few `nft`/
/// `iptables` calls; the xtables lock may be held briefly by another tool).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// First NFQUEUE number tried for the delay line (the delayer takes the next free one).
const FIRST_QUEUE: u16 = 19_700;

// ---- the run's side ---------------------------------------------------------------------

/// The run's handle on its guard. Dropping it closes the pipe: the guard removes the rules
/// and exits; the drop waits for that (bounded), so the rules are gone when the run ends.
pub struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    fault: NetFault,
    /// When the rules went in (`inject` answered), while they are in.
    installed_at: Option<Instant>,
}

/// What `heal` reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Heal {
    /// From the guard's `ok` to `on` to its `ok` to `off`, seconds.
    pub installed_s: f64,
    pub delay: Option<DelayStats>,
}

impl Guard {
    /// Starts the guard for `fault` and waits until it is ready (its tools found, stale rules
    /// of dead runs swept, the delay queue bound). `Err` says what is missing and its fix.
    pub fn start(fault: &NetFault) -> Result<Guard, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find mcpstorm: {e}"))?;
        let spec = serde_json::to_string(fault).map_err(|e| e.to_string())?;
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new(exe)
                .args(["fault-guard", &spec])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot start the fault guard: {e}"))?
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (sender, answers) = std::sync::mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::Builder::new()
                .name("fault-guard-reader".into())
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if sender.send(line).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
        }
        let mut guard = Guard {
            child,
            stdin,
            answers,
            fault: fault.clone(),
            installed_at: None,
        };
        let ready = guard.answer()?;
        if ready != "ready" {
            return Err(ready.strip_prefix("error: ").unwrap_or(&ready).to_string());
        }
        Ok(guard)
    }

    fn answer(&mut self) -> Result<String, String> {
        match self.answers.recv_timeout(ANSWER_TIMEOUT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "the fault guard did not answer within {ANSWER_TIMEOUT:?}"
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("the fault guard exited ({status})"))
            }
        }
    }

    fn ask(&mut self, command: &str) -> Result<String, String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the fault guard is gone".to_string())?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot reach the fault guard: {e}"))?;
        let answer = self.answer()?;
        match answer.strip_prefix("error: ") {
            Some(e) => Err(e.to_string()),
            None => Ok(answer),
        }
    }

    pub fn fault(&self) -> &NetFault {
        &self.fault
    }

    /// Installs the fault's rules; `Ok` once they are in the kernel.
    pub fn inject(&mut self) -> Result<(), String> {
        self.ask("on")?;
        self.installed_at = Some(Instant::now());
        Ok(())
    }

    /// Removes them; how long they were in, and the delay line's figures for latency.
    pub fn heal(&mut self) -> Result<Heal, String> {
        let Some(installed_at) = self.installed_at else {
            return Ok(Heal::default());
        };
        let answer = self.ask("off")?;
        self.installed_at = None;
        let stats = answer.strip_prefix("ok ").unwrap_or("");
        Ok(Heal {
            installed_s: installed_at.elapsed().as_secs_f64(),
            delay: serde_json::from_str(stats).ok(),
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // EOF: the guard removes what is installed and exits.
        self.stdin.take();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Stuck (an `nft` that hangs): killing it leaves the rules to `doctor`'s list.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the guard's side -------------------------------------------------------------------

/// What is installed while the fault is on: the line's thread and its stop flag (the rules
/// are named by the fault itself).
struct Installed {
    stop: Arc<AtomicBool>,
    line: std::thread::JoinHandle<std::io::Result<DelayStats>>,
}

/// `mcpstorm fault-guard SPEC`: the guard process. Returns its exit code.
pub fn main(spec: &str) -> i32 {
    // SAFETY: setting a signal's disposition to SIG_IGN touches no memory; the guard ignores
    // the terminal's signals (the run handles them and closes the pipe).
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let fault: NetFault = match serde_json::from_str(spec) {
        Ok(f) => f,
        Err(e) => {
            println!("error: the fault guard's spec: {e}");
            return 2;
        }
    };
    for swept in leftovers::sweep() {
        match swept {
            Ok(what) => eprintln!("mcpstorm: removed a leftover of a run that is gone: {what}"),
            Err(e) => eprintln!("mcpstorm: cannot remove a leftover fault rule: {e}"),
        }
    }
    // Taken by the first `on`.
    let mut delayer = match prepare(&fault) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("error: {e}");
            return 2;
        }
    };
    let _ = writeln!(std::io::stdout(), "ready").and_then(|()| std::io::stdout().flush());
    let mut installed: Option<Installed> = None;
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match line.trim() {
            "on" if installed.is_none() => match install(&fault, delayer.take()) {
                Ok(i) => {
                    installed = Some(i);
                    "ok".to_string()
                }
                Err(e) => format!("error: {e}"),
            },
            "on" => "ok".to_string(),
            "off" => match installed.take().map(|i| remove(&fault, i)) {
                Some(Ok(stats)) => format!(
                    "ok {}",
                    stats
                        .and_then(|s| serde_json::to_string(&s).ok())
                        .unwrap_or_default()
                ),
                Some(Err(e)) => format!("error: {e}"),
                None => "ok".to_string(),
            },
            other => format!("error: unknown guard command {other:?}"),
        };
        let mut out = std::io::stdout();
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    // The run is gone (or closed the pipe on purpose): nothing may stay installed.
    if let Some(i) = installed.take()
        && let Err(e) = remove(&fault, i)
    {
        eprintln!("mcpstorm: the fault guard could not remove its rules: {e}");
        return 1;
    }
    0
}

/// Checks the tools the fault needs and binds the line's queue.
fn prepare(fault: &NetFault) -> Result<Delayer, String> {
    if fault.impairment == Impairment::Partition {
        tool_works("nft", &["list", "tables"], "nftables")?;
    }
    for program in ["iptables", "ip6tables"] {
        let used = fault
            .targets
            .iter()
            .any(|t| t.is_ipv4() == (program == "iptables"));
        if used {
            tool_works(program, &["-w", "-t", "mangle", "-S"], "iptables")?;
        }
    }
    let (delay_us, jitter_us) = fault.impairment.delay_us();
    let delayer = Delayer::open(
        FIRST_QUEUE,
        Duration::from_micros(delay_us),
        Duration::from_micros(jitter_us),
        fault.impairment.drop_per_million(),
    )
    .map_err(|e| {
        format!(
            "cannot bind an NFQUEUE for the fault (needs root and nfnetlink_queue; queues {FIRST_QUEUE}… all taken or refused): {e}"
        )
    })?;
    Ok(delayer)
}

fn tool_works(program: &str, probe: &[&str], package: &str) -> Result<(), String> {
    let out = Command::new(program)
        .args(probe)
        .output()
        .map_err(|e| format!("--fault needs `{program}` ({e}): install the `{package}` package"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "--fault: `{program} {}` failed (root or CAP_NET_ADMIN needed): {}",
            probe.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `program args` (with `stdin_text` on its stdin); `Err` carries its stderr.
pub(super) fn run_checked(
    program: &str,
    args: &[String],
    stdin_text: Option<&str>,
) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin_text.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (stdin_text, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn install(fault: &NetFault, delayer: Option<Delayer>) -> Result<Installed, String> {
    // The line is bound once per guard; a second `on` after an `off` has none.
    let delayer = delayer.ok_or_else(|| "the fault's line is already used".to_string())?;
    let queue = delayer.queue();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    // The line runs before any rule sends it a packet.
    let line = std::thread::Builder::new()
        .name("fault-line".into())
        .spawn(move || delayer.run(&thread_stop))
        .map_err(|e| e.to_string())?;
    let installed = Installed { stop, line };
    if let Err(e) = install_rules(fault, queue) {
        let _ = remove(fault, installed);
        return Err(e);
    }
    Ok(installed)
}

/// A partition's nftables table, then the queue rules; stops at the first that fails.
fn install_rules(fault: &NetFault, queue: u16) -> Result<(), String> {
    if let Some(ruleset) = rules::nft_ruleset(fault) {
        run_checked("nft", &["-f".into(), "-".into()], Some(&ruleset))?;
    }
    for rule in rules::queue_rules(fault, queue) {
        run_checked(rule.program, &rule.args, None)?;
    }
    Ok(())
}

fn remove_nft(fault: &NetFault) -> Result<(), String> {
    match rules::nft_ruleset(fault) {
        Some(_) => run_checked("nft", &rules::nft_delete(fault.owner_pid), None),
        None => Ok(()),
    }
}

/// Removes the rules, then stops the line, which releases what it holds.
fn remove(fault: &NetFault, installed: Installed) -> Result<Option<DelayStats>, String> {
    let mut failed = remove_nft(fault).err();
    for step in rules::queue_removals(fault) {
        // `-D` of a jump never added fails harmlessly; the chain's own `-X` must not.
        if let Err(e) = run_checked(step.program, &step.args, None)
            && step.args.iter().any(|a| a == "-X")
        {
            failed.get_or_insert(e);
        }
    }
    installed.stop.store(true, Ordering::Relaxed);
    let stats = match installed.line.join() {
        Ok(Ok(stats)) => Some(stats),
        Ok(Err(e)) => {
            failed.get_or_insert(format!("the delay line failed: {e}"));
            None
        }
        Err(_) => {
            failed.get_or_insert("the delay line panicked".into());
            None
        }
    };
    match failed {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}
