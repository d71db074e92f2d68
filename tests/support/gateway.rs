//! The gateway binary, started beside a private Prosody or ejabberd ([`XmppServer`]) and stopped by its PID.

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use avatar_gateway::engine::grants::Direction;

use super::server::XmppServer;

/// Set to a gateway binary to run the e2e tests against it instead of the one Cargo built (say, a build of an
/// older commit, to see a test fail before its fix).
pub const BINARY_ENV: &str = "E2E_GATEWAY_BIN";

/// The gateway binary: [`BINARY_ENV`] when set; else Cargo names it for integration tests, and examples find it
/// beside their own directory.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BINARY_ENV) {
        return PathBuf::from(path);
    }
    match option_env!("CARGO_BIN_EXE_avatar-gateway") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().expect("the current executable's path");
            let profile_dir = exe.parent().and_then(|examples| examples.parent()).expect("target/<profile>/examples/");
            profile_dir.join("avatar-gateway")
        }
    }
}

/// What to add to the gateway's command line and environment.
#[derive(Default)]
pub struct Launch<'a> {
    /// Arguments before `run` (global options such as `--log-format json`).
    pub args: &'a [&'a str],
    /// Environment variables.
    pub env: &'a [(&'a str, &'a str)],
    /// The log's file name in the server's directory (default `gateway.log`; two gateways need two).
    pub log: Option<&'a str>,
}

/// A running `avatar-gateway run`. Dropping it stops it.
pub struct Gateway {
    child: Child,
    log: PathBuf,
}

impl Gateway {
    /// Starts the gateway for `server`'s component and waits until it has connected and reported its capabilities.
    pub fn start<S: XmppServer + ?Sized>(server: &S) -> Gateway {
        Self::start_with(server, &[])
    }

    /// Like [`Gateway::start`], with extra `--set section.key=value` overrides.
    pub fn start_with<S: XmppServer + ?Sized>(server: &S, overrides: &[&str]) -> Gateway {
        Self::start_logging(server, overrides, "avatar_gateway=debug")
    }

    /// Like [`Gateway::start_with`], logging at `filter` (`RUST_LOG` syntax) instead of debug: a test that makes the
    /// gateway receive hundreds of large stanzas keeps its log (and the log printed when it fails) readable.
    pub fn start_logging<S: XmppServer + ?Sized>(server: &S, overrides: &[&str], filter: &str) -> Gateway {
        Self::start_launched(server, overrides, filter, &Launch::default())
    }

    /// Like [`Gateway::start_logging`], with extra arguments and environment (`--log-format json`, systemd's
    /// `NOTIFY_SOCKET`).
    pub fn start_launched<S: XmppServer + ?Sized>(
        server: &S,
        overrides: &[&str],
        filter: &str,
        launch: &Launch,
    ) -> Gateway {
        let gateway = Self::spawn(server, overrides, filter, launch);
        gateway.wait_for_log("ON  ", Duration::from_secs(15));
        gateway
    }

    /// Starts a gateway and returns once its log shows `needle` (a standby waits for the lease and reports nothing).
    pub fn start_until<S: XmppServer + ?Sized>(
        server: &S,
        overrides: &[&str],
        launch: &Launch,
        needle: &str,
    ) -> Gateway {
        let gateway = Self::spawn(server, overrides, "avatar_gateway=debug", launch);
        gateway.wait_for_log(needle, Duration::from_secs(15));
        gateway
    }

