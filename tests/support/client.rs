//! A real XMPP client (slixmpp, `tests/clients/xmpp_client.py`) scripted with JSON lines.
//!
//! One process per connected resource. Each command gets exactly one JSON answer, `{"ok":true,...}` or
//! `{"ok":false,"error":"..."}`; stanza errors from the server are results (`"iq":"error","condition":...`),
//! not failures. Every command takes an optional `"timeout"` in seconds (default 10). Commands:
//!
//! | cmd | arguments | answer (besides ok) |
//! |---|---|---|
//! | `presence` | `x_avatar`: hash / `""` (`<x/>`) / null (absent); `x_update`: hash / `""` (`<photo/>`) / null (absent); `x_update_no_photo`: true = bare `<x/>`; `notify`: true = XEP-0115 caps with `urn:xmpp:avatar:metadata+notify`; optional `to`, `type`, `show`, `status` | `sent` (XML) |
//! | `wait_presence` | `jid` (bare); optional exact-match `x_avatar`, `x_update`, `type`; `after` (a seq) | last matching record: `from`, `type`, `show`, `x_avatar`, `x_avatar_element`, `x_update`, `x_update_element`, `seq`, `count` |
//! | `serve_iq_avatar` | `file` (null = stop serving), `mimetype` (null = attribute omitted, as Vacuum-IM; absent = sniffed), `error` (answer this condition instead), `wrap` | `sha1` |
//! | `served` | | `count`, `from` (requesters of answered gets) |
//! | `storage_set` | `file` (null = empty `<query/>`), `mimetype`, `wrap` | `type`/`iq`, `condition`, `error_type`, `app_condition`, `text`, `sha1` |
//! | `get_legacy` | `jid`, `ns` (`storage:client:avatar` or `jabber:iq:avatar`) | `type`/`iq`, `condition`, `has_data`, `mimetype`, `sha1`, `bytes`, `width`, `height`, `sniffed`, `xml` |
//! | `set_vcard_photo` | `file` (null = no PHOTO), `type` (absent = sniffed, null = no TYPE), `fn`, `extval`, `wrap` | `iq`, `condition`, `previous` (type of the vCard get), `sha1` |
//! | `get_vcard` | `jid` (bare; absent = own) | `iq`, `condition`, `vcard`, `photo`, `photo_sha1`, `type`, `extval`, `binval_len`, `other_fields` |
//! | `publish_pep` | `file` (null = empty metadata), `mimetype`, `access` (e.g. `"open"`, as publish-options), `extra_infos`, `wrap` | `sha1`, `data` and `metadata` outcomes, `iq` (of the metadata publish) |
//! | `get_pep` | `jid` (bare; absent = own) | `iq`, `condition`, `id` (metadata item id), `infos` (all attributes, as strings), `empty` (null = no item, true = item without `<info/>`), `data_sha1` (of the data item with that id), `data_outcome` |
//! | `wait_pep_event` | `jid`, `node` (default metadata), `item_id`, `after` (a seq) | `seq`, `from`, `node`, `item_id`, `publisher`, `infos` |
//! | `raw_iq` | `type`, `to`, `payload` (XML text) | `iq`, `condition`, `xml` |
//! | `raw_send` | `xml`: any stanza as text, written as it is (nothing awaited) | `sent` (length) |
//! | `raw_iq_text` | `xml`: an IQ as text, `id`: its id (the reply is awaited by it) | `iq`, `condition`, `error_type`, `from`, `xml` (without payload) |
//! | `flood` | `file` (a JPEG), `rate` (presences/s), `seconds`, `bursts` (per second, default 20), `serve` (`oldest` / `latest`): in the background, each presence the hash of a new variant of the JPEG (same pixels, another COM segment), every `jabber:iq:avatar` get answered with the oldest variant not served yet or the latest advertised | `sha1_first` |
//! | `flood_wait` | | `presences`, `served`, `elapsed` |
//!
//! Clients send no initial presence: a test sends `presence` itself (an observer must, to receive presences).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use serde_json::{Value, json};

use super::server::XmppServer;

const PYTHON: &str = "/usr/bin/python3";
/// Slack on top of the command's own timeout: the Python side bounds a command at 3 × timeout + 1 s.
const SLACK: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT_S: f64 = 10.0;
static SEQ: AtomicUsize = AtomicUsize::new(0);

