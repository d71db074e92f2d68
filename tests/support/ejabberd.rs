//! A private ejabberd per test: own temp dir (config, Mnesia spool, logs, pidfile), own free loopback ports (c2s,
//! component, Erlang distribution), own node name; stopped with `ejabberdctl stop`, then by its PID.
//!
//! Never the system service, never `killall`: tests run in parallel and each owns exactly one node,
//! `ejabberd-e2e-<dist port>@localhost`. No epmd runs: `ERL_DIST_PORT` puts the node's distribution listener on
//! one loopback port, and every `ejabberdctl` command reaches the node there (shared/reference/test-servers.md).
//!
//! As root, Debian's `ejabberdctl` re-executes itself as user `ejabberd` (`su`), so the instance's dir is handed to
//! that user; the beam is then not our child: its PID comes from the pidfile (`EJABBERD_PID_PATH`), and a guard
//! child of ours (a shell tied to the test binary like the Prosody child, see [`super::process`]) sends it SIGTERM
//! if the test binary dies without dropping the server.
//!
//! Start-up is waited for by polling the log and the ports (about 0.7 s here), not with `ejabberdctl started`,
//! which sleeps 2 s between checks and would wait a minute for a node that already died of a taken port.
//!
//! # Hooks for running another ejabberd (a Debian trixie chroot with 24.12 or 26.x)
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `E2E_EJABBERDCTL` | `ejabberdctl` | the control script, found on `PATH` (inside the wrap, if one is set; else `/usr/sbin/ejabberdctl` when `PATH` lacks it) |
//! | `E2E_SERVER_WRAP` | none | a command prefix, split on whitespace, put before every server-side command (`ejabberdctl`, `dpkg-query`, `chown`): say `chroot /srv/trixie` |
//! | `E2E_SERVER_ROOT` | none (`/`) | the host path of the wrap's `/`: the instance's dir is made under `$E2E_SERVER_ROOT/tmp` and given to the server without that prefix |
//! | `E2E_EJABBERD_VERSION` | `dpkg-query -W ejabberd` (through the wrap) | the version the config is written for, e.g. `24.12`; checked against the version the started node logs |
//!
//! The ports are on the shared loopback, so clients and the gateway outside a chroot reach a server inside it.
//! Since ejabberd 24.10 the config also grants the XEP-0356 IQ permission (pubsub, pubsub#owner, vcard-temp both;
//! disco#info get), as the test Prosody does; 23.01 gets none (it would refuse the option).

use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ejabberd_config::{ConfigParams, ctl_config, render};
use super::process::spawn_tied_to_process;
pub use super::prosody::Mode;
use super::prosody::{KEEP_ENV, password_of};
use super::server::XmppServer;

/// The only virtual host.
pub const DOMAIN: &str = "localhost";
/// The gateway's component name, privileged and delegated on [`DOMAIN`].
pub const COMPONENT: &str = "avatars.localhost";
/// The control script, when [`CTL_ENV`] is not set.
const CTL: &str = "ejabberdctl";
/// Where Debian installs it, used when it is not on `PATH` (and no wrap is set).
const SBIN_CTL: &str = "/usr/sbin/ejabberdctl";
/// Environment variables for running another ejabberd (module doc).
pub const CTL_ENV: &str = "E2E_EJABBERDCTL";
pub const WRAP_ENV: &str = "E2E_SERVER_WRAP";
pub const ROOT_ENV: &str = "E2E_SERVER_ROOT";
pub const VERSION_ENV: &str = "E2E_EJABBERD_VERSION";
/// How long a node may take to open its ports (about 0.7 s here; a loaded CI machine runs several at once).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `ejabberdctl stop` gets before SIGTERM, and SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const INSTALL_HINT: &str = "apt-get update && apt-get install -y --no-install-recommends ejabberd python3-slixmpp";

