//! Behaviour of `src/image.rs` on the committed images in `fixtures/images/` (see its README.md).
//!
//! Every rendition any test produces goes through [`checked`], which holds the rule every reader enforces: the
//! hash is the SHA-1 of exactly the bytes served, and the bytes are what the format says they are.

use std::path::Path;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::image::{ImageError, ImageFormat, ImageLimits, PngRendition, Rendition, Transcoded};

/// Every fixture that must be accepted: name, real format, width, height.
const VALID: &[(&str, ImageFormat, u32, u32)] = &[
    ("avatar-96x96-alpha.png", ImageFormat::Png, 96, 96),
    ("photo-300x200.jpg", ImageFormat::Jpeg, 300, 200),
    ("photo-progressive-300x200.jpg", ImageFormat::Jpeg, 300, 200),
    ("anim-80x60.gif", ImageFormat::Gif, 80, 60),
    ("lossless-128x128.webp", ImageFormat::Webp, 128, 128),
    ("pixel-1x1.png", ImageFormat::Png, 1, 1),
    ("tiny-5x3.jpg", ImageFormat::Jpeg, 5, 3),
    ("large-1600x1200.jpg", ImageFormat::Jpeg, 1600, 1200),
    ("noisy-64x64.png", ImageFormat::Png, 64, 64),
];

