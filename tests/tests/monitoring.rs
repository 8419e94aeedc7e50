//! Monitoring end to end: the alert rules of `monitoring/` pass `promtool`
//! (syntax and unit tests); the rules and the Grafana dashboard name only
//! metrics that Shoal defines and match the Helm chart's copies; and a real
//! Prometheus (Debian's) scraping a 3-node cluster under load, with those rules
//! loaded, sees every store serve requests, leader counts that sum to the
//! region count, every rule evaluated without error, every dashboard query
//! parse (and the stores' panels show data), and `ShoalStoreDown` fire for the
//! store that was SIGKILLed (its `for:` shortened to 3 s in the test's copy).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shoal_tests::prometheus::Prometheus;
use shoal_tests::{Cluster, wait_until, which};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let bin = which("promtool").expect("promtool is not installed (apt-get install prometheus; .ci/run installs it)");
    let out = Command::new(bin).args(args).current_dir(dir).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

/// The `expr:` of every rule in a rule file.
fn exprs(rules: &str) -> Vec<String> {
    rules.lines().filter_map(|l| l.trim().strip_prefix("expr: ")).map(str::to_string).collect()
}

/// Metric names in a PromQL expression: identifiers that start with `shoal_`
/// or `process_`, and `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("shoal_") || t.starts_with("process_") || *t == "up")
        .map(str::to_string)
        .collect()
}

/// Every `.rs` file's text under `dir`.
fn sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read source dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}

/// Every panel query of the dashboard (`monitoring/dashboard.json`).
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("monitoring/dashboard.json")).expect("dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

/// A dashboard query as Prometheus can run it: Grafana's variables filled in.
fn runnable(expr: &str) -> String {
    expr.replace("$__rate_interval", "5s").replace("$instance", ".*")
}

#[test]
fn alert_rules_and_dashboard_pass_promtool_name_only_real_metrics_and_match_the_chart() {
    let dir = repo().join("monitoring");
    let check = promtool(&["check", "rules", "alerts.yaml"], &dir);
    assert!(check.contains("SUCCESS: 11 rules found"), "{check}");
    promtool(&["test", "rules", "alerts_test.yaml"], &dir);

    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).expect("alerts.yaml");
    let chart = std::fs::read_to_string(repo().join("charts/shoal-operator/files/alerts.yaml")).expect("the chart's copy");
    assert!(chart == rules, "charts/shoal-operator/files/alerts.yaml differs: cp monitoring/alerts.yaml charts/shoal-operator/files/");

    let mut code = String::new();
    sources(&repo().join("node/src"), &mut code);
    sources(&repo().join("operator/src"), &mut code);
    let mut named = BTreeSet::new();
    for expr in exprs(&rules) {
        named.extend(metric_names(&expr));
    }
    assert!(named.len() >= 12, "metric names found in the rules: {named:?}");
    for name in named.iter().filter(|n| *n != "up") {
        assert!(code.contains(&format!("\"{name}\"")), "the rules use {name}, which neither the node nor the operator defines");
    }

    // The dashboard: made by scripts/gen-dashboard.py (no drift), the chart's
    // copy, and only metrics that exist (a histogram's series are its name and _bucket).
    let generated = Command::new("python3").arg(repo().join("scripts/gen-dashboard.py")).arg("--check").output().expect("run python3");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let dashboard = std::fs::read_to_string(dir.join("dashboard.json")).expect("dashboard.json");
    let chart = std::fs::read_to_string(repo().join("charts/shoal-operator/files/dashboard.json")).expect("the chart's copy");
    assert!(
        chart == dashboard,
        "charts/shoal-operator/files/dashboard.json differs: cp monitoring/dashboard.json charts/shoal-operator/files/"
    );
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 30, "{} dashboard queries", exprs.len());
    for expr in &exprs {
        for name in metric_names(expr).iter().filter(|n| *n != "up") {
            let base = name.strip_suffix("_bucket").unwrap_or(name);
            assert!(
                code.contains(&format!("\"{base}\"")),
                "the dashboard uses {name}, which neither the node nor the operator defines: {expr}"
            );
        }
    }
}

