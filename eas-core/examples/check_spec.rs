//! Prints what `ServiceSpec::from_json_str` says about each file given on the command line.
fn main() {
    for path in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&path).expect("readable file");
        match eas_core::spec::ServiceSpec::from_json_str(&text) {
            Ok(spec) => println!("{path}: ok: {}", spec.summary()),
            Err(errors) => println!("{path}:\n{errors}"),
        }
    }
}
