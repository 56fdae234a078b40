//! Fuzzing the archive unpacker through [`ArchiveMount`]: generated tar, tar.gz, tar.bz2 and zip
//! archives (names with `..`, absolute paths, long names, symbolic and hard links to random or
//! earlier names, duplicates, a directory and a file of one name, declared sizes far over the
//! data, FIFOs and unknown entry types), and random byte mutations of valid archives, before
//! and after compression.
//!
//! Every mount must either unpack, with every entry of the target (each link followed as the
//! kernel would) resolving inside the target and nothing else of the surrounding tree
//! changed, or be refused with an error that leaves the tree as it was; never panic, hang or
//! balloon the process's memory. The target sits eight directories deep in a temporary tree
//! with `secret` files at each level, so that an escape lands where the check sees it;
//! absolute names point into that tree too.
//!
//! CI runs each property briefly (the case counts below); run them long by hand with
//! `PROPTEST_CASES=10000 cargo test -p eas-storage --test fuzz_archive`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use eas_core::StorageMount;
use eas_core::storage::MountMode;
use eas_storage::ArchiveMount;
use eas_storage::location::ArchiveFormat;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Stands for the temporary tree's root in generated absolute names and link targets.
const ROOT: &str = "@ROOT@";
/// How deep the target's parent is below the tree's root.
const DEPTH: usize = 8;
/// The longest a mount may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most resident memory the test process may have reached (VmHWM).
const MAX_RESIDENT_BYTES: u64 = 1 << 30;

/// `PROPTEST_CASES` cases from a random seed when set (a long run by hand); else `brief`
/// cases from a fixed seed, so that CI runs the same cases every time and the checks that the
/// generators reach every outcome cannot fail by chance.
fn config(brief: u32) -> Config {
    let long = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    Config {
        cases: long.unwrap_or(brief),
        rng_seed: match long {
            Some(_) => proptest::test_runner::RngSeed::Random,
            None => proptest::test_runner::RngSeed::Fixed(0x00ea_5eed),
        },
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generated archives.

/// How a link names its target.
#[derive(Debug, Clone)]
enum Target {
    /// Generated text.
    Text(String),
    /// Another entry's name, then a suffix such as `/..` (paths through links, links to
    /// links); a symbolic link's target climbs from the link's directory to the archive's root
    /// first, so that it names that entry wherever the link is.
    Entry(Index, &'static str),
    /// The archive's root (from a symbolic link's directory), then this many `..` more.
    Root(usize),
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Target),
    HardLink(Target),
    /// A regular file whose header declares `declared` bytes but carries only `data`.
    Short {
        declared: u64,
        data: Vec<u8>,
    },
    /// A FIFO (refused) or an entry type byte of no known kind.
    Other(u8),
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: Kind,
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        14 => prop::sample::select(vec!["a", "b", "s", "secret", "t", "p", "d1"])
            .prop_map(str::to_owned),
        2 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just(String::new()),
        1 => "[a-z]{90,130}",
        1 => "\\PC{1,6}",
        1 => Just(".eas-archive.json".to_owned()),
    ]
}

/// An entry name: plain, with `..`, absolute (into the tree), `\`-separated, with a trailing `/`.
fn name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(component(), 1..4),
        prop_oneof![8 => Just("/"), 1 => Just("\\")],
        prop_oneof![
            16 => Just(""),
            1 => Just("/"),
            1 => Just("./"),
            1 => Just("@ROOT@/"),
        ],
        prop_oneof![6 => Just(""), 1 => Just("/")],
    )
        .prop_map(|(parts, sep, lead, trail)| format!("{lead}{}{trail}", parts.join(sep)))
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => name().prop_map(Target::Text),
        1 => Just(Target::Text(String::new())),
        6 => entry_target(),
        2 => root_target(),
    ]
}

fn entry_target() -> impl Strategy<Value = Target> {
    (
        any::<Index>(),
        prop::sample::select(vec!["", "", "", "/..", "/../..", "/.", "/s", "/a/.."]),
    )
        .prop_map(|(i, suffix)| Target::Entry(i, suffix))
}

