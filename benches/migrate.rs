//! `avatar-gateway migrate xep0227` on a generated export: throughput and peak memory, against a plain copy.
//!
//! Writes (streaming, to a temporary directory) a one-file XEP-0227 export of realistic users: SCRAM credentials
//! and a roster for all, bookmarks in private XML for some, a vCard PHOTO for 40 % (from a pool of 50 distinct
//! small PNGs and JPEGs, so each is transcoded once and then found in the rendition cache), XEP-0008 data for 5 %,
//! an XEP-0084 avatar already for 10 % (skipped), offline messages for some. Then runs the release binary on it as
//! a child process and reads the child's peak RSS from `wait4`. The reference is a plain streaming copy of the same
//! file (read + write through 64 KiB buffers), measured in the same run. Two sizes show that peak memory does not
//! grow with the export.
//!
//! Run: `cargo bench --bench migrate` (100 000 users, ~350 MB; `MIGRATE_BENCH_USERS=20000` for a quick run).
//! Under `cargo test --benches` it runs once on a few hundred users as a smoke test.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::wire::b64;
use image::{ImageFormat, Rgb, RgbImage};

/// Distinct images in the pool.
const POOL: u32 = 50;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let large = match std::env::var("MIGRATE_BENCH_USERS") {
        Ok(n) => n.parse().expect("MIGRATE_BENCH_USERS is a number"),
        Err(_) if bench => 100_000,
        Err(_) => 300,
    };
    let small = (large / 10).max(100);
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let pool = image_pool();
    println!(
        "migrate xep0227: one-file export, {POOL} distinct images, the binary (release under cargo bench) as a child;"
    );
    println!("reference: a plain streaming copy of the same file (read + write, 64 KiB buffers), same run");
    println!(
        "{:>9} {:>9} {:>8} {:>8} {:>10} {:>12} {:>10} {:>9}",
        "users", "MB", "seconds", "MB/s", "users/s", "peak RSS MB", "copy MB/s", "vs copy"
    );
    for users in [small, large] {
        let export = dir.path().join(format!("export-{users}.xml"));
        generate(&export, users, &pool).expect("export written");
        let size = std::fs::metadata(&export).expect("export size").len() as f64 / 1e6;
        let (seconds, peak_kb) = migrate(&export, &dir.path().join(format!("out-{users}.xml")));
        let copy_rate = size / copy(&export, &dir.path().join("copy.xml"));
        println!(
            "{users:>9} {size:>9.1} {seconds:>8.2} {:>8.1} {:>10.0} {:>12.1} {copy_rate:>10.1} {:>8.1}%",
            size / seconds,
            users as f64 / seconds,
            peak_kb as f64 / 1024.0,
            100.0 * size / seconds / copy_rate
        );
        for name in [format!("out-{users}.xml"), "copy.xml".into(), "report.json".into(), format!("export-{users}.xml")]
        {
            let _ = std::fs::remove_file(dir.path().join(name));
        }
    }
}

/// Runs the migration; returns the wall time and the child's peak RSS in KiB.
#[allow(clippy::zombie_processes)] // reaped by `wait4`, which std's `Child::wait` cannot replace (no rusage)
fn migrate(export: &Path, out: &Path) -> (f64, i64) {
    let report = out.with_file_name("report.json");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_avatar-gateway"))
        .args(["migrate", "xep0227", "--report"])
        .arg(&report)
        .arg(export)
        .arg(out)
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let (status, peak_kb) = wait_with_rusage(child.id());
    let seconds = started.elapsed().as_secs_f64();
    assert!(status == 0, "the migration failed (wait status {status})");
    (seconds, peak_kb)
}

/// `wait4` the child: its exit status and peak resident set (KiB on Linux).
fn wait_with_rusage(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 only writes into the two locals passed by pointer.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    // SAFETY: `pid` is our own unreaped child; the pointers are valid for the duration of the call.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", io::Error::last_os_error());
    (status, usage.ru_maxrss)
}

/// A plain streaming copy of `from`; returns the seconds it took.
fn copy(from: &Path, to: &Path) -> f64 {
    let started = Instant::now();
    let mut input = File::open(from).expect("open");
    let mut output = File::create(to).expect("create");
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = input.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).expect("write");
    }
    output.flush().expect("flush");
    started.elapsed().as_secs_f64()
}

/// A small image of the pool, encoded: PNGs of 48 px and JPEGs of 64 px with a seeded pattern.
struct Image {
    base64: String,
    hash: AvatarHash,
    bytes: usize,
    mime: &'static str,
}

