//! Settings as the process environment gives them, with the benchmark's data directory and
//! pool size.

use std::path::Path;

use codebox::config::{Settings, Sources};

pub fn bench_settings(data_dir: &Path, pool: usize) -> Settings {
    let mut settings = Settings::load(&Sources::from_process(None)).expect("settings load");
    settings.data_dir = data_dir.to_path_buf();
    settings.pool.warm_pool_size = pool;
    settings
}
