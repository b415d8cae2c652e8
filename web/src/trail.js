// trail.js - the trail of one unit: its positions of the last 30 minutes from the archive,
// drawn as a line on a layer of its own, extended as its live positions arrive. One trail
// at a time: showing another unit's, or the close button, clears it.
import L from "leaflet";
import { TRAIL_MS, track, extendTrail } from "./replay.js";

const $ = (id) => document.getElementById(id);
const LIMIT = 100000; // the endpoint's maximum: 30 minutes of even a 10 Hz unit fit

export function createTrail({ map, client }) {
    const layer = L.layerGroup().addTo(map);
    const line = L.polyline([], { className: "gr-trail", color: "#2680c2", weight: 3,
        opacity: 0.85, interactive: false });
    let device = null;
    let points = [];       // [{t, p}], oldest first
    let loading = null;    // an AbortController while the archive is asked
    let pending = [];      // live positions that arrived meanwhile
    let truncated = false;
    let status = "";       // "", "loading", "shown", "failed"

    const box = $("trail");
    $("trail-close").addEventListener("click", close);

    function say(text) {
        $("trail-text").textContent = text;
        box.hidden = device === null;
    }

    function draw() {
        line.setLatLngs(points.map((x) => [x.p.lat, x.p.lon]));
        if (!layer.hasLayer(line)) layer.addLayer(line);
        const mins = Math.round(TRAIL_MS / 60000);
        say(`${device}: ${points.length} fixes, last ${mins} min${truncated ? " (cut short)" : ""}`);
    }

    function close() {
        if (loading) loading.abort();
        loading = null;
        layer.clearLayers();
        line.setLatLngs([]);
        device = null;
        points = [];
        truncated = false;
        pending = [];
        status = "";
        say("");
    }

    // Shows device's trail; live: its latest position, when the page has one.
    async function show(d, live) {
        close();
        device = d;
        status = "loading";
        const ctl = (loading = new AbortController());
        say(`${d}: loading trail…`);
        const now = Date.now();
        try {
            const h = await client.history(d, now - TRAIL_MS, now, { limit: LIMIT,
                signal: ctl.signal,
                onWait: (ms) => say(`${d}: archive busy, retrying in ${Math.ceil(ms / 1000)} s`) });
            if (loading !== ctl) return; // another unit was clicked meanwhile
            loading = null;
            truncated = h.truncated;
            points = track(h.positions);
            for (const p of live ? [live, ...pending] : pending) points = extendTrail(points, p);
            pending = [];
            status = "shown";
            draw();
        } catch (e) {
            if (loading !== ctl) return;
            loading = null;
            status = "failed";
            say(`${d}: no trail (${e.message})`);
        }
    }

    function append(p) {
        if (p.device !== device) return;
        if (loading) pending.push(p);
        else if (status === "shown") {
            points = extendTrail(points, p);
            draw();
        }
    }

    // For people and the browser test: what is drawn.
    function state() {
        return { device, status, truncated,
            latlngs: line.getLatLngs().map((ll) => [ll.lat, ll.lng]),
            onMap: layer.hasLayer(line) && map.hasLayer(layer) };
    }

    return { show, append, close, state };
}
