//! One rule for spec paths: what `eas validate` accepts as a `model_path` or
//! `storage[].oss.path` is what the resolver parses, for every archive suffix and scheme, and a
//! path refused by one is refused by the other with the same reason.

use eas_core::ServiceSpec;
use eas_core::spec::ArchiveFormat;
use eas_storage::Error;
use eas_storage::location::Source;
use eas_storage::resolve::{ResolveOptions, resolve};
use serde_json::json;

const ENDPOINT: &str = "oss-cn-beijing.aliyuncs.com";

/// The validator's verdict on `model_path`: `Err` with its reason for that field.
fn validated(model_path: &str) -> Result<(), String> {
    let spec = json!({
        "metadata": {"name": "demo", "instance": 1},
        "processor": "echo",
        "model_path": model_path,
        "oss_endpoint": ENDPOINT,
    });
    match ServiceSpec::from_json_value(spec) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let reasons: Vec<&str> = errors
                .errors()
                .iter()
                .filter(|e| e.path == "model_path")
                .map(|e| e.message.as_str())
                .collect();
            assert_eq!(reasons.len(), 1, "{model_path}: {errors}");
            Err(reasons[0].to_owned())
        }
    }
}

fn mount_spec(path: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": "demo", "instance": 1},
        "containers": [{"image": "python:3.11", "script": "python app.py", "port": 8000}],
        "oss_endpoint": ENDPOINT,
        "storage": [{"mount_path": "/data", "oss": {"path": path}}],
    })
}

/// The validator's verdict on `storage[0].oss.path`: `Err` with its reason for that field.
fn validated_mount(path: &str) -> Result<(), String> {
    match ServiceSpec::from_json_value(mount_spec(path)) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let reasons: Vec<&str> = errors
                .errors()
                .iter()
                .filter(|e| e.path == "storage[0].oss.path")
                .map(|e| e.message.as_str())
                .collect();
            assert_eq!(reasons.len(), 1, "{path}: {errors}");
            Err(reasons[0].to_owned())
        }
    }
}

/// The resolver's verdict: `Err` with the reason of an [`Error::InvalidUri`].
fn parsed(uri: &str) -> Result<Source, String> {
    match Source::parse(uri, Some(ENDPOINT)) {
        Ok(source) => Ok(source),
        Err(Error::InvalidUri { reason, .. }) => Err(reason),
        Err(other) => panic!("{uri}: not a refusal of the path: {other}"),
    }
}

#[test]
fn every_archive_suffix_should_be_accepted_by_both_with_the_same_format() {
    for format in ArchiveFormat::ALL {
        for suffix in format.suffixes() {
            for name in [
                format!("m{suffix}"),
                format!("M{}", suffix.to_ascii_uppercase()),
            ] {
                let url = format!("https://host/models/{name}?sig=abc#frag");
                assert_eq!(validated(&url), Ok(()), "{url}");
                match parsed(&url) {
                    Ok(Source::Archive { format: got, .. }) => assert_eq!(got, format, "{url}"),
                    other => panic!("{url}: {other:?}"),
                }
            }
        }
    }
}

#[test]
fn validator_and_resolver_should_agree_on_every_path() {
    // (path, accepted, what the reason says when refused)
    let cases = [
        ("https://h/m.tar.gz", true, ""),
        ("https://h/m.tgz", true, ""),
        ("https://h/m.tar", true, ""),
        ("https://h/m.tar.bz2", true, ""),
        ("https://h/m.tbz2", true, ""),
        ("http://h/m.zip", true, ""),
        (
            "https://h/m.bz2",
            false,
            "a bare .bz2 compresses a single file",
        ),
        ("https://h/m.bz2", false, ".tar.bz2 or .tbz2"),
        ("https://h/m.gz", false, ".tar.gz or .tgz"),
        ("https://h/model.onnx", false, "must name an archive"),
        ("https://h/m.tar.xz", false, "must name an archive"),
        ("https://h/m.onnx?name=m.zip", false, "must name an archive"),
        ("https://h.zip", false, "must name an archive"),
        ("https:///m.zip", false, "names no host"),
        ("oss://models/resnet/", true, ""),
        ("s3://models", true, ""),
        ("oss:///resnet", false, "names no bucket"),
        ("mem://bucket/model/", true, ""),
        ("ftp://h/m.tar", true, ""),
        ("file:///srv/models", true, ""),
        ("mem://", false, "names nothing after mem://"),
        ("1mem://b", false, "malformed scheme"),
        ("://b", false, "names no scheme"),
        ("/srv/models/m.tbz2", true, ""),
        ("/srv/models/m.bz2", true, ""),
        ("models", true, ""),
    ];
    for (path, accepted, reason) in cases {
        let by_validator = validated(path);
        let by_resolver = parsed(path).map(drop);
        assert_eq!(
            by_validator, by_resolver,
            "{path}: the validator and the resolver disagree"
        );
        match by_validator {
            Ok(()) => assert!(accepted, "{path} should be refused"),
            Err(message) => {
                assert!(!accepted, "{path} should be accepted: {message}");
                assert!(message.contains(reason), "{path}: {message}");
                assert!(
                    message.contains(path),
                    "{path}: the reason names it: {message}"
                );
            }
        }
    }
}

#[test]
fn other_schemes_should_reach_the_resolver_as_other_sources() {
    for path in ["mem://bucket/model/", "ftp://h/m.tar", "file:///srv/models"] {
        let scheme = path.split("://").next().expect("a scheme");
        assert_eq!(
            parsed(path),
            Ok(Source::Other {
                scheme: scheme.to_owned(),
                uri: path.to_owned()
            })
        );
    }
}

#[tokio::test]
async fn mount_paths_should_be_buckets_or_other_schemes_for_both() {
    for path in ["oss://b/data/", "s3://b/data/", "mem://b/data/"] {
        assert_eq!(validated_mount(path), Ok(()), "{path}");
        assert!(parsed(path).is_ok(), "{path}");
    }
    let work = tempfile::tempdir().expect("tempdir");
    for path in ["/srv/data", "https://h/m.tar.gz", "oss:///data", "mem://"] {
        let message = validated_mount(path).expect_err(path);
        // Unvalidated on purpose: the resolver applies the same rule itself.
        let spec: ServiceSpec = serde_json::from_value(mount_spec(path)).expect("deserializes");
        match resolve(&spec, &ResolveOptions::new(work.path())).await {
            Err(Error::Spec { subject, reason }) => {
                assert_eq!(subject, "storage[0].oss.path", "{path}");
                assert_eq!(
                    reason, message,
                    "{path}: the validator and the resolver disagree"
                );
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}
