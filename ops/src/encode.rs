//! One metric family of values read at scrape time, for the [`Collector`](crate::Collector)s
//! of the daemon, the server, the agent and the transports (each reads state it already
//! keeps; this writes it out).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// A sample's labels (`&[]`: a family of one sample without labels).
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Encodes family `name` with `samples`; nothing when there is none.
pub fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: Vec<(Labels<'_>, M)>,
) -> Result<(), std::fmt::Error> {
    let Some(kind) = samples.first().map(|(_, m)| m.metric_type()) else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            return value.encode(metric); // one sample without labels
        }
        value.encode(metric.encode_family(&labels.to_vec())?)?;
    }
    Ok(())
}

/// A counter family (`name` gets `_total` in the exposition).
pub fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let samples = samples
        .iter()
        .map(|(l, v)| (*l, ConstCounter::new(*v)))
        .collect();
    family(encoder, name, help, samples)
}

/// A gauge family.
pub fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, i64)],
) -> Result<(), std::fmt::Error> {
    let samples = samples
        .iter()
        .map(|(l, v)| (*l, ConstGauge::new(*v)))
        .collect();
    family(encoder, name, help, samples)
}
