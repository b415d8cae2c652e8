// metrics_format.js - GET /metrics from the real gpsrelayd is valid Prometheus text
// exposition format 0.0.4 and names every metric docs/operations.md lists.
//
// Debian's `prometheus` package would bring promtool, but it is a 94 MiB install (plus the
// server, a system user and a service) for one check, so this file holds a strict parser of
// the format instead (https://prometheus.io/docs/instrumenting/exposition_formats/):
// HELP/TYPE lines, metric and label names, label value escapes, values, one group per
// family, no duplicate series, counters named _total and never negative, histograms with
// ascending `le` buckets that never decrease, ending in le="+Inf" equal to _count, with _sum.
// The parser is first run over known-bad texts, each of which it must reject.
//
// usage: node metrics_format.js /path/to/gpsrelayd
"use strict";

const path = require("node:path");
const { Daemon, rmc, check, report, WAIT_MS } = require(path.join(__dirname, "../js/daemon"));

// docs/operations.md's list.
const REQUIRED = {
    gpsrelay_delivery_latency_seconds: "histogram",
    gpsrelay_position_age_seconds: "histogram",
    gpsrelay_postgres_up: "gauge",
    gpsrelay_cluster_up: "gauge",
    gpsrelay_cluster_published_total: "counter",
    gpsrelay_cluster_applied_total: "counter",
    gpsrelay_cluster_lag: "gauge",
    gpsrelay_cluster_publish_failures_total: "counter",
    gpsrelay_cluster_queued: "gauge",
    gpsrelay_ingest_reports_total: "counter",
    gpsrelay_ingest_rejected_total: "counter",
    gpsrelay_positions_published_total: "counter",
    gpsrelay_consoles_connected: "gauge",
    gpsrelay_channels_joined: "gauge",
    gpsrelay_ws_frames_sent_total: "counter",
    gpsrelay_positions_conflated_total: "counter",
    gpsrelay_consoles_closed_total: "counter",
    gpsrelay_mapping_devices: "gauge",
    gpsrelay_units_stale: "gauge",
    process_resident_memory_bytes: "gauge",
    process_open_fds: "gauge",
};

// ---- The parser --------------------------------------------------------------------------

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
// Go's strconv.ParseFloat as Prometheus accepts it, plus its spellings of the specials.
const FLOAT = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf|NaN|nan)$/;
const TIMESTAMP = /^-?\d+$/;

function parseValue(text) {
    if (!FLOAT.test(text)) return undefined;
    if (/^[+-]?inf$/i.test(text)) return text.startsWith("-") ? -Infinity : Infinity;
    if (/^nan$/i.test(text)) return NaN;
    return Number(text);
}

// Label block after the metric name: `{a="x",b="y"}`. Returns {labels, rest} or throws.
function parseLabels(s) {
    const labels = {};
    let i = 1; // past "{"
    for (;;) {
        if (s[i] === "}") return { labels, rest: s.slice(i + 1) };
        const name = /^[^=]*/.exec(s.slice(i))[0];
        if (!LABEL_NAME.test(name)) throw new Error(`bad label name "${name}"`);
        if (name.startsWith("__")) throw new Error(`reserved label name "${name}"`);
        if (name in labels) throw new Error(`label "${name}" twice`);
        i += name.length;
        if (s[i] !== "=" || s[i + 1] !== '"') throw new Error(`label "${name}" without ="value"`);
        i += 2;
        let value = "";
        for (;;) {
            if (i >= s.length) throw new Error(`unterminated value of label "${name}"`);
            const c = s[i++];
            if (c === '"') break;
            if (c === "\\") {
                const e = s[i++];
                if (e === "\\") value += "\\";
                else if (e === '"') value += '"';
                else if (e === "n") value += "\n";
                else throw new Error(`bad escape \\${e} in label "${name}"`);
            } else value += c;
        }
        labels[name] = value;
        if (s[i] === ",") {
            i++;
            if (s[i] === "}") throw new Error("trailing comma in labels");
        } else if (s[i] !== "}") throw new Error(`expected , or } after label "${name}"`);
    }
}

