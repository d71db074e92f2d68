//! A private Prosody per test (0.12 on Debian bookworm, 13 in the trixie root of `scripts/test-servers`): own temp
//! dir, own free loopback ports, stopped by its PID.
//!
//! Never the system service, never `killall`: tests run in parallel and each owns exactly one child process.
//! `prosody`, `prosodyctl` and `prosody-migrator` are the first on PATH, or those in [`BIN_DIR_ENV`] when set.

use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::process::{spawn_tied_to_process, stop};
use super::prosody_config::{ConfigParams, groups_file, render};

/// The only virtual host.
pub const DOMAIN: &str = "localhost";
/// The gateway's component name, privileged and delegated on [`DOMAIN`].
pub const COMPONENT: &str = "avatars.localhost";
/// How long a server may take to open its ports (it takes about 0.2 s here).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long SIGTERM gets before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Set to keep every server's temp dir (they are always kept when the test panics).
pub const KEEP_ENV: &str = "E2E_KEEP_DIRS";
const INSTALL_HINT: &str = "apt-get update && apt-get install -y prosody prosody-modules python3-slixmpp";
/// Says which Prosody the tests run against (`prosody0.12`, `prosody13`), so that nothing is detected; set by
/// `scripts/test-servers`. Unset, or naming another server, [`flavor`] asks `prosodyctl about`.
pub const FLAVOR_ENV: &str = "E2E_SERVER_FLAVOR";
/// A directory holding the `prosody`, `prosodyctl` and `prosody-migrator` to use instead of those on PATH (a
/// Prosody built from source, say).
pub const BIN_DIR_ENV: &str = "E2E_PROSODY_BIN_DIR";

/// The Prosody generation the tests run against: the config is rendered for it, and a test that checks a
/// behaviour of only one generation skips on the other ([`skip_on`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Prosody 0.12 with prosody-modules of 2023 (Debian bookworm, this repository's CI).
    Prosody012,
    /// Prosody 13 with prosody-modules of 2025–2026 (Debian trixie and trixie-backports).
    Prosody13,
}

impl Flavor {
    /// The [`FLAVOR_ENV`] spelling.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Prosody012 => "prosody0.12",
            Flavor::Prosody13 => "prosody13",
        }
    }

    /// `prosody0.12` / `prosody12` / `prosody13` / `prosody13.0.6`…; `None` for anything else (another server).
    fn parse(text: &str) -> Option<Flavor> {
        let version = text.trim().to_ascii_lowercase();
        let version = version.strip_prefix("prosody")?.trim_start_matches([' ', '-']);
        match version.split('.').next()? {
            "0" | "012" | "12" => Some(Flavor::Prosody012),
            major => major.parse::<u32>().ok().filter(|&m| m >= 13).map(|_| Flavor::Prosody13),
        }
    }
}

/// Which Prosody this test binary runs against: [`FLAVOR_ENV`] when it names one, else the version line of
/// `prosodyctl about` (not `prosody --version`: 0.12 starts a server on it). Decided once per test binary.
pub fn flavor() -> Flavor {
    static FLAVOR: OnceLock<Flavor> = OnceLock::new();
    *FLAVOR.get_or_init(|| {
        if let Some(f) = std::env::var(FLAVOR_ENV).ok().as_deref().and_then(Flavor::parse) {
            return f;
        }
        let out = Command::new(tool("prosodyctl"))
            .arg("about")
            .output()
            .unwrap_or_else(|e| panic!("running prosodyctl about ({e}); install with: {INSTALL_HINT}"));
        // 13 may print a banner about a missing optional library first: look for the version line itself.
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Prosody ") && l[8..].starts_with(|c: char| c.is_ascii_digit()))
            .find_map(Flavor::parse)
            .unwrap_or_else(|| panic!("no \"Prosody <version>\" line in `prosodyctl about`:\n{text}"))
    })
}

