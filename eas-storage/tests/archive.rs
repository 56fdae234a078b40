//! `ArchiveMount` and safe extraction: every format over HTTP, a local archive, malicious
//! archives refused as a whole (escaping entries and link chains, bombs), truncated and
//! corrupted downloads, leftovers of a killed mount.

mod support;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use bytes::Bytes;
use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::archive::UnpackLimits;
use eas_storage::location::ArchiveFormat;
use eas_storage::{ArchiveMount, Error, MountRegistry, MountRequest};
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

/// `a -> .`, `up1 -> a/..`, `upN -> up(N-1)/..` up to 11, `leak -> up11/etc/passwd`: each
/// link looks inside when read alone, but `a/..` climbs out of the target, so `leak` would
/// reach the host's `/etc/passwd`.
fn climbing_chain() -> Vec<(String, String)> {
    let mut links = vec![
        ("a".to_owned(), ".".to_owned()),
        ("up1".to_owned(), "a/..".to_owned()),
    ];
    for n in 2..=11 {
        links.push((format!("up{n}"), format!("up{}/..", n - 1)));
    }
    links.push(("leak".to_owned(), "up11/etc/passwd".to_owned()));
    links
}

fn links_tar(links: &[(String, String)]) -> Vec<u8> {
    let entries: Vec<Raw<'_>> = links
        .iter()
        .map(|(name, target)| Raw::Symlink(name, target))
        .collect();
    raw_tar(&entries)
}

fn links_zip(links: &[(String, String)]) -> Vec<u8> {
    let entries: Vec<ZipEntry<'_>> = links
        .iter()
        .map(|(name, target)| ZipEntry::Symlink(name, target))
        .collect();
    zip_bytes(&entries)
}

#[tokio::test]
async fn a_chain_of_links_climbing_out_should_be_refused_in_every_format() {
    let chain = climbing_chain();
    let mut with_file = chain.clone();
    with_file.insert(0, ("model.onnx".to_owned(), "a/model.bin".to_owned()));
    let cases = vec![
        ("chain.tar", ArchiveFormat::Tar, links_tar(&chain)),
        (
            "chain.tar.gz",
            ArchiveFormat::TarGz,
            gzip(&links_tar(&chain)),
        ),
        (
            "chain.tar.bz2",
            ArchiveFormat::TarBz2,
            bzip(&links_tar(&chain)),
        ),
        ("chain.zip", ArchiveFormat::Zip, links_zip(&chain)),
        ("more.tar", ArchiveFormat::Tar, links_tar(&with_file)),
    ];
    let server = serve(cases.iter().map(|(n, _, b)| (*n, b.clone())).collect()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, format, _) in &cases {
        let target = dir.path().join("targets").join(name);
        let error = Error::from(
            remote(&server, name, *format, &target)
                .mount(MountMode::Eager, None)
                .await
                .expect_err(name),
        );
        assert!(
            matches!(&error, Error::ArchiveEscape { entry, .. } if entry == "up1"),
            "{name}: {error:?}"
        );
        assert!(
            error.to_string().contains("entry `up1` escapes the target"),
            "{name}: {error}"
        );
        assert!(!target.exists(), "{name}: nothing is left at the target");
    }
    assert!(
        stray_entries(&dir.path().join("targets"), &[]).is_empty(),
        "no staging directory left"
    );
}

