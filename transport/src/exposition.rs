//! The `/metrics` text of every Varde process, encoded by the Prometheus project's Rust client
//! (`prometheus-client`, Prometheus text format 0.0.4), so that label escaping, counter naming
//! and number formatting are the library's, not Varde's.
//!
//! Varde's counters live in its own structures (atomics the hot paths bump); a scrape reads them
//! into a list of [`Family`]s and [`encode`] writes that list through the library's encoder (a
//! one-shot `Collector`). Counter names are given without `_total`; the encoder adds it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`encode`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A whole number (counters must be these).
    Int(u64),
    /// A gauge that may be negative.
    Signed(i64),
    /// A gauge with a fraction (seconds, timestamps).
    Float(f64),
}

/// Label pairs of one sample.
pub type Labels = Vec<(String, String)>;

/// One metric family: a name, its help text, counter or gauge, and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    name: String,
    help: String,
    counter: bool,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    /// A counter family `name` (without `_total`: the encoder appends it).
    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            counter: true,
            samples: Vec::new(),
        }
    }

    /// A gauge family `name`.
    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            counter: false,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with `labels` (given as `(name, value)`; values are escaped by the
    /// encoder).
    pub fn with<K: Into<String>, V: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
        value: Value,
    ) -> Family {
        self.push(labels, value);
        self
    }

    /// Adds a sample without labels.
    pub fn value(self, value: Value) -> Family {
        self.with(std::iter::empty::<(String, String)>(), value)
    }

    /// Adds a sample with `labels`.
    pub fn push<K: Into<String>, V: Into<String>>(
        &mut self,
        labels: impl IntoIterator<Item = (K, V)>,
        value: Value,
    ) {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.samples.push((labels, value));
    }
}

#[derive(Debug)]
struct Snapshot(Vec<Family>);

fn encode_value(
    counter: bool,
    value: Value,
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match (counter, value) {
        (true, Value::Int(v)) => ConstCounter::new(v).encode(encoder),
        (true, Value::Signed(v)) => {
            ConstCounter::new(u64::try_from(v).unwrap_or(0)).encode(encoder)
        }
        (true, Value::Float(v)) => ConstCounter::new(v).encode(encoder),
        (false, Value::Int(v)) => ConstGauge::new(v).encode(encoder),
        (false, Value::Signed(v)) => ConstGauge::new(v).encode(encoder),
        (false, Value::Float(v)) => ConstGauge::new(v).encode(encoder),
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = if f.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(&f.name, &f.help, None, kind)?;
            for (labels, value) in &f.samples {
                let sample = family.encode_family(labels)?;
                encode_value(f.counter, *value, sample)?;
            }
        }
        Ok(())
    }
}

/// The Prometheus text of `families`, in their order.
pub fn encode(families: Vec<Family>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(families)));
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scraper_parses_what_is_encoded_with_hostile_label_values() {
        let text = encode(vec![
            Family::counter("varde_test_lines", "Lines read.")
                .with([("source", "syslog \"tcp\"\\\nnext")], Value::Int(7))
                .with([("source", "plain")], Value::Int(3)),
            Family::gauge("varde_test_age_seconds", "Age.").value(Value::Float(1.5)),
            Family::gauge("varde_test_lag", "Lag.").value(Value::Signed(-2)),
        ]);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("parses as Prometheus text");
        let find = |name: &str, source: Option<&str>| {
            scrape
                .samples
                .iter()
                .find(|s| {
                    s.metric == name && source.is_none_or(|v| s.labels.get("source") == Some(v))
                })
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(find("varde_test_lines_total", Some("plain")), Some(3.0));
        // prometheus-parse does not unescape label values; the escaping itself is checked
        // against the exposition format's rule: `\\`, `\"` and `\n` inside the quotes.
        assert!(
            text.lines()
                .any(|l| l == r#"varde_test_lines_total{source="syslog \"tcp\"\\\nnext"} 7"#),
            "{text}"
        );
        assert_eq!(scrape.samples.len(), 4, "{text}");
        assert_eq!(find("varde_test_age_seconds", None), Some(1.5));
        assert_eq!(find("varde_test_lag", None), Some(-2.0));
        assert!(
            text.contains("# TYPE varde_test_lines_total counter"),
            "{text}"
        );
    }
}
