//! Logs as hclog JSON lines on stderr, which go-plugin's host parses into
//! its own logger: `@level`, `@message`, `@timestamp`
//! (`2006-01-02T15:04:05.000000Z07:00`), `@module`, then the event's fields.
//!
//! Never pass tokens, secret_ids, private keys or plaintexts as fields.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Environment variable with the log filter (`info` when unset), e.g.
/// `debug` or `keystore_plugin=debug,openbao_client=info`.
pub const LOG_ENV: &str = "OPENBAO_KEYSTORE_LOG";

/// Writes every event to stderr as one hclog JSON line.
#[derive(Debug, Default)]
pub struct HclogLayer;

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

/// hclog's level names.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// `2026-11-23T19:57:38.123456Z`, the layout hclog's parser accepts.
pub fn hclog_timestamp(ts: jiff::Timestamp) -> String {
    let utc = ts.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        utc.month(),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        ts.subsec_microsecond()
    )
}

/// One log line (without the newline).
pub fn render(
    level: &Level,
    module: &str,
    timestamp: jiff::Timestamp,
    mut fields: Map<String, Value>,
) -> String {
    let message = match fields.remove("message") {
        Some(Value::String(text)) => text,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let mut line = Map::new();
    line.insert("@level".into(), level_name(level).into());
    line.insert("@message".into(), message.into());
    line.insert("@timestamp".into(), hclog_timestamp(timestamp).into());
    line.insert("@module".into(), module.into());
    for (key, value) in fields {
        // hclog's reserved keys belong to the line itself.
        let key = if key.starts_with('@') {
            format!("field{key}")
        } else {
            key
        };
        line.insert(key, value);
    }
    Value::Object(line).to_string()
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let line = render(
            event.metadata().level(),
            event.metadata().target(),
            jiff::Timestamp::now(),
            fields.0,
        );
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}");
    }
}

/// Installs the hclog layer with the filter from [`LOG_ENV`].
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(HclogLayer.with_filter(filter))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_hclog_json() {
        let ts: jiff::Timestamp = "2026-11-23T19:57:38.260001Z".parse().unwrap();
        let mut fields = Map::new();
        fields.insert("message".into(), "key created".into());
        fields.insert("key_id".into(), "transit/openkcm-1".into());
        fields.insert("@level".into(), "spoof".into());
        let line = render(&Level::WARN, "keystore_plugin::ops", ts, fields);
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["@level"], "warn");
        assert_eq!(parsed["@message"], "key created");
        assert_eq!(parsed["@timestamp"], "2026-11-23T19:57:38.260001Z");
        assert_eq!(parsed["@module"], "keystore_plugin::ops");
        assert_eq!(parsed["key_id"], "transit/openkcm-1");
        assert_eq!(parsed["field@level"], "spoof");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let ts: jiff::Timestamp = "2001-02-03T04:05:06Z".parse().unwrap();
        assert_eq!(hclog_timestamp(ts), "2001-02-03T04:05:06.000000Z");
    }
}
