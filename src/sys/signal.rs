//! SIGINT/SIGTERM: one process-wide stop flag that `serve`'s shards and `run`'s coordinator
//! both poll. Part of `sys/`: the only code here that touches signal dispositions.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGINT/SIGTERM; every loop that must end on Ctrl-C checks it at least once per tick.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the SIGINT/SIGTERM handler that sets [`STOP`].
pub fn install_stop_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
    // sigaction struct lives on this stack for the duration of the calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_stop_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
    }
}

/// SIGINT/SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}