/// An ejabberd release, `major.minor` as in `23.01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// Parses a Debian package version or a release: `23.01-1`, `1:24.12-1`, `26.07-1~bpo13+1`, `24.10`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.split_once(':').map_or(text, |(_epoch, rest)| rest);
        let (major, rest) = text.split_once('.')?;
        let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(Version { major: major.parse().ok()?, minor: minor.parse().ok()? })
    }

    /// Whether mod_privilege grants XEP-0356 IQ permissions (`urn:xmpp:privilege:2`): from 24.10 on.
    pub fn has_iq_privilege(self) -> bool {
        self >= Version { major: 24, minor: 10 }
    }

    /// Whether this is a release whose mod_privilege (XEP-0356 0.4, 24.10 to 25.02; Debian trixie's 24.12) has the
    /// two faults fixed in 25.03, both seen here on 24.12-3+deb13u2 and absent from 26.07:
    ///
    /// - it drops every IQ a privileged component sends to a bare JID without a `<privileged_iq/>` wrapper, answers
    ///   included (log: `IQ not forwarded: Component tried to send not wrapped IQ stanza.`), so mod_delegation never
    ///   gets the answer to its disco#info query and never announces a delegation, and plain reads such as a
    ///   vcard-temp get go unanswered (fixed by ejabberd commit a4062f6ac, "mod_privilege: Accept non-privileged IQs
    ///   from privileged components");
    /// - a privileged IQ whose inner `to` is the impersonated JID (an account acting on itself: every read and write
    ///   the gateway makes for an owner) is not processed: ejabberd_router sends the request itself back to the
    ///   component, `<iq type='get'><privilege><forwarded><iq type='get' …/>` (fixed by commit 64142de4f, "Don't
    ///   rewrite "self-addressed" privileged IQs as results").
    pub fn has_broken_privilege(self) -> bool {
        self.has_iq_privilege() && self < Version { major: 25, minor: 3 }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.major, self.minor)
    }
}

/// How server-side commands are run: the control script, a prefix (chroot), and where the prefix's `/` is.
#[derive(Clone, Debug)]
struct Runner {
    ctl: String,
    wrap: Vec<String>,
    root: Option<PathBuf>,
}

impl Runner {
    fn from_env() -> Runner {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let wrap: Vec<String> =
            var(WRAP_ENV).map(|w| w.split_whitespace().map(str::to_owned).collect()).unwrap_or_default();
        // Debian puts the script in /usr/sbin, which a non-login root shell may not have on PATH.
        let on_path =
            std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(CTL).is_file()));
        let default = if wrap.is_empty() && !on_path && Path::new(SBIN_CTL).is_file() { SBIN_CTL } else { CTL };
        Runner { ctl: var(CTL_ENV).unwrap_or_else(|| default.to_owned()), wrap, root: var(ROOT_ENV).map(PathBuf::from) }
    }

    /// `program` run through the wrap, if any.
    fn command(&self, program: &str) -> Command {
        match self.wrap.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// A host path as the server sees it (without the root prefix).
    fn server_path(&self, host: &Path) -> String {
        let inside = match &self.root {
            Some(root) => Path::new("/").join(
                host.strip_prefix(root)
                    .unwrap_or_else(|_| panic!("{} is not under {ROOT_ENV}={}", host.display(), root.display())),
            ),
            None => host.to_path_buf(),
        };
        inside.to_str().expect("temp paths are UTF-8").to_owned()
    }

    /// Where instance dirs are made on the host.
    fn temp_parent(&self) -> PathBuf {
        match &self.root {
            Some(root) => root.join("tmp"),
            None => std::env::temp_dir(),
        }
    }

    fn describe(&self) -> String {
        let mut words = self.wrap.clone();
        words.push(self.ctl.clone());
        words.join(" ")
    }
}

/// A running private ejabberd. Dropping it stops it.
pub struct Ejabberd {
    dir: TempDir,
    /// [`Ejabberd::dir`] as the server sees it.
    server_dir: String,
    runner: Runner,
    /// Client-to-server port on 127.0.0.1.
    pub c2s_port: u16,
    /// XEP-0114 component port on 127.0.0.1.
    pub component_port: u16,
    /// The Erlang distribution port on 127.0.0.1 (`ejabberdctl` talks to the node there).
    pub dist_port: u16,
    node: String,
    pid: u32,
    /// Sends the beam SIGTERM if the test binary dies first (module doc); killed after the node stopped.
    guard: Option<Child>,
    mode: Mode,
    version: Version,
    /// What the started node reported in its log, e.g. `23.01-1`.
    reported_version: String,
    secret: String,
    users: Vec<String>,
}