// The family a sample belongs to, given the family now open (histograms and summaries own
// name_bucket/name_sum/name_count as well as, for summaries, the bare name).
function sampleBelongs(family, name) {
    if (!family) return false;
    if (name === family.name) return family.type !== "histogram";
    if (family.type === "histogram")
        return [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`].includes(name);
    if (family.type === "summary")
        return [`${family.name}_sum`, `${family.name}_count`].includes(name);
    return false;
}

// Parses a whole exposition. Returns {families: Map(name -> {type, help, samples})} or
// throws with the line number of the first problem.
function parseExposition(text) {
    if (text.length === 0) throw new Error("empty exposition");
    if (!text.endsWith("\n")) throw new Error("last line does not end with a newline");
    const families = new Map();
    const closed = new Set(); // families whose group has ended: seeing them again is an error
    const series = new Set();
    let current = null;
    const lines = text.slice(0, -1).split("\n");

    const open = (name, lineNo) => {
        if (current && current.name === name) return current;
        if (current) closed.add(current.name);
        if (closed.has(name)) throw new Error(`line ${lineNo}: ${name} appears in two groups`);
        let f = families.get(name);
        if (!f) {
            f = { name, type: undefined, help: undefined, samples: [] };
            families.set(name, f);
        }
        current = f;
        return f;
    };

    lines.forEach((line, idx) => {
        const n = idx + 1;
        const where = `line ${n} "${line}"`;
        if (line.trim() === "") return; // empty lines are ignored by the format
        if (line.includes("\r")) throw new Error(`${where}: carriage return`);
        if (line.startsWith("#")) {
            const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
            if (!m) return; // any other comment is allowed
            const [, kind, name, rest = ""] = m;
            if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
            const f = open(name, n);
            if (kind === "HELP") {
                if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
                if (/\\[^\\n]/.test(rest.replace(/\\\\/g, "")) || /\\$/.test(rest.replace(/\\\\/g, "")))
                    throw new Error(`${where}: bad escape in HELP`);
                f.help = rest;
            } else {
                if (f.type !== undefined) throw new Error(`${where}: second TYPE for ${name}`);
                if (f.samples.length) throw new Error(`${where}: TYPE after samples of ${name}`);
                if (!TYPES.has(rest)) throw new Error(`${where}: unknown type "${rest}"`);
                f.type = rest;
            }
            return;
        }
        const nameMatch = /^[^{ \t]+/.exec(line);
        const name = nameMatch ? nameMatch[0] : "";
        if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name "${name}"`);
        let rest = line.slice(name.length);
        let labels = {};
        if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest));
        const fields = rest.split(/[ \t]+/);
        if (fields[0] !== "" || fields.length < 2 || fields.length > 3)
            throw new Error(`${where}: expected "name[{labels}] value [timestamp]"`);
        const value = parseValue(fields[1]);
        if (value === undefined) throw new Error(`${where}: bad value "${fields[1]}"`);
        if (fields.length === 3 && !TIMESTAMP.test(fields[2]))
            throw new Error(`${where}: bad timestamp "${fields[2]}"`);

        let family = sampleBelongs(current, name) ? current : null;
        if (!family) {
            // An untyped sample starts its own family; a histogram's parts never do.
            family = open(name, n);
            if (family.type !== undefined && !sampleBelongs(family, name))
                throw new Error(`${where}: sample outside its family`);
        }
        const type = family.type || "untyped";
        if ("le" in labels && !(type === "histogram" && name.endsWith("_bucket")))
            throw new Error(`${where}: "le" label outside a histogram bucket`);
        if ("quantile" in labels && !(type === "summary" && name === family.name))
            throw new Error(`${where}: "quantile" label outside a summary`);
        const key = name + JSON.stringify(Object.entries(labels).sort());
        if (series.has(key)) throw new Error(`${where}: duplicate series`);
        series.add(key);
        family.samples.push({ name, labels, value, line: n });
    });

    for (const f of families.values()) checkFamily(f);
    return { families };
}

// What a family's samples must satisfy beyond syntax.
function checkFamily(f) {
    if (f.samples.length === 0) throw new Error(`${f.name}: HELP/TYPE but no samples`);
    if (f.help === undefined) throw new Error(`${f.name}: no HELP line`);
    if (f.type === undefined) throw new Error(`${f.name}: no TYPE line`);
    if (f.type === "counter") {
        if (!f.name.endsWith("_total")) throw new Error(`${f.name}: counter not named *_total`);
        for (const s of f.samples)
            if (!(s.value >= 0)) throw new Error(`${f.name}: counter value ${s.value} at line ${s.line}`);
    }
    if (f.type === "histogram") checkHistogram(f);
}

