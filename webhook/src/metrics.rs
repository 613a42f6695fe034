//! Prometheus metrics served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub endpoint: String,
    pub outcome: String,
    pub reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

type HistogramFamily = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 15))
}

pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    latency: HistogramFamily,
    cert_reloads: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubefence_webhook");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let cert_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "decisions",
            "Admission decisions by endpoint, outcome and reason",
            decisions.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer an admission request, body read included",
            latency.clone(),
        );
        registry.register(
            "cert_reloads",
            "Serving certificate reload attempts by result",
            cert_reloads.clone(),
        );
        Self {
            registry,
            decisions,
            latency,
            cert_reloads,
        }
    }

    pub fn observe(&self, endpoint: &str, outcome: &str, reason: &str, seconds: f64) {
        self.decisions
            .get_or_create(&DecisionLabels {
                endpoint: endpoint.into(),
                outcome: outcome.into(),
                reason: reason.into(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.into(),
            })
            .observe(seconds);
    }

    pub fn cert_reload(&self, result: &str) {
        self.cert_reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_decisions_and_latency() {
        let m = Metrics::new();
        m.observe("mutate", "deny", "unknown-profile", 0.002);
        m.observe("mutate", "deny", "unknown-profile", 0.004);
        m.cert_reload("ok");
        let text = m.encode();
        assert!(
            text.contains(
                r#"kubefence_webhook_decisions_total{endpoint="mutate",outcome="deny",reason="unknown-profile"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kubefence_webhook_request_duration_seconds_count{endpoint="mutate"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"kubefence_webhook_cert_reloads_total{result="ok"} 1"#),
            "{text}"
        );
    }
}
