// history.js - the archive's endpoints (docs/console.md "Trail and replay"): building their
// URLs, parsing their answers, and fetching them politely. No DOM, no Leaflet.
//
//   GET /api/history?device=ID&from=T&to=T[&limit=N]  ndjson: one position a line, in time
//       order, the shape the channel pushes; a last line {"truncated":true} when more exist
//   GET /api/snapshot?agency=ID&at=T  {"agency","at","positions":[P,...],"missing":[id,...]}
//
// Both take the console's token as a Bearer header. 404: the daemon has no archive. 503 with
// Retry-After: the archive is down or busy; the request is tried again a few times, waiting as
// long as the daemon asks (within bounds), and then given up with a short reason.

export const TRIES = 4;               // attempts per request, the first included
export const TIMEOUT_MS = 30000;      // one attempt, headers and body
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 30000;
const RETRY_DEFAULT_MS = 2000;        // a 503 without a usable Retry-After

export class ArchiveError extends Error {
    // status: the HTTP status, or 0 when there was no answer (network, timeout, cancelled).
    constructor(message, status) {
        super(message);
        this.name = "ArchiveError";
        this.status = status;
    }
}

// RFC 3339 in UTC with milliseconds, as the daemon writes times.
export function isoTime(ms) {
    return new Date(ms).toISOString();
}

export function historyUrl(device, fromMs, toMs, limit) {
    const q = new URLSearchParams({ device, from: isoTime(fromMs), to: isoTime(toMs) });
    if (limit) q.set("limit", String(limit));
    return `/api/history?${q}`;
}

export function snapshotUrl(agency, atMs) {
    return `/api/snapshot?${new URLSearchParams({ agency, at: isoTime(atMs) })}`;
}

// ndjson text -> {positions, truncated}. Blank lines are skipped; a line that is not JSON
// throws (a broken answer is an error, not a shorter track).
export function parseHistory(text) {
    const positions = [];
    let truncated = false;
    for (const line of text.split("\n")) {
        if (line.trim() === "") continue;
        const o = JSON.parse(line);
        if (o && o.truncated === true) truncated = true;
        else positions.push(o);
    }
    return { positions, truncated };
}

export function parseSnapshot(text) {
    const o = JSON.parse(text);
    return { positions: Array.isArray(o.positions) ? o.positions : [],
        missing: Array.isArray(o.missing) ? o.missing : [] };
}

// How long a 503 asks to wait, in ms: Retry-After as seconds or as an HTTP date, kept
// between half a second and 30 s.
export function retryAfterMs(header, nowMs = Date.now()) {
    let ms = NaN;
    if (header != null && /^\s*\d+\s*$/.test(header)) ms = Number(header) * 1000;
    else if (header) ms = Date.parse(header) - nowMs;
    if (!Number.isFinite(ms)) ms = RETRY_DEFAULT_MS;
    return Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, ms));
}

// The one line a refusal is worth showing.
export function reasonFor(status, body) {
    const said = (body || "").split("\n")[0].trim().slice(0, 120);
    switch (status) {
    case 400: return `bad request${said ? `: ${said}` : ""}`;
    case 401: return "the token was refused";
    case 403: return "the token does not cover this unit or agency";
    case 404: return "this daemon keeps no archive";
    case 503: return "the archive is unavailable, try again later";
    default: return `the archive answered ${status}${said ? `: ${said}` : ""}`;
    }
}

function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal && signal.aborted) return reject(new ArchiveError("cancelled", 0));
        const t = setTimeout(done, ms);
        function done() {
            if (signal) signal.removeEventListener("abort", stop);
            resolve();
        }
        function stop() {
            clearTimeout(t);
            reject(new ArchiveError("cancelled", 0));
        }
        if (signal) signal.addEventListener("abort", stop, { once: true });
    });
}

// One GET, tried again on 503. Resolves with the body of a 2xx answer; rejects with an
// ArchiveError otherwise. signal cancels it (also while it waits to retry); onWait(ms, try)
// is told before each wait, for the page to say so.
export async function get(url, { token = "", signal = null, onWait = null, tries = TRIES,
    timeoutMs = TIMEOUT_MS, fetchFn = globalThis.fetch } = {}) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    for (let attempt = 1; ; attempt++) {
        if (signal && signal.aborted) throw new ArchiveError("cancelled", 0);
        const ctl = new AbortController();
        const cancel = () => ctl.abort();
        if (signal) signal.addEventListener("abort", cancel, { once: true });
        const timer = setTimeout(cancel, timeoutMs);
        let res, body;
        try {
            res = await fetchFn(url, { headers, signal: ctl.signal, cache: "no-store" });
            body = await res.text();
        } catch (_) {
            if (signal && signal.aborted) throw new ArchiveError("cancelled", 0);
            throw new ArchiveError(ctl.signal.aborted ? "the archive did not answer in time"
                : "the daemon cannot be reached", 0);
        } finally {
            clearTimeout(timer);
            if (signal) signal.removeEventListener("abort", cancel);
        }
        if (res.ok) return body;
        if (res.status === 503 && attempt < tries) {
            const ms = retryAfterMs(res.headers.get("Retry-After"));
            if (onWait) onWait(ms, attempt);
            await sleep(ms, signal);
            continue;
        }
        throw new ArchiveError(reasonFor(res.status, body), res.status);
    }
}

// The client the page uses: token and onWait given once.
export function archive({ token = "", onWait = null, fetchFn = globalThis.fetch } = {}) {
    const opts = (o) => ({ token, onWait, fetchFn, ...o });
    return {
        async history(device, fromMs, toMs, o = {}) {
            return parseHistory(await get(historyUrl(device, fromMs, toMs, o.limit), opts(o)));
        },
        async snapshot(agency, atMs, o = {}) {
            return parseSnapshot(await get(snapshotUrl(agency, atMs), opts(o)));
        },
        // Whether the daemon has an archive: a snapshot of the agency now. true, false (404:
        // none), or null when it could not tell (the archive down: offer it, it may return).
        async probe(agency) {
            try {
                await get(snapshotUrl(agency, Date.now()), opts({ tries: 1 }));
                return true;
            } catch (e) {
                if (e.status === 404) return false;
                return e.status === 0 ? null : true;
            }
        },
    };
}

// Runs fn(item, index) over items with at most `limit` running at once; resolves with the
// results in order, or rejects with the first failure (starting no more after it).
export async function mapLimit(items, limit, fn) {
    const results = new Array(items.length);
    let next = 0, failed = null;
    async function worker() {
        while (failed === null && next < items.length) {
            const i = next++;
            try {
                results[i] = await fn(items[i], i);
            } catch (e) {
                if (failed === null) failed = e;
            }
        }
    }
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    if (failed !== null) throw failed;
    return results;
}
