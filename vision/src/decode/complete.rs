//! Is the file whole? Walks the container structure of a PNG or JPEG and
//! says where it ends early.
//!
//! Decoders are forgiving by design (a browser shows half a picture rather
//! than none); a station must not be: a part judged on the top third of its
//! photograph, with the rest padded grey, gets a confident and meaningless
//! verdict. These checks read only chunk and segment headers, never pixels.

/// PNG: the signature, then chunks (length, type, data, CRC) up to and
/// including `IEND`, with at least one `IDAT` before it.
pub fn png(bytes: &[u8]) -> Result<(), String> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return Err("no PNG signature".into());
    }
    let mut at = SIGNATURE.len();
    let mut image_data = false;
    loop {
        let Some(header) = bytes.get(at..at + 8) else {
            return Err(format!(
                "file ends after {} bytes, before the IEND chunk (truncated)",
                bytes.len()
            ));
        };
        let length = u32::from_be_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let kind = String::from_utf8_lossy(&header[4..8]).into_owned();
        let end = at + 8 + length + 4;
        if end > bytes.len() {
            return Err(format!(
                "file ends after {} bytes, inside chunk {kind} that needs {end} (truncated)",
                bytes.len()
            ));
        }
        match &header[4..8] {
            b"IDAT" => image_data = true,
            b"IEND" if !image_data => return Err("no image data (IDAT) before IEND".into()),
            b"IEND" => return Ok(()),
            _ => {}
        }
        at = end;
    }
}

/// JPEG: start of image, then marker segments (each with its length) and
/// entropy-coded scans, up to the end-of-image marker.
pub fn jpeg(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("no JPEG start-of-image marker".into());
    }
    let truncated = |what: &str| {
        format!(
            "file ends after {} bytes, {what}, before the end-of-image marker (truncated)",
            bytes.len()
        )
    };
    let mut at = 2;
    let mut scans = 0;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        match (bytes.get(at), bytes.get(at + 1)) {
            (Some(0xFF), Some(&marker)) => {
                at += 2;
                match marker {
                    0xD9 if scans == 0 => return Err("no image scan before end of image".into()),
                    0xD9 => return Ok(()),
                    // Restart markers and TEM stand alone.
                    0xD0..=0xD7 | 0x01 => continue,
                    _ => {}
                }
                let Some(len) = bytes.get(at..at + 2) else {
                    return Err(truncated(&format!(
                        "in the header of segment 0xFF{marker:02X}"
                    )));
                };
                let len = u16::from_be_bytes([len[0], len[1]]) as usize;
                if len < 2 {
                    return Err(format!(
                        "segment 0xFF{marker:02X} has impossible length {len}"
                    ));
                }
                if at + len > bytes.len() {
                    return Err(truncated(&format!("inside segment 0xFF{marker:02X}")));
                }
                at += len;
                if marker == 0xDA {
                    scans += 1;
                    // Entropy-coded data: 0xFF is stuffed as FF 00 and
                    // restart markers may interleave; any other marker ends
                    // the scan.
                    loop {
                        match bytes
                            .get(at..)
                            .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
                        {
                            None => return Err(truncated("inside scan data")),
                            Some(p) => {
                                at += p;
                                match bytes.get(at + 1) {
                                    None => return Err(truncated("inside scan data")),
                                    Some(0x00) | Some(0xD0..=0xD7) => at += 2,
                                    Some(0xFF) => at += 1,
                                    Some(_) => break,
                                }
                            }
                        }
                    }
                }
            }
            (None, _) | (Some(0xFF), None) => return Err(truncated("between segments")),
            (Some(b), _) => {
                return Err(format!(
                    "byte 0x{b:02X} at offset {at} where a marker was expected (corrupt)"
                ))
            }
        }
    }
}