fn root_target() -> impl Strategy<Value = Target> {
    prop_oneof![4 => Just(0_usize), 1 => 1..3_usize].prop_map(Target::Root)
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
        3 => Just(Kind::Dir),
        5 => target().prop_map(Kind::Symlink),
        4 => target().prop_map(Kind::HardLink),
        1 => (
            prop_oneof![Just(1_u64 << 40), Just(u64::MAX >> 1), 1..100_000_u64],
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(declared, data)| Kind::Short { declared, data }),
        1 => prop_oneof![Just(b'6'), Just(b'3'), Just(b'4'), any::<u8>()].prop_map(Kind::Other),
    ]
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (name(), kind()).prop_map(|(name, kind)| Entry { name, kind }),
        1..9,
    )
}

/// Archives of links: plain names of three letters, links to paths of `..`, `.` and those
/// names or to other entries (through them, with `/..`), hard links to other entries. These
/// reach the resolution of links to links and through links, which random names rarely do.
fn link_entries() -> impl Strategy<Value = Vec<Entry>> {
    let letters = || prop::sample::select(vec!["a", "b", "s"]);
    let name = prop::collection::vec(letters(), 1..4).prop_map(|parts| parts.join("/"));
    let path = prop::collection::vec(
        prop_oneof![2 => Just(".."), 1 => Just("."), 5 => letters()],
        1..4,
    )
    .prop_map(|parts| Target::Text(parts.join("/")));
    let kind = prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..8).prop_map(Kind::File),
        1 => Just(Kind::Dir),
        5 => prop_oneof![2 => path, 3 => entry_target(), 2 => root_target()]
            .prop_map(Kind::Symlink),
        2 => prop_oneof![4 => entry_target(), 1 => root_target()].prop_map(Kind::HardLink),
    ];
    prop::collection::vec(
        (name, kind).prop_map(|(name, kind)| Entry { name, kind }),
        1..8,
    )
}

fn format() -> impl Strategy<Value = ArchiveFormat> {
    prop_oneof![
        4 => Just(ArchiveFormat::Tar),
        2 => Just(ArchiveFormat::TarGz),
        1 => Just(ArchiveFormat::TarBz2),
        3 => Just(ArchiveFormat::Zip),
    ]
}