/// The test's copy of the rules: `ShoalStoreDown` fires 3 s after a failed scrape.
fn rules_with_short_store_down() -> String {
    let rules = std::fs::read_to_string(repo().join("monitoring/alerts.yaml")).expect("alerts.yaml");
    let at = rules.find("alert: ShoalStoreDown").expect("ShoalStoreDown");
    let for_at = at + rules[at..].find("for: 1m").expect("ShoalStoreDown's for:");
    format!("{}for: 3s{}", &rules[..for_at], &rules[for_at + "for: 1m".len()..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_every_store_and_fires_store_down() {
    // Small regions, checked often: a split check runs once a sixteenth of the
    // split size (4 KiB here) was written to a region since its last check.
    let mut cluster =
        Cluster::start(3, &["--region-split-keys", "64", "--region-split-size", "65536", "--heartbeat-interval-ms", "500"]).await;
    let client = Arc::new(cluster.client());
    // Enough keys for several regions, whose leaders placement spreads.
    for i in 0..1_500u32 {
        client.put("default", format!("k{i:06}").as_bytes(), &[7; 64]).await.expect("put");
    }
    wait_until(Duration::from_secs(90), Duration::from_millis(200), "every store leads a region", || async {
        let stores = client.list_stores().await.map_err(|e| e.to_string())?;
        let leaders: Vec<u64> = stores.iter().map(|s| s.stats.as_ref().map_or(0, |st| st.leader_count)).collect();
        if leaders.len() == 3 && leaders.iter().all(|n| *n > 0) { Ok(()) } else { Err(format!("leaders per store: {leaders:?}")) }
    })
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("alerts.yaml"), rules_with_short_store_down()).expect("rules copy");
    let targets: Vec<String> = cluster.nodes.iter().map(|n| format!("'{}'", n.status)).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: shoal\n    static_configs:\n      - targets: [{}]\n",
        dir.path().join("alerts.yaml").display(),
        targets.join(", ")
    );
    let prom = Prometheus::start(dir.path(), &config).await;

    // Load: puts and reads over the whole key space, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{:06}", (i * 7919) % 1_500);
                let _ = client.put("default", key.as_bytes(), &[8; 64]).await;
                let _ = client.get("default", key.as_bytes()).await;
                i += 1;
            }
        })
    };

    // Every store serves requests, as Prometheus sees them.
    let rates = wait_until(Duration::from_secs(60), Duration::from_millis(500), "a request rate on every store", || async {
        let rates = prom.query("sum by (instance) (rate(shoal_grpc_requests_total{job=\"shoal\"}[5s]))").await?;
        let busy = rates.iter().filter(|s| s.value > 0.0).count();
        if busy == 3 { Ok(rates) } else { Err(format!("{rates:?}")) }
    })
    .await;
    for n in &cluster.nodes {
        assert!(rates.iter().any(|s| s.label("instance") == n.status), "no rate for {} in {rates:?}", n.status);
    }

    // Leader counts sum to the region count (data regions and meta).
    let regions = client.scan_regions(b"", b"", 0).await.expect("regions").len() as f64 + 1.0;
    wait_until(Duration::from_secs(30), Duration::from_millis(500), "leader counts summing to the region count", || async {
        let leaders = prom.query("sum(shoal_store_leaders{job=\"shoal\"})").await?;
        let known = prom.query("count(count by (region) (shoal_region_term{job=\"shoal\"}))").await?;
        let (l, k) = (leaders.first().map(|s| s.value), known.first().map(|s| s.value));
        if l == Some(regions) && k == Some(regions) {
            Ok(())
        } else {
            Err(format!("leaders {l:?}, regions seen {k:?}, expected {regions}"))
        }
    })
    .await;

    // Every rule loaded and evaluated without error; nothing fires yet.
    wait_until(Duration::from_secs(30), Duration::from_millis(500), "every rule evaluated", || async {
        let rules = prom.rules().await?;
        let bad: Vec<String> =
            rules.iter().filter(|r| r["health"] != "ok").map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"])).collect();
        if rules.len() == 11 && bad.is_empty() { Ok(()) } else { Err(format!("{} rules, not ok: {bad:?}", rules.len())) }
    })
    .await;
    // Every dashboard query parses; those on the stores' metrics show data
    // (errors and snapshots may rightly have none; there is no operator here).
    wait_until(Duration::from_secs(30), Duration::from_millis(500), "every store panel with data", || async {
        let mut empty = Vec::new();
        for expr in dashboard_exprs() {
            let samples = prom.query(&runnable(&expr)).await?;
            let may_be_empty = expr.contains("shoal_operator_") || expr.contains("code!=\"OK\"") || expr.contains("shoal_snapshots_total");
            if samples.is_empty() && !may_be_empty {
                empty.push(expr);
            }
        }
        if empty.is_empty() { Ok(()) } else { Err(format!("no data for {empty:?}")) }
    })
    .await;

    let firing: Vec<_> =
        prom.alerts().await.expect("alerts").into_iter().filter(|a| a["labels"]["alertname"] == "ShoalStoreDown").collect();
    assert!(firing.is_empty(), "ShoalStoreDown before any store went down: {firing:?}");

    // A store SIGKILLed: ShoalStoreDown fires for it, and only for it.
    let meta = cluster.meta_leader().await;
    let victim = (0..3).find(|&i| i != meta).expect("a store that does not lead meta");
    let victim_addr = cluster.nodes[victim].status.clone();
    cluster.kill9(victim);
    let alert = wait_until(Duration::from_secs(60), Duration::from_millis(500), "ShoalStoreDown firing", || async {
        let alerts = prom.alerts().await?;
        let down: Vec<_> = alerts.into_iter().filter(|a| a["labels"]["alertname"] == "ShoalStoreDown").collect();
        match down.iter().find(|a| a["state"] == "firing") {
            Some(a) => Ok((a.clone(), down.len())),
            None => Err(format!("{down:?}")),
        }
    })
    .await;
    assert_eq!(alert.0["labels"]["instance"], victim_addr.as_str(), "{alert:?}");
    assert_eq!(alert.0["labels"]["severity"], "critical");
    assert_eq!(alert.1, 1, "only the killed store is down");

    stop.store(true, Ordering::Relaxed);
    let _ = load.await;
}
