//! `process_*`: the standard process metrics (CPU seconds, resident and
//! virtual memory, open and maximum file descriptors, threads, start time),
//! read from `/proc/self` when scraped. Linux only; elsewhere they are absent.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, IntGauge, Opts};

pub struct ProcessCollector {
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    virtual_bytes: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
    lock: std::sync::Mutex<()>,
}

/// What `/proc/self/stat` says, past the command name.
struct Stat {
    cpu_ticks: u64,
    threads: u64,
    start_ticks: u64,
    virtual_bytes: u64,
    resident_pages: u64,
}

fn stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after ") " start at field 3 (state); see proc(5).
    let rest: Vec<&str> = text.rsplit_once(") ")?.1.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        resident_pages: field(24)?,
    })
}

fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl ProcessCollector {
    pub fn new() -> Result<ProcessCollector, prometheus::Error> {
        Ok(ProcessCollector {
            cpu_seconds: Counter::new("process_cpu_seconds_total", "Total user and system CPU time spent in seconds")?,
            resident_bytes: IntGauge::new("process_resident_memory_bytes", "Resident memory size in bytes")?,
            virtual_bytes: IntGauge::new("process_virtual_memory_bytes", "Virtual memory size in bytes")?,
            open_fds: IntGauge::new("process_open_fds", "Number of open file descriptors")?,
            max_fds: IntGauge::new("process_max_fds", "Maximum number of open file descriptors")?,
            threads: IntGauge::new("process_threads", "Number of OS threads in the process")?,
            start_time: Gauge::with_opts(Opts::new("process_start_time_seconds", "Start time of the process since unix epoch in seconds"))?,
            lock: std::sync::Mutex::new(()),
        })
    }

    fn collectors(&self) -> [&dyn Collector; 7] {
        [&self.cpu_seconds, &self.resident_bytes, &self.virtual_bytes, &self.open_fds, &self.max_fds, &self.threads, &self.start_time]
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.collectors().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = stat() else { return Vec::new() };
        let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
        self.cpu_seconds.reset();
        self.cpu_seconds.inc_by(s.cpu_ticks as f64 / hz);
        self.resident_bytes.set((s.resident_pages * rustix::param::page_size() as u64) as i64);
        self.virtual_bytes.set(s.virtual_bytes as i64);
        self.threads.set(s.threads as i64);
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        if let Some(max) = max_fds() {
            self.max_fds.set(max as i64);
        }
        if let Some(boot) = boot_time() {
            self.start_time.set(boot as f64 + s.start_ticks as f64 / hz);
        }
        self.collectors().into_iter().flat_map(|c| c.collect()).collect()
    }
}