/// True when the tests run against `flavor`; then prints `skipped on <flavor>: <why>` (which
/// `scripts/test-servers` reports as a skip) and the test returns early:
/// `if skip_on(Flavor::Prosody13, "…") { return; }`.
pub fn skip_on(flavor_to_skip: Flavor, why: &str) -> bool {
    let skip = flavor() == flavor_to_skip;
    if skip {
        eprintln!("skipped on {}: {why}", flavor_to_skip.name());
    }
    skip
}

/// `prosody`, `prosodyctl` or `prosody-migrator`: in [`BIN_DIR_ENV`] when it is set, else the first on PATH
/// (the bare name when none is, so that running it fails with the install hint).
pub fn tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Path::new(&dir).join(name);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Which vCard module the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `mod_vcard_legacy`: the server itself converts vCard PHOTO <-> XEP-0084 and injects XEP-0153 hashes.
    VcardLegacy,
    /// `mod_vcard` only: vCards are stored as they are, nothing is converted.
    PlainVcard,
}

/// The password [`Prosody::start`] gives each listed user.
pub fn password_of(user: &str) -> String {
    format!("{user}-pw")
}

/// A running private server. Dropping it stops it.
pub struct Prosody {
    child: Child,
    dir: TempDir,
    config: PathBuf,
    /// Client-to-server port on 127.0.0.1.
    pub c2s_port: u16,
    /// XEP-0114 component port on 127.0.0.1.
    pub component_port: u16,
    mode: Mode,
    secret: String,
    users: Vec<String>,
}

/// A fresh temp dir for one server: certs dir and the mod_groups file (every listed user a contact of the others).
fn server_dir(users: &[&str]) -> tempfile::TempDir {
    ensure_installed();
    let dir = tempfile::Builder::new().prefix("prosody-e2e-").tempdir().expect("creating a temp dir for Prosody");
    fs::create_dir(dir.path().join("certs")).expect("creating Prosody's certs dir");
    fs::write(dir.path().join("groups.txt"), groups_file(users)).expect("writing the mod_groups file");
    dir
}

impl Prosody {
    /// Starts a server whose `users` (registered with [`password_of`]) are all mutual contacts.
    ///
    /// Users are listed up front because mod_groups reads its file once, at start; [`Prosody::register`] adds
    /// accounts later, but those have empty rosters.
    pub fn start(mode: Mode, users: &[&str]) -> Prosody {
        let dir = server_dir(users);
        fs::create_dir(dir.path().join("data")).expect("creating Prosody's data dir");
        Self::launch(mode, users, dir, |config| {
            for user in users {
                register(config, user, &password_of(user));
            }
        })
    }

    /// Starts a server on a copy of the Prosody data dir `data` (say, one written by prosody-migrator's import),
    /// registering nobody: the accounts, passwords, rosters, vCards and PEP nodes are the ones in `data`. `users`
    /// only fill the mod_groups file (every listed user a mutual contact of every other, as with [`Prosody::start`]).
    pub fn start_on_data(mode: Mode, users: &[&str], data: &Path) -> Prosody {
        let dir = server_dir(users);
        copy_dir(data, &dir.path().join("data"));
        Self::launch(mode, users, dir, |_| {})
    }