/// One connected client resource.
pub struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    jid: String,
    stderr_path: PathBuf,
}

impl Client {
    /// Connects `user` with its start-up password ([`XmppServer::password_of`]) as resource `harness`.
    pub fn login<S: XmppServer + ?Sized>(server: &S, user: &str) -> Client {
        Client::connect(server, user, &server.password_of(user))
    }

    /// Connects `user@localhost/harness` and waits for the session to start.
    pub fn connect<S: XmppServer + ?Sized>(server: &S, user: &str, password: &str) -> Client {
        Client::connect_resource(server, user, password, "harness")
    }

    /// Connects `user@localhost/resource` (for tests with two resources of one account).
    pub fn connect_resource<S: XmppServer + ?Sized>(server: &S, user: &str, password: &str, resource: &str) -> Client {
        assert!(
            Path::new(PYTHON).exists(),
            "\n\n*** {PYTHON} is missing: apt-get install -y python3-slixmpp (the e2e clients need it) ***\n"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/xmpp_client.py");
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let stderr_path = server.dir().join(format!("client-{user}-{resource}-{n}.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("creating the client's log file");
        let full = format!("{}/{resource}", server.jid(user));
        // No death signal needed (unlike the servers): the client quits on EOF, which it gets when this process dies.
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .args(["--jid", &full, "--password", password, "--host", "127.0.0.1", "--port"])
            .arg(server.c2s_port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {PYTHON} {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("the client's stdout is piped");
        let stdin = child.stdin.take();
        let answers = read_lines(stdout);
        let mut client = Client { child, stdin, answers, jid: full, stderr_path };
        let ready = client.next_answer(Duration::from_secs_f64(DEFAULT_TIMEOUT_S) + SLACK, "the ready line");
        if ready["ok"] != json!(true) {
            panic!("client {} could not start: {}\n{}", client.jid, ready, client.stderr_tail(20));
        }
        if let Some(bound) = ready["jid"].as_str() {
            client.jid = bound.to_string();
        }
        client
    }

    /// The bound full JID.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The bare JID.
    pub fn bare_jid(&self) -> &str {
        self.jid.split('/').next().unwrap_or(&self.jid)
    }

    /// Sends one command and returns its answer, whatever `ok` says; panics if no answer comes in time.
    pub fn cmd(&mut self, command: Value) -> Value {
        let timeout = command.get("timeout").and_then(Value::as_f64).unwrap_or(DEFAULT_TIMEOUT_S);
        let line = format!("{command}\n");
        let stdin = self.stdin.as_mut().expect("the client's stdin is open until drop");
        if let Err(e) = stdin.write_all(line.as_bytes()).and_then(|()| stdin.flush()) {
            panic!("client {} is gone ({e}) before {command}:\n{}", self.jid, self.stderr_tail(20));
        }
        let bound = Duration::from_secs_f64(timeout * 3.0 + 1.0) + SLACK;
        self.next_answer(bound, &command.to_string())
    }

    /// [`Client::cmd`], asserting `"ok": true` (with the client's log in the panic message).
    pub fn ok(&mut self, command: Value) -> Value {
        let answer = self.cmd(command.clone());
        if answer["ok"] != json!(true) {
            panic!("client {}: {command}\n  failed: {answer}\n{}", self.jid, self.stderr_tail(20));
        }
        answer
    }

    /// The last lines of the client's stderr log.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("--- {} ---\n{}", self.stderr_path.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }

    fn next_answer(&mut self, bound: Duration, waiting_for: &str) -> Value {
        loop {
            let line = match self.answers.recv_timeout(bound) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("client {}: no answer to {waiting_for} within {bound:?}\n{}", self.jid, self.stderr_tail(30))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    panic!(
                        "client {} exited ({status}) before answering {waiting_for}\n{}",
                        self.jid,
                        self.stderr_tail(30)
                    )
                }
            };
            // Anything that is not JSON was printed by a library, not by the protocol: skip it.
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                return value;
            }
            eprintln!("client {}: ignoring non-JSON stdout line {line:?}", self.jid);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Ask politely (a clean stream close), then make sure: EOF on stdin also makes the client quit.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"cmd\":\"quit\"}\n"); // best effort: it may have died already
        }
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill(); // it ignored quit and EOF for 2 s: our own child, by its handle
        let _ = self.child.wait();
    }
}

/// Lines of stdout, delivered through a channel so reads can time out.
fn read_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
