//! OTLP export of comms' traces (feature `otlp`, off by default): with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g. `http://127.0.0.1:4318`), [`install_from_env`]
//! installs a batch exporter over OTLP/HTTP (protobuf) as the global tracer provider and turns
//! comms' spans on ([`comms_core::trace::enable`]). The exporter reads the standard
//! `OTEL_EXPORTER_OTLP_*` variables; the service name is `OTEL_SERVICE_NAME`, else the
//! binary's name.

use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The installed provider: [`Otel::shutdown`] flushes the spans still batched.
#[derive(Debug)]
pub struct Otel(SdkTracerProvider);

impl Otel {
    /// Exports what is batched and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!("flushing the traces failed: {e}");
        }
    }
}

/// Installs OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; `None` (nothing installed)
/// otherwise. An exporter that cannot be built is logged and skipped: traces are never a
/// reason not to start.
pub fn install_from_env(service: &str) -> Option<Otel> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%endpoint, "OTLP trace export not started: {e}");
            return None;
        }
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    comms_core::trace::enable();
    tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
    Some(Otel(provider))
}
