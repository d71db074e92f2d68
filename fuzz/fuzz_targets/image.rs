//! `Rendition::from_bytes` + `to_png` + `to_legacy` on arbitrary bytes, with small limits so one input stays
//! fast. Every rendition made must keep the hash rule (hash = SHA-1 of its bytes, format = sniffed format) and
//! its budgets.
#![no_main]

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::image::{ImageFormat, ImageLimits, Rendition};
use libfuzzer_sys::fuzz_target;

fn limits() -> ImageLimits {
    ImageLimits {
        max_input_bytes: 64 * 1024,
        max_pixels: 256 * 256,
        pep_max_side: 96,
        pep_max_bytes: 32 * 1024,
        legacy_max_side: 32,
        legacy_max_bytes: 4 * 1024,
    }
}

fn check(r: &Rendition) {
    assert_eq!(r.hash(), AvatarHash::of(r.bytes()), "{r:?}");
    assert_eq!(ImageFormat::sniff(r.bytes()), Some(r.format()), "{r:?}");
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    let Ok(original) = Rendition::from_bytes(data.to_vec(), &limits) else { return };
    check(&original);
    assert_eq!(original.bytes(), data);
    if let Ok(png) = original.to_png(&limits) {
        check(&png);
        assert_eq!(png.format(), ImageFormat::Png);
        assert!(png.width().max(png.height()) <= limits.pep_max_side && png.bytes().len() <= limits.pep_max_bytes);
    }
    if let Ok(legacy) = original.to_legacy(&limits) {
        check(&legacy);
        assert_ne!(legacy.format(), ImageFormat::Webp);
        assert!(legacy.width().max(legacy.height()) <= limits.legacy_max_side, "{legacy:?}");
        assert!(legacy.bytes().len() <= limits.legacy_max_bytes, "{legacy:?}");
    }
});
