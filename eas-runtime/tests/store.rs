//! The desired-state store on real redb files in temporary directories: round trips, reopen,
//! delete, damaged files, a second server, and `kill -9` in the middle of writes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eas_runtime::store::{FILE_NAME, MAX_RECORD_BYTES, ServiceRecord, StateStore, StoreError};
use serde_json::json;

fn record(name: &str, version: u64) -> ServiceRecord {
    ServiceRecord::new(json!({"metadata": {"name": name, "instance": 2}, "processor": "echo"}))
        .with_version(version)
        .with_updated_at_unix_ms(1_700_000_000_000 + version)
}

#[test]
fn a_record_should_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(dir.path()).expect("open");
    assert_eq!(store.path(), dir.path().join(FILE_NAME));
    assert_eq!(store.get("echo").expect("get"), None);

    let echo = record("echo", 1)
        .with_stopped(true)
        .with_message("stopped by alice");
    store.put("echo", &echo).expect("put");
    assert_eq!(store.get("echo").expect("get"), Some(echo.clone()));

    let newer = record("echo", 2);
    store.put("echo", &newer).expect("put again");
    assert_eq!(store.get("echo").expect("get"), Some(newer));
}

#[test]
fn list_should_return_records_sorted_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(dir.path()).expect("open");
    assert!(store.list().expect("list").records.is_empty());
    for name in ["zeta", "alpha", "mid"] {
        store.put(name, &record(name, 1)).expect("put");
    }
    let listing = store.list().expect("list");
    assert!(listing.errors.is_empty(), "{:?}", listing.errors);
    let names: Vec<&str> = listing.records.keys().map(String::as_str).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[test]
fn records_should_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = StateStore::open(dir.path()).expect("open");
        store.put("a", &record("a", 7)).expect("put");
        store
            .put("b", &record("b", 8).with_stopped(true))
            .expect("put");
    }
    let store = StateStore::open(dir.path()).expect("reopen");
    assert_eq!(store.get("a").expect("get"), Some(record("a", 7)));
    assert_eq!(
        store.get("b").expect("get"),
        Some(record("b", 8).with_stopped(true))
    );
    assert_eq!(store.list().expect("list").records.len(), 2);
}

#[test]
fn delete_should_remove_a_record_and_say_whether_it_existed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(dir.path()).expect("open");
    store.put("a", &record("a", 1)).expect("put");
    store.put("b", &record("b", 1)).expect("put");
    assert!(store.delete("a").expect("delete"));
    assert!(!store.delete("a").expect("delete again"));
    assert_eq!(store.get("a").expect("get"), None);
    drop(store);
    let store = StateStore::open(dir.path()).expect("reopen");
    let names: Vec<String> = store.list().expect("list").records.into_keys().collect();
    assert_eq!(names, ["b"]);
}

#[test]
fn open_should_create_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a").join("b");
    let store = StateStore::open(&nested).expect("open");
    assert!(nested.join(FILE_NAME).is_file());
    store.put("x", &record("x", 1)).expect("put");
}

#[test]
fn a_second_open_should_say_another_server_holds_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = StateStore::open(dir.path()).expect("open");
    let err = StateStore::open(dir.path()).expect_err("second open");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.path().join(FILE_NAME).display().to_string()),
        "{text}"
    );
    assert!(text.contains("another eas server"), "{text}");
    // The first still works, and once it is gone the store opens again.
    first.put("a", &record("a", 1)).expect("put");
    drop(first);
    let again = StateStore::open(dir.path()).expect("open after the first closed");
    assert_eq!(again.get("a").expect("get"), Some(record("a", 1)));
}

fn assert_corrupt_names_the_file(dir: &Path, what: &str) {
    let file = dir.join(FILE_NAME);
    let result = StateStore::open(dir).and_then(|store| store.list().map(drop));
    let err = result.expect_err(what);
    assert!(
        matches!(err, StoreError::Corrupt { .. } | StoreError::Io { .. }),
        "{what}: {err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&file.display().to_string()), "{what}: {text}");
}

#[test]
fn a_file_that_is_not_a_store_should_be_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(FILE_NAME);
    std::fs::write(&file, b"{\"services\": []}\n this is not a redb file").expect("write");
    assert_corrupt_names_the_file(dir.path(), "text file");

    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, garbage).expect("write");
    assert_corrupt_names_the_file(dir.path(), "garbage");
}

#[test]
fn a_truncated_store_should_be_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = StateStore::open(dir.path()).expect("open");
        for i in 0..50 {
            let name = format!("svc-{i}");
            let big = ServiceRecord::new(json!({"blob": "x".repeat(8 * 1024), "i": i}));
            store.put(&name, &big).expect("put");
        }
    }
    let file = dir.path().join(FILE_NAME);
    let bytes = std::fs::read(&file).expect("read");
    for keep in [100, 512, 4096, bytes.len() / 2] {
        std::fs::write(&file, &bytes[..keep]).expect("truncate");
        assert_corrupt_names_the_file(dir.path(), &format!("truncated to {keep} bytes"));
    }
}

