// pg.js - a throwaway PostgreSQL 15 for the JS tests, through tests/pg/pg_cluster.sh (which
// runs initdb and pg_ctl as postgres when the tests run as root): made under a temp dir on
// a free loopback port, schemas applied, psql run without blocking Node's loop (a test may
// be reading an HTTP stream meanwhile), stopped, frozen, thawed and removed.
//
//   const { Pg } = require("./pg");
//   const pg = await Pg.create();            // initdb + start; pg.port, pg.conninfo
//   await pg.applyArchive();                 // config/archive.sql
//   await pg.applyMapping();                 // config/schema.sql
//   await pg.sql("SELECT 1");                // -> stdout (unaligned, tuples only)
//   await pg.copy("positions", ["device", "time", ...], rows);  // COPY FROM STDIN
//   await pg.stop(); await pg.start(); await pg.freeze(); await pg.thaw();
//   await pg.destroy();                      // also done at process exit if forgotten
"use strict";

const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const CLUSTER = path.join(__dirname, "..", "pg", "pg_cluster.sh");
const CONFIG = path.join(__dirname, "..", "..", "config");

// Clusters still alive at exit are destroyed synchronously: a failed test leaves no server.
const alive = new Set();
process.on("exit", () => {
    for (const pg of alive) {
        spawnSync(CLUSTER, ["destroy", pg.dir], { stdio: "ignore" });
        fs.rmSync(pg.top, { recursive: true, force: true });
    }
});

// Runs pg_cluster.sh; resolves with stdout, rejects with stderr on a non-zero exit.
function run(args, input = null) {
    return new Promise((resolve, reject) => {
        const child = spawn(CLUSTER, args, { stdio: ["pipe", "pipe", "pipe"] });
        const out = [], err = [];
        child.stdout.on("data", (b) => out.push(b));
        child.stderr.on("data", (b) => err.push(b));
        child.on("error", reject);
        child.on("close", (code) => {
            if (code === 0) resolve(Buffer.concat(out).toString());
            else reject(new Error(`pg_cluster.sh ${args[0]} exited ${code}: ` +
                Buffer.concat(err).toString().trim()));
        });
        // psql may exit before reading all of a COPY (an error): ignore EPIPE then.
        child.stdin.on("error", () => {});
        child.stdin.end(input === null ? "" : input);
    });
}

// A value in COPY's text format: NULL as \N; backslash, tab, newline and CR escaped.
function copyValue(v) {
    if (v === null || v === undefined) return "\\N";
    if (v instanceof Date) return v.toISOString();
    if (typeof v === "object") v = JSON.stringify(v);
    return String(v).replace(/\\/g, "\\\\").replace(/\t/g, "\\t").replace(/\n/g, "\\n")
        .replace(/\r/g, "\\r");
}

class Pg {
    // Makes and starts a cluster; rejects (and leaves nothing) when it cannot.
    static async create() {
        const pg = new Pg();
        pg.top = fs.mkdtempSync(path.join(os.tmpdir(), "gpsrelay-pg-"));
        fs.chmodSync(pg.top, 0o755); // the cluster under it runs as postgres under root
        pg.dir = path.join(pg.top, "pg");
        alive.add(pg);
        try {
            await run(["init", pg.dir]);
        } catch (e) {
            await pg.destroy();
            throw e;
        }
        pg.port = Number(fs.readFileSync(path.join(pg.dir, "port"), "utf8").trim());
        // hostaddr: the daemon's libpq must not resolve a name on its loop (NOTES.md).
        pg.conninfo = `hostaddr=127.0.0.1 port=${pg.port} user=postgres dbname=postgres`;
        return pg;
    }

    // psql with ARGS (after pg_cluster.sh's own: ON_ERROR_STOP, no psqlrc); stdin optional.
    psql(args, input = null) { return run(["psql", this.dir, ...args], input); }

    // One or more SQL statements; stdout unaligned, tuples only, fields split by '|'.
    sql(text) { return this.psql(["-A", "-t", "-c", text]); }

    file(p) { return this.psql(["-f", p]); }
    applyArchive() { return this.file(path.join(CONFIG, "archive.sql")); }
    applyMapping() { return this.file(path.join(CONFIG, "schema.sql")); }

    // COPY table (columns) FROM STDIN with rows (arrays of values, see copyValue), streamed
    // to psql's stdin: 86,400 rows are one psql run of a few MB, not 86,400 INSERTs.
    copy(table, columns, rows) {
        const lines = rows.map((r) => r.map(copyValue).join("\t")).join("\n");
        const input = `COPY ${table} (${columns.join(", ")}) FROM STDIN;\n` +
            (lines ? lines + "\n" : "") + "\\.\n";
        return this.psql(["-f", "-"], input);
    }

    start() { return run(["start", this.dir]); }
    stop() { return run(["stop", this.dir]); }
    freeze() { return run(["freeze", this.dir]); }
    thaw() { return run(["thaw", this.dir]); }

    async destroy() {
        if (!alive.has(this)) return;
        alive.delete(this);
        await run(["destroy", this.dir]).catch(() => {});
        fs.rmSync(this.top, { recursive: true, force: true });
    }
}

module.exports = { Pg, copyValue };
