//! Which file of a service's model a processor loads: `model_entry` when the spec gives one;
//! else `model_path` itself when it is a file; else the one file in that directory with one of
//! the processor's extensions (none, or several, is an error that says which).

use std::path::PathBuf;

use eas_core::processor::InitContext;

/// The model file for `ctx`, looking for `extensions` (without the dot, any case) in a
/// directory; `Err` holds the reason, for the processor's own error.
pub(crate) fn find(ctx: &InitContext, extensions: &[&str]) -> Result<PathBuf, String> {
    let patterns = extensions
        .iter()
        .map(|e| format!("*.{e}"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(entry) = &ctx.model_entry {
        return if entry.is_file() {
            Ok(entry.clone())
        } else {
            Err(format!("model_entry {} is not a file", entry.display()))
        };
    }
    let Some(dir) = &ctx.model_dir else {
        return Err(format!(
            "the spec gives neither model_path nor model_entry; set model_path to the model \
             file ({patterns}) or a directory holding one"
        ));
    };
    if dir.is_file() {
        return Ok(dir.clone());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list model_path {}: {e}", dir.display()))?;
    let mut models: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|ext| extensions.iter().any(|m| ext.eq_ignore_ascii_case(m)))
        })
        .collect();
    models.sort();
    match models.len() {
        1 => Ok(models.remove(0)),
        0 => Err(format!(
            "no {patterns} file in model_path {}; set model_entry",
            dir.display()
        )),
        _ => Err(format!(
            "model_path {} holds several model files ({}); set model_entry to one",
            dir.display(),
            models
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_file_should_be_found_or_the_reason_given() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ctx = InitContext::new("s").with_model_dir(dir.path());
        let torch = ["pt", "pth", "torchscript"];
        let err = find(&ctx, &torch).expect_err("empty dir");
        assert!(err.contains("no *.pt, *.pth, *.torchscript file"), "{err}");
        std::fs::write(dir.path().join("a.pt"), b"x").expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        assert_eq!(find(&ctx, &torch).expect("one"), dir.path().join("a.pt"));
        std::fs::write(dir.path().join("b.PTH"), b"x").expect("write");
        let err = find(&ctx, &torch).expect_err("two models");
        assert!(err.contains("several model files (a.pt, b.PTH)"), "{err}");
        // model_path naming the file itself, and model_entry, win over the directory scan.
        let file = InitContext::new("s").with_model_dir(dir.path().join("b.PTH"));
        assert_eq!(find(&file, &torch).expect("file"), dir.path().join("b.PTH"));
        let entry = InitContext::new("s").with_model_entry(dir.path().join("missing.pt"));
        let err = find(&entry, &torch).expect_err("missing entry");
        assert!(err.contains("missing.pt is not a file"), "{err}");
        let err = find(&InitContext::new("s"), &["onnx"]).expect_err("nothing given");
        assert!(err.contains("neither model_path nor model_entry"), "{err}");
        assert!(err.contains("(*.onnx)"), "{err}");
    }
}
