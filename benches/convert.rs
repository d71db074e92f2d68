//! "vCard IQ in → XEP-0084 publish IQs out", against the floor of any conversion: base64-decoding and hashing the
//! same image.
//!
//! For each image in `fixtures/images/`, setup builds once the privileged vCard IQ result the server forwards
//! (XEP-0356 `<privilege><forwarded><iq type='result'><vCard>…<PHOTO><BINVAL>`). One `convert` iteration then does
//! what the gateway does with it: parse the stanza (minidom), unwrap the privileged reply, `VCard::parse` +
//! `photo()`, `Rendition::from_bytes`, `to_png`, build the data and metadata publishes, wrap each in its
//! privileged IQ and serialise both to strings. One `reference` iteration base64-decodes the BINVAL text of the
//! same stanza and SHA-1s the bytes. Both count throughput in bytes of input stanza.
//!
//! After divan's report, a plain table from a simple timing loop in the same process: a fixed number of
//! iterations, median of a few repeats.
//!
//! Run: `cargo bench --bench convert` (add a filter, e.g. `-- convert`, to run part of divan's report; the table
//! always covers every image).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::image::{ImageFormat, ImageLimits, PngRendition, Rendition};
use avatar_gateway::wire::component::{self, PrivilegedReply};
use avatar_gateway::wire::stanza::{Iq, IqType};
use avatar_gateway::wire::vcard::{Photo, VCard};
use avatar_gateway::wire::xep0084::{self, AccessModel};
use avatar_gateway::wire::{b64, xml};
use divan::Bencher;
use divan::counter::BytesCount;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

/// The fixtures, smallest to largest; those missing from `fixtures/images/` are skipped.
const IMAGES: &[&str] = &[
    "pixel-1x1.png",
    "avatar-96x96-alpha.png",
    "anim-80x60.gif",
    "photo-300x200.jpg",
    "lossless-128x128.webp",
    "large-1600x1200.jpg",
];

/// Own timing loop: iterations per repeat, and repeats (the median is reported).
const TABLE_ITERATIONS: u32 = 20;
const TABLE_REPEATS: usize = 5;

fn main() {
    divan::main();
    // Only under `cargo bench` (which passes `--bench`): `cargo test --benches` runs each benchmark once as a smoke
    // test, and the table would add minutes of debug-build timing to it.
    if std::env::args().any(|a| a == "--bench") {
        table();
        breakdown();
    }
}

/// One image's input stanza, built once.
struct Case {
    stanza: String,
    /// Where the BINVAL text sits in `stanza`, for the reference.
    binval: std::ops::Range<usize>,
}

impl Case {
    fn binval(&self) -> &str {
        &self.stanza[self.binval.clone()]
    }
}

/// `name` anywhere under `fixtures/images/` (the directory may be split into sub-directories).
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                return Some(path);
            }
        }
    }
    None
}

fn load(name: &str) -> Option<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    std::fs::read(find(&root, name)?).ok()
}

fn existing_images() -> impl Iterator<Item = &'static str> {
    IMAGES.iter().copied().filter(|name| load(name).is_some())
}

/// The privileged vCard IQ result as Prosody forwards it, PHOTO in the middle of a typical vCard, the BINVAL one
/// unwrapped line (what most clients send; wrapped base64 costs the same whitespace filter either way).
fn case(name: &str) -> Case {
    let bytes = load(name).unwrap_or_else(|| panic!("{name}: not in fixtures/images"));
    let mime = ImageFormat::sniff(&bytes).map_or("image/png", |f| f.mime());
    let head = format!(
        "<iq xmlns='jabber:component:accept' type='result' id='gw-17' from='alice@example.org' \
         to='avatars.example.org'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>\
         <iq xmlns='jabber:client' type='result' id='gw-17-v' from='alice@example.org' to='avatars.example.org'>\
         <vCard xmlns='vcard-temp'><FN>Alice Example</FN><N><FAMILY>Example</FAMILY><GIVEN>Alice</GIVEN></N>\
         <NICKNAME>alice</NICKNAME><EMAIL><INTERNET/><USERID>alice@example.org</USERID></EMAIL>\
         <PHOTO><TYPE>{mime}</TYPE><BINVAL>"
    );
    let tail = "</BINVAL></PHOTO><URL>https://example.org/~alice</URL></vCard></iq></forwarded></privilege></iq>";
    let b64 = b64::encode(&bytes);
    let binval = head.len()..head.len() + b64.len();
    Case { stanza: format!("{head}{b64}{tail}"), binval }
}

/// What the gateway does with the stanza: everything from text in to the two publish IQs' text out.
fn convert(stanza: &str, limits: &ImageLimits) -> (String, String) {
    let original = Rendition::from_bytes(read_photo(stanza), limits).expect("valid image");
    let png = original.to_png(limits).expect("PNG rendition");
    publishes(&original, &png)
}

/// Stage 1: stanza text → minidom → privileged reply → vCard → PHOTO bytes.
fn read_photo(stanza: &str) -> Vec<u8> {
    let outer: Element = stanza.parse().expect("stanza parses");
    let reply = Iq::parse(&outer).expect("iq envelope");
    let PrivilegedReply::Result(Some(vcard)) = component::privileged_reply(&reply, &outer) else {
        panic!("not a privileged vCard result")
    };
    let vcard = VCard::parse(vcard).expect("vCard");
    let Ok(Photo::Binval { bytes, .. }) = vcard.photo() else { panic!("no BINVAL") };
    bytes
}

