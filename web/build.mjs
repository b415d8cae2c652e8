// build.mjs - bundles the console into dist/ (or the folder given as the first argument):
// app.js and app.css from src/ (phoenix and Leaflet from node_modules, no CDN), plus
// index.html and config.js copied as they are, so an operator can edit config.js in place.
// usage: npm ci && npm run build        (dist/ is what static_dir serves; git ignores it)
import * as esbuild from "esbuild";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] || path.join(here, "dist"));

fs.mkdirSync(out, { recursive: true });
await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: "src/main.js" },
    bundle: true,
    minify: true,
    sourcemap: true,
    target: ["es2020"],
    outdir: out,
    // Leaflet's CSS names a few small images (layer switcher, default marker): inline them.
    loader: { ".png": "dataurl", ".svg": "dataurl" },
    legalComments: "linked",
    logLevel: "warning",
});
for (const f of ["index.html", "config.js", "favicon.svg"])
    fs.copyFileSync(path.join(here, f), path.join(out, f));
console.log(`console built in ${out}`);