/// A byte mutation.
#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Flip(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    /// Copies 512 bytes (a tar block) from one place over another.
    CopyBlock(Index, Index),
    /// Writes a big number into 12 bytes (a tar size field) as octal text.
    Size(Index, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        4 => (any::<Index>(), 1..=255_u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::CopyBlock(a, b)),
        1 => (any::<Index>(), prop_oneof![Just(0o77_777_777_777_u64), any::<u64>()])
            .prop_map(|(i, n)| Mutation::Size(i, n)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for m in mutations {
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len();
        match m {
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Flip(i, b) => bytes[i.index(len)] ^= *b,
            Mutation::Truncate(i) => bytes.truncate(i.index(len)),
            Mutation::Insert(i, b) => {
                let at = i.index(len);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::CopyBlock(from, to) => {
                if len > 512 {
                    let (from, to) = (from.index(len - 512), to.index(len - 512));
                    let block = bytes[from..from + 512].to_vec();
                    bytes[to..to + 512].copy_from_slice(&block);
                }
            }
            Mutation::Size(i, n) => {
                if len > 12 {
                    let at = i.index(len - 12);
                    let text = format!("{:011o}\0", n);
                    let text = &text.as_bytes()[text.len().saturating_sub(12)..];
                    bytes[at..at + text.len()].copy_from_slice(text);
                }
            }
        }
    }
}

/// How many directories deep an entry of this name is (`a/b/c`: 2).
fn depth(name: &str) -> usize {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.len().saturating_sub(1)
}

/// The generated names and targets with `@ROOT@` replaced by the tree's root.
fn resolve_names(entries: &[Entry], root: &Path) -> Vec<(String, Kind, Option<String>)> {
    let root = root.to_string_lossy();
    let fill = |text: &str| text.replace(ROOT, &root);
    let names: Vec<String> = entries.iter().map(|e| fill(&e.name)).collect();
    entries
        .iter()
        .zip(&names)
        .map(|(entry, name)| {
            // A symbolic link's way up to the archive's root (a hard link names archive paths).
            let up = match &entry.kind {
                Kind::Symlink(_) => "../".repeat(depth(name)),
                _ => String::new(),
            };
            let link = match &entry.kind {
                Kind::Symlink(t) | Kind::HardLink(t) => Some(match t {
                    Target::Text(text) => fill(text),
                    Target::Entry(i, suffix) => {
                        format!("{up}{}{suffix}", names[i.index(names.len())])
                    }
                    Target::Root(more) => match format!("{up}{}", "../".repeat(*more)) {
                        root if root.is_empty() => ".".to_owned(),
                        root => root,
                    },
                }),
                _ => None,
            };
            (name.clone(), entry.kind.clone(), link)
        })
        .collect()
}

/// A GNU long name (`L`) or long link (`K`) entry for `text`.
fn long_entry(builder: &mut tar::Builder<Vec<u8>>, kind: u8, text: &str) {
    let mut header = tar::Header::new_gnu();
    let name = b"././@LongLink";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(tar::EntryType::new(kind));
    let mut data = text.as_bytes().to_vec();
    data.push(0);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append(&header, &data[..]).expect("long name");
}

/// A tar whose headers are written raw: `tar::Builder` refuses `..`, absolute names and links.
fn tar_of(entries: &[(String, Kind, Option<String>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link) in entries {
        let (entry_type, size, data): (tar::EntryType, u64, &[u8]) = match kind {
            Kind::File(data) => (tar::EntryType::Regular, data.len() as u64, data),
            Kind::Dir => (tar::EntryType::Directory, 0, b""),
            Kind::Symlink(_) => (tar::EntryType::Symlink, 0, b""),
            Kind::HardLink(_) => (tar::EntryType::Link, 0, b""),
            Kind::Short { declared, data } => (tar::EntryType::Regular, *declared, data),
            Kind::Other(byte) => (tar::EntryType::new(*byte), 0, b""),
        };
        if name.len() >= 100 {
            long_entry(&mut builder, b'L', name);
        }
        let link = link.as_deref().unwrap_or_default();
        if link.len() >= 100 {
            long_entry(&mut builder, b'K', link);
        }
        let mut header = tar::Header::new_gnu();
        let old = header.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let n = link.len().min(100);
        old.linkname[..n].copy_from_slice(&link.as_bytes()[..n]);
        header.set_entry_type(entry_type);
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, data).expect("append raw");
    }
    builder.into_inner().expect("tar")
}

fn zip_of(entries: &[(String, Kind, Option<String>)], deflate: bool) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut seen = HashSet::new();
    for (name, kind, link) in entries {
        // The writer refuses duplicate names (a mutation may still make them).
        let key = if matches!(kind, Kind::Dir) {
            format!("{}/", name.trim_end_matches('/'))
        } else {
            name.clone()
        };
        if !seen.insert(key) {
            continue;
        }
        match kind {
            Kind::Dir => {
                let _ = writer.add_directory(name.as_str(), options);
            }
            Kind::Symlink(_) => {
                let target = link.as_deref().unwrap_or_default();
                let _ = writer.add_symlink(name.as_str(), target, options);
            }
            Kind::File(data) | Kind::Short { data, .. } => {
                if writer.start_file(name.as_str(), options).is_ok() {
                    writer.write_all(data).expect("zip data");
                }
            }
            Kind::HardLink(_) | Kind::Other(_) => {
                if writer.start_file(name.as_str(), options).is_ok() {
                    writer.write_all(b"x").expect("zip data");
                }
            }
        }
    }
    writer.finish().expect("zip").into_inner()
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

/// The archive bytes: built, mutated (`inner` before compression, `outer` after).
fn archive_bytes(
    entries: &[(String, Kind, Option<String>)],
    format: ArchiveFormat,
    inner: &[Mutation],
    outer: &[Mutation],
) -> Vec<u8> {
    let mut bytes = match format {
        ArchiveFormat::Zip => zip_of(entries, inner.len().is_multiple_of(2)),
        _ => tar_of(entries),
    };
    mutate(&mut bytes, inner);
    let mut bytes = match format {
        ArchiveFormat::TarGz => gzip(&bytes),
        ArchiveFormat::TarBz2 => bzip(&bytes),
        _ => bytes,
    };
    mutate(&mut bytes, outer);
    bytes
}

// ---------------------------------------------------------------------------------------------
// The tree around the target, and the checks.

/// What one path of the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { data: Vec<u8>, inode: (u64, u64) },
    Link(PathBuf),
    Other,
}

/// Every path under `dir` (relative to `root`), not following links.
fn snapshot(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        let node = if meta.file_type().is_symlink() {
            Node::Link(std::fs::read_link(&path).unwrap_or_default())
        } else if meta.is_dir() {
            snapshot(root, &path, out);
            Node::Dir
        } else if meta.is_file() {
            Node::File {
                data: std::fs::read(&path).unwrap_or_default(),
                inode: (meta.dev(), meta.ino()),
            }
        } else {
            Node::Other
        };
        out.insert(rel, node);
    }
}

