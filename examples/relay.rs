//! The runnable chatmail relay.
//!
//! ```sh
//! cargo run --release --example relay                       # embedded default
//! cargo run --release --example relay -- --config chatmail.ini [--data-dir DIR]
//! cargo run --release --example relay -- dns --config chatmail.ini [--data-dir DIR]
//! cargo run --release --example relay -- expire --config chatmail.ini [--dry-run]
//! cargo run --release --example relay -- fsreport --config chatmail.ini [--textfile DIR]
//! cargo run --release --features postgres --example relay -- migrate --from maildir:DIR --to postgres://USER@HOST:PORT/DB [--data-dir DIR]
//! ```
//!
//! `dns` prints the DNS records to publish for the relay (spec 4.7) as zone-file lines,
//! creating the DKIM key under `DIR/dkim/` if it does not exist yet, and exits.
//! `expire` runs the daily expiry (spec 6.1, 6.2) once and prints every removal; with
//! `--dry-run` it prints what it would remove and removes nothing. (The running relay
//! does the same every day at 00:02 UTC, expunging as IMAP does so that IDLE sessions
//! see it.) `fsreport` prints the storage and account figures of spec 6.3, or writes them
//! as the reference's Prometheus textfile `fsreport.prom`.
//! `migrate` (feature `postgres`) copies every account and message from one store to
//! another, empty one (`maildir:DIR`, DIR the mailboxes directory, or a `postgres://`
//! URL), keeping UIDVALIDITY, UIDs, flags, passwords and tokens, and prints a summary;
//! no relay may serve either store meanwhile. With `--data-dir` (the relay's data
//! directory) its DKIM keys move too, so the published DNS record stays valid.
//!
//! With `storage = postgres://USER@HOST:PORT/DB` in the configuration (the relay built
//! with `--features postgres`), accounts, mail, device tokens and the DKIM key live in
//! that database, which several nodes of one domain may share (README, "Several nodes");
//! `dns` and `expire` then work on it too, and `fsreport`, which reads a maildir, refuses.
//!
//! Without `--config` it runs the embedded default: mail domain `_chat.localhost`
//! (self-signed TLS, as the reference does for `_` domains), every listener on
//! 127.0.0.1 on unprivileged ports, data in `./relay-data` (created). It prints the ports
//! and a `dclogin:` URL of a fresh account so that a Delta Chat app can connect at once
//! (IMAP COMPRESS=DEFLATE offered, which `chatmail.ini` leaves off by default),
//! then one line containing `ready` when every listener accepts connections.
//! Ctrl-C (or SIGTERM) shuts down gracefully.

use chatmail::core::config::{Config, Storage};
use chatmail::credentials::Credentials;
use chatmail::tokio_driver::resolver::resolver_from_config;
use chatmail::tokio_driver::{blocking_executor, Server};
use chatmail::Relay;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str =
    "usage: relay [dns | expire [--dry-run] | fsreport [--days N] [--min-login-age DAYS]
                    [--mdir cur|new|tmp] [--maxnum N] [--textfile PATH]]
             [--config chatmail.ini] [--data-dir DIR]
       relay migrate --from maildir:DIR|postgres://... --to maildir:DIR|postgres://...
                     [--data-dir DIR]";

/// The embedded default: loopback, unprivileged ports, self-signed TLS.
fn embedded_default(data_dir: &std::path::Path) -> Config {
    let mut config = Config::with_domain("_chat.localhost");
    config.mailboxes_dir = data_dir.join("mail");
    config.smtp_port = 2525;
    config.submission_port = 2587;
    config.submissions_port = 2465;
    config.imap_port = 2143;
    config.imaps_port = 2993;
    config.https_port = 2443;
    // A development relay shares the machine with compilers and browsers; the reference's
    // load bound of 5 would refuse new accounts during a build. Memory and disk keep theirs.
    config.max_load_1m = 1000.0;
    // IMAP COMPRESS=DEFLATE (off in chatmail.ini, as in the reference): Delta Chat asks
    // for it when offered, and on mobile data it saves most of the protocol's bytes. It
    // costs an idle connection the inflater only (~40 KiB; BENCHMARKS.md).
    config.imap_compress = true;
    config
}

