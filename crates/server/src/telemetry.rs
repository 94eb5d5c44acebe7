//! Logs and metrics: the tracing subscriber (JSON lines or human-readable) and the process-wide
//! Prometheus recorder behind `GET /metrics`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use kodiai_runtime::config::{LogConfig, LogFormat};

/// The version compiled into this binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Latency buckets (seconds) for every `*_duration_seconds` histogram: 1 ms to 2 min.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0,
];

/// Installs the global tracing subscriber. JSON lines when the format says so or, for `auto`,
/// when stdout is not a terminal; human-readable otherwise. Logs go to stdout (the CLI's own
/// output goes nowhere near the logs: commands that print results do not call this).
pub fn init_logging(config: &LogConfig) {
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    // The filter was validated when the configuration was loaded.
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second call (tests start several servers in one process) keeps the first subscriber.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
}

/// The process-wide Prometheus recorder. Installed on first use; every server in the process
/// (tests start several) renders the same registry.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &DURATION_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already; ours then renders nothing,
        // which /metrics shows plainly rather than crashing the server.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already; /metrics will be empty");
        }
        metrics::gauge!("kodiai_build_info", "version" => VERSION).set(1.0);
        handle
    })
}

/// Renders the Prometheus text exposition.
pub fn render_metrics() -> String {
    let handle = metrics();
    // Without the exporter's own HTTP listener nothing else drains the histogram buffers.
    handle.run_upkeep();
    handle.render()
}
