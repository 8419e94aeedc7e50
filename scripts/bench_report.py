#!/usr/bin/env python3
"""bench_report.py: the report of scripts/bench-compare.sh (Python 3 stdlib only).

Usage: scripts/bench_report.py OUT_DIR

Reads what bench-compare.sh left in OUT_DIR:
  meta.txt   key=value lines: machine, git commit, settings, versions
  runs.tsv   one row per planned run (system, version, workload, distribution,
             concurrency, json, status ok|failed|skipped, cpu_ticks, write_bytes,
             clk_tck, note); cpu_ticks and write_bytes are the deltas of
             utime+stime and /proc/PID/io write_bytes over the run, summed over
             the 3 server processes
  raw/*.json the `shoalctl --output json bench run` reports named in runs.tsv

and writes:
  results.csv  system,version,workload,distribution,concurrency,ops_per_sec,p50_ms,
               p99_ms,p999_ms,errors,cpu_s_per_10k_ops,disk_bytes_per_op,note
               (ops and latencies are the report's `total`, over all operation
               types; per-op resources divide by successful operations; a failed
               or skipped run has empty numbers and says why in `note`)
  results.md   a header (machine, settings), one table per workload x distribution
               (rows: concurrency; columns: ops/s (p99 ms) per system and the
               Shoal/etcd 3.4 throughput ratio), then server CPU and disk bytes per
               operation, then notes on failed runs
  plot-<workload>-<distribution>.svg  throughput and p99 vs concurrency (log x)
  summary.svg  all workloads of one distribution (uniform if there), one row each

Runs again on the same OUT_DIR give the same files, so it can be re-run by hand.
"""

import csv
import json
import math
import os
import sys
from xml.sax.saxutils import escape

