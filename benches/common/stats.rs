//! Median and 95th percentile of a benchmark's samples (nearest rank).

pub struct Stats {
    pub median: f64,
    pub p95: f64,
}

pub fn stats(mut samples: Vec<f64>) -> Stats {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        median: at(0.5),
        p95: at(0.95),
    }
}
