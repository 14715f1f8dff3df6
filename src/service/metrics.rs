//! What the executor service counts, in Prometheus' text format (`GET /metrics`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::run_result::UserRunResult;
use crate::sandbox::pool::PoolStatus;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot set up metrics: {0}")]
    Setup(#[from] prometheus::Error),
    #[error("cannot encode metrics: {0}")]
    Encode(String),
}

/// Seconds, from a warm-pool answer (milliseconds) to a long run.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    run_seconds: Histogram,
    phase_seconds: HistogramVec,
    installs: IntCounter,
    in_flight: IntGauge,
    pool_idle: IntGauge,
    pool_target: IntGauge,
    cache_bytes: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new_custom(Some("codebox".to_string()), None)?;
        let runs = IntCounterVec::new(
            Opts::new("runs_total", "Runs by how they ended (status, or error)"),
            &["status"],
        )?;
        let run_seconds = Histogram::with_opts(
            HistogramOpts::new("run_seconds", "Whole request time of a run")
                .buckets(BUCKETS.to_vec()),
        )?;
        let phase_seconds = HistogramVec::new(
            HistogramOpts::new("run_phase_seconds", "Where a run's time went")
                .buckets(BUCKETS.to_vec()),
            &["phase"],
        )?;
        let installs = IntCounter::new(
            "packages_installed_total",
            "Packages installed for runs (not from the cache)",
        )?;
        let in_flight = IntGauge::new("runs_in_flight", "Runs under way")?;
        let pool_idle = IntGauge::new("pool_idle", "Warm containers waiting for a run")?;
        let pool_target = IntGauge::new("pool_target", "Warm containers the pool keeps")?;
        let cache_bytes = IntGauge::new("package_cache_bytes", "Bytes in the package cache")?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(run_seconds.clone()))?;
        registry.register(Box::new(phase_seconds.clone()))?;
        registry.register(Box::new(installs.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        registry.register(Box::new(pool_target.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        Ok(Metrics {
            registry,
            runs,
            run_seconds,
            phase_seconds,
            installs,
            in_flight,
            pool_idle,
            pool_target,
            cache_bytes,
        })
    }

    /// A run starts; the guard counts it out however it ends (a client gone included).
    pub fn run_started(&self) -> InFlight {
        self.in_flight.inc();
        InFlight {
            gauge: self.in_flight.clone(),
        }
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.get().max(0) as u64
    }

    pub fn run_finished(&self, run: &UserRunResult) {
        let r = &run.result;
        self.runs.with_label_values(&[r.status.as_str()]).inc();
        self.run_seconds.observe(r.total_ms / 1000.0);
        let p = &r.phases;
        for (phase, ms) in [
            ("acquire", p.acquire_ms),
            ("stage", p.stage_ms),
            ("handoff", p.handoff_ms),
            ("code", r.execution_ms),
            ("install", r.install_ms),
            ("collect", p.collect_ms),
            ("restore", p.restore_ms),
            ("save", p.save_ms),
        ] {
            self.phase_seconds
                .with_label_values(&[phase])
                .observe(ms / 1000.0);
        }
        self.installs.inc_by(r.packages_installed.len() as u64);
    }

    /// A run that ended without a result (the sandbox or store failed).
    pub fn run_failed(&self) {
        self.runs.with_label_values(&["error_no_result"]).inc();
    }

    /// A run whose client went away before it ended (cancelled, container removed).
    pub fn run_abandoned(&self) {
        self.runs.with_label_values(&["cancelled"]).inc();
    }

    /// The text for `GET /metrics`, with the gauges read now.
    pub fn render(
        &self,
        pool: Option<&PoolStatus>,
        cache_bytes: u64,
    ) -> Result<String, MetricsError> {
        if let Some(pool) = pool {
            self.pool_idle.set(pool.idle as i64);
            self.pool_target.set(pool.target as i64);
        }
        self.cache_bytes.set(cache_bytes as i64);
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .map_err(|e| MetricsError::Encode(e.to_string()))?;
        String::from_utf8(text).map_err(|e| MetricsError::Encode(e.to_string()))
    }
}

/// Counts one run in flight until dropped.
pub struct InFlight {
    gauge: IntGauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
