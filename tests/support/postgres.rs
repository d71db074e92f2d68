//! A private PostgreSQL for the tests: `initdb` into a temp dir and the postmaster as a child of the test binary,
//! both as `nobody` (PostgreSQL refuses to run as root), listening on a free loopback port with its socket in the
//! temp dir. One server per test binary, a fresh database per [`Postgres::database`]; it is stopped by its PID
//! when the test binary exits (an `atexit` hook; SIGTERM via PR_SET_PDEATHSIG if the binary is killed).
//!
//! The postmaster is run directly rather than through `pg_ctl start`, which daemonises it: as our own child its
//! PID is known and it cannot outlive the tests.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::process::spawn_tied_to_process;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The running server.
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    next_db: AtomicU32,
}

static SERVER: OnceLock<Postgres> = OnceLock::new();

impl Postgres {
    /// The test binary's server, started on first use.
    pub fn shared() -> &'static Postgres {
        SERVER.get_or_init(|| {
            let server = Self::start();
            // SAFETY: registering a plain `extern "C"` function that only signals and waits on our own child.
            unsafe { libc::atexit(stop_at_exit) };
            server
        })
    }

    fn start() -> Postgres {
        // SAFETY: getpwnam(3) reads the user database; the returned record is copied out at once.
        let (uid, gid) = unsafe {
            let pw = libc::getpwnam(c"nobody".as_ptr());
            assert!(!pw.is_null(), "no user `nobody` to run PostgreSQL as");
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        let dir = tempfile::Builder::new().prefix("avatar-gateway-pg").tempdir().expect("a temp dir").keep();
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("giving the temp dir to nobody");
        let data = dir.join("data");
        let out = Command::new(format!("{BIN}/initdb"))
            .args(["-D", &data.to_string_lossy(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .current_dir(&dir)
            .uid(uid)
            .gid(gid)
            .output()
            .expect("running initdb (is the postgresql package installed?)");
        assert!(out.status.success(), "initdb failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut cmd = Command::new(format!("{BIN}/postgres"));
        cmd.args(["-D", &data.to_string_lossy(), "-p", &port.to_string(), "-k", &dir.to_string_lossy()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"])
            .current_dir(&dir)
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("postgres.log")).expect("the server log"));
        let child = spawn_tied_to_process(cmd).expect("starting postgres");
        let server = Postgres { port, dir, child: Mutex::new(Some(child)), next_db: AtomicU32::new(0) };
        let start = Instant::now();
        while postgres::Client::connect(&server.url("postgres"), postgres::NoTls).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "postgres never accepted:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).expect("connecting as admin");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("creating a database");
        self.url(&name)
    }

    /// Whether the server accepts TCP connections.
    pub fn accepts(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }
}

extern "C" fn stop_at_exit() {
    let Some(server) = SERVER.get() else { return };
    if let Some(mut child) = server.child.lock().ok().and_then(|mut c| c.take()) {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) on our own unreaped child. SIGINT: PostgreSQL's fast shutdown (sessions ended).
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&server.dir);
}