    /// Writes the config and starts the server in `dir`; `prepare` runs once, before the first start (accounts).
    fn launch(mode: Mode, users: &[&str], dir: tempfile::TempDir, prepare: impl FnOnce(&Path)) -> Prosody {
        // The temp dir's random suffix makes a per-server secret without another dependency.
        let secret = format!("secret-{}", dir.path().file_name().and_then(|n| n.to_str()).unwrap_or("x"));
        let config = dir.path().join("prosody.cfg.lua");
        let mut prepare = Some(prepare);
        // Free ports are picked by binding port 0 and releasing it: another process may grab one in between, so a
        // failed bind is retried with new ports.
        for attempt in 1..=3 {
            let c2s_port = free_port();
            let component_port =
                std::iter::repeat_with(free_port).find(|&p| p != c2s_port).expect("an endless iterator");
            let params =
                ConfigParams { dir: dir.path(), c2s_port, component_port, secret: &secret, mode, flavor: flavor() };
            fs::write(&config, render(&params)).expect("writing the Prosody config");
            if let Some(prepare) = prepare.take() {
                prepare(&config);
            }
            let mut child = spawn(&config, dir.path());
            match wait_ready(&mut child, dir.path(), [c2s_port, component_port]) {
                Ok(()) => {
                    let users = users.iter().map(|u| u.to_string()).collect();
                    return Prosody { child, dir, config, c2s_port, component_port, mode, secret, users };
                }
                Err(PortTaken) => {
                    stop(&mut child, STOP_TIMEOUT);
                    assert!(attempt < 3, "Prosody could not bind free ports 3 times:\n{}", log_tail(dir.path(), 30));
                    // Keep the failed run's log for diagnosis, out of the way of the next readiness check.
                    let log = dir.path().join("prosody.log");
                    fs::rename(&log, log.with_extension(format!("log.attempt{attempt}")))
                        .expect("setting aside the log of a failed start");
                }
            }
        }
        unreachable!("the loop returns or panics on its last attempt")
    }

    /// Stops the server now (SIGTERM by PID, then SIGKILL), keeping its dir and data until drop: what an operator
    /// does before exporting a data dir. Stopping twice is harmless.
    pub fn stop(&mut self) {
        stop(&mut self.child, STOP_TIMEOUT);
    }

    /// The server's `data_path` (internal storage: `localhost/accounts/alice.dat`, …).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Registers an account with `prosodyctl` (works while the server runs; not added to the shared group).
    pub fn register(&self, user: &str, password: &str) {
        register(&self.config, user, password);
    }

    /// The virtual host, `localhost`.
    pub fn domain(&self) -> &'static str {
        DOMAIN
    }

    /// The component JID the server expects on its component port, `avatars.localhost`.
    pub fn component_jid(&self) -> &'static str {
        COMPONENT
    }

    /// The XEP-0114 handshake secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The vCard module this server runs.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `user@localhost`.
    pub fn jid(&self, user: &str) -> String {
        format!("{user}@{DOMAIN}")
    }

    /// The users listed at start.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The debug-level server log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }

    /// The temp dir of this server, for files a test hands to clients (deleted with the server).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `name` in the server's temp dir and returns the absolute path.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        super::server::write_into(self.dir.path(), name, bytes)
    }

    /// The server's PID (the child itself: `prosody` execs Lua, it does not fork).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server by its PID and starts it again on the same ports, config and data dir (accounts, rosters,
    /// vCards and PEP survive), as an operator's restart does; returns once it accepts connections again. The
    /// previous run's log stays beside the new one as `prosody.log.pid<old PID>`.
    pub fn restart(&mut self) {
        let old_pid = self.child.id();
        stop(&mut self.child, STOP_TIMEOUT);
        // wait_ready looks for the "Activated service" lines: they must come from the new run.
        let log = self.log_path();
        fs::rename(&log, log.with_extension(format!("log.pid{old_pid}"))).expect("setting aside the previous log");
        let mut child = spawn(&self.config, self.dir.path());
        let ports = [self.c2s_port, self.component_port];
        if wait_ready(&mut child, self.dir.path(), ports).is_err() {
            stop(&mut child, STOP_TIMEOUT);
            panic!("Prosody could not bind its ports {ports:?} again:\n{}", log_tail(self.dir.path(), 30));
        }
        self.child = child;
    }

    /// The Lua config file (for `prosodyctl --config`).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The last `lines` lines of the log, for panic messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(self.dir.path(), lines)
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        stop(&mut self.child, STOP_TIMEOUT);
        // A failed test keeps its server's config, log and client logs for diagnosis (so can anyone, on request).
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("kept Prosody dir {} (log: prosody.log, clients: client-*.log)", self.dir.path().display());
        }
    }
}

