//! Define a service in code or read one from JSON, validate it, and run a custom processor by
//! hand (what an instance does once per request batch).
//!
//! Run with `cargo run --example define_service`.

use eas::prelude::*;

/// A processor that answers each request with its body upper-cased.
struct Shout;

impl Processor for Shout {
    fn initialize(&mut self, ctx: &InitContext) -> eas::Result<()> {
        println!("initializing for service {}", ctx.service);
        Ok(())
    }

    fn process(&self, batch: &[Request]) -> Vec<Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|request| match std::str::from_utf8(&request.body) {
                Ok(text) => Ok(Response::ok(text.to_uppercase())),
                Err(_) => Err(ProcessError::bad_request("the body is not UTF-8 text")),
            })
            .collect()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = ServiceSpec::from_json_str(include_str!("services/echo.json"))?;
    println!("{}", spec.summary());
    println!(
        "batches of up to {} requests",
        spec.metadata.rpc.max_batch_size
    );

    // A broken spec reports every problem at once, each with its path.
    let broken = r#"{"metadata": {"name": "Echo", "instance": 1, "rpc": {"worker_thread": 2}}}"#;
    if let Err(errors) = ServiceSpec::from_json_str(broken) {
        println!("{errors}");
    }

    let mut processor = Shout;
    processor.initialize(&InitContext::new(spec.metadata.name.as_str()))?;
    for result in processor.process(&[Request::new("hello"), Request::new(vec![0xff_u8])]) {
        match result {
            Ok(response) => println!(
                "{} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
            Err(error) => println!("{} {}", error.status, error.message),
        }
    }
    Ok(())
}
