//! Per-shard measurements: latency histograms (µs, 1 µs … 1 h, 3 significant digits) and a
//! counter for every outcome. Part of `engine/`. A shard owns its `ShardMetrics` outright
//! (plain integers, no atomics on the hot path) and hands it to the coordinator when it ends;
//! the coordinator merges shards with `Histogram::add`.

use hdrhistogram::Histogram;

/// Largest latency recorded: one hour in µs (larger values are clamped to it).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Every outcome the engine counts. Names are stable: they appear in the JSON report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        #[repr(usize)]
        pub enum Counter { $( $(#[$doc])* $name ),* }

        pub const COUNTERS_LEN: usize = [$(stringify!($name)),*].len();

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$name),*];
            pub fn name(self) -> &'static str {
                match self { $(Counter::$name => stringify!($name)),* }
            }
        }
    };
}

counters! {
    connect_attempts,
    /// Connect attempts repeated after a failure (with a jittered exponential backoff).
    connect_retries,
    connects_ok,
    /// 503 answers waited out on their connection (Retry-After or a jittered backoff).
    busy_backoffs,
    sessions_established,
    /// Sessions ended by `DELETE` in cool_down (answered 200/202/204).
    sessions_deleted,
    /// The server closed an idle keep-alive connection: reconnected, session kept.
    reconnects_idle_close,
    /// The server answered with `Connection: close` (or HTTP/1.0): reconnected, session kept.
    reconnects_connection_close,
    /// Requests the schedule intended in this segment (open model), or that went out (closed
    /// loop): always `requests_sent − probes_sent + requests_dropped`.
    requests_offered,
    requests_sent,
    /// Pings sent at once to a session back from a lost connection, outside the schedule, so
    /// recovery measures the server and not the session's turn in the load (in `requests_sent`).
    probes_sent,
    /// Offered requests never sent, by cause (the three `dropped_*` counters add up to it).
    requests_dropped,
    /// Due while every session had a request in flight (HTTP/1.1 carries one at a time): the
    /// server is not keeping up with the offered rate. Not the generator's fault.
    dropped_no_idle_session,
    /// Due more than a second before the generator got to them (its own lag or send window).
    dropped_generator_behind,
    /// Due but unsent when their phase (segment) ended: the next phase starts a schedule of
    /// its own instead of inheriting a backlog.
    dropped_phase_ended,
    /// Answers to requests of a segment whose figures were already handed over (older than the
    /// one before): counted here, their latency in no histogram.
    answers_after_their_segment,
    requests_ok,
    /// JSON-RPC error object in a response.
    requests_rpc_error,
    /// A result with `isError: true` (a tool call that failed).
    requests_is_error,
    // Errors by cause. Request failures are also counted in `requests_failed`.
    requests_failed,
    error_connect_refused,
    error_connect_timeout,
    error_connect_other,
    error_socket,
    error_setsockopt,
    error_bind,
    /// 404: the server forgot the session; the request failed and a new session is opened.
    error_session_lost,
    /// 404 to initialize: nothing at that path (a wrong `--path`/URL).
    error_http_404,
    /// The server's certificate failed verification (`--cacert`, `--insecure`).
    error_tls_certificate,
    /// The server sent a fatal TLS alert.
    error_tls_alert,
    /// A malformed or undecryptable TLS record, or a message out of order.
    error_tls_protocol,
    /// The TLS handshake did not finish within `--connect-timeout`.
    error_tls_handshake_timeout,
    /// The server closed the connection in the middle of a TLS record.
    error_tls_truncated,
    /// 401: the server wants credentials (`--header-env 'Authorization=VAR'`).
    error_http_401,
    /// 403: the credentials sent are not allowed.
    error_http_403,
    error_http_4xx,
    error_http_5xx,
    error_http_other,
    error_http_503,
    error_not_rpc,
    error_stream_without_response,
    error_id_mismatch,
    error_missing_session_id,
    error_response_head,
    error_response_chunked,
    error_response_too_large,
    error_session_id_too_long,
    error_response_truncated,
    error_unexpected_bytes,
    error_request_timeout,
    error_reset,
    error_recv,
    error_send,
    error_closed_mid_request,
    error_initialize_failed,
    error_unfinished_at_end,
    /// A `DELETE` of a session answered with something else than 200/202/204.
    error_delete_failed,
    /// Connections closed on purpose by the `drop:X%` fault (they reconnect, session kept).
    error_fault_dropped,
    /// Connections without a session (never opened, or still in their handshake) when the
    /// ramp hit `--ramp-timeout`.
    error_ramp_timeout,
    recv_buffers_exhausted,
    /// TLS handshakes that completed in full, and those that resumed a session ticket.
    tls_handshakes_full,
    tls_handshakes_resumed,
    /// The server ended a TLS connection with close_notify.
    tls_close_notify_received,
    /// Receive requests submitted (multishot: about one per connection; armed: one or more
    /// per request).
    recv_arms,
    sse_priming_events,
    /// Requests sent more than 1 ms after their intended time (open model only).
    late_sends,
    /// Requests in flight on a connection that broke (reset, closed, timed out, dropped by a
    /// fault): lost, and also counted in `requests_failed` under their cause.
    requests_connection_lost,
    // The failure_recovery fault (`shard/fault.rs`): requests in flight while it was on (sent
    // before it healed), by how they ended.
    fault_requests_answered_during,
    /// Answered after the fault healed: they stalled through it and came back late.
    fault_requests_answered_after_heal,
    fault_requests_timed_out,
    /// Lost with their connection (reset, closed, dropped by the fault).
    fault_requests_connection_lost,
    fault_requests_failed_other,
    /// Held sessions' connections that broke while the fault was on (each reconnected).
    fault_connections_broken,
    /// Replicas (`--failover`, `--replicas`): held sessions whose replica refused or timed out
    /// their connect and that moved to another replica (a new session there).
    sessions_failed_over,
    /// Loop turns where requests waited for the send window (SEND_BUFS_MAX per shard).
    send_window_full,
    spill_uses,
    bytes_sent,
    bytes_received,
    // Server-to-client streams (`--streams`), apart from the requests' figures.
    /// Streams the server accepted (200 `text/event-stream`), reopens included.
    streams_opened,
    /// Of those, streams opened again after an earlier one of the session ended.
    streams_reopened,
    /// The server offers no stream (405, as the spec lets it): not retried.
    streams_not_offered,
    /// The server ended an open stream in order (last chunk or EOF): reopened.
    streams_ended_by_server,
    /// Events carrying a JSON-RPC notification, by method in `notifications_by_method`.
    notifications_received,
    /// Of those, stamped with the server's send time (`_meta["mcpstorm/sentAtUs"]`): their
    /// fan-out latency is in `notification_latency`.
    notifications_timed,
    /// Server-to-client requests (ping, roots/list, sampling, elicitation) on a stream.
    stream_requests_received,
    /// `retry:` fields (the delay honoured before the next reopen).
    stream_retry_hints,
    // Stream failures by cause (`stream_errors_by_cause`); each is followed by a reopen after
    // a backoff while the run loads.
    /// Connect chain failed (refused, timed out, socket, bind).
    stream_error_connect,
    stream_error_tls,
    /// The open request was answered with another status than 200 or 405.
    stream_error_refused,
    /// 404 to the open request: the session is gone (the stream waits for the next one).
    stream_error_session_lost,
    /// A 200 that is no event stream, or a malformed response head.
    stream_error_head,
    /// No response head within `--request-timeout`.
    stream_error_timeout,
    /// Broken chunked framing or an event past 64 KiB: the stream is closed.
    stream_error_framing,
    /// An event whose data is no JSON-RPC message, or a response nobody asked for on it.
    stream_error_malformed_event,
    /// Reset or a receive/send error on the stream's connection.
    stream_error_reset,
    /// `--transport sse`: an `endpoint` event that is no request target (not a path, too
    /// long for a session id).
    stream_error_endpoint,
    /// `--transport sse`: `endpoint` events received (one per stream opened).
    legacy_endpoints_received,
    /// `--transport sse`: a reply on a stream whose session awaited none (late, after its
    /// request timed out or failed).
    legacy_replies_unmatched,
    /// `--transport sse`: sessions lost because their stream ended (the server forgets a
    /// session with its stream); each initializes again on a new one.
    legacy_sessions_lost_with_stream,
    // Server-to-client requests and the client's answers (`reply_conn.rs`).
    /// Requests the server sent on a POST's response stream (those on `--streams` streams are
    /// `stream_requests_received`); every one of both is answered.
    server_requests_on_responses,
    /// Answers POSTed (retries included).
    client_replies_sent,
    /// Answers the server took (2xx).
    client_replies_accepted,
    /// Answers the server answered with another status.
    client_replies_refused,
    /// Answers never taken: lost twice with their connection, queued past the ring's bound,
    /// given up after connects kept failing, or still waiting when the run ended.
    client_replies_lost,
    // Reply-connection failures by cause (`client_reply_errors_by_cause`).
    client_reply_error_connect,
    client_reply_error_tls,
    client_reply_error_timeout,
    client_reply_error_reset,
    /// A malformed answer to an answer (or bytes when none was in flight).
    client_reply_error_response,
}

pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants within hdrhistogram's limits: this cannot fail.
    let mut histogram =
        Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds");
    // Write every counter once so its pages are resident now: a histogram is a fixed cost of
    // the shard, and faulting it in lazily would show up as per-connection memory growth.
    histogram.reset();
    histogram
}

/// Latency pair for one kind of request: from the intended send time (corrected) and from the
/// actual send (uncorrected).
pub struct LatencyPair {
    pub corrected: Histogram<u64>,
    pub uncorrected: Histogram<u64>,
}

impl LatencyPair {
    fn new() -> LatencyPair {
        LatencyPair {
            corrected: new_histogram(),
            uncorrected: new_histogram(),
        }
    }

    pub fn add(&mut self, other: &LatencyPair) {
        // Same bounds on both sides: `add` only fails on a range mismatch.
        self.corrected
            .add(&other.corrected)
            .expect("histograms share bounds");
        self.uncorrected
            .add(&other.uncorrected)
            .expect("histograms share bounds");
    }
}

pub struct ShardMetrics {
    pub counters: [u64; COUNTERS_LEN],
    pub connect: Histogram<u64>,
    /// initialize sent → 202 for notifications/initialized (the whole handshake).
    pub initialize: Histogram<u64>,
    /// TCP connected → TLS handshake done (`https://`).
    pub tls_handshake: Histogram<u64>,
    /// Per load entry of the mix (index into `EnginePlan::entries`; grown as entries are
    /// first recorded).
    pub methods: Vec<LatencyPair>,
    /// Failed answers per load entry (index as `methods`; grown as failures come).
    pub methods_failed: Vec<u64>,
    /// All load methods together.
    pub all: LatencyPair,
    /// How late the loop woke after its deadline.
    pub loop_lag: Histogram<u64>,
    /// How late each scheduled send went out after its intended time while a session was idle
    /// to take it (open model), µs (≥ 1): judged against the phase's own latency.
    pub send_lag: Histogram<u64>,
    /// Most sessions this shard held at once.
    pub held_max: u64,
    /// Connections that got their first session.
    pub established: u64,
    /// Connections that ended the ramp without a session.
    pub failed: u64,
    /// Time from the ramp start to this shard's last session established.
    pub ramp_ns: u64,
    /// Completions the kernel had to hold back because a CQ was full (all rings).
    pub cq_overflows: u64,
    /// Longest SQ backlog of any ring, and how many SQEs went through a backlog.
    pub sq_backlog_max: u64,
    pub sq_backlog_pushes: u64,
    /// Corrected latencies of the current second (see `timeline.rs`); swapped out each second.
    pub second: Histogram<u64>,
    /// Connect-chain failures by (operation, errno), so a rare failure names its cause.
    /// Bounded: [`ERRNO_KINDS_MAX`] distinct pairs, the rest counted under errno 0.
    pub errnos: Vec<(&'static str, i32, u64)>,
    /// JSON-RPC error answers by code (-32601 method not found, -32602 invalid params, …).
    /// Bounded like `errnos`: [`ERRNO_KINDS_MAX`] distinct codes, the rest under code 0.
    pub rpc_error_codes: Vec<(i64, u64)>,
    /// Server send time → received, of every notification stamped with it (`--streams`).
    pub notification_latency: Histogram<u64>,
    /// The same, of the current second (`timeline.rs`); swapped out each second.
    pub second_notification: Histogram<u64>,
    /// Notifications received by method; bounded like `errnos` (the rest under "other").
    pub notifications_by_method: Vec<(Box<str>, u64)>,
    /// Most streams this shard held open at once.
    pub streams_held_max: u64,
    /// Server-to-client request received → the server took the client's answer (2xx), µs.
    pub client_reply_latency: Histogram<u64>,
    /// Server-to-client requests by method (both kinds); bounded like `errnos`.
    pub server_requests_by_method: Vec<(Box<str>, u64)>,
}

/// Adds one to `name`'s count; past [`ERRNO_KINDS_MAX`] names, under "other".
fn count_by_name(counts: &mut Vec<(Box<str>, u64)>, name: &str) {
    if let Some(entry) = counts.iter_mut().find(|e| &*e.0 == name) {
        entry.1 += 1;
        return;
    }
    let key = if counts.len() >= ERRNO_KINDS_MAX {
        "other"
    } else {
        name
    };
    match counts.iter_mut().find(|e| &*e.0 == key) {
        Some(entry) => entry.1 += 1,
        None => counts.push((key.into(), 1)),
    }
}

/// Adds `theirs` counts by name into `mine`.
fn merge_by_name(mine: &mut Vec<(Box<str>, u64)>, theirs: &[(Box<str>, u64)]) {
    for (name, count) in theirs {
        match mine.iter_mut().find(|e| e.0 == *name) {
            Some(entry) => entry.1 += count,
            None => mine.push((name.clone(), *count)),
        }
    }
}

/// Distinct (operation, errno) pairs kept per shard.
pub const ERRNO_KINDS_MAX: usize = 32;

impl Default for ShardMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardMetrics {
    pub fn new() -> ShardMetrics {
        ShardMetrics {
            counters: [0; COUNTERS_LEN],
            connect: new_histogram(),
            initialize: new_histogram(),
            tls_handshake: new_histogram(),
            methods: Vec::new(),
            methods_failed: Vec::new(),
            all: LatencyPair::new(),
            loop_lag: new_histogram(),
            send_lag: super::timeline::new_second_histogram(),
            held_max: 0,
            established: 0,
            failed: 0,
            ramp_ns: 0,
            errnos: Vec::with_capacity(ERRNO_KINDS_MAX + 1),
            rpc_error_codes: Vec::with_capacity(ERRNO_KINDS_MAX + 1),
            second: super::timeline::new_second_histogram(),
            cq_overflows: 0,
            sq_backlog_max: 0,
            sq_backlog_pushes: 0,
            notification_latency: new_histogram(),
            second_notification: super::timeline::new_second_histogram(),
            notifications_by_method: Vec::new(),
            streams_held_max: 0,
            client_reply_latency: new_histogram(),
            server_requests_by_method: Vec::new(),
        }
    }