#[tokio::test]
async fn links_to_links_and_through_links_that_stay_inside_should_be_kept() {
    let archive = raw_tar(&[
        Raw::File("sub/deeper/weights.bin", b"weights"),
        Raw::File("config.json", b"{}"),
        // A link to a link.
        Raw::Symlink("current", "sub/deeper/weights.bin"),
        Raw::Symlink("model.bin", "current"),
        // Through a link, then up: `d/..` is `sub`, still inside.
        Raw::Symlink("d", "sub/deeper"),
        Raw::Symlink("sub/cfg", "../d/../../config.json"),
        // A link defined before the link it goes through.
        Raw::Symlink("early", "late/weights.bin"),
        Raw::Symlink("late", "sub/deeper"),
    ]);
    let zip = {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        writer.add_directory("dir/", options).expect("dir");
        writer.add_symlink("b", "a", options).expect("link");
        writer.add_symlink("a", "dir", options).expect("link");
        writer.finish().expect("zip").into_inner()
    };
    let server = serve(vec![("ok.tar", archive), ("ok.zip", zip)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = remote(&server, "ok.tar", ArchiveFormat::Tar, &dir.path().join("t"));
    mount.mount(MountMode::Eager, None).await.expect("mount");
    for path in ["model.bin", "current", "early", "d/weights.bin"] {
        assert_eq!(
            &mount.read(path).await.expect(path)[..],
            b"weights",
            "{path}"
        );
    }
    assert_eq!(&mount.read("sub/cfg").await.expect("cfg")[..], b"{}");
    let target = dir.path().join("t");
    assert_eq!(
        std::fs::read_link(target.join("model.bin")).expect("link"),
        Path::new("current")
    );
    let mount = remote(&server, "ok.zip", ArchiveFormat::Zip, &dir.path().join("z"));
    mount
        .mount(MountMode::Eager, None)
        .await
        .expect("zip mount");
    assert!(dir.path().join("z/b").is_dir(), "b -> a -> dir");
}

#[tokio::test]
async fn a_hard_link_to_a_symbolic_link_should_be_refused() {
    // Linking the link itself would make a copy of `a/l` that resolves from the root.
    let archive = raw_tar(&[
        Raw::File("a/b/x", b"x"),
        Raw::Symlink("a/b/l", "../../x"),
        Raw::HardLink("h", "a/b/l"),
    ]);
    let server = serve(vec![("h.tar", archive)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    let error = Error::from(
        remote(&server, "h.tar", ArchiveFormat::Tar, &target)
            .mount(MountMode::Eager, None)
            .await
            .expect_err("refused"),
    );
    assert!(
        matches!(
            &error,
            Error::BadArchive { .. } | Error::ArchiveEscape { .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("`h`"), "{error}");
    assert!(!target.exists());
}

/// A tar of `files`, each `len` bytes of zeros.
fn zeros_tar(files: &[(&str, usize)]) -> Vec<u8> {
    let zeros: Vec<Vec<u8>> = files.iter().map(|(_, len)| vec![0u8; *len]).collect();
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .zip(&zeros)
        .map(|((name, _), data)| (*name, data.as_slice()))
        .collect();
    tar_bytes(&entries)
}

fn best_gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn zeros_zip(name: &str, len: usize) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    writer.start_file(name, options).expect("zip entry");
    writer.write_all(&vec![0u8; len]).expect("zip data");
    writer.finish().expect("zip").into_inner()
}

/// Mounts `bytes` (named `name`) from a local file with `limits`; the error.
async fn refused(
    dir: &Path,
    name: &str,
    format: ArchiveFormat,
    bytes: &[u8],
    limits: Option<UnpackLimits>,
) -> Error {
    let archive = dir.join(name);
    std::fs::write(&archive, bytes).expect("write");
    let target = dir.join("targets").join(name);
    let mut mount = ArchiveMount::local(&archive, format, &target).expect("mount");
    if let Some(limits) = limits {
        mount = mount.with_unpack_limits(limits);
    }
    let error = Error::from(
        mount
            .mount(MountMode::Eager, None)
            .await
            .expect_err("refused"),
    );
    assert!(!target.exists(), "{name}: nothing is left at the target");
    error
}

#[tokio::test]
async fn archive_bombs_should_be_refused_naming_the_limit_and_the_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 8 MiB of zeros gzip to ~8 KB: 1,000 : 1, over the default ratio of 100.
    let bomb = best_gzip(&zeros_tar(&[("config.json", 10), ("zeros.bin", 8 << 20)]));
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let error = refused(dir.path(), "bomb.tar.gz", ArchiveFormat::TarGz, &bomb, None).await;
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, limit, .. }
            if entry == "zeros.bin" && limit.contains("max_ratio")),
        "{error:?}"
    );
    assert!(error.to_string().contains("bomb.tar.gz"), "{error}");
    assert!(
        error.to_string().contains("at entry `zeros.bin`"),
        "{error}"
    );

    // The same in a zip, and in a bzip2 tar (far more than 1,000 : 1).
    let zip = zeros_zip("zeros.bin", 8 << 20);
    let error = refused(dir.path(), "bomb.zip", ArchiveFormat::Zip, &zip, None).await;
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, .. } if entry == "zeros.bin"),
        "{error:?}"
    );
    let bz = bzip(&zeros_tar(&[("zeros.bin", 8 << 20)]));
    let error = refused(dir.path(), "bomb.tar.bz2", ArchiveFormat::TarBz2, &bz, None).await;
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, .. } if entry == "zeros.bin"),
        "{error:?}"
    );

    // A total size: a plain tar (ratio below 1) over 1 MiB in all, crossed at the second file.
    let tar = tar_bytes(&[
        ("a.bin", &support::bytes(700 << 10, 1)),
        ("b.bin", &support::bytes(700 << 10, 2)),
    ]);
    let limits = UnpackLimits::new(1 << 20, 1000);
    let error = refused(
        dir.path(),
        "big.tar",
        ArchiveFormat::Tar,
        &tar,
        Some(limits),
    )
    .await;
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, limit, .. }
            if entry == "b.bin" && limit.contains("max_bytes")),
        "{error:?}"
    );
    assert!(error.to_string().contains("1048576 bytes"), "{error}");

    // Entries: the sixth of ten is one too many.
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let many = zeros_tar(&files);
    let limits = UnpackLimits::default().with_max_entries(5);
    let error = refused(
        dir.path(),
        "many.tar",
        ArchiveFormat::Tar,
        &many,
        Some(limits),
    )
    .await;
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, limit, .. }
            if entry == "f5" && limit.contains("max_entries")),
        "{error:?}"
    );

    // A zip is counted from its central directory's end record, before the zip reader loads
    // the directory (millions of empty entries would otherwise cost memory first).
    let entries: Vec<ZipEntry<'_>> = names.iter().map(|n| ZipEntry::File(n, b"x")).collect();
    let error = refused(
        dir.path(),
        "many.zip",
        ArchiveFormat::Zip,
        &zip_bytes(&entries),
        Some(limits),
    )
    .await;
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, limit, .. }
            if entry == "(central directory)" && limit.contains("10 entries")),
        "{error:?}"
    );

    assert_eq!(
        stray_entries(&dir.path().join("targets"), &[]),
        Vec::<String>::new(),
        "no staging directory left"
    );
}