WORKLOAD_TITLES = {
    "put": "put (100% writes)",
    "mixed50": "mixed50 (50% get, 50% put)",
    "mixed95": "mixed95 (95% get, 5% put)",
    "get": "get (100% linearizable reads)",
    "scan": "scan (workload e: 95% scans of 1..100 keys, 5% inserts)",
}
WORKLOAD_ORDER = ["put", "mixed50", "mixed95", "get", "scan"]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def read_meta(out):
    meta = {}
    path = os.path.join(out, "meta.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k] = v
    return meta


def num(s, kind=float):
    try:
        return kind(s) if s not in ("", None) else None
    except ValueError:
        return None


def read_runs(out):
    rows = []
    with open(os.path.join(out, "runs.tsv")) as f:
        for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            r["concurrency"] = int(r["concurrency"])
            r["report"] = None
            if r["status"] == "ok":
                try:
                    with open(os.path.join(out, r["json"])) as jf:
                        r["report"] = json.load(jf)
                except (OSError, ValueError) as e:
                    r["status"], r["note"] = "failed", "unreadable report: %s" % e
            rows.append(r)
    return rows


def metrics(r):
    """The numbers of one run (None where there are none)."""
    m = dict.fromkeys(
        ["ops_per_sec", "p50_ms", "p99_ms", "p999_ms", "errors", "cpu_s_per_10k_ops", "disk_bytes_per_op"]
    )
    t = r["report"]
    if not t:
        return m
    total = t["total"]
    ops = int(total["ops"])
    m["ops_per_sec"] = float(total["ops_per_sec"])
    if ops > 0:  # no successful operation: no latency either (the histogram is empty)
        m["p50_ms"] = total["p50_us"] / 1000.0
        m["p99_ms"] = total["p99_us"] / 1000.0
        m["p999_ms"] = total["p999_us"] / 1000.0
    m["errors"] = int(t["errors"])
    ticks, wbytes, tck = num(r["cpu_ticks"], int), num(r["write_bytes"], int), num(r["clk_tck"], int)
    if ops > 0 and ticks is not None and tck:
        m["cpu_s_per_10k_ops"] = ticks / tck / ops * 10000
    if ops > 0 and wbytes is not None:
        m["disk_bytes_per_op"] = wbytes / ops
    return m


def notes_of(r, limit=None):
    note = r["note"]
    t = r["report"]
    if t:
        extra = []
        if t.get("errors"):
            extra.append("%d errors, last: %s" % (t["errors"], t.get("last_error")))
        if t.get("reads_not_found"):
            extra.append("%d reads found no key" % t["reads_not_found"])
        note = "; ".join([x for x in [note] + extra if x])
    if limit and len(note) > limit:
        note = note[: limit - 3] + "..."
    return note


def fmt(v, digits):
    return "" if v is None else ("%.*f" % (digits, v))


def write_csv(out, rows):
    cols = [
        "system", "version", "workload", "distribution", "concurrency", "ops_per_sec", "p50_ms",
        "p99_ms", "p999_ms", "errors", "cpu_s_per_10k_ops", "disk_bytes_per_op", "note",
    ]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            m = metrics(r)
            w.writerow([
                r["system"], r["version"], r["workload"], r["distribution"], r["concurrency"],
                fmt(m["ops_per_sec"], 0), fmt(m["p50_ms"], 3), fmt(m["p99_ms"], 3), fmt(m["p999_ms"], 3),
                "" if m["errors"] is None else m["errors"], fmt(m["cpu_s_per_10k_ops"], 3),
                fmt(m["disk_bytes_per_op"], 0), notes_of(r),
            ])


def ordered(values, order):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return sorted(seen, key=lambda v: (order.index(v) if v in order else len(order), seen.index(v)))


def thousands(v):
    return "{:,.0f}".format(v)


def write_md(out, meta, rows, systems, workloads, dists, concs):
    by = {(r["system"], r["workload"], r["distribution"], r["concurrency"]): r for r in rows}
    etcds = [s for s in systems if s.startswith("etcd")]
    base = "etcd3.4" if "etcd3.4" in systems else (etcds[0] if etcds else None)
    ratio = "shoal" in systems and base is not None
    L = []
    L.append("# Shoal vs etcd: `scripts/bench-compare.sh`")
    L.append("")
    L.append("- date: %s; git commit %s; binaries %s (built %s)" % (
        meta.get("date", "?"), meta.get("git_commit", "?"), meta.get("bin", "?"), meta.get("bin_mtime", "?")))
    L.append("- machine: %s CPUs (%s), %s RAM, %s; data on %s" % (
        meta.get("host_nproc", "?"), meta.get("cpu_model", "?"), meta.get("mem", "?"), meta.get("kernel", "?"),
        meta.get("data_fs", "?")))
    vers = ", ".join("%s %s" % (s, meta.get("version_" + s) or "(not run)") for s in systems)
    L.append("- systems: %s; 3 members each on loopback, fsync on, otherwise defaults%s" % (
        vers, (" (etcd flags: `%s`)" % meta["etcd_args"]) if meta.get("etcd_args") else ""))
    if meta.get("node_args"):
        L.append("- shoal-node flags: `%s`" % meta["node_args"])
    L.append("- %s s per run; %s keys of %s B loaded once per system (`bench load --concurrency 64`); "
             "client (`shoalctl bench run`, closed loop) on the same machine" % (
                 meta.get("duration", "?"), meta.get("keys", "?"), meta.get("value_size", "?")))
    L.append("- workloads: put = `custom --read-ratio 0`; mixed50/mixed95/get = `custom --read-ratio "
             "0.5/0.95/1` (linearizable gets); scan = `--workload e --scan-length 100`: the harness has no "
             "pure-scan mode, so 95% scans with a limit drawn uniformly from 1..=100 (about 50 rows) and 5% "
             "inserts")
    L.append("- cells: total ops/s (p99 ms) over all operation types%s; server CPU and disk bytes are summed "
             "over the 3 server processes (`/proc/PID/stat` utime+stime, `/proc/PID/io` write_bytes, which "
             "counts dirtied pages, 4 KiB each, incl. logs and compaction)" % (
                 ("; ratio = Shoal ops/s / %s ops/s" % base) if ratio else ""))
    L.append("")
    failed = []
    for w in workloads:
        for d in dists:
            L.append("## %s, %s keys" % (WORKLOAD_TITLES.get(w, w), d))
            L.append("")
            head = ["concurrency"] + ["%s ops/s (p99 ms)" % s for s in systems]
            if ratio:
                head.append("shoal/%s" % base)
            L.append("| " + " | ".join(head) + " |")
            L.append("|" + "---:|" * len(head))
            for c in concs:
                cells = [str(c)]
                for s in systems:
                    r = by.get((s, w, d, c))
                    m = metrics(r) if r else None
                    if not r:
                        cells.append("")
                    elif m["ops_per_sec"] is None:
                        cells.append(r["status"])
                    else:
                        cell = "%s (%s)" % (thousands(m["ops_per_sec"]), fmt(m["p99_ms"], 2) or "-")
                        if m["errors"]:
                            cell += " %d err" % m["errors"]
                        cells.append(cell)
                if ratio:
                    a, b = by.get(("shoal", w, d, c)), by.get((base, w, d, c))
                    ma, mb = metrics(a) if a else {}, metrics(b) if b else {}
                    if ma.get("ops_per_sec") and mb.get("ops_per_sec"):
                        cells.append("%.2f" % (ma["ops_per_sec"] / mb["ops_per_sec"]))
                    else:
                        cells.append("")
                L.append("| " + " | ".join(cells) + " |")
            if w == "scan":
                rps = []
                for s in systems:
                    vals = [by[k]["report"]["scan"].get("rows_per_scan") for k in by
                            if k[0] == s and k[1] == w and k[2] == d and by[k]["report"]
                            and "scan" in by[k]["report"]]
                    vals = [v for v in vals if v is not None]
                    if vals:
                        rps.append("%s %.1f" % (s, sum(vals) / len(vals)))
                if rps:
                    L.append("")
                    L.append("Rows per scan (mean over the runs): " + ", ".join(rps) + ".")
            L.append("")
    L.append("## Server resources per operation")
    L.append("")
    L.append("CPU seconds per 10,000 operations / disk bytes written per operation, summed over the 3 servers.")
    L.append("")
    head = ["workload", "distribution", "concurrency"] + ["%s CPU s/10k ops / B/op" % s for s in systems]
    L.append("| " + " | ".join(head) + " |")
    L.append("|---|---|" + "---:|" * (len(head) - 2))
    for w in workloads:
        for d in dists:
            for c in concs:
                cells = [w, d, str(c)]
                for s in systems:
                    r = by.get((s, w, d, c))
                    m = metrics(r) if r else None
                    if not m or m["cpu_s_per_10k_ops"] is None:
                        cells.append("")
                    else:
                        cells.append("%.2f / %s" % (m["cpu_s_per_10k_ops"], thousands(m["disk_bytes_per_op"] or 0)))
                L.append("| " + " | ".join(cells) + " |")
    L.append("")
    for r in rows:
        n = notes_of(r, 240)
        if r["status"] != "ok" or n:
            failed.append("- %s %s %s c%d: %s%s" % (
                r["system"], r["workload"], r["distribution"], r["concurrency"],
                "" if r["status"] == "ok" else r["status"] + ": ", n))
    if failed:
        L.append("## Notes")
        L.append("")
        L.extend(failed)
        L.append("")
    loads = [(s, meta["load_" + s]) for s in systems if meta.get("load_" + s)]
    if loads:
        L.append("Loads: " + "; ".join("%s: %s" % (s, l) for s, l in loads) + ".")
        L.append("")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(L))


