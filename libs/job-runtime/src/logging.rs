//! Structured logs on stderr (stdout carries only the result line).

/// JSON lines by default; `OPENBAO_LOG_FORMAT=text` for humans.
/// Level from `RUST_LOG` (default `info`).
pub fn init() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let text = std::env::var("OPENBAO_LOG_FORMAT").is_ok_and(|f| f == "text");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if text {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
}