/// A node that lost the race for its ports (or died before saying why: the distribution port, most likely).
struct PortTaken(String);

impl Ejabberd {
    /// Starts a server with Debian's default vCard modules (mod_avatar + mod_vcard_xupdate: it converts vCard
    /// PHOTO <-> XEP-0084 itself), whose `users` (registered with [`password_of`]) are all mutual contacts.
    pub fn start(users: &[&str]) -> Ejabberd {
        Self::start_mode(Mode::VcardLegacy, users)
    }

    /// Starts a server with `mode`'s vCard modules: [`Mode::VcardLegacy`] = mod_vcard + mod_avatar +
    /// mod_vcard_xupdate (the server converts), [`Mode::PlainVcard`] = mod_vcard alone (nothing is converted).
    ///
    /// Users are listed up front because they become each other's contacts (subscription both, through
    /// `ejabberdctl push_alltoall`) once, at start; [`Ejabberd::register`] adds accounts later, with empty rosters.
    pub fn start_mode(mode: Mode, users: &[&str]) -> Ejabberd {
        let runner = Runner::from_env();
        let version = detect_version(&runner);
        // Free ports are picked by binding port 0 and releasing it: another process may grab one in between, so a
        // failed start is retried with new ports.
        for attempt in 1..=3 {
            let dir = instance_dir(&runner);
            let server_dir = runner.server_path(dir.path());
            let ports = distinct_free_ports::<3>();
            let [c2s_port, component_port, dist_port] = ports;
            let node = format!("ejabberd-e2e-{dist_port}@localhost");
            let name = dir.path().file_name().and_then(|n| n.to_str()).unwrap_or("x").to_owned();
            // Unique per server without another dependency: the temp dir's random name.
            let (secret, cookie) = (format!("secret-{name}"), format!("cookie-{name}"));
            let params = ConfigParams {
                dir: &server_dir,
                c2s_port,
                component_port,
                dist_port,
                node: &node,
                cookie: &cookie,
                secret: &secret,
                mode,
                version,
            };
            fs::write(dir.path().join("ejabberd.yml"), render(&params)).expect("writing ejabberd.yml");
            fs::write(dir.path().join("ejabberdctl.cfg"), ctl_config(&params)).expect("writing ejabberdctl.cfg");
            let mut server = Ejabberd {
                dir,
                server_dir,
                runner: runner.clone(),
                c2s_port,
                component_port,
                dist_port,
                node,
                pid: 0,
                guard: None,
                mode,
                version,
                reported_version: String::new(),
                secret,
                users: users.iter().map(|u| u.to_string()).collect(),
            };
            hand_to_ejabberd_user(&server);
            let started = server.ctl(&["start"]);
            assert!(started.status.success(), "{} start failed:\n{}", runner.describe(), show(&started));
            match server.wait_ready() {
                Ok(()) => {
                    server.check_version();
                    server.guard = Some(guard(server.pid));
                    server.add_users(users);
                    return server;
                }
                Err(PortTaken(why)) => {
                    server.stop();
                    assert!(
                        attempt < 3,
                        "ejabberd could not start on free ports 3 times: {why}\n{}",
                        server.log_tail(40)
                    );
                    eprintln!("ejabberd start attempt {attempt} failed ({why}); retrying on other ports. Its log:");
                    eprintln!("{}", server.log_tail(10));
                }
            }
        }
        unreachable!("the loop returns or panics on its last attempt")
    }

