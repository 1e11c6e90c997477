//! Digest and digest-prefix parsing: never panics; what parses formats
//! back to the same string and survives the fixed-width key round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocidb::Digest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Digest::parse(text) {
        Ok(d) => {
            assert_eq!(d.to_string(), text, "format(parse(x)) == x");
            let back = Digest::from_key(&d.to_key()).expect("a key we made decodes");
            assert_eq!(back, d);
        }
        Err(e) => {
            // Every rejection names the offending input (possibly shortened).
            let msg = e.to_string();
            assert!(!msg.is_empty());
        }
    }
    // A digest prefix (what the command line accepts abbreviated) parses
    // or is refused, never panics; one that parses prints back without
    // the `…` listings add.
    if let Ok(p) = ocidb::DigestPrefix::parse(text) {
        assert_eq!(p.to_string(), text.trim_end_matches('…'));
    }
    // Keys of arbitrary bytes are rejected or round-trip, never panic.
    if let Ok(d) = Digest::from_key(data) {
        assert_eq!(&d.to_key()[..], data);
    }
});
