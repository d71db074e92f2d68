//! `AvatarHash::parse` on arbitrary text (lossy UTF-8, so every input reaches it): never panics, and whatever it
//! accepts displays as the trimmed input in lower case and parses back to itself.
#![no_main]

use avatar_gateway::avatar::AvatarHash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(hash) = AvatarHash::parse(&text) {
        let shown = hash.to_string();
        assert_eq!(shown, text.trim_matches(|c: char| c.is_ascii_whitespace()).to_ascii_lowercase());
        assert_eq!(AvatarHash::parse(&shown), Ok(hash));
        assert_eq!(shown.parse::<AvatarHash>(), Ok(hash));
    }
});
