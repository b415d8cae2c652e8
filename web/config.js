// config.js - site settings for the console, read before the app starts. Edit the copy in
// the folder static_dir serves (dist/config.js) to change them without rebuilding.
// URL parameters override them: ?agency=county-ems&token=...&tiles=https://.../{z}/{x}/{y}.png
window.GPSRELAY_CONFIG = {
    // Map tiles, a Leaflet URL template. Empty: no tiles (a plain background with a
    // latitude/longitude grid), which also works with no network at all.
    // e.g. "https://tile.openstreetmap.org/{z}/{x}/{y}.png" (mind the tile server's usage policy)
    tiles: "",
    tilesAttribution: "",
    // Where the map looks before the first position arrives.
    center: [40.7128, -74.006],
    zoom: 11,
};
