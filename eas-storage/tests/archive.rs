//! `ArchiveMount` and safe extraction: every format over HTTP, a local archive, malicious
//! archives refused as a whole, truncated and corrupted downloads.

mod support;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::location::ArchiveFormat;
use eas_storage::{ArchiveMount, Error};
use support::FileServer;

const FILES: [(&str, &[u8]); 3] = [
    ("model/model.onnx", b"onnx bytes"),
    ("model/config.json", b"{\"a\":1}"),
    ("README", b"hello"),
];

fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, *data)
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

/// A tar whose entries are written raw, so they may hold `..`, absolute paths and links
/// (`tar::Builder` refuses those).
enum Raw<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_old();
        let (name, kind, link, data): (&str, tar::EntryType, Option<&str>, &[u8]) = match entry {
            Raw::File(name, data) => (name, tar::EntryType::Regular, None, data),
            Raw::Symlink(name, target) => (name, tar::EntryType::Symlink, Some(target), b""),
            Raw::HardLink(name, target) => (name, tar::EntryType::Link, Some(target), b""),
        };
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).expect("append raw");
    }
    builder.into_inner().expect("tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn bzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    encoder.write_all(bytes).expect("bzip2");
    encoder.finish().expect("bzip2")
}

enum ZipEntry<'a> {
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
}

fn zip_bytes(entries: &[ZipEntry<'_>]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for entry in entries {
        match entry {
            ZipEntry::File(name, data) => {
                writer.start_file(*name, options).expect("zip entry");
                writer.write_all(data).expect("zip data");
            }
            ZipEntry::Symlink(name, target) => writer
                .add_symlink(*name, *target, options)
                .expect("zip link"),
        }
    }
    writer.finish().expect("zip").into_inner()
}

fn every_format() -> Vec<(&'static str, ArchiveFormat, Vec<u8>)> {
    let tar = tar_bytes(&FILES);
    let zip_entries: Vec<ZipEntry<'_>> = FILES.iter().map(|(n, d)| ZipEntry::File(n, d)).collect();
    vec![
        ("m.tar", ArchiveFormat::Tar, tar.clone()),
        ("m.tar.gz", ArchiveFormat::TarGz, gzip(&tar)),
        ("m.tar.bz2", ArchiveFormat::TarBz2, bzip(&tar)),
        ("m.zip", ArchiveFormat::Zip, zip_bytes(&zip_entries)),
    ]
}

async fn serve(files: Vec<(&str, Vec<u8>)>) -> FileServer {
    FileServer::start(
        files
            .into_iter()
            .map(|(n, b)| (n.to_owned(), Bytes::from(b)))
            .collect::<HashMap<_, _>>(),
    )
    .await
}

fn remote(server: &FileServer, name: &str, format: ArchiveFormat, target: &Path) -> ArchiveMount {
    let url = format!("{}/{name}", server.base).parse().expect("url");
    ArchiveMount::remote(url, format, target).expect("mount")
}

/// Names in `dir` other than `allowed`.
fn stray_entries(dir: &Path, allowed: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect()
}

#[tokio::test]
async fn every_archive_format_should_unpack_over_http_and_pass_the_conformance_suite() {
    let formats = every_format();
    let server = serve(formats.iter().map(|(n, _, b)| (*n, b.clone())).collect()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, format, _) in &formats {
        let mount = remote(&server, name, *format, &dir.path().join(name));
        eas_core::conformance::storage_mount(&mount, &FILES).await;
    }
}

#[tokio::test]
async fn a_local_archive_file_should_unpack_and_be_reused_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("m.tar.gz");
    std::fs::write(&archive, gzip(&tar_bytes(&FILES))).expect("write");
    let target = dir.path().join("out");
    let first = ArchiveMount::local(&archive, ArchiveFormat::TarGz, &target)
        .expect("mount")
        .mount(MountMode::Eager, None)
        .await
        .expect("mount");
    assert_eq!((first.files, first.reused_files), (3, 0));
    assert_eq!(
        std::fs::read(target.join("model/model.onnx")).expect("file"),
        b"onnx bytes"
    );
    let again = ArchiveMount::local(&archive, ArchiveFormat::TarGz, &target)
        .expect("mount")
        .mount(MountMode::Eager, None)
        .await
        .expect("again");
    assert_eq!(again.reused_files, 3);
}

