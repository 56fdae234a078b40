//! Verification of fetched bytes: size, ETag (MD5 for single-part S3/OSS uploads) and the
//! CRC-32C that cached copies and peer answers carry.

use md5::Digest as _;

use crate::{Error, Result};

/// The CRC-32C (Castagnoli) of `bytes`, hardware accelerated where the CPU allows.
#[must_use]
pub fn crc32c(bytes: &[u8]) -> u32 {
    // A CRC-32 fits in 32 bits; the library returns it widened to u64.
    u32::try_from(crc_fast::checksum(
        crc_fast::CrcAlgorithm::Crc32Iscsi,
        bytes,
    ))
    .unwrap_or(0)
}

/// The MD5 an ETag stands for, when it is a single-part upload's ETag (32 hex digits, quotes
/// allowed); multipart ETags (`...-N`) and others give `None`.
#[must_use]
pub fn etag_md5(etag: &str) -> Option<&str> {
    let bare = etag.trim_matches('"');
    (bare.len() == 32 && bare.bytes().all(|b| b.is_ascii_hexdigit())).then_some(bare)
}

/// Incremental MD5 for an ETag check.
#[derive(Default)]
pub struct Md5(md5::Md5);

impl std::fmt::Debug for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5")
    }
}

impl Md5 {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest in lower-case hex.
    #[must_use]
    pub fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Checks that `got` bytes arrived out of `expected`.
///
/// # Errors
/// [`Error::Truncated`] when they differ.
pub fn check_size(uri: &str, expected: u64, got: u64) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Truncated {
            uri: uri.to_owned(),
            expected,
            got,
        })
    }
}

/// Checks a computed MD5 against an ETag that is one.
///
/// # Errors
/// [`Error::Corrupted`] when they differ.
pub fn check_md5(uri: &str, etag: &str, md5_hex: &str) -> Result<()> {
    match etag_md5(etag) {
        Some(expected) if !expected.eq_ignore_ascii_case(md5_hex) => Err(Error::corrupted(
            uri,
            format!("MD5 {md5_hex} does not match the ETag {etag}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_should_match_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn only_single_part_etags_should_stand_for_an_md5() {
        assert_eq!(
            etag_md5("\"900150983cd24fb0d6963f7d28e17f72\""),
            Some("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(etag_md5("\"900150983cd24fb0d6963f7d28e17f72-3\""), None);
        assert_eq!(etag_md5("W/\"abc\""), None);
    }

    #[test]
    fn md5_should_be_checked_against_the_etag() {
        let mut md5 = Md5::default();
        md5.update(b"abc");
        let hex = md5.hex();
        assert_eq!(hex, "900150983cd24fb0d6963f7d28e17f72");
        assert!(check_md5("u", "\"900150983cd24fb0d6963f7d28e17f72\"", &hex).is_ok());
        assert!(check_md5("u", "\"00000000000000000000000000000000\"", &hex).is_err());
        assert!(
            check_md5("u", "\"multi-2\"", &hex).is_ok(),
            "not an MD5 ETag"
        );
        assert!(matches!(
            check_size("u", 3, 2),
            Err(Error::Truncated { .. })
        ));
    }
}