    /// Counts a notification received on a stream under its method.
    pub fn record_notification(&mut self, method: &str) {
        self.incr(Counter::notifications_received);
        count_by_name(&mut self.notifications_by_method, method);
    }

    /// Counts a server-to-client request under its method.
    pub fn record_server_request(&mut self, method: &str) {
        count_by_name(&mut self.server_requests_by_method, method);
    }

    #[inline]
    pub fn incr(&mut self, counter: Counter) {
        self.counters[counter as usize] += 1;
    }

    #[inline]
    pub fn add_to(&mut self, counter: Counter, value: u64) {
        self.counters[counter as usize] += value;
    }

    pub fn record_errno(&mut self, op: &'static str, errno: i32) {
        let errno = if self.errnos.len() >= ERRNO_KINDS_MAX
            && !self.errnos.iter().any(|e| e.0 == op && e.1 == errno)
        {
            0
        } else {
            errno
        };
        match self.errnos.iter_mut().find(|e| e.0 == op && e.1 == errno) {
            Some(entry) => entry.2 += 1,
            None => self.errnos.push((op, errno, 1)),
        }
    }

    pub fn record_rpc_error_code(&mut self, code: i64) {
        let code = if self.rpc_error_codes.len() >= ERRNO_KINDS_MAX
            && !self.rpc_error_codes.iter().any(|e| e.0 == code)
        {
            0
        } else {
            code
        };
        match self.rpc_error_codes.iter_mut().find(|e| e.0 == code) {
            Some(entry) => entry.1 += 1,
            None => self.rpc_error_codes.push((code, 1)),
        }
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize]
    }