#[tokio::test]
async fn an_archive_within_its_limits_should_unpack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = support::bytes(300 << 10, 3);
    let archive = dir.path().join("ok.tar.gz");
    std::fs::write(&archive, gzip(&tar_bytes(&[("w.bin", &data)]))).expect("write");
    let report = ArchiveMount::local(&archive, ArchiveFormat::TarGz, dir.path().join("t"))
        .expect("mount")
        .with_unpack_limits(UnpackLimits::new(300 << 10, 2).with_max_entries(1))
        .mount(MountMode::Eager, None)
        .await
        .expect("exactly at the limits");
    assert_eq!((report.files, report.bytes), (1, 300 << 10));
}

#[tokio::test]
async fn huge_tar_headers_should_be_refused_before_they_are_held_in_memory() {
    // A GNU long name of 4 MiB (gzipped to a few KB) for a one-byte file.
    let mut builder = tar::Builder::new(Vec::new());
    let name = "a/".repeat(2 << 20);
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
    header.set_entry_type(tar::EntryType::GNULongName);
    header.set_size(name.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, name.as_bytes()).expect("long name");
    let mut file = tar::Header::new_gnu();
    file.set_size(1);
    file.set_mode(0o644);
    file.set_cksum();
    builder
        .append_data(&mut file, "x", &b"x"[..])
        .expect("file");
    let archive = gzip(&builder.into_inner().expect("tar"));
    let dir = tempfile::tempdir().expect("tempdir");
    let error = refused(
        dir.path(),
        "long.tar.gz",
        ArchiveFormat::TarGz,
        &archive,
        None,
    )
    .await;
    assert!(
        matches!(&error, Error::ArchiveLimit { limit, .. } if limit.contains("tar headers")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_download_larger_than_the_limits_allow_should_stop_and_leave_nothing() {
    let big = support::bytes(3 << 20, 4);
    let server = serve(vec![("big.tar", tar_bytes(&[("w.bin", &big)]))]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    let limits = UnpackLimits::new(1 << 10, 100).with_max_entries(10);
    let error = Error::from(
        remote(&server, "big.tar", ArchiveFormat::Tar, &target)
            .with_unpack_limits(limits)
            .mount(MountMode::Eager, None)
            .await
            .expect_err("too large"),
    );
    assert!(
        matches!(&error, Error::ArchiveLimit { entry, limit, .. }
            if entry.is_empty() && limit.contains("larger than")),
        "{error:?}"
    );
    assert_eq!(stray_entries(dir.path(), &[]), Vec::<String>::new());
}

#[tokio::test]
async fn unpack_limits_should_reach_archives_through_the_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("bomb.tar.gz");
    std::fs::write(&archive, best_gzip(&zeros_tar(&[("zeros.bin", 1 << 20)]))).expect("write");
    let uri = archive.display().to_string();
    let registry = MountRegistry::with_builtins();
    let strict = registry
        .build(
            &MountRequest::new(&uri, dir.path().join("strict"))
                .with_unpack_limits(UnpackLimits::new(1 << 30, 10)),
        )
        .expect("mount");
    let error = Error::from(
        strict
            .mount(MountMode::Eager, None)
            .await
            .expect_err("bomb"),
    );
    assert!(matches!(error, Error::ArchiveLimit { .. }), "{error:?}");
    let lenient = registry
        .build(
            &MountRequest::new(&uri, dir.path().join("lenient"))
                .with_unpack_limits(UnpackLimits::new(1 << 30, 100_000)),
        )
        .expect("mount");
    lenient
        .mount(MountMode::Eager, None)
        .await
        .expect("allowed by these limits");
}

#[tokio::test]
async fn leftovers_of_a_killed_mount_should_be_removed_when_a_mount_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("m.tar.gz");
    std::fs::write(&archive, gzip(&tar_bytes(&FILES))).expect("write");
    let work = dir.path().join("model");
    std::fs::create_dir_all(work.join(".eas-extract-killed/model")).expect("orphan dir");
    std::fs::write(work.join(".eas-extract-killed/model/w.bin"), b"half").expect("orphan");
    std::fs::write(work.join(".eas-partial-killed"), b"half an archive").expect("orphan");
    // A download in progress elsewhere holds its file's lock: it stays.
    let live = std::fs::File::create(work.join(".eas-partial-live")).expect("live");
    live.lock().expect("lock");
    ArchiveMount::local(&archive, ArchiveFormat::TarGz, work.join("m"))
        .expect("mount")
        .mount(MountMode::Eager, None)
        .await
        .expect("mount");
    assert_eq!(
        stray_entries(&work, &["m"]),
        vec![".eas-partial-live".to_owned()]
    );
}

#[tokio::test]
async fn links_that_lead_nowhere_should_be_kept_and_left_out_of_listings() {
    let archive = raw_tar(&[
        Raw::File("model.onnx", b"onnx"),
        Raw::Symlink("dangling", "not/there"),
        Raw::Symlink("loop1", "loop2"),
        Raw::Symlink("loop2", "loop1"),
    ]);
    let server = serve(vec![("nowhere.tar", archive)]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("t");
    let mount = remote(&server, "nowhere.tar", ArchiveFormat::Tar, &target);
    let report = mount.mount(MountMode::Eager, None).await.expect("mount");
    assert_eq!(report.files, 1);
    assert!(std::fs::symlink_metadata(target.join("loop1")).is_ok());
    let listed: Vec<String> = mount
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|info| info.path)
        .collect();
    assert_eq!(listed, vec!["model.onnx".to_owned()]);
}