#[test]
fn a_store_with_damaged_pages_should_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = StateStore::open(dir.path()).expect("open");
        for i in 0..50 {
            let name = format!("svc-{i}");
            let big = ServiceRecord::new(json!({"blob": "x".repeat(8 * 1024), "i": i}));
            store.put(&name, &big).expect("put");
        }
    }
    let file = dir.path().join(FILE_NAME);
    let clean = std::fs::read(&file).expect("read");
    // Overwrite a 256-byte stretch at several places: the header, inside pages, near the end.
    // Some damage lands in free pages and is harmless; what matters is no panic, and an error,
    // when there is one, names the file.
    for at in (0..clean.len()).step_by(clean.len() / 16 + 1) {
        let mut bytes = clean.clone();
        let end = (at + 256).min(bytes.len());
        for b in &mut bytes[at..end] {
            *b ^= 0xA5;
        }
        std::fs::write(&file, &bytes).expect("write");
        let outcome = StateStore::open(dir.path()).and_then(|store| {
            for i in 0..50 {
                let _ = store.get(&format!("svc-{i}"))?;
            }
            store.list().map(drop)
        });
        if let Err(err) = outcome {
            let text = err.to_string();
            assert!(
                text.contains(&file.display().to_string()),
                "damage at {at}: {text}"
            );
        }
    }
}

#[test]
fn a_record_larger_than_the_limit_should_be_refused_at_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(dir.path()).expect("open");
    let huge = ServiceRecord::new(json!({"blob": "x".repeat(MAX_RECORD_BYTES)}));
    let err = store.put("huge", &huge).expect_err("too large");
    assert!(matches!(err, StoreError::RecordTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("huge"), "{err}");
    assert_eq!(store.get("huge").expect("get"), None);

    let long = "n".repeat(10_000);
    let err = store.put(&long, &record("x", 1)).expect_err("long name");
    assert!(matches!(err, StoreError::NameTooLong { .. }), "{err:?}");
}

#[test]
fn an_undecodable_record_should_be_reported_with_its_key_and_hide_no_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = StateStore::open(dir.path()).expect("open");
        store.put("good-a", &record("good-a", 1)).expect("put");
        store.put("good-z", &record("good-z", 1)).expect("put");
    }
    // Write around the store, as a damaged or foreign record would be: raw redb.
    let services: redb::TableDefinition<'_, &str, &[u8]> = redb::TableDefinition::new("services");
    {
        let db = redb::Database::create(dir.path().join(FILE_NAME)).expect("raw open");
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(services).expect("table");
            table
                .insert("bad", b"{not json".as_slice())
                .expect("insert");
            // A record as an older eas might have written it: only a spec.
            table
                .insert(
                    "old",
                    br#"{"spec": {"metadata": {"name": "old"}}}"#.as_slice(),
                )
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let store = StateStore::open(dir.path()).expect("reopen");
    let listing = store.list().expect("list");
    let names: Vec<&str> = listing.records.keys().map(String::as_str).collect();
    assert_eq!(names, ["good-a", "good-z", "old"]);
    assert_eq!(listing.records["old"].version, 0);
    assert!(!listing.records["old"].stopped);
    assert_eq!(listing.errors.len(), 1, "{:?}", listing.errors);
    match &listing.errors[0] {
        StoreError::Decode { key, .. } => assert_eq!(key, "bad"),
        other => panic!("want a decode error, got {other:?}"),
    }
    let err = store.get("bad").expect_err("get bad");
    assert!(err.to_string().contains("`bad`"), "{err}");
}

#[test]
fn the_store_should_be_shared_across_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(dir.path()).expect("open");
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let name = format!("t{t}-{i}");
                    store.put(&name, &record(&name, i)).expect("put");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("join");
    }
    assert_eq!(store.list().expect("list").records.len(), 40);
}

// ---- kill -9 in the middle of writes ----

/// Set in the child: the directory the writer writes to.
const WRITER_DIR: &str = "EAS_STORE_TEST_WRITER_DIR";
/// The writer never runs longer than this, should its parent fail to kill it.
const WRITER_MAX: Duration = Duration::from_secs(60);
/// How many times the writer is started and killed (`EAS_STORE_KILL_ROUNDS` for more).
const KILL_ROUNDS: u64 = 5;

fn counter_name(i: u64) -> String {
    format!("svc-{i:08}")
}

/// A body derived from the counter, 4 KiB to about 1 MiB, so that commits take a while and a
/// torn record could not pass for a whole one.
fn counter_body(i: u64) -> String {
    let len = 4 * 1024 + (i * 7919 % 16) as usize * 64 * 1024;
    let unit = format!("{i:016x}|");
    unit.repeat(len / unit.len() + 1)[..len].to_owned()
}