    /// Records a completed load request (also in the current second's histogram).
    pub fn record_request(
        &mut self,
        entry: u8,
        latency_corrected_us: u64,
        latency_uncorrected_us: u64,
    ) {
        self.record_latency(entry, latency_corrected_us, latency_uncorrected_us);
        self.second
            .saturating_record(latency_corrected_us.clamp(1, LATENCY_US_MAX));
    }

    /// Counts a failed answer (or a request lost) of load entry `entry`.
    pub fn record_entry_failure(&mut self, entry: u8) {
        let index = entry as usize;
        if index >= self.methods_failed.len() {
            self.methods_failed.resize(index + 1, 0);
        }
        self.methods_failed[index] += 1;
    }

    /// Records a completed load request in the per-method and overall histograms only (a
    /// request of an earlier segment: the current second is in another `ShardMetrics`).
    pub fn record_latency(
        &mut self,
        entry: u8,
        latency_corrected_us: u64,
        latency_uncorrected_us: u64,
    ) {
        let corrected = latency_corrected_us.clamp(1, LATENCY_US_MAX);
        let uncorrected = latency_uncorrected_us.clamp(1, LATENCY_US_MAX);
        let index = entry as usize;
        if index >= self.methods.len() {
            self.methods.resize_with(index + 1, LatencyPair::new);
        }
        let pair = &mut self.methods[index];
        pair.corrected.saturating_record(corrected);
        pair.uncorrected.saturating_record(uncorrected);
        self.all.corrected.saturating_record(corrected);
        self.all.uncorrected.saturating_record(uncorrected);
    }