# --- SVG -------------------------------------------------------------------------------


def nice_step(raw):
    if raw <= 0:
        return 1.0
    e = math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10 ** e >= raw:
            return m * 10 ** e
    return 10 ** (e + 1)


def num_label(v):
    if v >= 1000:
        return "{:,.0f}".format(v)
    if v >= 10 or v == int(v):
        return "%g" % round(v, 1)
    return ("%.3f" % v).rstrip("0").rstrip(".")


def log125(lo, hi):
    """1-2-5 ticks covering [lo, hi] (both > 0), and the domain they span."""
    ticks = []
    e = math.floor(math.log10(lo)) - 1
    while True:
        for m in (1, 2, 5):
            t = m * 10.0 ** e
            ticks.append(t)
        if 10.0 ** e > hi:
            break
        e += 1
    below = [t for t in ticks if t <= lo * 1.0000001]
    above = [t for t in ticks if t >= hi * 0.9999999]
    a, b = below[-1], above[0]
    if a == b:
        a, b = a / 2, b * 2
    return [t for t in ticks if a * 0.9999 <= t <= b * 1.0001], a, b


def panel(x0, y0, w, h, title, ylabel, series, concs, logy):
    """One chart at (x0, y0) of size w x h; series = [(name, color, [(conc, value|None)])]."""
    ml, mr, mt, mb = 72, 16, 28, 46
    px0, py0, pw, ph = x0 + ml, y0 + mt, w - ml - mr, h - mt - mb
    o = ['<g font-family="sans-serif" font-size="11">']
    o.append('<text x="%.1f" y="%.1f" font-size="13" font-weight="bold" text-anchor="middle">%s</text>' % (
        x0 + ml + pw / 2, y0 + 17, escape(title)))
    frame = '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>' % (px0, py0, pw, ph)
    # x: log scale over the concurrencies, with a margin of 8% of the span each side
    lx = [math.log10(c) for c in concs]
    span = (max(lx) - min(lx)) or 1.0
    xa, xb = min(lx) - 0.08 * span, max(lx) + 0.08 * span

    def X(c):
        return px0 + (math.log10(c) - xa) / (xb - xa) * pw

    for c in concs:
        o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>' % (X(c), py0, X(c), py0 + ph))
        o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>' % (X(c), py0 + ph, X(c), py0 + ph + 4))
        o.append('<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>' % (X(c), py0 + ph + 16, c))
    o.append('<text x="%.1f" y="%.1f" text-anchor="middle">concurrency (requests in flight, log scale)</text>' % (
        px0 + pw / 2, py0 + ph + 34))
    vals = [v for _, _, pts in series for _, v in pts if v is not None and v > 0]
    if not vals:
        o.append('<text x="%.1f" y="%.1f" text-anchor="middle" fill="#888">no data</text>' % (px0 + pw / 2, py0 + ph / 2))
        o.append(frame)
        o.append("</g>")
        return o
    if logy:
        ticks, ya, yb = log125(min(vals), max(vals))

        def Y(v):
            return py0 + ph - (math.log10(v) - math.log10(ya)) / (math.log10(yb) - math.log10(ya)) * ph
    else:
        step = nice_step(max(vals) / 5)
        yb = math.ceil(max(vals) / step) * step
        ya = 0.0
        ticks = [i * step for i in range(int(round(yb / step)) + 1)]

        def Y(v):
            return py0 + ph - (v - ya) / (yb - ya) * ph
    for t in ticks:
        o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>' % (px0, Y(t), px0 + pw, Y(t)))
        o.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>' % (px0 - 4, Y(t), px0, Y(t)))
        o.append('<text x="%.1f" y="%.1f" text-anchor="end">%s</text>' % (px0 - 6, Y(t) + 4, num_label(t)))
    o.append('<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">%s</text>' % (
        x0 + 14, py0 + ph / 2, escape(ylabel)))
    o.append(frame)
    for name, color, pts in series:
        seg = []
        segs = [seg]
        for c, v in pts:
            if v is None or v <= 0:
                seg = []
                segs.append(seg)
            else:
                seg.append((X(c), Y(v), c, v))
        for s in segs:
            if len(s) > 1:
                o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
                    color, " ".join("%.1f,%.1f" % (x, y) for x, y, _, _ in s)))
            for x, y, c, v in s:
                o.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s, concurrency %d: %s</title></circle>' % (
                    x, y, color, escape(name), c, num_label(v)))
    o.append("</g>")
    return o


