// replay.js - the state of a replay, as pure functions and a clock that is told the time:
// which position each unit shows at replay time t, and how replay time follows real time.
// No DOM, no Leaflet, no fetching (history.js fetches, main.js draws).

export const SPEEDS = [1, 2, 5, 10, 30, 60];
export const TRAIL_MS = 30 * 60 * 1000; // a trail: the last 30 minutes

// A track: a unit's positions in time order, each with its time in ms: [{t, p}, ...].
// From the snapshot's position (at or before `from`) and the history over the interval;
// a position that comes twice (the same time) is kept once.
export function track(positions) {
    const pts = positions.map((p) => ({ t: Date.parse(p.time), p }))
        .filter((x) => Number.isFinite(x.t))
        .sort((a, b) => a.t - b.t);
    return pts.filter((x, i) => i === 0 || x.t !== pts[i - 1].t);
}

// Every unit's track: snapshot {positions, missing} and histories {device: [P, ...]}.
// Units in `missing` with no history still get an (empty) track: they are part of the
// replay and show nothing until they report.
export function tracks(snapshot, histories) {
    const byDevice = new Map();
    const add = (device, ps) => {
        if (!byDevice.has(device)) byDevice.set(device, []);
        byDevice.get(device).push(...ps);
    };
    for (const p of snapshot.positions) add(p.device, [p]);
    for (const d of snapshot.missing || []) add(d, []);
    for (const [d, ps] of Object.entries(histories)) add(d, ps);
    const out = new Map();
    for (const [d, ps] of [...byDevice].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)))
        out.set(d, track(ps));
    return out;
}

// The position a unit shows at t: its last one at or before t, or null before its first.
export function positionAt(tr, t) {
    let lo = 0, hi = tr.length; // the first index whose time is after t
    while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (tr[mid].t <= t) lo = mid + 1;
        else hi = mid;
    }
    return lo === 0 ? null : tr[lo - 1].p;
}

// A trail's points after a live position arrives: appended when newer than the last point,
// and points older than windowMs before it dropped. Returns a new array ([{t, p}]).
export function extendTrail(points, p, windowMs = TRAIL_MS) {
    const t = Date.parse(p.time);
    if (!Number.isFinite(t)) return points;
    const last = points.length ? points[points.length - 1].t : -Infinity;
    if (!(t > last)) return points; // one the trail has, or older: nothing to draw
    return [...points, { t, p }].filter((x) => x.t >= t - windowMs);
}

// Replay time from real time. All times in ms; `now` is the caller's clock
// (performance.now()), so this is a pure function of what it is told.
export class Clock {
    constructor(from, to, speed = 1) {
        if (!(to > from)) throw new RangeError("the interval must end after it starts");
        this.from = from;
        this.to = to;
        this.speed = speed;
        this.playing = false;
        this.at = from;    // replay time at `since` (or for good, while paused)
        this.since = 0;    // real time when `at` was taken
    }

    time(now) {
        if (!this.playing) return this.at;
        return Math.min(this.to, this.at + (now - this.since) * this.speed);
    }

    ended(now) {
        return this.time(now) >= this.to;
    }

    play(now) {
        if (this.playing) return;
        if (this.at >= this.to) this.at = this.from; // play at the end: from the start again
        this.since = now;
        this.playing = true;
    }

    pause(now) {
        this.at = this.time(now);
        this.playing = false;
    }

    seek(t, now) {
        this.at = Math.min(this.to, Math.max(this.from, t));
        this.since = now;
    }

    setSpeed(speed, now) {
        this.at = this.time(now);
        this.since = now;
        this.speed = speed;
    }
}

// datetime-local input values (local time, to the second) from and to ms.
export function localInput(ms) {
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T` +
        `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

export function fromLocalInput(value) {
    // "YYYY-MM-DDTHH:MM[:SS]" without a zone is local time to Date.parse.
    return /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?$/.test(value) ? Date.parse(value) : NaN;
}