    /// Like [`Gateway::start_with`], but returns once the capability report is complete, whatever it says: beside a
    /// server that grants less (ejabberd 23.01 has no IQ privilege) no direction may be on, so waiting for an `ON`
    /// line would wait for nothing. Give `gateway.report_delay_secs` in `overrides` to have the report written only
    /// after the delegations are announced.
    pub fn start_reporting<S: XmppServer + ?Sized>(server: &S, overrides: &[&str]) -> Gateway {
        let gateway = Self::spawn(server, overrides, "avatar_gateway=debug", &Launch::default());
        let start = Instant::now();
        while gateway.report().len() < Direction::ALL.len() {
            assert!(start.elapsed() < Duration::from_secs(20), "no complete capability report:\n{}", gateway.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        gateway
    }

    fn spawn<S: XmppServer + ?Sized>(server: &S, overrides: &[&str], filter: &str, launch: &Launch) -> Gateway {
        let log = server.dir().join(launch.log.unwrap_or("gateway.log"));
        let child = Command::new(binary())
            .args(launch.args)
            .args(arguments("run", server, overrides))
            .env("RUST_LOG", filter)
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("creating the gateway log"))
            .spawn()
            .expect("starting avatar-gateway");
        Gateway { child, log }
    }

    /// The capability report's lines so far: for each direction (in report order) the first `ON`/`OFF` line that
    /// names it. The report has one line per direction; [`Gateway::report_lines_for`] finds them all.
    pub fn report(&self) -> Vec<String> {
        let log = self.log();
        Direction::ALL
            .iter()
            .filter_map(|d| report_lines(&log, d.describe()).into_iter().next().map(str::to_owned))
            .collect()
    }

    /// Every capability-report line that names `direction` (a [`Direction::describe`] text).
    pub fn report_lines_for(&self, direction: &str) -> Vec<String> {
        report_lines(&self.log(), direction).into_iter().map(str::to_owned).collect()
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `needle` appears in the log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(start.elapsed() < timeout, "gateway log never showed {needle:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Counts log lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Kills the process with SIGKILL (`kill -9`: no shutdown path runs, nothing is flushed) and waits for it.
    pub fn kill(self) {
        drop(self);
    }

    /// How the process ended, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("polling the gateway child")
    }

    /// SIGTERM, as systemd stops the unit, and how the process ended (SIGKILL after 15 s).
    pub fn terminate(&mut self) -> ExitStatus {
        super::process::stop(&mut self.child, Duration::from_secs(15));
        self.child.wait().expect("reaping the gateway child")
    }

    /// The `[ops] listen` address the gateway logged it took (give `ops.listen=127.0.0.1:0` for a free port).
    pub fn ops_address(&self) -> String {
        self.wait_for_log("metrics on http://", Duration::from_secs(10));
        let log = self.log();
        let (_, rest) = log.split_once("metrics on http://").expect("waited for it");
        rest.split('/').next().expect("an address before /metrics").to_owned()
    }

    /// Fails when the process has ended (a crash: an abort on stack overflow panics nothing and logs one line).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            panic!("the gateway exited ({status}):\n{}", self.log());
        }
    }

    /// Fails when the gateway logged a store failure, a lost stream, a panic or a fatal runtime error.
    pub fn assert_healthy(&self) {
        let log = self.log();
        // " store: " with its space: the store's own module path (`avatar_gateway::store::lease`) is no failure.
        for bad in [" store: ", "stream lost", "panicked", "fatal runtime error"] {
            assert!(!log.contains(bad), "gateway log has {bad:?}:\n{log}");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log());
        }
    }
}

/// `subcommand` with the settings that reach `server` (its component port, name and secret, a store in its
/// directory), then `overrides` as further `--set`s.
fn arguments<S: XmppServer + ?Sized>(subcommand: &str, server: &S, overrides: &[&str]) -> Vec<String> {
    let store = server.dir().join("gateway.redb");
    let sets = [
        format!("server.address=127.0.0.1:{}", server.component_port()),
        format!("server.component={}", server.component_jid()),
        format!("server.secret={}", server.secret()),
        format!("gateway.store={}", store.display()),
        format!("gateway.report_delay_secs={}", server.report_delay_secs()),
        "gateway.iq_timeout_secs=5".into(),
    ];
    let mut args = vec![subcommand.to_owned()];
    for s in sets.iter().map(String::as_str).chain(overrides.iter().copied()) {
        args.push("--set".into());
        args.push(s.into());
    }
    args
}

/// Runs `avatar-gateway check` for `server` (`overrides` as `--set`s, then `extra` arguments); returns its exit
/// code and standard output (its log goes to the test's stderr).
pub fn check<S: XmppServer + ?Sized>(server: &S, overrides: &[&str], extra: &[&str]) -> (i32, String) {
    let output = Command::new(binary())
        .args(arguments("check", server, overrides))
        .args(extra)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("running avatar-gateway check");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Lines of `log` that report on `direction`: they name it and say `ON` or `OFF`.
fn report_lines<'a>(log: &'a str, direction: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(direction) && (l.contains("ON  ") || l.contains("OFF "))).collect()
}
