//! Any bytes a camera, a vision PC or an attacker delivers: decoding ends in
//! a picture within the size limit or a named error — never a panic, never
//! an allocation beyond the limit (run with `-malloc_limit_mb=1024`).
#![no_main]

use vision::decode::{decode, MAX_SIDE};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok((img, format)) => {
            assert!(img.width() <= MAX_SIDE && img.height() <= MAX_SIDE);
            assert!(format == "png" || format == "jpg");
            assert_eq!(img.as_raw().len(), (img.width() * img.height() * 3) as usize);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
