//! Compose your own server around a processor written in Rust.
//!
//! Registers a `reverse` processor next to the built-ins, serves a spec that names it on a
//! free port, sends it one request (as any HTTP client would), prints the answer and shuts
//! down gracefully.
//!
//! ```sh
//! cargo run --example custom_processor
//! ```

use std::io::{Read, Write};
use std::time::Duration;

use eas::prelude::*;

/// Answers each request with its body reversed, byte by byte.
struct Reverse;

impl Processor for Reverse {
    fn initialize(&mut self, ctx: &InitContext) -> eas::Result<()> {
        println!(
            "instance {} of `{}` initialized",
            ctx.instance_index, ctx.service
        );
        Ok(())
    }

    /// Called with up to `rpc.max_batch_size` requests at once; one result per request.
    fn process(&self, batch: &[Request]) -> Vec<std::result::Result<Response, ProcessError>> {
        batch
            .iter()
            .map(|request| {
                if request.body.is_empty() {
                    return Err(ProcessError::bad_request("nothing to reverse"));
                }
                let mut body = request.body.to_vec();
                body.reverse();
                Ok(Response::ok(body).with_content_type("text/plain"))
            })
            .collect()
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut registry = ProcessorRegistry::with_builtins();
    registry.register("reverse", |_spec| Ok(Box::new(Reverse)));

    let spec = ServiceSpec::from_json_str(
        r#"{
            "metadata": {"name": "reverse", "instance": 2,
                         "rpc": {"batching": true, "max_batch_size": 16, "max_batch_timeout": 5}},
            "processor": "reverse",
            "model_path": ".",
            "token": "example-token"
        }"#,
    )?;
    let server = Platform::builder()
        .registry(registry)
        .service(spec)
        .bind("127.0.0.1:0".parse()?)
        .start()
        .await?;
    if !server.wait_ready(Duration::from_secs(10)).await {
        return Err("the service did not become ready".into());
    }
    let addr = server.local_addr();
    println!("serving on http://{addr}/api/predict/reverse");

    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        let body = "hello, eas";
        write!(
            stream,
            "POST /api/predict/reverse HTTP/1.1\r\nHost: {addr}\r\nAuthorization: example-token\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .await??;
    println!("{}", answer.split("\r\n\r\n").nth(1).unwrap_or(&answer));

    server.shutdown().await;
    Ok(())
}