#[tokio::test]
async fn malicious_archives_should_be_refused_as_a_whole_naming_the_entry() {
    let tar = |entries: &[Raw<'_>]| raw_tar(entries);
    let cases: Vec<(&str, ArchiveFormat, Vec<u8>, &str)> = vec![
        (
            "slip.tar",
            ArchiveFormat::Tar,
            tar(&[Raw::File("ok.txt", b"ok"), Raw::File("../evil.txt", b"x")]),
            "../evil.txt",
        ),
        (
            "deep.tar.gz",
            ArchiveFormat::TarGz,
            gzip(&tar(&[Raw::File("a/../../evil.txt", b"x")])),
            "a/../../evil.txt",
        ),
        (
            "abs.tar",
            ArchiveFormat::Tar,
            tar(&[Raw::File("/tmp/eas-evil-abs.txt", b"x")]),
            "/tmp/eas-evil-abs.txt",
        ),
        (
            "link.tar",
            ArchiveFormat::Tar,
            tar(&[Raw::Symlink("link", "../outside")]),
            "link",
        ),
        (
            "abslink.tar",
            ArchiveFormat::Tar,
            tar(&[Raw::Symlink("etc", "/etc")]),
            "etc",
        ),
        (
            "through.tar",
            ArchiveFormat::Tar,
            tar(&[Raw::Symlink("d", "."), Raw::File("d/x.txt", b"x")]),
            "d/x.txt",
        ),
        (
            "hard.tar",
            ArchiveFormat::Tar,
            tar(&[Raw::HardLink("h", "../outside.txt")]),
            "h",
        ),
        (
            "slip.zip",
            ArchiveFormat::Zip,
            zip_bytes(&[
                ZipEntry::File("ok.txt", b"ok"),
                ZipEntry::File("../evil.txt", b"x"),
            ]),
            "../evil.txt",
        ),
        (
            "abs.zip",
            ArchiveFormat::Zip,
            zip_bytes(&[ZipEntry::File("/tmp/eas-evil-abs.txt", b"x")]),
            "/tmp/eas-evil-abs.txt",
        ),
        (
            "link.zip",
            ArchiveFormat::Zip,
            zip_bytes(&[ZipEntry::Symlink("l", "../../outside")]),
            "l",
        ),
    ];
    let server = serve(cases.iter().map(|(n, _, b, _)| (*n, b.clone())).collect()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("outside.txt"), b"keep").expect("write");
    for (name, format, _, entry) in &cases {
        let target = dir.path().join("targets").join(name);
        let error = remote(&server, name, *format, &target)
            .mount(MountMode::Eager, None)
            .await
            .expect_err(name);
        let error = Error::from(error);
        assert!(
            matches!(&error, Error::ArchiveEscape { entry: e, .. } if e == entry),
            "{name}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains(&format!("entry `{entry}` escapes the target")),
            "{name}: {error}"
        );
        assert!(!target.exists(), "{name}: nothing is left at the target");
    }
    assert!(
        stray_entries(&dir.path().join("targets"), &[]).is_empty(),
        "no staging directory left"
    );
    assert_eq!(
        stray_entries(dir.path(), &["outside.txt", "targets"]),
        Vec::<String>::new()
    );
    assert_eq!(
        std::fs::read(dir.path().join("outside.txt")).expect("outside"),
        b"keep"
    );
    assert!(!Path::new("/tmp/eas-evil-abs.txt").exists());
    assert!(!dir.path().join("evil.txt").exists());
}

#[tokio::test]
async fn links_inside_the_target_should_be_kept() {
    let archive = raw_tar(&[
        Raw::File("a/real.txt", b"real"),
        Raw::Symlink("a/alias.txt", "real.txt"),
        Raw::HardLink("b.txt", "a/real.txt"),
    ]);
    let server = serve(vec![("ok.tar", archive)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = remote(&server, "ok.tar", ArchiveFormat::Tar, &dir.path().join("t"));
    mount.mount(MountMode::Eager, None).await.expect("mount");
    assert_eq!(
        &mount.read("a/alias.txt").await.expect("alias")[..],
        b"real"
    );
    assert_eq!(&mount.read("b.txt").await.expect("hard link")[..], b"real");
}

#[tokio::test]
async fn truncated_downloads_and_corrupted_archives_should_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let truncating = support::truncating_server(1000, b"only ten b").await;
    let target = dir.path().join("t1");
    let error = Error::from(
        remote(&truncating, "m.tar.gz", ArchiveFormat::TarGz, &target)
            .mount(MountMode::Eager, None)
            .await
            .expect_err("truncated"),
    );
    assert!(
        matches!(error, Error::Truncated { expected: 1000, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("truncated download"), "{error}");
    assert!(!target.exists());

    let mut corrupt = gzip(&tar_bytes(&FILES));
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let server = serve(vec![
        ("bad.tar.gz", corrupt),
        ("junk.zip", b"not a zip at all".to_vec()),
    ])
    .await;
    for (name, format) in [
        ("bad.tar.gz", ArchiveFormat::TarGz),
        ("junk.zip", ArchiveFormat::Zip),
    ] {
        let target = dir.path().join(name);
        let error = Error::from(
            remote(&server, name, format, &target)
                .mount(MountMode::Eager, None)
                .await
                .expect_err(name),
        );
        assert!(
            matches!(error, Error::BadArchive { .. }),
            "{name}: {error:?}"
        );
        assert!(error.to_string().contains(name), "{name}: {error}");
        assert!(!target.exists(), "{name}");
    }
    let missing = Error::from(
        remote(
            &server,
            "absent.zip",
            ArchiveFormat::Zip,
            &dir.path().join("x"),
        )
        .mount(MountMode::Eager, None)
        .await
        .expect_err("404"),
    );
    assert!(matches!(missing, Error::NotFound { .. }), "{missing:?}");
    assert_eq!(
        stray_entries(dir.path(), &[]),
        Vec::<String>::new(),
        "no temporary files left"
    );
}

#[tokio::test]
async fn remounting_an_unchanged_archive_should_reuse_it() {
    let (name, format, bytes) = every_format().remove(1);
    let server = serve(vec![(name, bytes)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    let first = remote(&server, name, format, &target)
        .mount(MountMode::Eager, None)
        .await
        .expect("first");
    assert!(first.fetched_bytes > 0);
    let again = remote(&server, name, format, &target)
        .mount(MountMode::Eager, None)
        .await
        .expect("again");
    assert_eq!((again.fetched_bytes, again.reused_files), (0, 3));
}