    pub fn merge(&mut self, other: &ShardMetrics) {
        for (mine, theirs) in self.counters.iter_mut().zip(other.counters.iter()) {
            *mine += theirs;
        }
        let add = |mine: &mut Histogram<u64>, theirs: &Histogram<u64>| {
            mine.add(theirs).expect("histograms share bounds");
        };
        add(&mut self.connect, &other.connect);
        add(&mut self.initialize, &other.initialize);
        add(&mut self.tls_handshake, &other.tls_handshake);
        add(&mut self.loop_lag, &other.loop_lag);
        add(&mut self.send_lag, &other.send_lag);
        if other.methods_failed.len() > self.methods_failed.len() {
            self.methods_failed.resize(other.methods_failed.len(), 0);
        }
        for (mine, theirs) in self.methods_failed.iter_mut().zip(&other.methods_failed) {
            *mine += theirs;
        }
        if other.methods.len() > self.methods.len() {
            self.methods
                .resize_with(other.methods.len(), LatencyPair::new);
        }
        for (mine, theirs) in self.methods.iter_mut().zip(other.methods.iter()) {
            mine.add(theirs);
        }
        self.all.add(&other.all);
        for &(op, errno, count) in &other.errnos {
            match self.errnos.iter_mut().find(|e| e.0 == op && e.1 == errno) {
                Some(entry) => entry.2 += count,
                None => self.errnos.push((op, errno, count)),
            }
        }
        for &(code, count) in &other.rpc_error_codes {
            match self.rpc_error_codes.iter_mut().find(|e| e.0 == code) {
                Some(entry) => entry.1 += count,
                None => self.rpc_error_codes.push((code, count)),
            }
        }
        add(&mut self.notification_latency, &other.notification_latency);
        merge_by_name(
            &mut self.notifications_by_method,
            &other.notifications_by_method,
        );
        add(&mut self.client_reply_latency, &other.client_reply_latency);
        merge_by_name(
            &mut self.server_requests_by_method,
            &other.server_requests_by_method,
        );
        self.streams_held_max += other.streams_held_max;
        self.held_max += other.held_max;
        self.established += other.established;
        self.cq_overflows += other.cq_overflows;
        self.sq_backlog_max = self.sq_backlog_max.max(other.sq_backlog_max);
        self.sq_backlog_pushes += other.sq_backlog_pushes;
        self.failed += other.failed;
        self.ramp_ns = self.ramp_ns.max(other.ramp_ns);
    }

