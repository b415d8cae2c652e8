// token.js - console tokens minted with Node's own crypto, never with gpsrelay's signing
// code, so a bug in one cannot hide a bug in the other. One random secret per test run.
"use strict";

const crypto = require("node:crypto");

const SECRET = crypto.randomBytes(32).toString("hex"); // 64 bytes of key as text
const now = () => Math.floor(Date.now() / 1000);
const b64url = (buf) => Buffer.from(buf).toString("base64url");

function mint(claims, { alg = "HS256", key = SECRET, header = null, signature = null } = {}) {
    const h = b64url(JSON.stringify(header || { alg, typ: "JWT" }));
    const p = b64url(JSON.stringify(claims));
    const hash = { HS256: "sha256", HS512: "sha512" }[alg];
    const sig = signature !== null ? signature
        : hash ? b64url(crypto.createHmac(hash, key).update(`${h}.${p}`).digest()) : "";
    return `${h}.${p}.${sig}`;
}

const claims = (agencies, extra = {}) => ({ agencies, exp: now() + 3600, sub: "test", ...extra });

module.exports = { SECRET, now, b64url, mint, claims };
