//! Avatar images for end-to-end tests, and the one hash every scheme uses.

use std::io::Cursor;
use std::path::Path;

use sha1::{Digest, Sha1};

/// Lower-case hex SHA-1 of the raw bytes: the XEP-0008 hash, XEP-0153 photo and XEP-0084 item id alike.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex::encode(Sha1::digest(bytes))
}

/// A small PNG whose pixels depend on `seed`, so two seeds give two different avatars (and hashes).
pub fn generated_png(seed: u8, side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        // Truncation to u8 is the point: a cheap gradient that wraps.
        image::Rgb([(x * 7) as u8 ^ seed, (y * 5) as u8, seed.wrapping_mul(31)])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encoding a generated PNG in memory");
    out.into_inner()
}

/// A PNG of noise (`seed` picks the noise): it barely compresses, so a `side`×`side` one weighs about
/// 3 × side² bytes (128 → ~49 KB), and each seed is a distinct avatar.
pub fn noisy_png(seed: u32, side: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let n = noise(seed, x, y);
        image::Rgb([n as u8, (n >> 8) as u8, (n >> 16) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).expect("encoding a noisy PNG in memory");
    out.into_inner()
}

/// A `side`×`side` JPEG at `quality`: a gradient under light noise, so that a large image stays small in bytes
/// (2000 × 2000 at quality 30 is ~125 KB) while decoding it costs what its pixel count costs.
pub fn large_jpeg(seed: u32, side: u32, quality: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let n = (noise(seed, x, y) % 8) as u8;
        // Truncation to u8 is the point: gradients that wrap.
        image::Rgb([((x / 8) as u8).wrapping_add(n), ((y / 8) as u8).wrapping_add(n), ((x + y) / 16) as u8 ^ n])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&img)
        .expect("encoding a JPEG in memory");
    out
}

/// A cheap deterministic hash of (seed, x, y): the noise of [`noisy_png`] and [`large_jpeg`].
fn noise(seed: u32, x: u32, y: u32) -> u32 {
    let mut h = seed.wrapping_mul(0x9e37_79b9) ^ x.wrapping_mul(0x85eb_ca6b) ^ y.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h.wrapping_mul(0x297a_2d39) ^ (h >> 15)
}

/// `fixtures/images/<name>` (see the README there for what each file exercises).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// (width, height) decoded from the header, for comparing with what a server or client reports.
pub fn dimensions(bytes: &[u8]) -> (u32, u32) {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("reading from memory cannot fail")
        .into_dimensions()
        .expect("the test image has a readable header")
}

/// A PNG avatar: the `seed`-th small PNG of `fixtures/images/` when there is one (real-world files), else a
/// generated 48×48 one. Small means under 64 KiB, so it fits a c2s stanza (256 KiB) as base64 in any scheme.
pub fn avatar_png(seed: u8) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let mut pngs: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("png")))
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() < 64 * 1024))
                .collect()
        })
        .unwrap_or_default();
    pngs.sort();
    match pngs.get(usize::from(seed)) {
        Some(path) => std::fs::read(path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display())),
        None => generated_png(seed, 48),
    }
}