    /// Runs `ejabberdctl <args>` against this node (through the wrap, if any) and returns what it printed.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let d = &self.server_dir;
        let mut cmd = self.runner.command(&self.runner.ctl);
        cmd.args(["-d", d, "-c", &format!("{d}/ejabberdctl.cfg"), "-f", &format!("{d}/ejabberd.yml")])
            .args(["-s", &format!("{d}/spool"), "-l", &format!("{d}/logs")])
            .args(args)
            .stdin(Stdio::null());
        cmd.output()
            .unwrap_or_else(|e| panic!("running {} ({e}); install with: {INSTALL_HINT}", self.runner.describe()))
    }

    /// [`Ejabberd::ctl`], asserting success; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(out.status.success(), "ejabberdctl {} failed:\n{}\n{}", args.join(" "), show(&out), self.log_tail(20));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers an account (works while the server runs; not added to the others' rosters).
    pub fn register(&self, user: &str, password: &str) {
        self.ctl_ok(&["register", user, DOMAIN, password]);
    }

    /// Stops the node now (`ejabberdctl stop`, then SIGTERM and SIGKILL by its PID), keeping its dir until drop.
    /// Stopping twice is harmless.
    pub fn stop(&mut self) {
        if self.pid != 0 && is_our_beam(self.pid, &self.node) {
            let _ = self.ctl(&["stop"]); // best effort: the signals below follow if it did not work
            if !wait_gone(self.pid, &self.node, STOP_TIMEOUT) {
                eprintln!("ejabberd {} ignored `ejabberdctl stop` for {STOP_TIMEOUT:?}; sending SIGTERM", self.pid);
                signal(self.pid, libc::SIGTERM);
                if !wait_gone(self.pid, &self.node, STOP_TIMEOUT) {
                    eprintln!("ejabberd {} ignored SIGTERM for {STOP_TIMEOUT:?}; sending SIGKILL", self.pid);
                    signal(self.pid, libc::SIGKILL);
                    wait_gone(self.pid, &self.node, STOP_TIMEOUT);
                }
            }
        }
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.kill(); // our own child, by its handle; SIGKILL skips its trap
            let _ = guard.wait();
        }
    }

    /// The beam's PID (from the pidfile).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The Erlang node name, `ejabberd-e2e-<dist port>@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The release the config was written for.
    pub fn version(&self) -> Version {
        self.version
    }

    /// True, after printing `skipped on ejabberd<release>: …` (which `scripts/test-servers` reports as a skip), when
    /// this release's mod_privilege faults ([`Version::has_broken_privilege`]) keep `what` from working at all; the
    /// test then returns: `if server.skip_on_broken_privilege("…") { return; }`.
    pub fn skip_on_broken_privilege(&self, what: &str) -> bool {
        let skip = self.version.has_broken_privilege();
        if skip {
            eprintln!(
                "skipped on ejabberd{}: {what}; mod_privilege of ejabberd 24.10 to 25.02 drops the component's unwrapped \
                 IQs (so no delegation is ever activated) and sends self-addressed privileged IQs back unprocessed \
                 (fixed in 25.03)",
                self.version
            );
        }
        skip
    }

    /// What the started node says it is, e.g. `23.01-1`.
    pub fn reported_version(&self) -> &str {
        &self.reported_version
    }

    /// The vCard modules this server runs.
    pub fn mode(&self) -> Mode {
        self.mode
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

    /// `user@localhost`.
    pub fn jid(&self, user: &str) -> String {
        format!("{user}@{DOMAIN}")
    }

    /// The users listed at start.
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The temp dir of this server, for files a test hands to clients (deleted with the server).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `name` in the server's temp dir and returns the absolute path.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        super::server::write_into(self.dir.path(), name, bytes)
    }

    /// The server log (`loglevel: debug`: every routed stanza).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("logs/ejabberd.log")
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Polls the server log until `done` holds ([`super::PATIENCE`] at most, then panics with its tail); returns it.
    pub fn wait_for_log(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            assert!(start.elapsed() < super::PATIENCE, "ejabberd log: {what} never came:\n{}", self.log_tail(40));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `lines` lines of the log, for panic messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls until the node has written its pidfile, logged that it started and accepts on both ports.
    fn wait_ready(&mut self) -> Result<(), PortTaken> {
        let start = Instant::now();
        let (c2s, component) = (self.c2s_port, self.component_port);
        loop {
            let log = self.log();
            if log.contains("Failed to start ejabberd application") {
                self.pid = self.pid_now().unwrap_or(0);
                return if log.contains("eaddrinuse") {
                    Err(PortTaken("a listener port was taken".into()))
                } else {
                    self.stop();
                    panic!("ejabberd failed to start:\n{}", self.log_tail(60))
                };
            }
            match self.pid_now() {
                Some(pid) => self.pid = pid,
                // `ejabberdctl start` returns once the detached beam runs: gone now means it died, before logging
                // anything if its distribution port was taken.
                None if start.elapsed() > Duration::from_secs(3) && self.log().is_empty() => {
                    return Err(PortTaken("the node died at once (distribution port taken?)".into()));
                }
                None => {}
            }
            let ready = self.pid != 0
                && log.contains("is started in the node")
                && log.contains(&format!("Start accepting TCP connections at 127.0.0.1:{c2s} "))
                && log.contains(&format!("Start accepting TCP connections at 127.0.0.1:{component} "))
                && accepts(c2s)
                && accepts(component);
            if ready {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                self.stop();
                panic!(
                    "ejabberd did not open ports {c2s}, {component} within {START_TIMEOUT:?}:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The beam's PID: the pidfile's, or (before it is written) the process whose command line names our node.
    fn pid_now(&self) -> Option<u32> {
        let from_file =
            fs::read_to_string(self.dir.path().join("ejabberd.pid")).ok().and_then(|t| t.trim().parse().ok());
        from_file.filter(|&pid| is_our_beam(pid, &self.node)).or_else(|| find_beam(&self.node))
    }

    /// The config was written for `self.version`: the node must be that release.
    fn check_version(&mut self) {
        let log = self.log();
        // "… ejabberd_app:start/2:63 ejabberd 23.01-1 is started in the node '…' in 0.51s"
        let reported = log
            .lines()
            .find_map(|l| l.split_once(" is started in the node").and_then(|(head, _)| head.rsplit(' ').next()))
            .unwrap_or_default()
            .to_owned();
        let parsed = Version::parse(&reported);
        if parsed.map(|v| (v.major, v.minor)) != Some((self.version.major, self.version.minor)) {
            self.stop();
            panic!(
                "the config was written for ejabberd {} but the node reports {reported:?}: set {VERSION_ENV}",
                self.version
            );
        }
        self.reported_version = reported;
    }

    /// Registers every listed user (in parallel: each command starts an Erlang VM) and makes them mutual contacts.
    fn add_users(&self, users: &[&str]) {
        std::thread::scope(|s| {
            let handles: Vec<_> = users.iter().map(|u| s.spawn(move || self.register(u, &password_of(u)))).collect();
            for h in handles {
                if let Err(panic) = h.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
        if users.len() > 1 {
            // Every registered user in every other's roster, subscription both, group "harness".
            self.ctl_ok(&["push_alltoall", DOMAIN, "harness"]);
        }
    }
}

impl XmppServer for Ejabberd {
    fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    fn component_port(&self) -> u16 {
        self.component_port
    }

    fn component_jid(&self) -> &str {
        COMPONENT
    }

    fn secret(&self) -> &str {
        &self.secret
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn domain(&self) -> &str {
        DOMAIN
    }

    /// mod_privilege announces after mod_delegation's disco#info round trips (a few ms after the handshake here).
    fn report_delay_secs(&self) -> u64 {
        1
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        self.stop();
        // A failed test keeps its server's config, log and client logs for diagnosis (so can anyone, on request).
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "kept ejabberd dir {} (log: logs/ejabberd.log, clients: client-*.log)",
                self.dir.path().display()
            );
        }
    }
}

/// The release to write the config for: [`VERSION_ENV`], else the installed package's version.
fn detect_version(runner: &Runner) -> Version {
    if let Ok(text) = std::env::var(VERSION_ENV) {
        return Version::parse(&text).unwrap_or_else(|| panic!("{VERSION_ENV}={text:?} is not a version like 24.12"));
    }
    let out = runner.command("dpkg-query").args(["-W", "-f=${Version}", "ejabberd"]).output();
    let text = out.as_ref().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    match (out, Version::parse(&text)) {
        (Ok(o), Some(v)) if o.status.success() => v,
        _ => panic!(
            "\n\n*** The ejabberd end-to-end tests need a real ejabberd (Debian bookworm: 23.01) ***\n\
             `dpkg-query -W ejabberd` found none{}; install with:  {INSTALL_HINT}\n\
             (or set {VERSION_ENV}, {CTL_ENV}, {WRAP_ENV}, {ROOT_ENV} for another install)\n\n",
            if runner.wrap.is_empty() { String::new() } else { format!(" through {WRAP_ENV}={:?}", runner.wrap) }
        ),
    }
}

/// A fresh dir for one instance: spool, logs and an empty `inetrc` (ejabberdctl points ERL_INETRC at it).
fn instance_dir(runner: &Runner) -> TempDir {
    let parent = runner.temp_parent();
    let dir = tempfile::Builder::new()
        .prefix("ejabberd-e2e-")
        .tempdir_in(&parent)
        .unwrap_or_else(|e| panic!("creating a temp dir for ejabberd in {}: {e}", parent.display()));
    for sub in ["spool", "logs"] {
        fs::create_dir(dir.path().join(sub)).expect("creating ejabberd's spool and log dirs");
    }
    fs::write(dir.path().join("inetrc"), "").expect("writing ejabberd's inetrc");
    dir
}

/// As root, `ejabberdctl` runs the node as user `ejabberd`, which must own the instance's dir.
fn hand_to_ejabberd_user(server: &Ejabberd) {
    // SAFETY: geteuid(2) only reads the calling process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return; // then only user ejabberd itself may run ejabberdctl, and it owns what it creates
    }
    let out = server
        .runner
        .command("chown")
        .args(["-R", "ejabberd:ejabberd", &server.server_dir])
        .output()
        .unwrap_or_else(|e| panic!("running chown: {e}"));
    assert!(
        out.status.success(),
        "chown -R ejabberd: {} failed (is ejabberd installed?):\n{}",
        server.server_dir,
        show(&out)
    );
}

/// A shell of ours that outlives nothing: when the test binary dies it gets SIGTERM (PR_SET_PDEATHSIG) and passes
/// it on to the beam; it ends by itself once the beam is gone, and [`Ejabberd::stop`] kills it.
fn guard(pid: u32) -> Child {
    let script = r#"trap 'kill -TERM "$1" 2>/dev/null; exit 0' TERM; while kill -0 "$1" 2>/dev/null; do sleep 1 & wait $!; done"#;
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script, "ejabberd-e2e-guard", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_tied_to_process(cmd).expect("starting the ejabberd guard shell")
}

/// Whether `pid` is alive (not a zombie) and is the beam of `node`: a PID is never signalled once it could have
/// been reused.
fn is_our_beam(pid: u32, node: &str) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name: "1234 (beam.smp) S …".
    let alive = stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']));
    // `-sname NODE` exactly: ejabberdctl's own short-lived VMs name the node too, but after `-extra`.
    alive && cmdline(pid).windows(2).any(|w| (w[0] == "-sname" || w[0] == "-name") && w[1] == node)
}

/// The process running `node`, found by its exact node-name argument (`-sname ejabberd-e2e-<port>@localhost`).
fn find_beam(node: &str) -> Option<u32> {
    fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| cmdline(pid).first().is_some_and(|exe| exe.ends_with("beam.smp")) && is_our_beam(pid, node))
}

fn cmdline(pid: u32) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// Waits until `pid` is no longer `node`'s beam; false if it still is after `timeout`.
fn wait_gone(pid: u32, node: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_our_beam(pid, node) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) only sends a signal; the PID was just checked to be our node's beam.
        unsafe { libc::kill(pid, sig) };
    }
}

fn show(out: &Output) -> String {
    format!("({}) {}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `N` distinct free loopback ports.
fn distinct_free_ports<const N: usize>() -> [u16; N] {
    let mut ports = [0u16; N];
    for i in 0..N {
        ports[i] = std::iter::repeat_with(free_port).find(|p| !ports[..i].contains(p)).expect("an endless iterator");
    }
    ports
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