/// Where `path` leads, following symbolic links as the kernel would and letting missing parts
/// stand as plain names (a dangling link leads where its target would be created); `None` when
/// it leads nowhere (a loop, or a name under a file).
fn resolve(path: &Path, hops: &mut u32) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => out = PathBuf::from("/"),
            Component::CurDir => {}
            Component::ParentDir => {
                if out.exists() && !out.is_dir() {
                    return None;
                }
                out.pop();
            }
            Component::Normal(name) => {
                if out.exists() && !out.is_dir() {
                    return None;
                }
                let next = out.join(name);
                match std::fs::symlink_metadata(&next) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        *hops += 1;
                        if *hops > 40 {
                            return None;
                        }
                        let link = std::fs::read_link(&next).ok()?;
                        out = resolve(&out.join(link), hops)?;
                    }
                    _ => out = next,
                }
            }
        }
    }
    Some(out)
}

/// A readable listing of a tree, for failure messages.
fn listing(tree: &BTreeMap<PathBuf, Node>) -> String {
    tree.iter()
        .map(|(path, node)| match node {
            Node::Link(to) => format!("  {} -> {}", path.display(), to.display()),
            Node::Dir => format!("  {}/", path.display()),
            Node::File { data, .. } => format!("  {} ({} bytes)", path.display(), data.len()),
            Node::Other => format!("  {} (special)", path.display()),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A temporary tree: `root/d1/.../d8/p/t` is the target, with a `secret` at each level above
/// `p` and the archive in `root/src`.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    target: PathBuf,
    archive: PathBuf,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical root");
        let mut level = root.clone();
        std::fs::write(level.join("secret"), b"root secret").expect("secret");
        for depth in 1..=DEPTH {
            level = level.join(format!("d{depth}"));
            std::fs::create_dir(&level).expect("level");
            std::fs::write(level.join("secret"), format!("secret {depth}")).expect("secret");
        }
        let parent = level.join("p");
        std::fs::create_dir(&parent).expect("parent");
        std::fs::create_dir(root.join("src")).expect("src");
        Self {
            _dir: dir,
            archive: root.join("src/archive"),
            target: parent.join("t"),
            root,
        }
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, Node> {
        let mut tree = BTreeMap::new();
        snapshot(&self.root, &self.root, &mut tree);
        tree
    }
}

/// The peak resident memory of this process (VmHWM), in bytes.
fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Mounts `bytes` as `format` in a fresh tree and checks the outcome; whether it unpacked.
fn check_mount(
    runtime: &tokio::runtime::Runtime,
    tree: &Tree,
    format: ArchiveFormat,
    bytes: &[u8],
) -> Result<bool, TestCaseError> {
    std::fs::write(&tree.archive, bytes).expect("write archive");
    let before = tree.snapshot();
    let mount = ArchiveMount::local(&tree.archive, format, &tree.target).expect("mount");
    let outcome = runtime.block_on(async {
        tokio::time::timeout(MOUNT_TIMEOUT, mount.mount(MountMode::Eager, None)).await
    });
    let after = tree.snapshot();
    let Ok(outcome) = outcome else {
        return Err(TestCaseError::fail(format!(
            "the mount did not end within {MOUNT_TIMEOUT:?}"
        )));
    };
    let target_rel = tree.target.strip_prefix(&tree.root).expect("under root");
    // Everything outside the target is as it was.
    let outside: BTreeMap<_, _> = after
        .iter()
        .filter(|(path, _)| !path.starts_with(target_rel))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect();
    if outside != before {
        let gone: BTreeMap<_, _> = before
            .iter()
            .filter(|(p, n)| outside.get(*p) != Some(n))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        let new: BTreeMap<_, _> = outside
            .iter()
            .filter(|(p, n)| before.get(*p) != Some(n))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        return Err(TestCaseError::fail(format!(
            "the mount ({}) changed the tree outside the target\nchanged or gone:\n{}\nnew or \
             changed:\n{}\nwhole tree after:\n{}",
            if outcome.is_ok() { "Ok" } else { "Err" },
            listing(&gone),
            listing(&new),
            listing(&after)
        )));
    }
    match &outcome {
        Err(_) => {
            prop_assert!(
                !tree.target.exists(),
                "a refused mount left the target behind:\n{}",
                listing(&after)
            );
        }
        Ok(_) => {
            let target = tree.target.canonicalize().expect("the target exists");
            let outside_inodes: HashSet<(u64, u64)> = before
                .values()
                .filter_map(|n| match n {
                    Node::File { inode, .. } => Some(*inode),
                    _ => None,
                })
                .collect();
            for (path, node) in after.iter().filter(|(p, _)| p.starts_with(target_rel)) {
                let full = tree.root.join(path);
                let mut hops = 0;
                if let Some(leads) = resolve(&full, &mut hops) {
                    prop_assert!(
                        leads.starts_with(&target),
                        "`{}` leads outside the target, to `{}`\ntree after:\n{}",
                        path.display(),
                        leads.display(),
                        listing(&after)
                    );
                }
                if let Node::File { inode, .. } = node {
                    prop_assert!(
                        !outside_inodes.contains(inode),
                        "`{}` is a hard link to a file outside the target\ntree after:\n{}",
                        path.display(),
                        listing(&after)
                    );
                }
            }
        }
    }
    if let Some(peak) = peak_resident_bytes() {
        prop_assert!(
            peak < MAX_RESIDENT_BYTES,
            "the process reached {peak} resident bytes"
        );
    }
    Ok(outcome.is_ok())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn run<S: Strategy>(brief: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(config(brief));
    if let Err(error) = runner.run(&strategy, test) {
        panic!("{error}");
    }
}

#[test]
fn generated_archives_should_unpack_inside_the_target_or_be_refused() {
    let runtime = runtime();
    let entries = prop_oneof![entries(), link_entries()];
    run(256, (entries, format()), |(entries, format)| {
        let tree = Tree::new();
        let entries = resolve_names(&entries, &tree.root);
        let bytes = archive_bytes(&entries, format, &[], &[]);
        check_mount(&runtime, &tree, format, &bytes).map(drop)
    });
}

/// Archives a benign unpacker would accept: plain names, directories, links inside.
fn benign_entries() -> impl Strategy<Value = Vec<Entry>> {
    let name = prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c", "model.onnx"]),
        1..4,
    )
    .prop_map(|parts| parts.join("/"));
    let kind = prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Kind::File),
        2 => Just(Kind::Dir),
        1 => any::<Index>().prop_map(|i| Kind::Symlink(Target::Entry(i, ""))),
        1 => any::<Index>().prop_map(|i| Kind::HardLink(Target::Entry(i, ""))),
    ];
    prop::collection::vec(
        (name, kind).prop_map(|(name, kind)| Entry { name, kind }),
        1..8,
    )
}