fn image_pool() -> Vec<Image> {
    (0..POOL)
        .map(|seed| {
            let (side, format, mime) =
                if seed % 2 == 0 { (48, ImageFormat::Png, "image/png") } else { (64, ImageFormat::Jpeg, "image/jpeg") };
            let mut state = seed.wrapping_mul(2_654_435_761) | 1;
            let picture = RgbImage::from_fn(side, side, |x, y| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let grain = (state % 24) as u8;
                Rgb([(x * 5) as u8 ^ grain, (y * 4 + seed) as u8, ((x + y) * 2) as u8 ^ grain])
            });
            let mut encoded = io::Cursor::new(Vec::new());
            picture.write_to(&mut encoded, format).expect("encode");
            let bytes = encoded.into_inner();
            Image { base64: b64::encode(&bytes), hash: AvatarHash::of(&bytes), bytes: bytes.len(), mime }
        })
        .collect()
}

/// A deterministic pseudo-random sequence (xorshift), so every run generates the same export.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Streams an export of `users` users to `path`, over four hosts.
fn generate(path: &Path, users: u64, pool: &[Image]) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    out.write_all(b"<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n")?;
    let hosts = ["example.org", "example.net", "chat.example.com", "im.example.edu"];
    for (h, host) in hosts.iter().enumerate() {
        writeln!(out, "<host jid='{host}'>")?;
        for n in (h as u64..users).step_by(hosts.len()) {
            user(&mut out, &mut dice, n, host, pool)?;
        }
        out.write_all(b"</host>\n")?;
    }
    out.write_all(b"</server-data>\n")?;
    out.flush()
}

fn user(out: &mut impl Write, dice: &mut Dice, n: u64, host: &str, pool: &[Image]) -> io::Result<()> {
    let image = &pool[dice.below(pool.len() as u64) as usize];
    write!(
        out,
        "<user name='user{n}'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
         <server-key>{k}=</server-key><stored-key>{k}=</stored-key><iter-count>4096</iter-count>\
         <salt>c2FsdHNhbHRzYWx0{n:08}</salt></scram-credentials><query xmlns='jabber:iq:roster' ver='{v}'>",
        k = "dGhpcyBpcyBub3QgYSBrZXkgYXQgYWxs",
        v = dice.below(1000)
    )?;
    for contact in 0..3 + dice.below(25) {
        write!(
            out,
            "<item subscription='both' name='Contact {contact} &amp; co' jid='user{}@{host}'><group>Friends</group></item>",
            dice.below(1_000_000)
        )?;
    }
    out.write_all(b"</query>")?;
    let roll = dice.below(100);
    if roll < 40 {
        write!(
            out,
            "<vCard xmlns='vcard-temp'><FN>User {n}</FN><N><FAMILY>Family</FAMILY><GIVEN>User</GIVEN></N>\
             <EMAIL><INTERNET/><USERID>user{n}@{host}</USERID></EMAIL><PHOTO><TYPE>{}</TYPE><BINVAL>{}</BINVAL>\
             </PHOTO></vCard>",
            image.mime, image.base64
        )?;
    } else if roll < 60 {
        write!(out, "<vCard xmlns='vcard-temp'><FN>User {n}</FN><NICKNAME>u{n}</NICKNAME></vCard>")?;
    }
    if dice.below(3) == 0 || (40..45).contains(&roll) {
        out.write_all(
            b"<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>\
              <conference jid='room@conference.example.org' autojoin='1' name='Room'><nick>me</nick></conference>\
              </storage>",
        )?;
        if (40..45).contains(&roll) {
            write!(
                out,
                "<query xmlns='storage:client:avatar'><data mimetype='{}'>{}</data></query>",
                image.mime, image.base64
            )?;
        }
        out.write_all(b"</query>")?;
    }
    if (60..70).contains(&roll) {
        let png = &pool[2 * dice.below(pool.len() as u64 / 2) as usize];
        write!(
            out,
            "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:avatar:data'/>\
             <configure node='urn:xmpp:avatar:metadata'/></pubsub><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <items node='urn:xmpp:avatar:data'><item id='{h}'><data xmlns='urn:xmpp:avatar:data'>{}</data></item>\
             </items><items node='urn:xmpp:avatar:metadata'><item id='{h}'><metadata xmlns='urn:xmpp:avatar:metadata'>\
             <info bytes='{}' id='{h}' type='image/png' width='48' height='48'/></metadata></item></items></pubsub>",
            png.base64,
            png.bytes,
            h = png.hash
        )?;
    }
    if dice.below(10) == 0 {
        write!(
            out,
            "<offline-messages><message xmlns='jabber:client' from='friend@{host}/phone' to='user{n}@{host}' \
             type='chat' id='m{n}'><body>Are you there? &lt;3</body><delay xmlns='urn:xmpp:delay' \
             stamp='2024-01-01T12:00:00Z'/></message></offline-messages>"
        )?;
    }
    out.write_all(b"</user>\n")
}
