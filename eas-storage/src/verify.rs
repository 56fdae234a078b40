//! Verification of fetched bytes: size, the whole-object CRC-64 a store keeps (S3's
//! CRC-64/NVME, OSS's CRC-64/ECMA), the ETag (MD5 for single-part S3/OSS uploads) and the
//! CRC-32C that cached copies and peer answers carry.

use base64::Engine as _;
use md5::Digest as _;
use reqwest::header::HeaderMap;

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

/// S3's header for an object's full CRC-64/NVME (base64 of its 8 bytes, big-endian), sent on
/// a `HEAD` or whole `GET` that asks with `x-amz-checksum-mode: ENABLED`.
pub const S3_CRC64NVME: &str = "x-amz-checksum-crc64nvme";
/// S3's header saying whether a checksum covers the whole object (`FULL_OBJECT`) or is one
/// of parts (`COMPOSITE`, `...-N`).
pub const S3_CHECKSUM_TYPE: &str = "x-amz-checksum-type";
/// OSS's header for an object's CRC-64 (ECMA-182 polynomial, as `CRC-64/XZ`), in decimal; OSS
/// sends it for every object, multipart uploads included.
pub const OSS_CRC64: &str = "x-oss-hash-crc64ecma";

/// A whole-object checksum the store keeps besides the ETag. Unlike the ETag's MD5 it also
/// covers multipart uploads, and it is cheap to compute (hardware CRC, many GB/s a core,
/// where MD5 does ~0.5 GB/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChecksum {
    /// S3's full-object CRC-64/NVME (every object S3 stores since 2025 has one).
    Crc64Nvme(u64),
    /// OSS's CRC-64/ECMA-182 (`CRC-64/XZ`).
    Crc64Ecma(u64),
}

impl StoreChecksum {
    /// The checksum a store's response headers announce, when one covers the whole object
    /// and reads well; composite (per-part) checksums and malformed values give `None`.
    #[must_use]
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        if let Some(value) = headers.get(S3_CRC64NVME) {
            let full = headers
                .get(S3_CHECKSUM_TYPE)
                .is_none_or(|t| t.as_bytes().eq_ignore_ascii_case(b"FULL_OBJECT"));
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_bytes())
                .ok()?;
            let bytes: [u8; 8] = bytes.try_into().ok()?;
            return full.then_some(Self::Crc64Nvme(u64::from_be_bytes(bytes)));
        }
        let value = headers.get(OSS_CRC64)?.to_str().ok()?;
        value.parse().ok().map(Self::Crc64Ecma)
    }

    /// The CRC to compute over the bytes.
    #[must_use]
    pub const fn algorithm(self) -> crc_fast::CrcAlgorithm {
        match self {
            Self::Crc64Nvme(_) => crc_fast::CrcAlgorithm::Crc64Nvme,
            Self::Crc64Ecma(_) => crc_fast::CrcAlgorithm::Crc64Xz,
        }
    }

    /// The expected value.
    #[must_use]
    pub const fn value(self) -> u64 {
        match self {
            Self::Crc64Nvme(value) | Self::Crc64Ecma(value) => value,
        }
    }

    /// The checksum's name, for messages.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Crc64Nvme(_) => "CRC-64/NVME",
            Self::Crc64Ecma(_) => "CRC-64/ECMA",
        }
    }

    /// Checks the CRC computed over the bytes.
    ///
    /// # Errors
    /// [`Error::Corrupted`] when they differ.
    pub fn check(self, uri: &str, computed: u64) -> Result<()> {
        if computed == self.value() {
            Ok(())
        } else {
            Err(Error::corrupted(
                uri,
                format!(
                    "{} {computed:016x} does not match the store's {:016x}",
                    self.name(),
                    self.value()
                ),
            ))
        }
    }
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    reqwest::header::HeaderName::from_static(n),
                    v.parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn store_checksums_should_match_the_standard_check_values() {
        // The catalogue's check values (CRC of "123456789") for both algorithms.
        let check = |sum: StoreChecksum| crc_fast::checksum(sum.algorithm(), b"123456789");
        assert_eq!(check(StoreChecksum::Crc64Nvme(0)), 0xAE8B_1486_0A79_9888);
        assert_eq!(check(StoreChecksum::Crc64Ecma(0)), 0x995D_C9BB_DF19_39FA);
    }

    #[test]
    fn store_checksums_should_be_read_from_s3_and_oss_headers() {
        let nvme = base64::engine::general_purpose::STANDARD
            .encode(0xAE8B_1486_0A79_9888_u64.to_be_bytes());
        assert_eq!(
            StoreChecksum::from_headers(&headers(&[(S3_CRC64NVME, &nvme)])),
            Some(StoreChecksum::Crc64Nvme(0xAE8B_1486_0A79_9888))
        );
        assert_eq!(
            StoreChecksum::from_headers(&headers(&[
                (S3_CRC64NVME, &nvme),
                (S3_CHECKSUM_TYPE, "FULL_OBJECT")
            ])),
            Some(StoreChecksum::Crc64Nvme(0xAE8B_1486_0A79_9888))
        );
        assert_eq!(
            StoreChecksum::from_headers(&headers(&[(OSS_CRC64, "11051210869376104954")])),
            Some(StoreChecksum::Crc64Ecma(0x995D_C9BB_DF19_39FA))
        );
        // Per-part checksums, malformed values and nothing: no whole-object checksum.
        for bad in [
            headers(&[(S3_CRC64NVME, &nvme), (S3_CHECKSUM_TYPE, "COMPOSITE")]),
            headers(&[(S3_CRC64NVME, "AAAA")]),
            headers(&[(S3_CRC64NVME, "not base64!")]),
            headers(&[(OSS_CRC64, "-1")]),
            headers(&[(OSS_CRC64, "18446744073709551616")]),
            HeaderMap::new(),
        ] {
            assert_eq!(StoreChecksum::from_headers(&bad), None, "{bad:?}");
        }
        let sum = StoreChecksum::Crc64Ecma(7);
        assert!(sum.check("u", 7).is_ok());
        assert!(matches!(sum.check("u", 8), Err(Error::Corrupted { .. })));
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
