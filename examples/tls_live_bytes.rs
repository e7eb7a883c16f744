//! Live heap bytes of one established TLS connection (client and server side of
//! mcpstorm's TLS layer), counted by a wrapping allocator over N connection pairs
//! handshaken in memory. A measurement, not a test: `cargo run --release --example
//! tls_live_bytes [-- N]`.

use mcpstorm::tls::{TlsConn, TlsOptions, client_config, server_name};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = std::env::temp_dir().join(format!("mcpstorm-live-bytes-{}", std::process::id()));
    let pki = mcpstorm::tls::server::throwaway_pki(&dir).unwrap();
    let server_config =
        mcpstorm::tls::server::server_config(&pki.cert_file, &pki.key_file).unwrap();
    let options = TlsOptions {
        cacert: Some(pki.ca_file.clone()),
        insecure: false,
        no_resumption: false,
    };
    let client_config = client_config(&options, n).unwrap();
    let (mut clients, mut servers) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut tickets_before = 0isize;
    for i in 0..n {
        if i == 1 {
            tickets_before = LIVE.load(Ordering::Relaxed);
        }
        let mut c = TlsConn::client(&client_config, server_name("localhost").unwrap()).unwrap();
        let mut s = TlsConn::server(&server_config).unwrap();
        let mut plain = Vec::new();
        for _ in 0..6 {
            let mut to_server = Vec::new();
            c.take_output(&mut to_server);
            s.receive(&mut to_server, &mut plain).unwrap();
            let mut to_client = Vec::new();
            s.take_output(&mut to_client);
            c.receive(&mut to_client, &mut plain).unwrap();
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        clients.push(c);
        servers.push(s);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let per_pair = (after - tickets_before) / (n as isize - 1);
    drop(servers);
    let after_servers = LIVE.load(Ordering::Relaxed);
    let server_bytes = (after - after_servers) / n as isize;
    drop(clients);
    let after_clients = LIVE.load(Ordering::Relaxed);
    let client_bytes = (after_servers - after_clients) / n as isize;
    println!(
        "{n} pairs: per pair {per_pair} B live; server side {server_bytes} B, client side {client_bytes} B; tickets left in the client store {} B/conn",
        (after_clients - tickets_before).max(0) / n as isize
    );
    let _ = std::fs::remove_dir_all(&dir);
}