fn main() -> ExitCode {
    tracing_subscriber_init();
    let mut config_path: Option<PathBuf> = None;
    let mut data_dir: Option<PathBuf> = None;
    let mut dns = false;
    let mut expire = false;
    let mut dry_run = false;
    let mut fsreport = false;
    let mut report = ReportArgs::default();
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("migrate") {
        return run_migrate(args.skip(1).collect());
    }
    match args.peek().map(String::as_str) {
        Some("dns") => dns = true,
        Some("expire") => expire = true,
        Some("fsreport") => fsreport = true,
        _ => {}
    }
    if dns || expire || fsreport {
        args.next();
    }
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Option<u64> {
            let v = args.next().and_then(|v| v.parse().ok());
            if v.is_none() {
                eprintln!("{name} needs a number");
            }
            v
        };
        match arg.as_str() {
            "--config" => config_path = args.next().map(PathBuf::from),
            "--data-dir" => data_dir = args.next().map(PathBuf::from),
            "--dry-run" if expire => dry_run = true,
            "--days" if fsreport => match number("--days") {
                Some(n) => report.days = n,
                None => return ExitCode::from(2),
            },
            "--min-login-age" if fsreport => match number("--min-login-age") {
                Some(n) => report.options.min_login_age_days = n,
                None => return ExitCode::from(2),
            },
            "--maxnum" if fsreport => match number("--maxnum") {
                Some(n) => report.options.max_accounts = Some(n as usize),
                None => return ExitCode::from(2),
            },
            "--mdir" if fsreport => match args.next() {
                Some(d) if matches!(d.as_str(), "cur" | "new" | "tmp") => {
                    report.options.subdir = Some(d)
                }
                _ => {
                    eprintln!("--mdir takes cur, new or tmp");
                    return ExitCode::from(2);
                }
            },
            "--textfile" if fsreport => report.textfile = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from("relay-data"));
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!("cannot create data directory {}: {e}", data_dir.display());
        return ExitCode::from(2);
    }
    let config = match &config_path {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => embedded_default(&data_dir),
    };
    if !config.unknown_keys.is_empty() {
        eprintln!(
            "warning: unknown keys in [params]: {}",
            config.unknown_keys.join(", ")
        );
    }
    if fsreport {
        if config.storage != Storage::Maildir {
            eprintln!(
                "fsreport reads a maildir; storage is {}",
                config.storage.redacted()
            );
            return ExitCode::from(2);
        }
        return print_fsreport(&config, &report);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if dns {
        return runtime.block_on(print_dns_records(&config, &data_dir));
    }
    if expire {
        return runtime.block_on(run_expiry_once(config, dry_run));
    }
    runtime.block_on(run(config, data_dir))
}

