//! A throwaway PostgreSQL cluster for the postgres store's tests: `initdb` into a
//! temporary directory, `postgres` on 127.0.0.1 and a free port as a child process,
//! stopped by its PID when the value is dropped.
//!
//! The binaries are Debian's (`pg_config --bindir`, else `/usr/lib/postgresql/*/bin`,
//! else `PATH`). Without them the test fails, unless `CHATMAIL_SKIP_POSTGRES=1` is set
//! (then [`Cluster::start`] gives `None` and the test passes having checked nothing).
//! PostgreSQL refuses to run as root: as root the cluster runs as `nobody` (its directory
//! handed over to that user, the child's uid and gid set before exec), so the child is
//! still `postgres` itself and its PID is the postmaster's.

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster; `postgres` (trust authentication) owns database `postgres`.
pub struct Cluster {
    child: Child,
    port: u16,
    bindir: PathBuf,
    // Dropped after the child is stopped (fields drop in order after `Drop::drop`).
    dir: tempfile::TempDir,
}

/// Where the PostgreSQL server binaries are, if anywhere.
fn bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|dir| has_initdb(dir))
        .collect();
    versions.sort();
    if let Some(dir) = versions.pop() {
        return Some(dir);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_initdb(dir)))
}

/// The numeric output of `id ARGS`.
fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Runs `command` as `nobody` when we are root (PostgreSQL refuses root).
fn as_unprivileged(command: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    command
}

/// Runs `openssl` with `args` in `dir`, failing the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it issued, with the key
/// readable by the server's user only, as PostgreSQL demands.
fn make_certificates(dir: &Path, user: Option<(u32, u32)>) -> (PathBuf, PathBuf) {
    let rsa = ["-newkey", "rsa:2048", "-nodes", "-days", "2"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &rsa,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=chatmail test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &rsa,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n")
        .expect("write extension file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let key = dir.join("server.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&key, Some(uid), Some(gid)).expect("chown key");
    }
    (dir.join("server.pem"), key)
}

impl Cluster {
    /// Starts a fresh cluster, or `None` when the binaries are missing and
    /// `CHATMAIL_SKIP_POSTGRES=1` says that is fine.
    ///
    /// # Panics
    ///
    /// When the binaries are missing (and skipping was not asked for), or the cluster
    /// does not come up within 30 s.
    pub fn start() -> Option<Cluster> {
        Self::start_with(false)
    }

    /// [`Cluster::start`] with TLS offered (`ssl=on`), its certificate for 127.0.0.1
    /// issued by a throwaway CA ([`Cluster::ca`]) made with the `openssl` command.
    pub fn start_with_tls() -> Option<Cluster> {
        Self::start_with(true)
    }

    /// The CA certificate (PEM) of a cluster started with TLS.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn start_with(tls: bool) -> Option<Cluster> {
        let Some(bindir) = bindir() else {
            if std::env::var("CHATMAIL_SKIP_POSTGRES").as_deref() == Ok("1") {
                eprintln!("PostgreSQL binaries not found; CHATMAIL_SKIP_POSTGRES=1: skipped");
                return None;
            }
            panic!(
                "PostgreSQL server binaries (initdb, postgres) not found via pg_config, \
                 /usr/lib/postgresql/*/bin or PATH: install Debian's `postgresql` package, \
                 or set CHATMAIL_SKIP_POSTGRES=1 to skip the postgres tests"
            );
        };
        let user = match id(&["-u"]) {
            Some(0) => Some((
                id(&["-u", "nobody"]).expect("uid of nobody"),
                id(&["-g", "nobody"]).expect("gid of nobody"),
            )),
            _ => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("chatmail-pg")
            .tempdir()
            .expect("temporary directory");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown to nobody");
        }
        let data = dir.path().join("data");
        let initdb = as_unprivileged(&mut Command::new(bindir.join("initdb")), user)
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut settings = Vec::new();
        if tls {
            let (cert, key) = make_certificates(dir.path(), user);
            settings.extend(["-c".into(), "ssl=on".into()]);
            settings.extend(["-c".into(), format!("ssl_cert_file={}", cert.display())]);
            settings.extend(["-c".into(), format!("ssl_key_file={}", key.display())]);
        }
        let log = std::fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let child = as_unprivileged(&mut Command::new(bindir.join("postgres")), user)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            // A test cluster: nothing here must survive a crash.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=200"])
            .args(&settings)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut cluster = Cluster {
            child,
            port,
            bindir,
            dir,
        };
        cluster.wait_ready();
        Some(cluster)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postgres exited ({status}): {}", self.log());
            }
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A connection URL for database `postgres`, with `application_name` (which names
    /// the store's connections, so a test can find them in `pg_stat_activity`).
    pub fn url(&self, application_name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?application_name={application_name}",
            self.port
        )
    }

    /// A plain client on database `postgres`, for checks behind the store's back.
    pub async fn connect(&self, application_name: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.url(application_name), tokio_postgres::NoTls)
                .await
                .expect("connect to the test cluster");
        tokio::spawn(connection);
        client
    }

    /// A postgres store on database `postgres` with the default options, opened on `rt`
    /// (where its queries and listener run; its methods may be awaited anywhere).
    pub fn open_store(
        &self,
        rt: &tokio::runtime::Runtime,
        application_name: &str,
    ) -> chatmail_core::store::PostgresStore {
        use chatmail_core::store::{PostgresOptions, PostgresStore};
        rt.block_on(PostgresStore::open(
            &self.url(application_name),
            PostgresOptions::default(),
        ))
        .expect("open the postgres store")
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Cluster {
    /// Fast shutdown (SIGINT) by PID, so the server removes its shared memory; SIGKILL
    /// if it has not exited within 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `test` on a fresh cluster, inside a [`runtime`], unless the cluster is skipped.
pub fn with_cluster(test: impl AsyncFnOnce(&Cluster)) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    runtime().block_on(test(&cluster));
}

/// A runtime for the store (its queries and listener run there).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