def legend(x, y, systems, colors, versions):
    o = ['<g font-family="sans-serif" font-size="12">']
    for i, s in enumerate(systems):
        lx = x + i * 190
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>' % (lx, y, lx + 22, y, colors[s]))
        o.append('<circle cx="%d" cy="%d" r="3.5" fill="%s"/>' % (lx + 11, y, colors[s]))
        label = s + (" (%s)" % versions[s] if versions.get(s) else "")
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 28, y + 4, escape(label[:26])))
    o.append("</g>")
    return o


def series_for(by, systems, colors, w, d, concs, key):
    out = []
    for s in systems:
        pts = []
        for c in concs:
            r = by.get((s, w, d, c))
            pts.append((c, metrics(r)[key] if r else None))
        out.append((s, colors[s], pts))
    return out


def svg_doc(width, height, body):
    return "\n".join(
        ['<?xml version="1.0" encoding="UTF-8"?>',
         '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">' % (
             width, height, width, height),
         '<rect width="100%" height="100%" fill="white"/>'] + body + ["</svg>", ""])


def write_svgs(out, meta, rows, systems, workloads, dists, concs):
    by = {(r["system"], r["workload"], r["distribution"], r["concurrency"]): r for r in rows}
    colors = {s: COLORS[i % len(COLORS)] for i, s in enumerate(systems)}
    versions = {s: meta.get("version_" + s, "").split(" ")[0] for s in systems}
    pw, ph = 460, 300
    written = []
    for d in dists:
        for w in workloads:
            title = WORKLOAD_TITLES.get(w, w)
            body = ['<text x="%d" y="22" font-family="sans-serif" font-size="15" font-weight="bold" '
                    'text-anchor="middle">%s, %s keys</text>' % (pw, escape(title), escape(d))]
            body += legend(20, 44, systems, colors, versions)
            body += panel(0, 56, pw, ph, "throughput", "ops/s",
                          series_for(by, systems, colors, w, d, concs, "ops_per_sec"), concs, False)
            body += panel(pw, 56, pw, ph, "p99 latency", "p99 latency (ms, log scale)",
                          series_for(by, systems, colors, w, d, concs, "p99_ms"), concs, True)
            name = "plot-%s-%s.svg" % (w, d)
            with open(os.path.join(out, name), "w") as f:
                f.write(svg_doc(2 * pw, ph + 62, body))
            written.append(name)
    d = "uniform" if "uniform" in dists else dists[0]
    top = 64
    body = ['<text x="%d" y="22" font-family="sans-serif" font-size="15" font-weight="bold" text-anchor="middle">'
            'Shoal vs etcd, %s keys, %s s per run, %s keys of %s B (%s)</text>' % (
                pw, escape(d), escape(meta.get("duration", "?")), escape(meta.get("keys", "?")),
                escape(meta.get("value_size", "?")), escape(meta.get("git_commit", "?")))]
    body += legend(20, 46, systems, colors, versions)
    for i, w in enumerate(workloads):
        y = top + i * ph
        body += panel(0, y, pw, ph, "%s: throughput" % w, "ops/s",
                      series_for(by, systems, colors, w, d, concs, "ops_per_sec"), concs, False)
        body += panel(pw, y, pw, ph, "%s: p99" % w, "p99 latency (ms, log scale)",
                      series_for(by, systems, colors, w, d, concs, "p99_ms"), concs, True)
    with open(os.path.join(out, "summary.svg"), "w") as f:
        f.write(svg_doc(2 * pw, top + len(workloads) * ph + 8, body))
    written.append("summary.svg")
    return written


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench_report.py OUT_DIR")
    out = sys.argv[1]
    meta = read_meta(out)
    rows = read_runs(out)
    if not rows:
        sys.exit("no runs in %s/runs.tsv" % out)
    systems = ordered([r["system"] for r in rows], meta.get("systems", "").split())
    workloads = ordered([r["workload"] for r in rows], WORKLOAD_ORDER)
    dists = ordered([r["distribution"] for r in rows], ["uniform", "zipfian"])
    concs = sorted({r["concurrency"] for r in rows})
    write_csv(out, rows)
    write_md(out, meta, rows, systems, workloads, dists, concs)
    write_svgs(out, meta, rows, systems, workloads, dists, concs)


if __name__ == "__main__":
    main()