fn bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(name: &str, limits: &ImageLimits) -> Rendition {
    checked(Rendition::from_bytes(bytes(name), limits).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// The invariants of every rendition, whoever made it: hash of the very bytes, honest format and dimensions.
fn checked(r: Rendition) -> Rendition {
    assert_eq!(AvatarHash::of(r.bytes()), r.hash(), "{r:?}: hash is not SHA-1 of the bytes");
    assert_eq!(ImageFormat::sniff(r.bytes()), Some(r.format()), "{r:?}: bytes are not the claimed format");
    assert_eq!(r.mime(), r.format().mime());
    // Re-reading the bytes from scratch finds the same image the rendition describes.
    let again = Rendition::from_bytes(r.bytes().to_vec(), &ImageLimits::default())
        .unwrap_or_else(|e| panic!("{r:?}: its own bytes do not validate: {e}"));
    assert_eq!((again.width(), again.height(), again.format()), (r.width(), r.height(), r.format()), "{r:?}");
    r
}

/// [`checked`] for the XEP-0084 PNG, which also must really be a PNG.
fn checked_png(png: PngRendition) -> Rendition {
    assert_eq!(png.format(), ImageFormat::Png, "{png:?}");
    checked(Rendition::clone(&png))
}

/// `w×h` has the aspect ratio of `orig_w×orig_h`, give or take the rounding of one pixel on the short side.
fn assert_aspect_kept(what: &str, (w, h): (u32, u32), (orig_w, orig_h): (u32, u32)) {
    let cross = (u64::from(w) * u64::from(orig_h)).abs_diff(u64::from(h) * u64::from(orig_w));
    assert!(cross <= u64::from(orig_w.max(orig_h)), "{what}: {w}×{h} is not the shape of {orig_w}×{orig_h}");
}

// ---------------------------------------------------------------------------------------------------------------
// Recognising bytes

#[test]
fn sniffs_every_format_from_its_magic_bytes() {
    for &(name, format, ..) in VALID {
        assert_eq!(ImageFormat::sniff(&bytes(name)), Some(format), "{name}");
        let r = load(name, &ImageLimits::default());
        assert_eq!(r.format(), format, "{name}");
    }
    assert_eq!(ImageFormat::Png.mime(), "image/png");
    assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
    assert_eq!(ImageFormat::Gif.mime(), "image/gif");
    assert_eq!(ImageFormat::Webp.mime(), "image/webp");
}

#[test]
fn only_the_leading_bytes_count_never_a_name_or_label() {
    // Called .png, and it even says PNG: still text.
    let text = bytes("invalid/not-an-image.png");
    assert_eq!(ImageFormat::sniff(&text), None);
    // Magic bytes followed by anything sniff as that format (decoding is what refuses the rest).
    assert_eq!(ImageFormat::sniff(b"\xff\xd8\xff\xe0 whatever follows"), Some(ImageFormat::Jpeg));
    assert_eq!(ImageFormat::sniff(b"GIF87a"), Some(ImageFormat::Gif));
    assert_eq!(ImageFormat::sniff(b"GIF89a"), Some(ImageFormat::Gif));
    assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8L"), Some(ImageFormat::Webp));
    // Look-alikes: another RIFF type, a GIF version that does not exist, a PNG signature with a broken byte.
    assert_eq!(ImageFormat::sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
    assert_eq!(ImageFormat::sniff(b"GIF88a"), None);
    assert_eq!(ImageFormat::sniff(b"\x89PNG\r\n\x1a\r"), None);
    // Every proper prefix of a signature is too short to tell, and none panics.
    for &(name, format, ..) in VALID {
        let signature_len = match format {
            ImageFormat::Png => 8,
            ImageFormat::Jpeg => 3,
            ImageFormat::Gif => 6,
            ImageFormat::Webp => 12,
        };
        let b = bytes(name);
        for len in 0..signature_len {
            assert_eq!(ImageFormat::sniff(&b[..len]), None, "{name}[..{len}]");
        }
    }
}

#[test]
fn reads_dimensions() {
    for &(name, _, width, height) in VALID {
        let r = load(name, &ImageLimits::default());
        assert_eq!((r.width(), r.height()), (width, height), "{name}");
        assert_eq!(r.bytes(), &bytes(name)[..], "{name}: from_bytes keeps the bytes as received");
    }
}

#[test]
fn fixture_folder_layout_holds() {
    // Helpers elsewhere (tests/support/images.rs) take "any PNG in fixtures/images" as a good avatar: so every
    // image at the top level must be valid and listed here, and every file in invalid/ must be refused.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("readable entry"))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".md") && !n.ends_with(".py"))
            .collect();
        names.sort();
        names
    };
    let mut listed: Vec<String> = VALID.iter().map(|(name, ..)| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(names(&dir), listed, "top-level fixtures and VALID differ");
    let invalid = names(&dir.join("invalid"));
    assert_eq!(invalid.len(), 5);
    for name in invalid {
        let refused = Rendition::from_bytes(bytes(&format!("invalid/{name}")), &ImageLimits::default());
        assert!(refused.is_err(), "invalid/{name} was accepted: {refused:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Refusing bad input

#[test]
fn decompression_bomb_is_refused_from_its_header() {
    let limits = ImageLimits::default();
    // A genuine PNG of 100 Mpx in 12 KB: refused on the header's say-so, before any decoding.
    assert_eq!(
        Rendition::from_bytes(bytes("invalid/bomb-10000x10000.png"), &limits),
        Err(ImageError::TooManyPixels { width: 10_000, height: 10_000, limit: limits.max_pixels })
    );
    // A 69-byte file promising 4 Gpx.
    assert_eq!(
        Rendition::from_bytes(bytes("invalid/absurd-65535x65535.png"), &limits),
        Err(ImageError::TooManyPixels { width: 65_535, height: 65_535, limit: limits.max_pixels })
    );
}

#[test]
fn truncated_pixel_data_is_refused_as_undecodable() {
    let limits = ImageLimits::default();
    // Header intact, data cut: the header is read, so the refusal is `Decode`, naming the sniffed format.
    assert!(
        matches!(
            Rendition::from_bytes(bytes("invalid/truncated.png"), &limits),
            Err(ImageError::Decode { format: ImageFormat::Png, .. })
        ),
        "truncated.png"
    );
    // The JPEG decoder would fill the missing rows with grey; the end-of-image check refuses it instead.
    assert!(
        matches!(
            Rendition::from_bytes(bytes("invalid/truncated.jpg"), &limits),
            Err(ImageError::Decode { format: ImageFormat::Jpeg, .. })
        ),
        "truncated.jpg"
    );
}

#[test]
fn a_cut_inside_the_header_is_a_bad_header() {
    let limits = ImageLimits::default();
    // PNG signature plus half an IHDR.
    let png = bytes("avatar-96x96-alpha.png");
    assert!(matches!(
        Rendition::from_bytes(png[..20].to_vec(), &limits),
        Err(ImageError::BadHeader { format: ImageFormat::Png, .. })
    ));
    // JPEG SOI and the start of APP0, no frame header yet.
    let jpeg = bytes("photo-300x200.jpg");
    assert!(matches!(
        Rendition::from_bytes(jpeg[..10].to_vec(), &limits),
        Err(ImageError::BadHeader { format: ImageFormat::Jpeg, .. })
    ));
}

#[test]
fn every_cut_that_loses_pixel_data_is_refused() {
    let limits = ImageLimits::default();
    // JPEG: every cut before the final EOI. PNG: every cut before the IEND chunk (a PNG missing only IEND, or
    // its CRC, has all its pixels and may be accepted). Stride 7 plus the last bytes keep this fast in debug.
    let cases: &[(&str, usize)] = &[
        ("photo-300x200.jpg", 0),
        ("photo-progressive-300x200.jpg", 0),
        ("tiny-5x3.jpg", 0),
        ("avatar-96x96-alpha.png", 12),
        ("noisy-64x64.png", 12),
        ("pixel-1x1.png", 12),
    ];
    for &(name, may_miss) in cases {
        let b = bytes(name);
        let last = b.len() - may_miss;
        let cuts = (0..last).step_by(7).chain(last.saturating_sub(16)..last);
        for cut in cuts {
            match Rendition::from_bytes(b[..cut].to_vec(), &limits) {
                Err(
                    ImageError::Empty
                    | ImageError::UnknownFormat(_)
                    | ImageError::BadHeader { .. }
                    | ImageError::Decode { .. },
                ) => {}
                other => panic!("{name} cut at {cut} of {}: {other:?}", b.len()),
            }
        }
    }
}

#[test]
fn jpeg_end_check_skips_segments_and_tolerates_trailing_bytes() {
    let limits = ImageLimits::default();
    let photo = bytes("photo-300x200.jpg");
    // Bytes after EOI (some cameras and editors append data) do not matter.
    let mut trailing = photo.clone();
    trailing.extend_from_slice(b"\0\0trailing junk\xff");
    let r = checked(Rendition::from_bytes(trailing, &limits).expect("trailing bytes after EOI"));
    assert_eq!((r.width(), r.height()), (300, 200));

    // An APP1 segment carrying a whole JPEG (as an EXIF thumbnail does), EOI included, right after SOI.
    let thumb = bytes("tiny-5x3.jpg");
    let mut with_thumb = photo[..2].to_vec();
    with_thumb.extend_from_slice(&[0xff, 0xe1]);
    with_thumb.extend_from_slice(&u16::try_from(thumb.len() + 2).unwrap().to_be_bytes());
    with_thumb.extend_from_slice(&thumb);
    with_thumb.extend_from_slice(&photo[2..]);
    let r = checked(Rendition::from_bytes(with_thumb.clone(), &limits).expect("JPEG with a thumbnail segment"));
    assert_eq!((r.width(), r.height()), (300, 200));
    // Cut in the main image's data: the thumbnail's EOI must not pass for the image's own.
    let cut = with_thumb.len() * 3 / 4;
    assert!(matches!(
        Rendition::from_bytes(with_thumb[..cut].to_vec(), &limits),
        Err(ImageError::Decode { format: ImageFormat::Jpeg, .. })
    ));
}

#[test]
fn text_and_empty_input_are_refused() {
    let limits = ImageLimits::default();
    let text = bytes("invalid/not-an-image.png");
    assert_eq!(Rendition::from_bytes(text.clone(), &limits), Err(ImageError::UnknownFormat(text[..8].to_vec())));
    assert_eq!(Rendition::from_bytes(Vec::new(), &limits), Err(ImageError::Empty));
}

// ---------------------------------------------------------------------------------------------------------------
// The XEP-0084 PNG

#[test]
fn png_within_the_pep_budget_passes_through_untouched() {
    let limits = ImageLimits::default();
    for name in ["avatar-96x96-alpha.png", "pixel-1x1.png", "noisy-64x64.png"] {
        let original = load(name, &limits);
        let png = checked_png(original.to_png(&limits).unwrap());
        // Same bytes, same hash: every scheme can advertise the one hash the owner's client already uses.
        assert_eq!(png.hash(), original.hash(), "{name}");
        assert_eq!(png.bytes(), original.bytes(), "{name}");
        assert_eq!(png, original, "{name}");
    }
}

#[test]
fn other_formats_are_transcoded_to_png() {
    let limits = ImageLimits::default();
    for name in [
        "photo-300x200.jpg",
        "photo-progressive-300x200.jpg",
        "anim-80x60.gif",
        "lossless-128x128.webp",
        "tiny-5x3.jpg",
    ] {
        let original = load(name, &limits);
        let png = checked_png(original.to_png(&limits).unwrap_or_else(|e| panic!("{name}: {e}")));
        assert_eq!(png.format(), ImageFormat::Png, "{name}");
        assert_ne!(png.hash(), original.hash(), "{name}");
        // All of these fit the PEP side already: same size, no upscaling, no needless downscaling.
        assert_eq!((png.width(), png.height()), (original.width(), original.height()), "{name}");
        assert!(png.bytes().len() <= limits.pep_max_bytes, "{name}");
    }
}

#[test]
fn large_image_is_scaled_into_the_pep_budgets() {
    let limits = ImageLimits::default();
    let large = load("large-1600x1200.jpg", &limits);
    let png = checked_png(large.to_png(&limits).unwrap());
    assert_eq!(png.format(), ImageFormat::Png);
    assert!(png.width().max(png.height()) <= limits.pep_max_side, "{png:?}");
    assert!(png.bytes().len() <= limits.pep_max_bytes, "{png:?}");
    assert_aspect_kept("large → PEP", (png.width(), png.height()), (1600, 1200));
}

#[test]
fn over_budget_png_is_re_encoded_for_pep() {
    // The noisy PNG is within the side but over a 10 KB budget: it must be re-encoded (and shrunk) to fit.
    let limits = ImageLimits { pep_max_bytes: 10_000, ..ImageLimits::default() };
    let noisy = load("noisy-64x64.png", &limits);
    let png = checked_png(noisy.to_png(&limits).unwrap());
    assert_ne!(png.hash(), noisy.hash());
    assert!(png.bytes().len() <= 10_000, "{png:?}");
    assert!(png.width() < 64, "noise cannot compress: only a smaller size fits ({png:?})");
}

// ---------------------------------------------------------------------------------------------------------------
// The XEP-0008 rendition

/// Checks one legacy rendition against its source and limits; returns it for further assertions.
fn legacy_of(name: &str, limits: &ImageLimits) -> (Rendition, Rendition) {
    let original = load(name, &ImageLimits::default());
    let legacy = checked(original.to_legacy(limits).unwrap_or_else(|e| panic!("{name}: {e}")));
    let what = format!("{name} → legacy {legacy:?} under {limits:?}");
    assert!(legacy.width().max(legacy.height()) <= limits.legacy_max_side, "{what}: too wide");
    assert!(legacy.bytes().len() <= limits.legacy_max_bytes, "{what}: too heavy");
    assert_ne!(legacy.format(), ImageFormat::Webp, "{what}: XEP-0008 allows GIF, JPEG and PNG only");
    assert!(legacy.width() <= original.width() && legacy.height() <= original.height(), "{what}: upscaled");
    assert_aspect_kept(&what, (legacy.width(), legacy.height()), (original.width(), original.height()));
    (original, legacy)
}

#[test]
fn legacy_rendition_fits_xep_0008_for_every_fixture() {
    let limits = ImageLimits::default();
    // XEP-0008: at most 64×64 and "less than eight kilobytes".
    assert_eq!(limits.legacy_max_side, 64);
    assert!(limits.legacy_max_bytes < 8 * 1024);
    for &(name, ..) in VALID {
        legacy_of(name, &limits);
    }
}

#[test]
fn tiny_images_are_never_upscaled() {
    let limits = ImageLimits::default();
    let (pixel, legacy) = legacy_of("pixel-1x1.png", &limits);
    assert_eq!((legacy.width(), legacy.height()), (1, 1));
    assert_eq!(legacy, pixel, "an image that already qualifies is served as is");
    let (_, legacy) = legacy_of("tiny-5x3.jpg", &limits);
    assert_eq!((legacy.width(), legacy.height()), (5, 3));
}

#[test]
fn qualifying_legacy_images_are_served_as_they_are() {
    let limits = ImageLimits::default();
    for name in ["pixel-1x1.png", "tiny-5x3.jpg"] {
        let (original, legacy) = legacy_of(name, &limits);
        assert_eq!(legacy.hash(), original.hash(), "{name}");
    }
    // Fits in size but WebP is not an XEP-0008 format: transcoded even when small enough otherwise.
    let (webp, legacy) = legacy_of("lossless-128x128.webp", &limits);
    assert_ne!(legacy.hash(), webp.hash());
}

#[test]
fn noisy_png_steps_down_for_legacy() {
    // 64×64 already, but 12 KB of noise: the original cannot be served and a re-encoding has to be found.
    let limits = ImageLimits::default();
    let (noisy, legacy) = legacy_of("noisy-64x64.png", &limits);
    assert!(noisy.bytes().len() > 8 * 1024, "the fixture must be over 8 KB to test this");
    assert_ne!(legacy.hash(), noisy.hash());
}

// ---------------------------------------------------------------------------------------------------------------
// Every limit is a setting, not a constant

#[test]
fn tighter_legacy_limits_are_honoured() {
    let limits = ImageLimits { legacy_max_side: 32, legacy_max_bytes: 2000, ..ImageLimits::default() };
    for &(name, ..) in VALID {
        legacy_of(name, &limits);
    }
    // Noise hardly compresses: at 32 px it fits 2000 bytes only as a JPEG, and 800 bytes in no encoding, so the
    // side itself has to step down.
    let (_, legacy) = legacy_of("noisy-64x64.png", &limits);
    assert_eq!(legacy.format(), ImageFormat::Jpeg, "{legacy:?}");
    let limits = ImageLimits { legacy_max_bytes: 800, ..limits };
    let (_, legacy) = legacy_of("noisy-64x64.png", &limits);
    assert!(legacy.width() < 32, "{legacy:?}");
}

#[test]
fn tighter_pep_limits_are_honoured() {
    let limits = ImageLimits { pep_max_side: 100, pep_max_bytes: 20_000, ..ImageLimits::default() };
    for &(name, ..) in VALID {
        let original = load(name, &ImageLimits::default());
        let png = checked_png(original.to_png(&limits).unwrap_or_else(|e| panic!("{name}: {e}")));
        assert_eq!(png.format(), ImageFormat::Png, "{name}");
        assert!(png.width().max(png.height()) <= 100, "{name}: {png:?}");
        assert!(png.bytes().len() <= 20_000, "{name}: {png:?}");
        assert!(png.width() <= original.width() && png.height() <= original.height(), "{name}: upscaled");
        assert_aspect_kept(name, (png.width(), png.height()), (original.width(), original.height()));
    }
}

#[test]
fn max_input_bytes_is_honoured() {
    let photo = bytes("photo-300x200.jpg");
    let size = photo.len();
    let exact = ImageLimits { max_input_bytes: size, ..ImageLimits::default() };
    checked(Rendition::from_bytes(photo.clone(), &exact).expect("a file of exactly the limit is accepted"));
    let under = ImageLimits { max_input_bytes: size - 1, ..ImageLimits::default() };
    assert_eq!(Rendition::from_bytes(photo, &under), Err(ImageError::TooLarge { size, limit: size - 1 }));
    // Size is checked first: even the bomb is refused for its bytes when they are over the limit.
    let tiny = ImageLimits { max_input_bytes: 1000, ..ImageLimits::default() };
    assert!(matches!(
        Rendition::from_bytes(bytes("invalid/bomb-10000x10000.png"), &tiny),
        Err(ImageError::TooLarge { limit: 1000, .. })
    ));
}

#[test]
fn max_pixels_is_honoured_to_the_pixel() {
    let photo = bytes("photo-300x200.jpg");
    let exact = ImageLimits { max_pixels: 300 * 200, ..ImageLimits::default() };
    checked(Rendition::from_bytes(photo.clone(), &exact).expect("exactly the pixel budget is accepted"));
    let under = ImageLimits { max_pixels: 300 * 200 - 1, ..ImageLimits::default() };
    assert_eq!(
        Rendition::from_bytes(photo, &under),
        Err(ImageError::TooManyPixels { width: 300, height: 200, limit: 300 * 200 - 1 })
    );
}

#[test]
fn an_impossible_budget_is_no_fit_not_a_panic() {
    let limits = ImageLimits { legacy_max_bytes: 10, ..ImageLimits::default() };
    let photo = load("photo-300x200.jpg", &ImageLimits::default());
    assert_eq!(photo.to_legacy(&limits), Err(ImageError::NoFit { max_side: 64, budget: 10 }));
    // A zero side is a config mistake; it must end in an error, not loop or panic.
    let zero = ImageLimits { pep_max_side: 0, ..ImageLimits::default() };
    assert!(matches!(photo.to_png(&zero), Err(ImageError::NoFit { max_side: 0, .. })));
}

// ---- one decode for both renditions; stored bytes read back without decoding -------------------------------------

#[test]
fn transcoding_once_gives_exactly_the_renditions_made_one_by_one() {
    let limits = ImageLimits::default();
    for name in ["photo-300x200.jpg", "avatar-96x96-alpha.png", "anim-80x60.gif", "lossless-128x128.webp"] {
        let original = load(name, &limits);
        let t = Transcoded::from_bytes(original.bytes().to_vec(), &limits).expect(name);
        assert_eq!(t.original, original, "{name}");
        assert_eq!(t.png, original.to_png(&limits).unwrap(), "{name}");
        assert_eq!(t.legacy, original.to_legacy(&limits).unwrap(), "{name}");
    }
    let bad = bytes("invalid/truncated.png");
    assert!(Transcoded::from_bytes(bad, &limits).is_err());
}

#[test]
fn stored_bytes_are_read_back_by_hash_and_header() {
    let limits = ImageLimits::default();
    let original = load("photo-300x200.jpg", &limits);
    let back = Rendition::from_stored(original.bytes().to_vec(), original.hash()).unwrap();
    assert_eq!(back, original);
    let other = AvatarHash::of(b"something else");
    assert!(Rendition::from_stored(original.bytes().to_vec(), other).is_err(), "a blob that is not what was asked");
}