#[test]
fn mutated_archives_should_unpack_inside_the_target_or_be_refused() {
    let runtime = runtime();
    let strategy = (
        benign_entries(),
        format(),
        prop::collection::vec(mutation(), 0..4),
        prop::collection::vec(mutation(), 0..3),
    );
    run(256, strategy, |(entries, format, inner, outer)| {
        let tree = Tree::new();
        let entries = resolve_names(&entries, &tree.root);
        let bytes = archive_bytes(&entries, format, &inner, &outer);
        check_mount(&runtime, &tree, format, &bytes).map(drop)
    });
}

#[test]
fn arbitrary_bytes_should_be_refused_or_unpack_inside_the_target() {
    let runtime = runtime();
    let strategy = (prop::collection::vec(any::<u8>(), 0..2048), format());
    run(128, strategy, |(bytes, format)| {
        let tree = Tree::new();
        check_mount(&runtime, &tree, format, &bytes).map(drop)
    });
}

// ---------------------------------------------------------------------------------------------
// What the fuzzer found (at commit 4eb5c9d; fixed since), kept as plain tests.

/// Mounts the entries as a tar and as a zip, checked as the properties are; whether each
/// unpacked.
fn regression(entries: &[(&str, Kind)]) -> Vec<bool> {
    let runtime = runtime();
    let entries: Vec<Entry> = entries
        .iter()
        .map(|(name, kind)| Entry {
            name: (*name).to_owned(),
            kind: kind.clone(),
        })
        .collect();
    [ArchiveFormat::Tar, ArchiveFormat::Zip]
        .into_iter()
        .map(|format| {
            let tree = Tree::new();
            let entries = resolve_names(&entries, &tree.root);
            let bytes = archive_bytes(&entries, format, &[], &[]);
            check_mount(&runtime, &tree, format, &bytes)
                .unwrap_or_else(|e| panic!("{format:?}: {e}"))
        })
        .collect()
}