function checkHistogram(f) {
    // Group by the labels other than le: each group is one histogram.
    const groups = new Map();
    for (const s of f.samples) {
        const { le, ...rest } = s.labels;
        const key = JSON.stringify(Object.entries(rest).sort());
        if (!groups.has(key)) groups.set(key, { buckets: [], sum: undefined, count: undefined });
        const g = groups.get(key);
        if (s.name.endsWith("_bucket")) {
            if (le === undefined) throw new Error(`${f.name}: bucket without le at line ${s.line}`);
            const bound = parseValue(le);
            if (bound === undefined || Number.isNaN(bound))
                throw new Error(`${f.name}: bad le="${le}" at line ${s.line}`);
            g.buckets.push({ bound, le, value: s.value, line: s.line });
        } else if (s.name.endsWith("_sum")) g.sum = s.value;
        else g.count = s.value;
    }
    for (const [key, g] of groups) {
        const what = `${f.name}${key}`;
        if (g.buckets.length === 0) throw new Error(`${what}: no buckets`);
        if (g.sum === undefined) throw new Error(`${what}: no _sum`);
        if (g.count === undefined) throw new Error(`${what}: no _count`);
        for (let i = 1; i < g.buckets.length; i++) {
            if (!(g.buckets[i].bound > g.buckets[i - 1].bound))
                throw new Error(`${what}: le not ascending at line ${g.buckets[i].line}`);
            if (g.buckets[i].value < g.buckets[i - 1].value)
                throw new Error(`${what}: bucket count decreases at line ${g.buckets[i].line}`);
        }
        const last = g.buckets[g.buckets.length - 1];
        if (last.bound !== Infinity || last.le !== "+Inf")
            throw new Error(`${what}: last bucket is le="${last.le}", not le="+Inf"`);
        if (last.value !== g.count)
            throw new Error(`${what}: le="+Inf" is ${last.value} but _count is ${g.count}`);
        if (g.buckets.some((b) => !Number.isInteger(b.value) || b.value < 0) || !Number.isInteger(g.count))
            throw new Error(`${what}: bucket counts must be non-negative integers`);
    }
}

// ---- The parser rejects what it must (a checker that cannot fail is a defect) ------------

const GOOD = `# HELP a_total A counter.
# TYPE a_total counter
a_total{reason="x"} 1
a_total{reason="y\\"q\\\\\\n"} 0
# HELP g A gauge.
# TYPE g gauge
g -1.5e3
# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="0.001"} 0
h_seconds_bucket{le="0.01"} 2
h_seconds_bucket{le="+Inf"} 3
h_seconds_sum 0.25
h_seconds_count 3
`;
const BAD = {
    "no final newline": "# HELP g x\n# TYPE g gauge\ng 1",
    "bad metric name": "# HELP 1g x\n# TYPE 1g gauge\n1g 1\n",
    "bad value": "# HELP g x\n# TYPE g gauge\ng one\n",
    "missing value": "# HELP g x\n# TYPE g gauge\ng\n",
    "unquoted label": "# HELP g x\n# TYPE g gauge\ng{a=b} 1\n",
    "bad escape": '# HELP g x\n# TYPE g gauge\ng{a="\\t"} 1\n',
    "unterminated labels": '# HELP g x\n# TYPE g gauge\ng{a="b" 1\n',
    "duplicate series": "# HELP g x\n# TYPE g gauge\ng 1\ng 2\n",
    "two TYPE lines": "# HELP g x\n# TYPE g gauge\n# TYPE g gauge\ng 1\n",
    "TYPE after samples": "# HELP g x\ng 1\n# TYPE g gauge\n",
    "no HELP": "# TYPE g gauge\ng 1\n",
    "no TYPE": "# HELP g x\ng 1\n",
    "split family": "# HELP g x\n# TYPE g gauge\ng{a=\"1\"} 1\n# HELP k x\n# TYPE k gauge\nk 1\ng{a=\"2\"} 1\n",
    "unknown type": "# HELP g x\n# TYPE g meter\ng 1\n",
    "counter without _total": "# HELP c x\n# TYPE c counter\nc 1\n",
    "negative counter": "# HELP c_total x\n# TYPE c_total counter\nc_total -1\n",
    "le on a gauge": '# HELP g x\n# TYPE g gauge\ng{le="1"} 1\n',
    "no +Inf bucket": GOOD.replace('{le="+Inf"} 3', '{le="1"} 3'),
    "+Inf != count": GOOD.replace("h_seconds_count 3", "h_seconds_count 4"),
    "decreasing buckets": GOOD.replace('{le="0.01"} 2', '{le="0.01"} 4'),
    "le not ascending": GOOD.replace('le="0.01"', 'le="0.0001"'),
    "no _sum": GOOD.replace("h_seconds_sum 0.25\n", ""),
    "bad timestamp": "# HELP g x\n# TYPE g gauge\ng 1 12.5\n",
};

function selfTest() {
    let ok = true;
    try {
        parseExposition(GOOD);
    } catch (e) {
        ok = false;
        console.error(`FAIL: parser rejects a valid exposition: ${e.message}`);
    }
    for (const [what, text] of Object.entries(BAD)) {
        let threw = false;
        try {
            parseExposition(text);
        } catch {
            threw = true;
        }
        if (!threw) {
            ok = false;
            console.error(`FAIL: parser accepts an exposition with ${what}`);
        }
    }
    return ok;
}

