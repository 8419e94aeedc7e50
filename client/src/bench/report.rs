//! How `shoalctl bench` turns latency histograms (µs) into JSON objects and text rows.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Count, throughput over `secs`, and latency percentiles of one operation type.
pub fn op_json(h: &Histogram<u64>, secs: f64) -> Value {
    json!({
        "ops": h.len(),
        "ops_per_sec": (h.len() as f64 / secs).round(),
        "p50_us": h.value_at_quantile(0.50),
        "p95_us": h.value_at_quantile(0.95),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

/// A table with one row per named histogram, skipping empty ones.
pub fn table(rows: &[(&str, &Histogram<u64>)], secs: f64) -> String {
    let mut out = format!(
        "{:<7} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "", "ops", "ops/s", "p50 us", "p95 us", "p99 us", "p999 us", "max us"
    );
    for (name, h) in rows.iter().filter(|(_, h)| !h.is_empty()) {
        out += &format!(
            "{:<7} {:>10} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            name,
            h.len(),
            h.len() as f64 / secs,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.95),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::new_hist;

    #[test]
    fn json_and_table_agree_on_the_numbers() {
        let mut h = new_hist();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let v = op_json(&h, 2.0);
        assert_eq!(v["ops"], 1000);
        assert_eq!(v["ops_per_sec"], 500.0);
        assert_eq!(v["max_us"], h.max());
        assert!(v["p50_us"].as_u64().unwrap() >= 499 && v["p50_us"].as_u64().unwrap() <= 501);
        let empty = new_hist();
        let t = table(&[("read", &h), ("scan", &empty)], 2.0);
        assert!(t.contains("read") && !t.contains("scan"), "{t}");
    }
}