fn symlink(target: &str) -> Kind {
    Kind::Symlink(Target::Text(target.to_owned()))
}

fn hard_link(target: &str) -> Kind {
    Kind::HardLink(Target::Text(target.to_owned()))
}

/// Was: the archive unpacked and was renamed into place, then listing the target failed on
/// the link, so the mount answered an error and left the target (and its marker) behind, and
/// every later mount failed the same way.
#[test]
fn a_dangling_or_looping_link_should_unpack() {
    for link in [symlink("missing"), symlink("l")] {
        let unpacked = regression(&[("a/f", Kind::File(b"x".to_vec())), ("l", link)]);
        assert_eq!(unpacked, [true, true]);
    }
}

/// Was: `h` became a second name of the link `a/s -> ..`, so `h -> ..` led out of the target,
/// and `h/evil` was written beside it (any depth: `a/b/s -> ../..` and so on).
#[test]
fn a_hard_link_to_a_symbolic_link_should_not_lead_outside() {
    regression(&[
        ("a/s", symlink("..")),
        ("h", hard_link("a/s")),
        ("h/evil", Kind::File(b"evil".to_vec())),
    ]);
}

/// Was: each link was checked on its own, lexically: `a/up -> ..` stays inside, and so does
/// `a/up/..` read as text, but through the link it is the target's parent.
#[test]
fn a_link_through_another_link_should_not_lead_outside() {
    regression(&[("a/up", symlink("..")), ("b", symlink("a/up/.."))]);
}
