//! systemd's readiness protocol (sd_notify(3)): `READY=1` once the component handshake is done, `STATUS=` as
//! the link comes and goes, `STOPPING=1` when a shutdown begins, and `WATCHDOG=1` pings when the unit sets
//! `WatchdogSec=`. Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.

use sd_notify::NotifyState;
use tracing::{debug, info};

/// Tells systemd the gateway is up: the unit's `Type=notify` start completes here, not at exec.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A new status line for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A shutdown has begun (systemd then waits for the exit instead of counting it as a crash).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Pings systemd's watchdog at half its interval, for as long as the runtime runs this task, if the unit asks for
/// it (`WatchdogSec=` sets `WATCHDOG_USEC`); returns at once otherwise. The ping comes from the link's own
/// (single-threaded) runtime, so a loop stuck in a handler stops it and systemd restarts the gateway.
pub async fn watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else { return };
    info!("systemd watchdog every {interval:?}");
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}

fn send(states: &[NotifyState]) {
    // A notification that cannot be delivered is not worth stopping for: systemd's timeouts report it.
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify: {e}");
    }
}
