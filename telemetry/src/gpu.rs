//! GPU utilisation and memory for `/metrics`, where an NVIDIA GPU is
//! present: `nvidia-smi` (installed with the driver) is asked every few
//! seconds by a background task, so a scrape never waits on it and a
//! machine without a GPU pays nothing. No NVML binding is linked, so the
//! appliance builds and runs the same on CPU-only machines.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    /// 0..1
    pub utilization: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

/// The query asked of `nvidia-smi`, and the order of its CSV columns.
const QUERY: &str = "index,name,utilization.gpu,memory.used,memory.total";

fn latest() -> &'static Mutex<Vec<Gpu>> {
    static L: OnceLock<Mutex<Vec<Gpu>>> = OnceLock::new();
    L.get_or_init(|| Mutex::new(Vec::new()))
}

/// The GPUs as last read; empty without a GPU.
pub fn snapshot() -> Vec<Gpu> {
    latest().lock().expect("gpu lock").clone()
}

/// Parses `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`
/// (memory in MiB, utilisation in percent). Lines that do not parse (a GPU
/// answering `[N/A]`) are left out.
pub fn parse(csv: &str) -> Vec<Gpu> {
    csv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 5 {
                return None;
            }
            let mib = |s: &str| s.parse::<u64>().ok().map(|m| m * 1024 * 1024);
            Some(Gpu {
                index: f[0].parse().ok()?,
                name: f[1].to_string(),
                utilization: f[2].parse::<f64>().ok()? / 100.0,
                memory_used_bytes: mib(f[3])?,
                memory_total_bytes: mib(f[4])?,
            })
        })
        .collect()
}

fn read() -> Option<Vec<Gpu>> {
    let out = std::process::Command::new("nvidia-smi")
        .arg(format!("--query-gpu={QUERY}"))
        .arg("--format=csv,noheader,nounits")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Reads the GPUs every `every` until `shutdown`; returns at once where
/// `nvidia-smi` is missing or fails (no GPU).
pub async fn poll(every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        match tokio::task::spawn_blocking(read).await.ok().flatten() {
            Some(gpus) => *latest().lock().expect("gpu lock") = gpus,
            None => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_csv_is_read_per_gpu() {
        let csv = "0, NVIDIA H200, 37, 20480, 143771\n1, NVIDIA L4, [N/A], 10, 23034\n";
        let gpus = parse(csv);
        assert_eq!(gpus.len(), 1, "the [N/A] line is left out");
        assert_eq!(gpus[0].name, "NVIDIA H200");
        assert_eq!(gpus[0].utilization, 0.37);
        assert_eq!(gpus[0].memory_used_bytes, 20480 * 1024 * 1024);
        assert_eq!(gpus[0].memory_total_bytes, 143771 * 1024 * 1024);
        assert!(parse("").is_empty());
    }
}
