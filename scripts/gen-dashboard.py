#!/usr/bin/env python3
"""Writes Shoal's Grafana dashboard: monitoring/dashboard.json and the chart's
copy (charts/shoal-operator/files/dashboard.json). With --check, exits non-zero
when either differs from what this script makes (tests/tests/monitoring.rs runs
that). Stores are job="shoal", the operator job="shoal-operator"."""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "monitoring", "dashboard.json")
CHART_COPY = os.path.join(ROOT, "charts", "shoal-operator", "files", "dashboard.json")
R = "$__rate_interval"  # Grafana's rate window
I = 'instance=~"$instance"'  # the store selector
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

panels = []
next_id = [0]  # panel ids, in order
cursor = {"x": 0, "y": 0}  # where the next panel goes on Grafana's 24-column grid


def new_id():
    next_id[0] += 1
    return next_id[0]


def row(title):
    panels.append({"type": "row", "title": title, "id": new_id(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": cursor["y"]}, "panels": []})
    cursor["y"] += 1


def panel(title, targets, kind="timeseries", unit="short", w=8, h=7, desc=""):
    """A panel of `targets` ((expr, legend) pairs), placed left to right."""
    pid = new_id()
    if cursor["x"] + w > 24:
        cursor["x"] = 0
        cursor["y"] += h
    p = {"type": kind, "title": title, "id": pid, "datasource": DATASOURCE,
         "gridPos": {"h": h, "w": w, "x": cursor["x"], "y": cursor["y"]},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {},
         "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": legend, "datasource": DATASOURCE}
                     for i, (e, legend) in enumerate(targets)]}
    if desc:
        p["description"] = desc
    panels.append(p)
    cursor["x"] += w


def newrow(title):
    if cursor["x"] > 0:
        cursor["y"] += 7
    cursor["x"] = 0
    row(title)


newrow("Cluster overview")
panel("Stores up",[('count(up{job="shoal"} == 1)',"up")],"stat",w=4,h=4)
panel("Stores down",[('count(up{job="shoal"} == 0) or vector(0)',"down")],"stat",w=4,h=4)
panel("Regions",[('count(count by (region) (shoal_region_term{job="shoal"}))',"regions")],"stat",w=4,h=4)
panel("Regions without a leader",[('count(max by (region) (shoal_region_is_leader{job="shoal"}) == 0) or vector(0)',"leaderless")],"stat",w=4,h=4)
panel("Under-replicated regions",[('sum(shoal_placement_under_replicated_regions{job="shoal"})',"under-replicated")],"stat",w=4,h=4)
panel("Stores by state (meta's view)",[('sum by (state) (shoal_stores{job="shoal"})',"{{state}}")],"stat",w=4,h=4)
cursor["y"] += 4
cursor["x"] = 0
panel("Requests by method",[(f'sum by (method) (rate(shoal_grpc_requests_total{{job="shoal"}}[{R}]))',"{{method}}")],unit="reqps")
panel("Errors by code",[(f'sum by (code) (rate(shoal_grpc_requests_total{{job="shoal",code!="OK"}}[{R}]))',"{{code}}")],unit="reqps",desc="NotLeader and EpochNotMatch are retried by clients; Unavailable and OutcomeUnknown are not.")
panel("Request latency p99 by method",[(f'histogram_quantile(0.99, sum by (method, le) (rate(shoal_grpc_request_duration_seconds_bucket{{job="shoal"}}[{R}])))',"{{method}}")],unit="s")
newrow("Per store")
panel("Regions and leaders",[(f'shoal_store_regions{{job="shoal",{I}}}',"{{instance}} regions"),(f'shoal_store_leaders{{job="shoal",{I}}}',"{{instance}} leaders")])
panel("Disk",[(f'shoal_store_used_bytes{{job="shoal",{I}}}',"{{instance}} used"),(f'shoal_store_available_bytes{{job="shoal",{I}}}',"{{instance}} available")],unit="bytes")
panel("Store loop round, WAL fsync and apply p99",[(f'histogram_quantile(0.99, sum by (instance, le) (rate(shoal_store_round_duration_seconds_bucket{{job="shoal",{I}}}[{R}])))',"{{instance}} round"),(f'histogram_quantile(0.99, sum by (instance, le) (rate(shoal_wal_sync_duration_seconds_bucket{{job="shoal",{I}}}[{R}])))',"{{instance}} fsync"),(f'histogram_quantile(0.99, sum by (instance, le) (rate(shoal_apply_duration_seconds_bucket{{job="shoal",{I}}}[{R}])))',"{{instance}} apply")],unit="s")
panel("Raft proposals by outcome",[(f'sum by (outcome) (rate(shoal_raft_proposals_total{{job="shoal",{I}}}[{R}]))',"{{outcome}}")],unit="ops")
panel("Leader changes and elections",[(f'sum by (instance) (rate(shoal_raft_leader_changes_total{{job="shoal",{I}}}[{R}]))',"{{instance}} became leader"),(f'sum by (instance) (rate(shoal_raft_elections_total{{job="shoal",{I}}}[{R}]))',"{{instance}} elections")],unit="ops")
panel("Snapshots by event",[(f'sum by (event) (rate(shoal_snapshots_total{{job="shoal",{I}}}[{R}]))',"{{event}}")],unit="ops")
panel("Raft messages by outcome",[(f'sum by (outcome) (rate(shoal_raft_messages_total{{job="shoal",{I}}}[{R}]))',"sent: {{outcome}}"),(f'sum by (outcome) (rate(shoal_raft_messages_received_total{{job="shoal",{I}}}[{R}]))',"received: {{outcome}}")],unit="ops")
panel("Learners being seeded",[(f'shoal_store_learners{{job="shoal",{I}}}',"{{instance}}")])
panel("RocksDB pending compaction and L0 files",[(f'sum by (instance) (shoal_engine_pending_compaction_bytes{{job="shoal",{I}}})',"{{instance}} pending bytes"),(f'sum by (instance) (shoal_engine_sst_files{{job="shoal",level="0",{I}}})',"{{instance}} L0 files")])
panel("RocksDB write stalls",[(f'rate(shoal_engine_write_stall_seconds_total{{job="shoal",{I}}}[{R}])',"{{instance}} stalled"),(f'shoal_engine_write_stopped{{job="shoal",{I}}}',"{{instance}} stopped")],unit="percentunit")
panel("Block cache hit ratio",[(f'sum by (instance) (rate(shoal_engine_block_cache_hits_total{{job="shoal",{I}}}[{R}])) / (sum by (instance) (rate(shoal_engine_block_cache_hits_total{{job="shoal",{I}}}[{R}])) + sum by (instance) (rate(shoal_engine_block_cache_misses_total{{job="shoal",{I}}}[{R}])))',"{{instance}}")],unit="percentunit")
panel("Size by column family",[(f'sum by (cf) (shoal_engine_sst_bytes{{job="shoal",{I}}} + shoal_engine_memtable_bytes{{job="shoal",{I}}})',"{{cf}}")],unit="bytes")
panel("CPU",[(f'rate(process_cpu_seconds_total{{job="shoal",{I}}}[{R}])',"{{instance}}")],unit="percentunit")
panel("Memory",[(f'process_resident_memory_bytes{{job="shoal",{I}}}',"{{instance}}")],unit="bytes")
newrow("Region hot spots")
panel("Top 10 regions by write rate (entries committed)",[(f'topk(10, max by (region) (rate(shoal_region_commit_index{{job="shoal"}}[{R}])))',"region {{region}}")],unit="ops",w=12)
panel("Top 10 regions by apply lag (entries)",[('topk(10, max by (region) (shoal_region_commit_index{job="shoal"} - shoal_region_applied_index{job="shoal"}))',"region {{region}}")],w=12)
newrow("Operator")
panel("Stores: desired and up",[('shoal_operator_cluster_desired_stores{job="shoal-operator"}',"{{namespace}}/{{cluster}} desired"),('shoal_operator_cluster_up_stores{job="shoal-operator"}',"{{namespace}}/{{cluster}} up")])
panel("Progressing and Degraded",[('shoal_operator_cluster_progressing{job="shoal-operator"}',"{{namespace}}/{{cluster}} progressing"),('shoal_operator_cluster_degraded{job="shoal-operator"}',"{{namespace}}/{{cluster}} degraded")])
panel("Membership operations in progress",[('shoal_operator_membership_in_progress{job="shoal-operator"} == 1',"{{namespace}}/{{cluster}} {{operation}}")])
panel("Reconciles by result",[(f'sum by (result) (rate(shoal_operator_reconciles_total{{job="shoal-operator"}}[{R}]))',"{{result}}")],unit="ops")
panel("Reconcile errors by reason",[(f'sum by (reason) (rate(shoal_operator_reconcile_errors_total{{job="shoal-operator"}}[{R}]))',"{{reason}}")],unit="ops")
panel("Reconcile duration p99",[(f'histogram_quantile(0.99, sum by (le) (rate(shoal_operator_reconcile_duration_seconds_bucket{{job="shoal-operator"}}[{R}])))',"p99")],unit="s")
panel("Membership operations (1h)",[('sum by (operation, outcome) (increase(shoal_operator_membership_operations_total{job="shoal-operator"}[1h]))',"{{operation}} {{outcome}}")])
dash={"title":"Shoal","uid":"shoal-overview","tags":["shoal"],"timezone":"","schemaVersion":39,"version":1,"editable":True,
 "time":{"from":"now-1h","to":"now"},"refresh":"30s",
 "description":"Shoal cluster overview, stores, region hot spots and the operator. Stores are scraped as job=\"shoal\", the operator as job=\"shoal-operator\".",
 "templating":{"list":[
   {"name":"datasource","type":"datasource","query":"prometheus","label":"Data source","current":{}},
   {"name":"instance","type":"query","label":"Store","datasource":{"type":"prometheus","uid":"${datasource}"},"query":{"query":"label_values(shoal_store_regions{job=\"shoal\"}, instance)","refId":"instance"},"definition":"label_values(shoal_store_regions{job=\"shoal\"}, instance)","includeAll":True,"multi":True,"allValue":".*","current":{"text":"All","value":"$__all"},"refresh":2}]},
 "annotations":{"list":[]},"panels":panels}
text = json.dumps(dash, indent=2) + "\n"
if len(sys.argv) > 1 and sys.argv[1] == "--check":
    for path in (DASHBOARD, CHART_COPY):
        if open(path).read() != text:
            sys.exit(f"{path} differs from what {sys.argv[0]} makes: run it without --check")
else:
    for path in (DASHBOARD, CHART_COPY):
        open(path, "w").write(text)
    print(f"{len(panels)} panels written to {DASHBOARD} and {CHART_COPY}")