/// Last stage: the data and metadata publishes, each in its privileged IQ, serialised.
fn publishes(original: &Rendition, png: &PngRendition) -> (String, String) {
    let access = Some(AccessModel::Presence);
    let alice = BareJid::new("alice@example.org").expect("a valid JID");
    let publish = |id: &str, payload: Element| {
        xml::to_string(&component::privileged_iq(id, "avatars.example.org", &alice, &alice, IqType::Set, payload))
    };
    let alternates: Vec<&Rendition> = if original.hash() == png.hash() { vec![] } else { vec![original] };
    (
        publish("gw-18", xep0084::publish_data(png, access)),
        publish("gw-19", xep0084::publish_metadata(png, &alternates, access)),
    )
}

/// The floor: base64-decode the same BINVAL text and hash the bytes.
fn reference(binval: &str) -> AvatarHash {
    AvatarHash::of(&b64::decode(binval).expect("base64"))
}

#[divan::bench(args = existing_images(), sample_count = 30, max_time = 5)]
fn vcard_to_pep(bencher: Bencher, name: &str) {
    let case = case(name);
    let limits = ImageLimits::default();
    bencher.counter(BytesCount::of_str(&case.stanza)).bench(|| convert(black_box(&case.stanza), &limits));
}

#[divan::bench(args = existing_images(), sample_count = 30, max_time = 5)]
fn decode_and_hash(bencher: Bencher, name: &str) {
    let case = case(name);
    bencher.counter(BytesCount::of_str(&case.stanza)).bench(|| reference(black_box(case.binval())));
}

/// Median time of one call of `f`, over [`TABLE_REPEATS`] repeats of [`TABLE_ITERATIONS`] calls.
fn median_per_call<O>(mut f: impl FnMut() -> O) -> Duration {
    black_box(f()); // warm-up
    let mut repeats: Vec<Duration> = (0..TABLE_REPEATS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..TABLE_ITERATIONS {
                black_box(f());
            }
            start.elapsed() / TABLE_ITERATIONS
        })
        .collect();
    repeats.sort();
    repeats[repeats.len() / 2]
}

fn table() {
    let limits = ImageLimits::default();
    println!();
    println!(
        "own loop: {TABLE_ITERATIONS} iterations × {TABLE_REPEATS} repeats, median; MB/s = 10^6 bytes of input \
         stanza per second; ratio = convert time / reference time"
    );
    println!(
        "{:<24} | {:>13} | {:>15} | {:>8} | {:>13}",
        "image", "convert MB/s", "reference MB/s", "ratio", "stanza bytes"
    );
    println!("{:-<24}-|-{:->13}-|-{:->15}-|-{:->8}-|-{:->13}", "", "", "", "", "");
    for name in existing_images() {
        let case = case(name);
        // Both paths read the same image: the metadata advertises the original's hash (as the PNG's item id when the
        // original is kept as the PNG, else as an alternate <info/>), which is what the reference computes.
        let (_, metadata) = convert(&case.stanza, &limits);
        assert!(metadata.contains(&reference(case.binval()).to_string()), "{name}: {metadata}");
        let convert_time = median_per_call(|| convert(black_box(&case.stanza), &limits));
        let reference_time = median_per_call(|| reference(black_box(case.binval())));
        let mbps = |t: Duration| case.stanza.len() as f64 / t.as_secs_f64() / 1e6;
        println!(
            "{:<24} | {:>13.2} | {:>15.2} | {:>7.0}× | {:>13}",
            name,
            mbps(convert_time),
            mbps(reference_time),
            convert_time.as_secs_f64() / reference_time.as_secs_f64(),
            case.stanza.len()
        );
    }
}

/// Where `convert`'s time goes, stage by stage, in the same loop (each stage timed alone on prepared input).
fn breakdown() {
    let limits = ImageLimits::default();
    println!();
    println!("convert, by stage (median ms per call)");
    println!(
        "{:<24} | {:>10} | {:>12} | {:>10} | {:>10} | {:>10}",
        "image", "read_photo", "from_bytes", "to_png", "publishes", "total"
    );
    println!("{:-<24}-|-{:->10}-|-{:->12}-|-{:->10}-|-{:->10}-|-{:->10}", "", "", "", "", "", "");
    for name in existing_images() {
        let case = case(name);
        let bytes = read_photo(&case.stanza);
        let original = Rendition::from_bytes(bytes.clone(), &limits).expect("valid image");
        let png = original.to_png(&limits).expect("PNG rendition");
        let ms = |t: Duration| t.as_secs_f64() * 1e3;
        let read = median_per_call(|| read_photo(black_box(&case.stanza)));
        let validate = median_per_call(|| Rendition::from_bytes(black_box(bytes.clone()), &limits));
        let transcode = median_per_call(|| black_box(&original).to_png(&limits));
        let emit = median_per_call(|| publishes(black_box(&original), &png));
        let total = median_per_call(|| convert(black_box(&case.stanza), &limits));
        println!(
            "{:<24} | {:>10.3} | {:>12.3} | {:>10.3} | {:>10.3} | {:>10.3}",
            name,
            ms(read),
            ms(validate),
            ms(transcode),
            ms(emit),
            ms(total)
        );
    }
}
