//! Live progress of a phased run on stderr, once a second: one updating line on a terminal,
//! plain lines otherwise, nothing with `--quiet`. Part of `scenario/`; reads only what the
//! driver and the timeline already have.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    quiet: bool,
    tty: bool,
    next: Instant,
    printed: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress {
            quiet,
            tty: std::io::stderr().is_terminal(),
            next: Instant::now() + Duration::from_secs(1),
            printed: false,
        }
    }

    pub fn tick(
        &mut self,
        phase: &str,
        t_s: f64,
        held: u64,
        answering: u64,
        feed: &crate::engine::TimelineFeed,
    ) {
        if self.quiet || Instant::now() < self.next {
            return;
        }
        self.next += Duration::from_secs(1);
        let last = feed.samples().last();
        let line = super::logic::progress_line(
            phase,
            t_s,
            held,
            answering,
            last.map_or(0.0, |s| s.throughput_rps),
            last.filter(|s| s.throughput_rps > 0.0)
                .map(|s| s.latency_us_p99),
            last.map_or(0, |s| s.errors),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if self.tty {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
        self.printed = true;
    }

    pub fn finish(&mut self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
}