    /// Stream failures by cause (only causes that occurred).
    pub fn stream_errors_by_cause(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("stream_error_") && self.get(**c) > 0)
            .map(|c| (&c.name()["stream_error_".len()..], self.get(*c)))
            .collect()
    }

    /// Reply-connection failures by cause (only causes that occurred).
    pub fn client_reply_errors_by_cause(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("client_reply_error_") && self.get(**c) > 0)
            .map(|c| (&c.name()["client_reply_error_".len()..], self.get(*c)))
            .collect()
    }

    /// Request failures by cause, for `errors_by_cause` (only causes that occurred).
    pub fn errors_by_cause(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .filter(|c| c.name().starts_with("error_") && self.get(**c) > 0)
            .map(|c| (&c.name()["error_".len()..], self.get(*c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counters_and_histograms() {
        let mut a = ShardMetrics::new();
        let mut b = ShardMetrics::new();
        a.incr(Counter::requests_ok);
        b.add_to(Counter::requests_ok, 2);
        b.incr(Counter::error_reset);
        b.record_errno("connect", libc::ECONNREFUSED);
        a.record_errno("connect", libc::ECONNREFUSED);
        a.record_request(0, 100, 90);
        b.record_request(2, 10_000_000_000, 0);
        a.merge(&b);
        assert_eq!(a.get(Counter::requests_ok), 3);
        assert_eq!(a.all.corrected.len(), 2);
        assert_eq!(a.methods[0].corrected.len(), 1);
        assert_eq!(a.methods[2].corrected.len(), 1);
        // Clamped, not dropped.
        assert!(a.all.corrected.max() >= LATENCY_US_MAX - LATENCY_US_MAX / 1000);
        assert_eq!(a.all.uncorrected.min(), 1);
        assert_eq!(a.errors_by_cause(), vec![("reset", 1)]);
        assert_eq!(a.errnos, vec![("connect", libc::ECONNREFUSED, 2)]);
        for errno in 1..100 {
            a.record_errno("bind", errno);
        }
        assert_eq!(a.errnos.len(), ERRNO_KINDS_MAX + 1);
        b.record_rpc_error_code(-32602);
        b.record_rpc_error_code(-32602);
        a.record_rpc_error_code(-32601);
        a.merge(&b);
        assert_eq!(a.rpc_error_codes, vec![(-32601, 1), (-32602, 2)]);
    }

    #[test]
    fn counter_names_are_unique() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), COUNTERS_LEN);
    }
}