/// `relay migrate --from A --to B`: [`chatmail::core::store::migrate::migrate`], then
/// its summary. Exits 2 on bad arguments, 1 if the migration failed.
#[cfg(feature = "postgres")]
fn run_migrate(args: Vec<String>) -> ExitCode {
    use chatmail::core::store::migrate::{migrate, Endpoint};
    let (mut from, mut to) = (None, None);
    let mut data_dir: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--from" => &mut from,
            "--to" => &mut to,
            "--data-dir" => {
                data_dir = args.next().map(PathBuf::from);
                continue;
            }
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        match args.next().map(|v| v.parse::<Endpoint>()) {
            Some(Ok(endpoint)) => *slot = Some(endpoint),
            Some(Err(e)) => {
                eprintln!("{arg}: {e}");
                return ExitCode::from(2);
            }
            None => {
                eprintln!("{arg} needs maildir:DIR or postgres://...");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        eprintln!("migrate needs --from and --to\n{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("migrating {from} to {to}");
    match runtime.block_on(migrate(&from, &to, now)) {
        Ok(summary) => {
            println!("migrated {summary}");
            match &data_dir {
                Some(dir) => match runtime.block_on(migrate_dkim_keys(&from, &to, dir)) {
                    Ok(moved) => {
                        println!("DKIM keys moved: {moved}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("DKIM keys: {e}");
                        ExitCode::FAILURE
                    }
                },
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("migration failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// With `--data-dir DIR`, the DKIM keys go along (the DNS publishes them, so a relay
/// that made a new one would sign with a key nobody can check): from maildir to
/// postgres every `DIR/dkim/<selector>.private` becomes the database's `dkim:<selector>`
/// (a different key already there is an error); back, each `dkim:<selector>` is written
/// to `DIR/dkim/<selector>.private` unless that file exists. Returns how many moved.
#[cfg(feature = "postgres")]
async fn migrate_dkim_keys(
    from: &chatmail::core::store::migrate::Endpoint,
    to: &chatmail::core::store::migrate::Endpoint,
    data_dir: &std::path::Path,
) -> Result<usize, String> {
    use chatmail::core::store::migrate::Endpoint;
    use chatmail::core::store::{PostgresOptions, PostgresStore};
    use chatmail::dkim::DkimSigner;
    let open = |url: String| async move {
        PostgresStore::open(&url, PostgresOptions::default())
            .await
            .map_err(|e| e.to_string())
    };
    let mut moved = 0;
    match (from, to) {
        (Endpoint::Maildir(_), Endpoint::Postgres(url)) => {
            let store = open(url.clone()).await?;
            let keys = std::fs::read_dir(data_dir.join("dkim"))
                .into_iter()
                .flatten();
            for entry in keys.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(selector) = name.strip_suffix(".private") else {
                    continue;
                };
                let Some(pem) =
                    DkimSigner::read_pem(data_dir, selector).map_err(|e| e.to_string())?
                else {
                    continue;
                };
                let secret = format!("dkim:{selector}");
                let stored = store
                    .offer_domain_secret(&secret, &pem)
                    .await
                    .map_err(|e| e.to_string())?;
                if stored != pem {
                    return Err(format!(
                        "the database already holds another key as {secret}; left as it is"
                    ));
                }
                moved += 1;
            }
        }
        (Endpoint::Postgres(url), Endpoint::Maildir(_)) => {
            let store = open(url.clone()).await?;
            for secret in store
                .domain_secret_names()
                .await
                .map_err(|e| e.to_string())?
            {
                let Some(selector) = secret.strip_prefix("dkim:") else {
                    continue;
                };
                if DkimSigner::read_pem(data_dir, selector)
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    eprintln!("{selector}: a key exists in {}; kept", data_dir.display());
                    continue;
                }
                if let Some(pem) = store
                    .domain_secret(&secret)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    DkimSigner::write_pem(data_dir, selector, &pem).map_err(|e| e.to_string())?;
                    moved += 1;
                }
            }
        }
        _ => {}
    }
    Ok(moved)
}

/// `relay migrate` without the PostgreSQL backend built in.
#[cfg(not(feature = "postgres"))]
fn run_migrate(_args: Vec<String>) -> ExitCode {
    eprintln!("relay migrate needs the PostgreSQL backend: build with --features postgres");
    ExitCode::from(2)
}

/// The options of `relay fsreport`, as the reference's `chatmail-fsreport` takes them.
#[derive(Default)]
struct ReportArgs {
    /// Count back from this many days ago (`--days`).
    days: u64,
    options: chatmail::core::store::fsreport::FsReportOptions,
    /// Write the Prometheus textfile here (a directory: `fsreport.prom` in it) instead
    /// of printing the report.
    textfile: Option<PathBuf>,
}

/// `relay fsreport`: the storage and account figures of spec 6.3, read-only.
fn print_fsreport(config: &Config, args: &ReportArgs) -> ExitCode {
    use chatmail::core::store::fsreport::FsReport;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(args.days.saturating_mul(86_400));
    let report = FsReport::scan(&config.mailboxes_dir, now, &args.options);
    for unreadable in &report.unreadable {
        eprintln!("unreadable: {unreadable}");
    }
    match &args.textfile {
        None => print!("{}", report.text()),
        Some(path) => {
            let path = if path.is_dir() {
                path.join("fsreport.prom")
            } else {
                path.clone()
            };
            // Written aside and renamed: node_exporter never reads half a file.
            let tmp = path.with_extension("prom.tmp");
            let written = std::fs::write(&tmp, report.prometheus())
                .and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                eprintln!("{}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `relay expire [--dry-run]`: the daily expiry (spec 6.1, 6.2) once, now; prints every
/// removal (in a dry run: what would be removed, and nothing is) and a summary. Exits 1
/// if something could not be read or removed.
async fn run_expiry_once(config: Config, dry_run: bool) -> ExitCode {
    if config.storage == Storage::Maildir && !config.mailboxes_dir.is_dir() {
        eprintln!("{}: no such directory", config.mailboxes_dir.display());
        return ExitCode::from(2);
    }
    let storage = match SharedStorage::open(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let relay = match storage.plug_into(Relay::builder(config)).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match relay.run_expiry_with(dry_run).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("expiry could not run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    for removal in &report.removals {
        println!(
            "{verb} {}: {}",
            removal.kind.describe(),
            removal.path.display()
        );
    }
    for failure in &report.failures {
        eprintln!("failed: {failure}");
    }
    println!(
        "{} accounts and {} messages looked at; {verb} {} accounts, {} messages, {} empty directories{}",
        report.accounts_total,
        report.messages_total,
        report.accounts_removed,
        report.messages_removed,
        report.directories_removed,
        if dry_run { " (dry run: nothing removed)" } else { "" }
    );
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `relay dns`: the records to publish, one zone-file line each (spec 4.7).
async fn print_dns_records(config: &Config, data_dir: &std::path::Path) -> ExitCode {
    if config.is_ipv4_relay() {
        println!(
            "; {} is an IP address: no DNS records to publish (spec 1.3).",
            config.mail_domain
        );
        return ExitCode::SUCCESS;
    }
    let storage = match SharedStorage::open(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let signer = match storage.dkim_signer(config, data_dir).await {
        Ok(signer) => signer,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for line in chatmail::dkim::published_records(config, &signer, std::time::SystemTime::now()) {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

async fn run(config: Config, data_dir: PathBuf) -> ExitCode {
    // With `storage = postgres://...` the node still keeps its own files there (pending
    // push notifications), and its delivery queue in the data directory.
    if let Err(e) = std::fs::create_dir_all(&config.mailboxes_dir) {
        eprintln!("cannot create {}: {e}", config.mailboxes_dir.display());
        return ExitCode::from(2);
    }
    let storage = match SharedStorage::open(&config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let resolver = match resolver_from_config(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Push notifications (spec 5.4) to `notify_url`; deliveries only `try_send` to it.
    let (notifier, new_mail) = chatmail::push::channel(chatmail::push::DEFAULT_CHANNEL_CAPACITY);
    let mut builder = storage
        .plug_into(Relay::builder(config.clone()))
        .resolver(resolver)
        .notifier(Arc::new(notifier));
    builder = match storage.delivery_queue(&config, &data_dir).await {
        Ok(Some(queue)) => builder.with_delivery_queue(queue),
        Ok(None) => builder.delivery_queue(data_dir.join("queue")),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // An IPv4 relay neither signs nor can be checked: no key under an address (spec 1.3).
    if !config.is_ipv4_relay() {
        match storage.dkim_signer(&config, &data_dir).await {
            Ok(signer) => builder = builder.dkim_signer(signer),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // As the reference's FILTERMAIL_SKIP_DKIM: for tests that send unsigned mail.
    if std::env::var("CHATMAIL_SKIP_DKIM").is_ok_and(|v| v == "1" || v == "true") {
        eprintln!("warning: CHATMAIL_SKIP_DKIM is set: mail from other servers is not checked for its origin");
        builder = builder.skip_dkim_verification();
    }
    let relay = match builder.build() {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("cannot open {}: {e}", config.mailboxes_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let mut server = match Server::bind(relay, &data_dir).await {
        Ok(s) => s.with_push(new_mail, chatmail::push::PushSettings::default()),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match storage.push_pending(&data_dir) {
        Ok(Some(pending)) => server = server.with_push_pending(pending),
        Ok(None) => {}
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    // ACME certificates, when the relay gets them itself: shared by the nodes too.
    match storage.acme(&data_dir) {
        Ok(Some(shared)) => {
            server = server.with_acme_options(chatmail::tokio_driver::acme::AcmeOptions {
                shared: Some(shared),
                ..Default::default()
            })
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let p = server.ports();
    println!("chatmail relay for {}", config.mail_domain);
    println!("  SMTP (MX)             {}", p.smtp);
    println!("  submission STARTTLS   {}", p.submission);
    println!("  submissions (TLS)     {}", p.submissions);
    println!("  IMAP STARTTLS         {}", p.imap);
    println!("  IMAPS (TLS)           {}", p.imaps);
    println!("  HTTPS                 https://{}/new", p.https);
    match &config.storage {
        Storage::Maildir => println!("  mailboxes             {}", config.mailboxes_dir.display()),
        shared => println!("  storage               {}", shared.redacted()),
    }
    println!("  push notifications    {}", config.notify_url);
    let creds = Credentials::generate(&config);
    let endpoints = server.endpoints();
    println!("new account (created on first login):");
    println!("  {}", creds.dclogin_url(Some(&endpoints)));
    println!("ready");
    server
        .run(async {
            wait_for_signal().await;
        })
        .await;
    println!("stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Logs to stderr at `info` (override with `RUST_LOG`-style `CHATMAIL_LOG=debug`).
fn tracing_subscriber_init() {
    let level = match std::env::var("CHATMAIL_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        // A log that cannot be written (its disk is full) is lost, not reported with
        // `eprintln!`, which would panic in the session that logged and drop its client
        // without a reply (load/faults/disk_full.py found it).
        .log_internal_errors(false)
        .try_init();
}

/// The storage `config` names, opened: the maildir store is opened by the relay's
/// builder itself; a PostgreSQL store is opened here, on the runtime, first.
enum SharedStorage {
    Maildir,
    #[cfg(feature = "postgres")]
    Postgres(Arc<chatmail::core::store::PostgresStore>),
}

impl SharedStorage {
    async fn open(config: &Config) -> Result<SharedStorage, String> {
        match &config.storage {
            Storage::Maildir => Ok(SharedStorage::Maildir),
            #[cfg(feature = "postgres")]
            Storage::Postgres(url) => {
                use chatmail::core::store::{PostgresOptions, PostgresStore};
                let options = PostgresOptions {
                    pool_size: config.postgres_pool_size,
                    listen: config.postgres_listen,
                    poll_interval: config.postgres_poll_interval,
                    ..PostgresOptions::default()
                };
                PostgresStore::open(url, options)
                    .await
                    .map(|store| SharedStorage::Postgres(Arc::new(store)))
                    .map_err(|e| format!("storage {}: {e}", config.storage.redacted()))
            }
            #[cfg(not(feature = "postgres"))]
            Storage::Postgres(_) => Err(format!(
                "storage = {} needs the relay built with the postgres feature: \
                 cargo run --release --features postgres --example relay",
                config.storage.redacted()
            )),
        }
    }

    fn plug_into(&self, builder: chatmail::RelayBuilder) -> chatmail::RelayBuilder {
        match self {
            SharedStorage::Maildir => builder.maildir(blocking_executor()),
            #[cfg(feature = "postgres")]
            SharedStorage::Postgres(store) => builder.postgres(store.clone(), blocking_executor()),
        }
    }

    /// The delivery queue the nodes share, with a PostgreSQL store (`None`: the queue
    /// in `<data-dir>/queue`). The node's name, which must survive restarts and differ
    /// between nodes, is kept in `<data-dir>/node-name` (made on first start).
    async fn delivery_queue(
        &self,
        config: &Config,
        data_dir: &std::path::Path,
    ) -> Result<Option<Arc<chatmail::outbound::DeliveryQueue>>, String> {
        match self {
            SharedStorage::Maildir => {
                let _ = (config, data_dir);
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            SharedStorage::Postgres(store) => {
                use chatmail::outbound::{DeliveryQueue, QueueSettings};
                let node = node_name(data_dir)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                DeliveryQueue::open_shared(
                    store.clone(),
                    &node,
                    QueueSettings::from_config(config),
                    now,
                )
                .await
                .map(|queue| Some(Arc::new(queue)))
                .map_err(|e| format!("the shared delivery queue: {e}"))
            }
        }
    }

    /// Where pending push notifications wait, with a PostgreSQL store: its database,
    /// held by this node (`None`: files under `mailboxes_dir`).
    fn push_pending(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Option<chatmail::push::storage::PendingStorage>, String> {
        match self {
            SharedStorage::Maildir => {
                let _ = data_dir;
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            SharedStorage::Postgres(store) => {
                Ok(Some(chatmail::push::storage::PendingStorage::Shared {
                    store: store.clone(),
                    node: node_name(data_dir)?,
                }))
            }
        }
    }

    /// With a PostgreSQL store, the ACME account, certificate and challenges live in
    /// its database, so that any node answers the CA and every node serves the
    /// certificate (`None`: `<data-dir>/acme/`).
    fn acme(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Option<chatmail::tokio_driver::acme::SharedAcme>, String> {
        match self {
            SharedStorage::Maildir => {
                let _ = data_dir;
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            SharedStorage::Postgres(store) => Ok(Some(chatmail::tokio_driver::acme::SharedAcme {
                secrets: store.clone(),
                node: node_name(data_dir)?,
            })),
        }
    }

    /// The domain's DKIM signer: from `<data-dir>/dkim/` on one machine; from the
    /// database when nodes share one, so that every node signs with the key the DNS
    /// publishes (the first node to start makes it).
    async fn dkim_signer(
        &self,
        config: &Config,
        data_dir: &std::path::Path,
    ) -> Result<chatmail::dkim::DkimSigner, String> {
        use chatmail::dkim::DkimSigner;
        let selector = config.dkim_selector.clone();
        let domain = config.mail_domain.clone();
        match self {
            SharedStorage::Maildir => {
                let dir = data_dir.to_path_buf();
                tokio::task::spawn_blocking(move || {
                    DkimSigner::load_or_create(&dir, &selector, &domain)
                })
                .await
                .map_err(|e| format!("DKIM key: {e}"))?
                .map_err(|e| e.to_string())
            }
            #[cfg(feature = "postgres")]
            SharedStorage::Postgres(store) => {
                let name = format!("dkim:{selector}");
                let pem = match store.domain_secret(&name).await {
                    Ok(Some(pem)) => pem,
                    Ok(None) => {
                        let made = tokio::task::spawn_blocking(DkimSigner::generate_pem)
                            .await
                            .map_err(|e| format!("DKIM key: {e}"))?
                            .map_err(|e| e.to_string())?;
                        store
                            .offer_domain_secret(&name, &made)
                            .await
                            .map_err(|e| format!("DKIM key in the database: {e}"))?
                    }
                    Err(e) => return Err(format!("DKIM key in the database: {e}")),
                };
                DkimSigner::from_pem(&pem, &format!("postgres {name}"), &selector, &domain)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// This node's name among the nodes sharing a database: `<data-dir>/node-name`, made
/// once from the host name and a random suffix (two nodes cloned from one image still
/// differ) and kept, so that a restarted node finds the queued messages it holds.
#[cfg(feature = "postgres")]
fn node_name(data_dir: &std::path::Path) -> Result<String, String> {
    let path = data_dir.join("node-name");
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() && name.trim().len() <= 128 => {
            return Ok(name.trim().to_string())
        }
        Ok(_) => return Err(format!("{}: not a node name", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", path.display())),
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect();
    let name = format!(
        "{}-{:08x}",
        if host.is_empty() { "node" } else { &host },
        rand::random::<u32>()
    );
    chatmail::core::durable::write_atomic(data_dir, "node-name", name.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(name)
}