fn counter_record(i: u64) -> ServiceRecord {
    ServiceRecord::new(
        json!({"metadata": {"name": counter_name(i)}, "counter": i, "body": counter_body(i)}),
    )
    .with_version(i)
    .with_updated_at_unix_ms(i)
    .with_message(format!("counter {i}"))
}

/// Not a test on its own: the child process of
/// [`a_kill_9_in_the_middle_of_writes_should_leave_whole_records_and_a_prefix`] runs it.
/// Writes counter records in a loop, starting after those already there (earlier rounds),
/// each followed by a rewrite of `latest`, and prints each counter once its put has returned.
#[test]
fn kill_9_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return;
    };
    let store = StateStore::open(Path::new(&dir)).expect("child open");
    let listing = store.list().expect("child list");
    let mut i = listing
        .records
        .keys()
        .filter(|k| k.starts_with("svc-"))
        .count() as u64;
    let start = Instant::now();
    while start.elapsed() < WRITER_MAX {
        store
            .put(&counter_name(i), &counter_record(i))
            .expect("child put");
        store
            .put(
                "latest",
                &ServiceRecord::new(json!({"counter": i})).with_version(i),
            )
            .expect("child put latest");
        println!("committed {i}");
        i += 1;
    }
}

/// A seed from the clock (printed, and settable with `EAS_STORE_KILL_SEED` to replay).
fn seed() -> u64 {
    std::env::var("EAS_STORE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// splitmix64: enough randomness for a delay, no dependency.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn a_kill_9_in_the_middle_of_writes_should_leave_whole_records_and_a_prefix() {
    let seed = seed();
    println!("kill -9 seed: {seed} (replay with EAS_STORE_KILL_SEED={seed})");
    let mut rng = seed;
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let mut highest_before = None::<u64>;
    let rounds = std::env::var("EAS_STORE_KILL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(KILL_ROUNDS);
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "kill_9_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_DIR, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn writer");
        // Drain the child's stdout on a thread, so a full pipe never pauses it: it must be
        // writing, not blocked on println, when the kill lands.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("committed ").and_then(|n| n.parse().ok()) {
                    let _ = tx.send(n);
                }
            }
        });
        // Wait for the child's first commit of this round, then let it write a while.
        let first = rx.recv_timeout(Duration::from_secs(30));
        assert!(
            first.is_ok(),
            "round {round}: the writer committed nothing in 30 s"
        );
        let delay = Duration::from_millis(10 + next(&mut rng) % 300);
        std::thread::sleep(delay);
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "round {round}: the writer exited before the kill"
        );
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "round {round}: {status}");
        reader.join().expect("reader");
        let acknowledged = rx.try_iter().last().or(first.ok());

        let store = StateStore::open(dir.path()).expect("reopen after kill -9");
        let listing = store.list().expect("list after kill -9");
        assert!(
            listing.errors.is_empty(),
            "round {round}: {:?}",
            listing.errors
        );
        let mut counters: BTreeMap<u64, &ServiceRecord> = BTreeMap::new();
        let mut latest = None;
        for (name, rec) in &listing.records {
            if name == "latest" {
                latest = Some(rec.version);
                continue;
            }
            let i: u64 = name
                .strip_prefix("svc-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("round {round}: unexpected key {name}"));
            // Whole and consistent: every field derived from the counter matches it.
            assert_eq!(rec.version, i, "round {round}: {name}");
            assert_eq!(rec.updated_at_unix_ms, i, "round {round}: {name}");
            assert_eq!(
                rec.message.as_deref(),
                Some(format!("counter {i}").as_str())
            );
            assert_eq!(rec.spec["counter"], i, "round {round}: {name}");
            assert_eq!(
                rec.spec["body"].as_str(),
                Some(counter_body(i).as_str()),
                "round {round}: {name}: body"
            );
            counters.insert(i, rec);
        }
        let highest = *counters.keys().last().expect("some records");
        // A prefix: nothing is missing below the highest counter.
        assert_eq!(counters.len() as u64, highest + 1, "round {round}: a gap");
        // Durable when put returns: everything the child acknowledged is there.
        let acknowledged = acknowledged.expect("acknowledged");
        assert!(
            highest >= acknowledged,
            "round {round}: {highest} < acknowledged {acknowledged}"
        );
        // `latest` is rewritten after each counter: it is the highest, or one behind.
        let latest = latest.expect("latest");
        assert!(
            latest == highest || latest + 1 == highest,
            "round {round}: latest {latest}, highest {highest}"
        );
        // Each round goes on from where the last one stopped, and committed at least once.
        if let Some(before) = highest_before {
            assert!(
                highest > before,
                "round {round}: highest {highest}, before {before}"
            );
        }
        highest_before = Some(highest);
        println!(
            "round {round}: killed after {delay:?}; {} records whole, highest {highest}, \
             acknowledged {acknowledged}, latest {latest}",
            counters.len()
        );
    }
}
