//! Prosody's `prosody-migrator` (0.12 or 13, the first on PATH: see [`super::prosody::tool`]) between a private server's data dir and XEP-0227 files.
//!
//! The unmodified script is run through `lua5.4` with a hook on the global `CFG_DATADIR`, because the xep0227
//! storage driver ignores any `path` and reads or writes `<user>@<host>.xml` files in the migrator's data dir, which
//! the script hard-codes as `/var/lib/prosody` (see shared/reference/test-servers.md). Nothing of the system's
//! Prosody is touched: the config file lives in a temp dir and `--root` keeps it from switching to user `prosody`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::prosody::{DOMAIN, tool};

/// Every store the avatar migration cares about: accounts (SCRAM), roster, vCards, private XML (where XEP-0008
/// `storage:client:avatar` data lives) and PEP (`pep-pubsub` = node configurations plus each `pep_<node>` archive).
pub const STORES: [&str; 5] = ["accounts", "roster", "vcard", "private", "pep-pubsub"];

const MIGRATOR: &str = "prosody-migrator";
const LUA: &str = "lua5.4";
const INSTALL_HINT: &str = "apt-get update && apt-get install -y prosody lua5.4";
/// Redirects the script's hard-coded data dir to `$X227_DIR` without editing it.
const HOOK: &str = "setmetatable(_G,{__newindex=function(t,k,v) if k=='CFG_DATADIR' then v=os.getenv('X227_DIR') end \
                    rawset(t,k,v) end})";

/// What one migrator run printed, for assertions and panic messages.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
}

/// Exports the internal store at `data` (a Prosody `data_path`, host [`DOMAIN`]) as one XEP-0227
/// `<user>@localhost.xml` per account into `out`, which must exist. `work` receives the migrator config.
pub fn export(data: &Path, out: &Path, work: &Path) -> Run {
    let input = format!(r#"type = "internal"; path = {}; hosts = {{ ["{DOMAIN}"] = {{ {} }} }};"#, lua(data), stores());
    run(&format!("input {{ {input} }}\noutput {{ type = \"xep0227\"; }}\n"), out, work, "export")
}

/// Imports the XEP-0227 files in `dir` (one `<user>@localhost.xml` per account, Prosody's layout) into a new
/// internal store at `data` (a Prosody `data_path`). `work` receives the migrator config.
pub fn import(dir: &Path, data: &Path, work: &Path) -> Run {
    let input = format!(r#"type = "xep0227"; hosts = {{ ["{DOMAIN}"] = {{ {} }} }};"#, stores());
    let output = format!(r#"type = "internal"; path = {};"#, lua(data));
    run(&format!("input {{ {input} }}\noutput {{ {output} }}\n"), dir, work, "import")
}

/// The `<user>@localhost.xml` files of a Prosody-layout export, sorted.
pub fn user_files(dir: &Path) -> Vec<PathBuf> {
    let suffix = format!("@{DOMAIN}.xml");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("reading a directory entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(&suffix)))
        .collect();
    files.sort();
    files
}

fn stores() -> String {
    STORES.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

/// A Lua string literal for a path (`{:?}` escapes the way Lua reads it for any path a temp dir produces).
fn lua(path: &Path) -> String {
    format!("{:?}", path.to_str().expect("a UTF-8 temp path"))
}

/// Runs `prosody-migrator input output` with `config` and the xep0227 driver's directory set to `x227_dir`.
fn run(config: &str, x227_dir: &Path, work: &Path, what: &str) -> Run {
    let migrator = ensure_installed();
    let cfg = work.join(format!("migrator-{what}.cfg.lua"));
    fs::write(&cfg, format!("-- Written by tests/support/migrator.rs for one {what}.\n{config}"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", cfg.display()));
    let out = Command::new(LUA)
        .arg("-e")
        .arg(HOOK)
        .arg(&migrator)
        .arg("--root")
        .arg(format!("--config={}", cfg.display()))
        .args(["input", "output"])
        .env("X227_DIR", x227_dir)
        .current_dir(work)
        .output()
        .unwrap_or_else(|e| panic!("running {LUA} {} ({e}); install with: {INSTALL_HINT}", migrator.display()));
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    fs::write(work.join(format!("migrator-{what}.log")), format!("{}\n{}", run.stdout, run.stderr))
        .expect("writing the migrator log");
    // Without --keep-going a failed store aborts the run; the closing "Done!" and the absence of error-level log
    // lines ("general    error\t…") are checked as well, so a half-done migration never passes for a whole one.
    let error_line = |l: &str| l.split_whitespace().nth(1) == Some("error");
    let failed = !out.status.success()
        || !run.stderr.contains("Done!")
        || run.stdout.lines().chain(run.stderr.lines()).any(error_line);
    assert!(
        !failed,
        "prosody-migrator {what} failed ({}), config {}:\n{}\n{}",
        out.status,
        cfg.display(),
        run.stdout,
        run.stderr
    );
    run
}

/// The migrator script; panics loudly when it or its Lua is missing: these tests must never pass without them.
fn ensure_installed() -> PathBuf {
    let lua_found =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(LUA).is_file()));
    let migrator = tool(MIGRATOR);
    if !migrator.is_file() || !lua_found {
        panic!(
            "\n\n*** The migration tests need Prosody's {MIGRATOR} and {LUA} ***\n\
             install with:  {INSTALL_HINT}\n\n"
        );
    }
    migrator
}
