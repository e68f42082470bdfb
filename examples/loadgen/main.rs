//! `loadgen`: a load generator for the relay, cheap enough in CPU to run beside it on a
//! small machine (issue 14).
//!
//! What it measures: every recipient account is logged in over IMAP first (one IDLE
//! connection per account, INBOX selected); then `--connections` SMTP connections send
//! `--messages` PGP/MIME-shaped messages of about `--size` bytes, each connection
//! authenticating once and reusing its session, round-robin over sender/recipient
//! pairs. Per message it records the *accept latency* (final dot written → reply to it
//! read) and the *delivered latency* (final dot written → the recipient's IDLE
//! connection reads the `* n EXISTS` that counts it). Messages to one account are
//! matched with that account's EXISTS increases in order: the i-th message (by the time
//! its final dot left) with the i-th new message the account sees, which is exact when
//! messages to one account do not overtake each other. It reports the accepted and
//! delivered rates over the run (first message started → last reply, → last EXISTS),
//! the latency percentiles, the errors, and its own CPU time per message.
//!
//! ```sh
//! cargo build --release --example relay --example loadgen
//! # the relay on loadgen's default ports, with send limits that do not refuse the load
//! # (the default is 60/min, burst 10 per sender):
//! cp load/loadgen/results/2026-12-07/relay.ini /tmp/lg.ini
//! echo 'mailboxes_dir = /tmp/lg-data/mail' >> /tmp/lg.ini
//! target/release/examples/relay --config /tmp/lg.ini --data-dir /tmp/lg-data &
//! target/release/examples/loadgen --insecure --connections 8 --messages 2000 \
//!     --accounts 4 --size 4096 --json /tmp/loadgen.json
//! ```
//!
//! (Run without arguments, the relay's embedded default listens on the same ports but
//! keeps the default send limits: loadgen then reports the `450` refusals.)
//!
//! Options (defaults in brackets):
//!
//! * `--host H` [127.0.0.1]: loopback only, unless `--allow-remote`.
//! * `--domain D` [_chat.localhost]: the relay's mail domain (accounts are `x@D`).
//! * `--port-submission P` [2465]: submissions, implicit TLS, AUTH as the sender.
//! * `--port-smtp P`: instead, port 25 style: STARTTLS, no AUTH, senders
//!   `…@--remote-domain` [loadgen.localhost] (the relay must not check their DKIM:
//!   `CHATMAIL_SKIP_DKIM=1`).
//! * `--imaps-port P` [2993]. `--imap-host H` [`--host`]: the IDLE sessions on another
//!   address, such as another relay node sharing the storage (cross-node wake-up).
//! * `--connections N` [2] (≤ 10,000), `--messages M` [200] (≤ 1,000,000),
//!   `--accounts K` [4] (≤ 20,000; 9-character local parts, created at first login).
//! * `--size BYTES` [4096] (≤ 25 MiB; about 1 KB at the least).
//! * `--insecure`: accept any certificate (the relay's self-signed one).
//! * `--json FILE`: write the figures as JSON.
//! * `--timeout SECS` [600]: a bound on the whole run (goodbyes after it take at most
//!   15 s more);
//!   `--io-timeout SECS` [30]: on each connection step and each reply;
//!   `--delivery-wait SECS` [30]: after the last reply, for the last EXISTS.
//! * `--threads T` [1]: tokio worker threads (1: a current-thread runtime, the cheapest).
//!
//! Exit status 0 when every message was accepted and delivered, 1 otherwise, 2 on bad
//! arguments.

mod imap;
mod message;
mod smtp;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_smtp::client::{Credentials, OutgoingEnvelope};
use rand::Rng as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsConnector;

use imap::{IdleConnection, ImapTarget};
use message::MessageTemplate;
use smtp::{SmtpConnection, SmtpMode, SmtpTarget};

/// Bounds on the load asked for.
const MAX_MESSAGES: usize = 1_000_000;
const MAX_CONNECTIONS: usize = 10_000;
const MAX_ACCOUNTS: usize = 20_000;
const MAX_SIZE: usize = 25 * 1024 * 1024;
const MAX_THREADS: usize = 64;

/// IMAP logins at once during the login phase (each costs the relay a password hash).
const CONCURRENT_LOGINS: usize = 32;

