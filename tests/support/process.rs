//! Child processes of the tests: spawned so they die with the test binary, stopped by their own PID.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

/// Spawns `cmd` so that it receives SIGTERM if the test binary dies without unwinding (killed by a CI timeout),
/// which would otherwise leave a server running as root on a loopback port.
pub fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    // SAFETY: prctl(2) is async-signal-safe, and it is the only thing done between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    spawn_from_long_lived_thread(cmd)
}

/// SIGTERM, up to `grace` to exit, then SIGKILL — always by the child's own PID, never by name.
pub fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) only sends a signal; the PID is our own unreaped child, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("process {} ignored SIGTERM for {grace:?}; sending SIGKILL", child.id());
    let _ = child.kill(); // best effort: it may have exited in between
    let _ = child.wait();
}

/// A command and where to send the spawned child.
type SpawnRequest = (Command, Sender<io::Result<Child>>);

/// Spawns from one thread that lives as long as the test binary. PR_SET_PDEATHSIG fires when the *thread* that
/// forked exits, so spawning from a test thread or a tokio blocking-pool thread could kill the child mid-test.
fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("e2e-spawner".into())
            .spawn(move || {
                // The static sender is never dropped, so this loop (and the thread) lasts until the process exits.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn()); // the requester waits on the other end
                }
            })
            .expect("starting the spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send((cmd, reply_tx)).expect("the spawner thread lives as long as the process");
    reply_rx.recv().expect("the spawner thread answers every request")
}
