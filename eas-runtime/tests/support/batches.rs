//! Reads a service's batch sizes from a test server's `/metrics`.

use eas_runtime::platform::RunningPlatform;

/// How many batches `service` ran, and how many of them held more than `size` requests (`size`
/// must be a bucket bound of `eas_batch_size`: 1, 2, 4, 8, ...).
pub async fn batches_over(server: &RunningPlatform, service: &str, size: u32) -> (f64, f64) {
    let text = reqwest::get(format!("http://{}/metrics", server.local_addr()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |metric: &str| {
        text.lines()
            .find(|l| l.starts_with(metric) && l.contains(&format!("service=\"{service}\"")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {metric} for {service} in {text}"))
    };
    let count = value("eas_batch_size_count");
    let within = value(&format!("eas_batch_size_bucket{{le=\"{size}.0\""));
    (count, count - within)
}