/// A server that lost the race for its ports.
struct PortTaken;

/// Panics loudly when the server is missing: these tests must never pass without one.
fn ensure_installed() {
    let missing: Vec<&str> = ["prosody", "prosodyctl"].into_iter().filter(|b| !tool(b).is_file()).collect();
    let modules = Path::new("/usr/lib/prosody/modules");
    let no_modules = !modules.join("mod_privilege").exists() || !modules.join("mod_delegation").exists();
    if !missing.is_empty() || no_modules {
        panic!(
            "\n\n*** The end-to-end tests need a real Prosody (0.12 or 13) with prosody-modules ***\n\
             missing: {missing:?}{}\ninstall with:  {INSTALL_HINT}\n\n",
            if no_modules { " + mod_privilege/mod_delegation (prosody-modules)" } else { "" }
        );
    }
}

/// Polls until the server has bound both ports and written its pidfile; panics with the log tail if the process dies or the deadline passes.
fn wait_ready(child: &mut Child, dir: &Path, ports: [u16; 2]) -> Result<(), PortTaken> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("polling the Prosody child") {
            panic!("Prosody exited during start-up ({status}):\n{}", log_tail(dir, 40));
        }
        let log = fs::read_to_string(dir.join("prosody.log")).unwrap_or_default();
        if log.contains("Failed to open server port") {
            return Err(PortTaken);
        }
        // The log line, not only an accepting port: another process may hold a port we were handed.
        let [c2s, component] = ports;
        let ours = log.contains(&format!("Activated service 'c2s' on [127.0.0.1]:{c2s}"))
            && log.contains(&format!("Activated service 'component' on [127.0.0.1]:{component}"));
        // mod_posix writes the pidfile while modules load, maybe after the ports: waiting for it means
        // Prosody::pid() is the pidfile's PID from the moment start() returns.
        let pidfile = fs::read_to_string(dir.join("prosody.pid")).unwrap_or_default();
        let pid_written = pidfile.trim() == child.id().to_string();
        if ours && pid_written && ports.iter().all(|&p| accepts(p)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            stop(child, STOP_TIMEOUT);
            panic!("Prosody did not open ports {ports:?} within {START_TIMEOUT:?}:\n{}", log_tail(dir, 40));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Registers an account with `prosodyctl` (works before start and while the server runs).
fn register(config: &Path, user: &str, password: &str) {
    let out = Command::new(tool("prosodyctl"))
        .arg("--config")
        .arg(config)
        .args(["register", user, DOMAIN, password])
        .output()
        .unwrap_or_else(|e| panic!("running prosodyctl ({e}); install with: {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "prosodyctl register {user} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn log_tail(dir: &Path, lines: usize) -> String {
    let text = fs::read_to_string(dir.join("prosody.log")).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Copies a directory tree (a Prosody data dir: plain dirs and files).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("listing {}: {e}", from.display())) {
        let path = entry.expect("reading a directory entry").path();
        let target = to.join(path.file_name().expect("a directory entry has a name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
}

fn spawn(config: &Path, dir: &Path) -> Child {
    let output = fs::File::create(dir.join("prosody.stdout")).expect("creating Prosody's stdout file");
    let stderr = output.try_clone().expect("cloning Prosody's stdout file handle");
    let mut cmd = Command::new(tool("prosody"));
    // -F: stay in the foreground so the PID we hold is the server's (the `daemonize` option is deprecated).
    cmd.arg("--config").arg(config).arg("-F").current_dir(dir).stdin(Stdio::null()).stdout(output).stderr(stderr);
    spawn_tied_to_process(cmd).unwrap_or_else(|e| match e.kind() {
        ErrorKind::NotFound => panic!("prosody is not installed; install with: {INSTALL_HINT}"),
        _ => panic!("starting prosody: {e}"),
    })
}