/// Bound on each goodbye (`QUIT`, `DONE` + `LOGOUT`) after the run: the whole process
/// ends within `--timeout` plus three times this.
pub(crate) const TEARDOWN: Duration = Duration::from_secs(5);

/// Error texts kept for the report (the rest are only counted).
const ERROR_SAMPLES: usize = 20;

const USAGE: &str = "usage: loadgen [--host 127.0.0.1] [--allow-remote] [--domain _chat.localhost]
               [--port-submission 2465 | --port-smtp PORT [--remote-domain D]]
               [--imaps-port 2993] [--imap-host H] [--connections N] [--messages M] [--size BYTES]
               [--accounts K] [--password PW] [--insecure] [--json FILE] [--timeout SECS]
               [--io-timeout SECS] [--delivery-wait SECS] [--threads T]";

/// The command line.
struct Args {
    host: String,
    /// Where the IDLE sessions connect (`--imap-host`; `--host` if unset).
    imap_host: Option<String>,
    domain: String,
    smtp_port: u16,
    mode: SmtpMode,
    remote_domain: String,
    imaps_port: u16,
    connections: usize,
    messages: usize,
    size: usize,
    accounts: usize,
    /// One password for every account (a reference stack with a static passdb);
    /// generated per account otherwise.
    password: Option<String>,
    insecure: bool,
    json: Option<PathBuf>,
    timeout: Duration,
    io_timeout: Duration,
    delivery_wait: Duration,
    threads: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        imap_host: None,
        domain: "_chat.localhost".into(),
        smtp_port: 2465,
        mode: SmtpMode::Submission,
        remote_domain: "loadgen.localhost".into(),
        imaps_port: 2993,
        connections: 2,
        messages: 200,
        size: 4096,
        accounts: 4,
        password: None,
        insecure: false,
        json: None,
        timeout: Duration::from_secs(600),
        io_timeout: Duration::from_secs(30),
        delivery_wait: Duration::from_secs(30),
        threads: 1,
    };
    let mut allow_remote = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        fn number<T: std::str::FromStr>(arg: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{arg}: not a number: {v}"))
        }
        match arg.as_str() {
            "--host" => a.host = value()?,
            "--imap-host" => a.imap_host = Some(value()?),
            "--allow-remote" => allow_remote = true,
            "--domain" => a.domain = value()?,
            "--port-submission" => {
                a.smtp_port = number(&arg, value()?)?;
                a.mode = SmtpMode::Submission;
            }
            "--port-smtp" => {
                a.smtp_port = number(&arg, value()?)?;
                a.mode = SmtpMode::Relay;
            }
            "--remote-domain" => a.remote_domain = value()?,
            "--imaps-port" => a.imaps_port = number(&arg, value()?)?,
            "--connections" => a.connections = number(&arg, value()?)?,
            "--messages" => a.messages = number(&arg, value()?)?,
            "--size" => a.size = number(&arg, value()?)?,
            "--accounts" => a.accounts = number(&arg, value()?)?,
            "--insecure" => a.insecure = true,
            "--password" => a.password = Some(value()?),
            "--json" => a.json = Some(PathBuf::from(value()?)),
            "--timeout" => a.timeout = Duration::from_secs(number(&arg, value()?)?),
            "--io-timeout" => a.io_timeout = Duration::from_secs(number(&arg, value()?)?),
            "--delivery-wait" => a.delivery_wait = Duration::from_secs(number(&arg, value()?)?),
            "--threads" => a.threads = number(&arg, value()?)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let within = |name: &str, v: usize, max: usize| {
        if v == 0 || v > max {
            Err(format!("{name} must be between 1 and {max}"))
        } else {
            Ok(())
        }
    };
    within("--connections", a.connections, MAX_CONNECTIONS)?;
    within("--messages", a.messages, MAX_MESSAGES)?;
    within("--accounts", a.accounts, MAX_ACCOUNTS)?;
    within("--size", a.size, MAX_SIZE)?;
    within("--threads", a.threads, MAX_THREADS)?;
    if a.timeout.is_zero() || a.io_timeout.is_zero() {
        return Err("--timeout and --io-timeout must be at least 1 s".into());
    }
    let loopback =
        |host: &str| host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    for host in std::iter::once(&a.host).chain(a.imap_host.as_ref()) {
        if !loopback(host) && !allow_remote {
            return Err(format!(
                "{host} is not a loopback address: loadgen floods what it is pointed at; add --allow-remote if that is meant"
            ));
        }
    }
    let bad_name = |s: &str| {
        s.is_empty()
            || s.bytes()
                .any(|b| b.is_ascii_whitespace() || b"<>\"@\\".contains(&b))
    };
    if bad_name(&a.domain) || bad_name(&a.remote_domain) {
        return Err("--domain and --remote-domain must be plain domain names".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("loadgen: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Instant::now() + args.timeout;
    let bounded = async {
        match tokio::time::timeout_at((deadline + 3 * TEARDOWN).into(), run(&args, deadline)).await
        {
            Ok(result) => result,
            Err(_) => Err("the run did not end within --timeout".into()),
        }
    };
    match runtime.block_on(bounded) {
        Ok(report) => {
            print!("{}", report.human());
            if let Some(path) = &args.json {
                let text = format!("{:#}\n", report.json(&args));
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("loadgen: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if report.all_delivered() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A generated account: created by the relay at its first login.
struct Account {
    address: String,
    password: String,
}

fn generate_accounts(k: usize, domain: &str) -> Vec<Account> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut word = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect()
    };
    (0..k)
        .map(|_| Account {
            // 9 characters: the reference's username_min_length and _max_length.
            address: format!("{}@{domain}", word(9)),
            password: word(20),
        })
        .collect()
}

/// The recipient of the `i`-th message of connection `c`: round-robin over the
/// accounts, starting after the connection's sender (`c % k`).
fn recipient_of(c: usize, i: usize, k: usize) -> usize {
    (c + 1 + i) % k
}

/// How many messages connection `c` of `n` sends out of `m`.
fn messages_of(c: usize, n: usize, m: usize) -> usize {
    m / n + usize::from(c < m % n)
}

/// Errors: counted, the first few kept as text.
#[derive(Default)]
struct Errors {
    count: u64,
    samples: Vec<String>,
}

impl Errors {
    fn add(&mut self, count: u64, text: String) {
        self.count += count;
        if self.samples.len() < ERROR_SAMPLES {
            self.samples.push(text);
        }
    }

    fn merge(&mut self, other: Errors) {
        self.count += other.count;
        let room = ERROR_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
    }
}

/// One accepted message.
struct Accepted {
    recipient: usize,
    data_end: Instant,
    replied: Instant,
}

/// What one SMTP connection did.
#[derive(Default)]
struct ConnectionResult {
    accepted: Vec<Accepted>,
    /// Messages the server refused (a non-2xx reply).
    refused: u64,
    /// Messages not sent because the connection failed or the run's time was up.
    unsent: u64,
    errors: Errors,
    first_start: Option<Instant>,
}

/// The run's figures.
struct Report {
    planned: usize,
    message_size: usize,
    accounts: usize,
    connections: usize,
    accepted: usize,
    delivered: usize,
    refused: u64,
    unsent: u64,
    /// EXISTS beyond the accepted messages (nobody else writes to these accounts).
    unexpected: usize,
    errors: Errors,
    login_phase: Duration,
    accept_window: Duration,
    deliver_window: Duration,
    accept_latency: Vec<Duration>,
    deliver_latency: Vec<Duration>,
    cpu_run: Option<Cpu>,
    cpu_total: Option<Cpu>,
}

async fn run(args: &Args, deadline: Instant) -> Result<Report, String> {
    let cpu_start = cpu_time();
    let tls = tls_connector(args.insecure);
    let imap_host = args.imap_host.as_deref().unwrap_or(&args.host);
    let imap_server_name = server_name(&args.domain, imap_host)?;
    let server_name = server_name(&args.domain, &args.host)?;
    let mut accounts = generate_accounts(args.accounts, &args.domain);
    if let Some(password) = &args.password {
        for account in &mut accounts {
            account.password = password.clone();
        }
    }
    let accounts = Arc::new(accounts);
    let template = Arc::new(MessageTemplate::new(args.size));
    let message_size = template
        .message(&accounts[0].address, &accounts[0].address, "x")
        .len();

    // Phase 1: every account logged in and idling.
    let login_start = Instant::now();
    let imap_target = Arc::new(ImapTarget {
        addr: format!("{imap_host}:{}", args.imaps_port),
        tls: tls.clone(),
        server_name: imap_server_name,
        io_timeout: args.io_timeout,
    });
    let logins = Arc::new(Semaphore::new(CONCURRENT_LOGINS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let seen: Vec<Arc<AtomicU32>> = (0..args.accounts).map(|_| Arc::default()).collect();
    let mut opening = Vec::with_capacity(args.accounts);
    for index in 0..args.accounts {
        let (target, logins, accounts) = (imap_target.clone(), logins.clone(), accounts.clone());
        opening.push(tokio::spawn(async move {
            let _permit = logins.acquire().await.map_err(|e| e.to_string())?;
            let account = &accounts[index];
            IdleConnection::open(&target, &account.address, &account.password)
                .await
                .map_err(|e| format!("{}: {e}", account.address))
        }));
    }
    let mut idle = Vec::with_capacity(args.accounts);
    for handle in opening {
        let opened = tokio::time::timeout_at(deadline.into(), handle)
            .await
            .map_err(|_| "the run's --timeout passed during the IMAP logins".to_string())?
            .map_err(|e| format!("IMAP task: {e}"))?;
        idle.push(opened.map_err(|e| format!("IMAP login phase failed: {e}"))?);
    }
    let recording: Vec<_> = idle
        .into_iter()
        .zip(&seen)
        .map(|(connection, seen)| tokio::spawn(connection.record(seen.clone(), stop_rx.clone())))
        .collect();
    let login_phase = login_start.elapsed();

    // Phase 2: the SMTP connections send.
    let cpu_run_start = cpu_time();
    let smtp_target = SmtpTarget {
        addr: format!("{}:{}", args.host, args.smtp_port),
        mode: args.mode.clone(),
        hello_name: match args.mode {
            SmtpMode::Submission => "loadgen.localhost".into(),
            SmtpMode::Relay => args.remote_domain.clone(),
        },
        tls,
        server_name,
        io_timeout: args.io_timeout,
    };
    let mut sending = Vec::with_capacity(args.connections);
    for c in 0..args.connections {
        let count = messages_of(c, args.connections, args.messages);
        let (target, accounts, template) =
            (smtp_target.clone(), accounts.clone(), template.clone());
        let remote = args.remote_domain.clone();
        sending.push(tokio::spawn(async move {
            connection(c, count, &target, &accounts, &template, &remote, deadline).await
        }));
    }
    let mut results = Vec::with_capacity(args.connections);
    for handle in sending {
        // The connections watch the deadline themselves; this bounds a stuck task.
        let backstop = deadline + TEARDOWN;
        match tokio::time::timeout_at(backstop.into(), handle).await {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(e)) => return Err(format!("SMTP task: {e}")),
            Err(_) => return Err("an SMTP connection outlived the run's --timeout".into()),
        }
    }

    // Wait for the last EXISTS, then stop the IDLE connections.
    let mut accepted_per_account = vec![0u32; args.accounts];
    for result in &results {
        for a in &result.accepted {
            accepted_per_account[a.recipient] += 1;
        }
    }
    let wait_until = (Instant::now() + args.delivery_wait).min(deadline);
    loop {
        let all_seen = seen
            .iter()
            .zip(&accepted_per_account)
            .all(|(s, &n)| s.load(Ordering::Relaxed) >= n);
        if all_seen || Instant::now() >= wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cpu_run_end = cpu_time();
    let _ = stop_tx.send(true);
    let mut arrivals = Vec::with_capacity(args.accounts);
    let mut errors = Errors::default();
    for handle in recording {
        let backstop = Instant::now() + TEARDOWN * 2;
        match tokio::time::timeout_at(backstop.into(), handle).await {
            Ok(Ok((times, error))) => {
                if let Some(e) = error {
                    errors.add(0, format!("IMAP: {e}"));
                }
                arrivals.push(times);
            }
            Ok(Err(e)) => return Err(format!("IMAP task: {e}")),
            Err(_) => return Err("an IMAP connection did not end".into()),
        }
    }

    Ok(Report::new(
        args,
        message_size,
        results,
        arrivals,
        errors,
        login_phase,
        (cpu_run_start, cpu_run_end, cpu_start),
    ))
}

/// One SMTP connection: its share of the messages, one after the other on one session.
async fn connection(
    c: usize,
    count: usize,
    target: &SmtpTarget,
    accounts: &[Account],
    template: &MessageTemplate,
    remote_domain: &str,
    deadline: Instant,
) -> ConnectionResult {
    let mut result = ConnectionResult::default();
    let k = accounts.len();
    let sender = &accounts[c % k];
    let (mail_from, credentials) = match target.mode {
        SmtpMode::Submission => (
            sender.address.clone(),
            Some(Credentials {
                login: sender.address.clone(),
                password: sender.password.clone(),
            }),
        ),
        SmtpMode::Relay => (format!("sender{c}@{remote_domain}"), None),
    };
    let opened =
        tokio::time::timeout_at(deadline.into(), SmtpConnection::open(target, credentials)).await;
    let mut session = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            result.unsent = count as u64;
            result.errors.add(1, format!("SMTP connection {c}: {e}"));
            return result;
        }
        Err(_) => {
            result.unsent = count as u64;
            result.errors.add(
                1,
                format!("SMTP connection {c}: the run's --timeout passed"),
            );
            return result;
        }
    };
    let mut envelope = OutgoingEnvelope {
        mail_from: mail_from.clone(),
        recipients: vec![String::new()],
    };
    let run_id: u32 = rand::rng().random();
    for i in 0..count {
        let recipient = recipient_of(c, i, k);
        let to = &accounts[recipient].address;
        let id = format!("lg.{run_id:08x}.{c}.{i}@{}", target.hello_name);
        let message = template.message(&mail_from, to, &id);
        envelope.recipients[0].clone_from(to);
        let started = Instant::now();
        result.first_start.get_or_insert(started);
        match tokio::time::timeout_at(deadline.into(), session.send(&envelope, &message)).await {
            Ok(Ok(sent)) => match (sent.outcome.recipient_result(0), sent.data_end) {
                (Ok(()), Some(data_end)) => result.accepted.push(Accepted {
                    recipient,
                    data_end,
                    replied: sent.replied,
                }),
                (Err(reply), _) => {
                    result.refused += 1;
                    result
                        .errors
                        .add(1, format!("refused: {} {}", reply.code, reply.text));
                }
                (Ok(()), None) => {
                    result.refused += 1;
                    result
                        .errors
                        .add(1, "accepted without the message text".into());
                }
            },
            Ok(Err(e)) => {
                result.unsent += (count - i) as u64;
                result.errors.add(1, format!("SMTP connection {c}: {e}"));
                return result;
            }
            Err(_) => {
                result.unsent += (count - i) as u64;
                result.errors.add(
                    1,
                    format!("SMTP connection {c}: the run's --timeout passed"),
                );
                return result;
            }
        }
    }
    session.quit().await;
    result
}

impl Report {
    fn new(
        args: &Args,
        message_size: usize,
        results: Vec<ConnectionResult>,
        arrivals: Vec<Vec<Instant>>,
        mut errors: Errors,
        login_phase: Duration,
        (cpu_run_start, cpu_run_end, cpu_start): (Option<Cpu>, Option<Cpu>, Option<Cpu>),
    ) -> Report {
        let first_start = results.iter().filter_map(|r| r.first_start).min();
        let mut per_account: Vec<Vec<Instant>> = vec![Vec::new(); args.accounts];
        let mut accept_latency = Vec::new();
        let mut last_reply = None::<Instant>;
        let (mut refused, mut unsent) = (0, 0);
        for result in results {
            refused += result.refused;
            unsent += result.unsent;
            errors.merge(result.errors);
            for a in result.accepted {
                accept_latency.push(a.replied.saturating_duration_since(a.data_end));
                last_reply = last_reply.max(Some(a.replied));
                per_account[a.recipient].push(a.data_end);
            }
        }
        let accepted = accept_latency.len();
        // The i-th message to an account (by its final dot) with its i-th arrival.
        let mut deliver_latency = Vec::with_capacity(accepted);
        let mut last_arrival = None::<Instant>;
        let mut unexpected = 0;
        for (mut sent, arrived) in per_account.into_iter().zip(&arrivals) {
            sent.sort_unstable();
            for (data_end, at) in sent.iter().zip(arrived) {
                deliver_latency.push(at.saturating_duration_since(*data_end));
                last_arrival = last_arrival.max(Some(*at));
            }
            unexpected += arrived.len().saturating_sub(sent.len());
        }
        let window = |end: Option<Instant>| match (first_start, end) {
            (Some(s), Some(e)) => e.saturating_duration_since(s),
            _ => Duration::ZERO,
        };
        accept_latency.sort_unstable();
        deliver_latency.sort_unstable();
        let since = |a: Option<Cpu>, b: Option<Cpu>| Some(b?.since(a?));
        Report {
            planned: args.messages,
            message_size,
            accounts: args.accounts,
            connections: args.connections,
            accepted,
            delivered: deliver_latency.len(),
            refused,
            unsent,
            unexpected,
            errors,
            login_phase,
            accept_window: window(last_reply),
            deliver_window: window(last_arrival),
            accept_latency,
            deliver_latency,
            cpu_run: since(cpu_run_start, cpu_run_end),
            cpu_total: since(cpu_start, cpu_time()),
        }
    }

    fn all_delivered(&self) -> bool {
        self.accepted == self.planned && self.delivered == self.planned && self.errors.count == 0
    }

    fn rate(count: usize, window: Duration) -> f64 {
        if window.is_zero() {
            0.0
        } else {
            count as f64 / window.as_secs_f64()
        }
    }

    fn cpu_us_per_message(&self) -> Option<f64> {
        let messages = self.accepted.max(1) as f64;
        self.cpu_run
            .map(|c| c.total().as_secs_f64() * 1e6 / messages)
    }

    fn human(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let line = |name: &str, v: &[Duration]| match percentiles(v) {
            Some([p50, p90, p99, max]) => format!(
                "{name:<17} p50 {:8.3}  p90 {:8.3}  p99 {:8.3}  max {:8.3} ms\n",
                ms(p50),
                ms(p90),
                ms(p99),
                ms(max)
            ),
            None => format!("{name:<17} (none)\n"),
        };
        let mut out = format!(
            "loadgen: {} messages of {} bytes, {} connections, {} accounts (logins took {:.2} s)\n",
            self.planned,
            self.message_size,
            self.connections,
            self.accounts,
            self.login_phase.as_secs_f64()
        );
        out += &format!(
            "accepted  {:>8} in {:7.3} s: {:9.1} msg/s\n",
            self.accepted,
            self.accept_window.as_secs_f64(),
            Self::rate(self.accepted, self.accept_window)
        );
        out += &format!(
            "delivered {:>8} in {:7.3} s: {:9.1} msg/s\n",
            self.delivered,
            self.deliver_window.as_secs_f64(),
            Self::rate(self.delivered, self.deliver_window)
        );
        out += &line("accept latency", &self.accept_latency);
        out += &line("deliver latency", &self.deliver_latency);
        out += &format!(
            "refused {}, not sent {}, lost {}, unexpected EXISTS {}, errors {}\n",
            self.refused,
            self.unsent,
            self.accepted - self.delivered,
            self.unexpected,
            self.errors.count
        );
        for e in &self.errors.samples {
            out += &format!("  error: {e}\n");
        }
        if self
            .errors
            .samples
            .iter()
            .any(|e| e.starts_with("refused: 450"))
        {
            out += "  (450: the relay's send rate limit; raise max_user_send_per_minute and max_user_send_burst_size)\n";
        }
        match (self.cpu_run, self.cpu_total, self.cpu_us_per_message()) {
            (Some(run), Some(total), Some(per)) => {
                out += &format!(
                    "client CPU {:.3} s while sending ({per:.1} µs/message; user {:.3} s, system {:.3} s), {:.3} s in all\n",
                    run.total().as_secs_f64(),
                    run.user.as_secs_f64(),
                    run.system.as_secs_f64(),
                    total.total().as_secs_f64()
                )
            }
            _ => out += "client CPU: not measured on this platform\n",
        }
        out
    }

    fn json(&self, args: &Args) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let latency = |v: &[Duration]| match percentiles(v) {
            Some([p50, p90, p99, max]) => {
                json!({"n": v.len(), "p50": ms(p50), "p90": ms(p90), "p99": ms(p99), "max": ms(max)})
            }
            None => json!({"n": 0}),
        };
        json!({
            "config": {
                "host": args.host,
                "imap_host": args.imap_host.as_deref().unwrap_or(&args.host),
                "domain": args.domain,
                "smtp_port": args.smtp_port,
                "smtp_mode": match args.mode { SmtpMode::Submission => "submission", SmtpMode::Relay => "smtp" },
                "imaps_port": args.imaps_port,
                "connections": self.connections,
                "messages": self.planned,
                "accounts": self.accounts,
                "size": args.size,
                "threads": args.threads,
            },
            "message_size": self.message_size,
            "login_phase_s": self.login_phase.as_secs_f64(),
            "accepted": self.accepted,
            "delivered": self.delivered,
            "refused": self.refused,
            "unsent": self.unsent,
            "lost": self.accepted - self.delivered,
            "unexpected_exists": self.unexpected,
            "errors": self.errors.count,
            "error_samples": self.errors.samples,
            "all_delivered": self.all_delivered(),
            "accept_window_s": self.accept_window.as_secs_f64(),
            "deliver_window_s": self.deliver_window.as_secs_f64(),
            "accepted_per_s": Self::rate(self.accepted, self.accept_window),
            "delivered_per_s": Self::rate(self.delivered, self.deliver_window),
            "accept_latency_ms": latency(&self.accept_latency),
            "deliver_latency_ms": latency(&self.deliver_latency),
            "cpu_run_s": self.cpu_run.map(|c| c.total().as_secs_f64()),
            "cpu_run_user_s": self.cpu_run.map(|c| c.user.as_secs_f64()),
            "cpu_run_system_s": self.cpu_run.map(|c| c.system.as_secs_f64()),
            "cpu_total_s": self.cpu_total.map(|c| c.total().as_secs_f64()),
            "cpu_us_per_message": self.cpu_us_per_message(),
        })
    }
}

/// p50, p90, p99 and max of sorted samples (nearest rank).
fn percentiles(sorted: &[Duration]) -> Option<[Duration; 4]> {
    let last = sorted.len().checked_sub(1)?;
    let at = |q: f64| {
        sorted[((q * sorted.len() as f64).ceil() as usize)
            .saturating_sub(1)
            .min(last)]
    };
    Some([at(0.50), at(0.90), at(0.99), sorted[last]])
}

/// CPU time of the process (all threads).
#[derive(Clone, Copy)]
struct Cpu {
    user: Duration,
    system: Duration,
}

impl Cpu {
    fn total(self) -> Duration {
        self.user + self.system
    }

    /// The CPU used between `earlier` and `self`.
    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// The process's CPU time so far.
#[cfg(unix)]
fn cpu_time() -> Option<Cpu> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given, which points to
    // one; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: a zero return means the struct was filled (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Some(Cpu {
        user: tv(usage.ru_utime),
        system: tv(usage.ru_stime),
    })
}

#[cfg(not(unix))]
fn cpu_time() -> Option<Cpu> {
    None
}

/// TLS for both protocols: the system's roots, or any certificate with `--insecure`.
fn tls_connector(insecure: bool) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions();
    let config = match builder {
        Ok(builder) if insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth(),
        Ok(builder) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Err(e) => unreachable!("ring supports the default TLS versions: {e}"),
    };
    TlsConnector::from(Arc::new(config))
}

/// The name sent in SNI and checked: the mail domain, or the host when the domain is not
/// a valid DNS name.
fn server_name(domain: &str, host: &str) -> Result<ServerName<'static>, String> {
    if let Ok(name) = ServerName::try_from(domain.to_string()) {
        return Ok(name);
    }
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("{domain} is not a valid server name"))
}

/// `--insecure`: any certificate, handshake signatures still checked.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_covers_every_message_and_every_account() {
        let (n, m, k) = (3, 100, 4);
        let total: usize = (0..n).map(|c| messages_of(c, n, m)).sum();
        assert_eq!(total, m);
        let mut per_account = vec![0; k];
        for c in 0..n {
            for i in 0..messages_of(c, n, m) {
                per_account[recipient_of(c, i, k)] += 1;
            }
        }
        assert!(
            per_account.iter().all(|&x| x >= m / k - n),
            "{per_account:?}"
        );
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let [p50, p90, p99, max] = percentiles(&v).unwrap();
        assert_eq!(
            [p50, p90, p99, max].map(|d| d.as_millis()),
            [50, 90, 99, 100]
        );
        assert!(percentiles(&[]).is_none());
    }

    #[test]
    fn accounts_have_nine_character_local_parts() {
        let accounts = generate_accounts(50, "_chat.localhost");
        for a in &accounts {
            let (local, domain) = a.address.split_once('@').unwrap();
            assert_eq!(local.len(), 9);
            assert_eq!(domain, "_chat.localhost");
            assert!(a.password.len() >= 9);
        }
    }
}