// ---- Against the real daemon ------------------------------------------------------------

async function getMetrics(daemon) {
    const r = await fetch(`http://127.0.0.1:${daemon.ports.ws}/metrics`,
        { signal: AbortSignal.timeout(WAIT_MS) });
    return { status: r.status, type: r.headers.get("content-type"), text: await r.text() };
}

// The value of one series (name and exact label set) in a parsed exposition, or undefined.
function seriesValue(parsed, family, name, labels = {}) {
    const f = parsed.families.get(family);
    const want = JSON.stringify(Object.entries(labels).sort());
    const s = f && f.samples.find((x) => x.name === name &&
        JSON.stringify(Object.entries(x.labels).sort()) === want);
    return s ? s.value : undefined;
}

function checkExposition(label, m) {
    check(m.status === 200, `${label}: GET /metrics status ${m.status}`);
    // The format's media type; a version, when given, must be the one this checks.
    check(/^text\/plain(;|$)/.test(m.type || "") &&
        (!/version=/.test(m.type) || /version=0\.0\.4/.test(m.type)),
    `${label}: Content-Type "${m.type}", want text/plain; version=0.0.4`);
    try {
        const parsed = parseExposition(m.text);
        check(true, "");
        return parsed;
    } catch (e) {
        check(false, `${label}: /metrics is not valid text format 0.0.4: ${e.message}`);
        console.error(m.text);
        return null;
    }
}

async function main() {
    const binary = process.argv[2];
    if (!binary) {
        console.error("usage: node metrics_format.js /path/to/gpsrelayd");
        process.exit(2);
    }
    check(selfTest(), "parser self-test");

    const csv = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,Medic 12,\n";
    const daemon = await Daemon.create(binary, csv, "auth none\n");
    try {
        await daemon.start();
        const before = checkExposition("at start", await getMetrics(daemon));

        // Good and bad reports: a valid RMC, one with a wrong checksum, garbage, an
        // unknown device, a line over 256 bytes.
        const good = rmc("AMB-12", 40.7128, -74.006);
        const badSum = good.replace(/\*[0-9A-F]{2}/, (s) => (s === "*00" ? "*01" : "*00"));
        await daemon.send(good);
        await daemon.send(badSum);
        await daemon.send("this is not a position\r\n");
        await daemon.send(rmc("NOBODY-1", 40.7, -74.0));
        await daemon.send(`AMB-12,$GPRMC,${"9".repeat(300)}\r\n`);

        // UDP is asynchronous: wait (bounded) until the daemon has counted all five.
        const deadline = Date.now() + WAIT_MS;
        let reports = NaN;
        while (Date.now() < deadline) {
            reports = await daemon.metric("gpsrelay_ingest_reports_total");
            const published = await daemon.metric("gpsrelay_positions_published_total");
            if (reports >= 5 && published >= 1) break;
            await new Promise((r) => setTimeout(r, 50));
        }
        const after = checkExposition("after reports", await getMetrics(daemon));

        if (before && after) {
            for (const [name, type] of Object.entries(REQUIRED)) {
                const f = after.families.get(name);
                check(f !== undefined, `documented metric ${name} is missing`);
                if (f) check(f.type === type, `${name} is a ${f.type}, documented as a ${type}`);
            }
            const v = (p, n, l) => seriesValue(p, n, n, l);
            check(v(after, "gpsrelay_ingest_reports_total") >= 5,
                `ingest_reports_total ${v(after, "gpsrelay_ingest_reports_total")} after 5 reports`);
            check(v(after, "gpsrelay_positions_published_total") ===
                v(before, "gpsrelay_positions_published_total") + 1,
            "positions_published_total did not rise by exactly 1");
            check(v(after, "gpsrelay_mapping_devices") === 1, "mapping_devices is not 1");
            for (const reason of ["bad_checksum", "malformed", "unknown_device", "line_too_long"]) {
                const was = v(before, "gpsrelay_ingest_rejected_total", { reason });
                const now = v(after, "gpsrelay_ingest_rejected_total", { reason });
                check(was !== undefined && now === was + 1,
                    `ingest_rejected_total{reason="${reason}"} went ${was} -> ${now}, want +1`);
            }
            check(v(after, "process_open_fds") > 0, "process_open_fds is not positive");
            check(v(after, "process_resident_memory_bytes") > 1 << 20,
                "process_resident_memory_bytes is under 1 MiB");
        }
    } catch (e) {
        check(false, e.stack || String(e));
    } finally {
        const status = await daemon.stop();
        check(status === 0, `gpsrelayd exited ${status}, want 0`);
        daemon.cleanup();
    }
    report();
}

main();
