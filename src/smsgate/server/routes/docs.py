"""``/docs``: the API reference, rendered in the browser from ``/openapi.json``.

FastAPI's own pages (Swagger UI, ReDoc) load their scripts from a CDN, so on a machine without
internet access they stay blank. This page is self-contained (a few dozen lines of script, no
third-party assets): it lists every operation with its parameters, request body, responses and
the schemas they use. For a try-it-out console, load ``/openapi.json`` into any OpenAPI tool.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>smsgate API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1em;color:#222}
code,.mono{font-family:ui-monospace,monospace;font-size:13px}
details{border:1px solid #ddd;border-radius:6px;margin:.4em 0;padding:.3em .7em}
summary{cursor:pointer}
.m{display:inline-block;width:4.5em;font-weight:700}
.get{color:#1565c0}.post{color:#2e7d32}.delete{color:#c62828}.put,.patch{color:#ef6c00}
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ddd;padding:2px 6px;
text-align:left;vertical-align:top}th{background:#f6f6f6}.muted{color:#777}
</style></head><body>
<h1 id="title">smsgate API</h1><p id="about" class="muted">Loading openapi.json&hellip;</p>
<h2>Operations</h2><div id="ops"></div><h2>Schemas</h2><div id="schemas"></div>
<script>
"use strict";
function el(tag, attrs, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const kid of kids) node.append(kid instanceof Node ? kid : String(kid ?? ""));
  return node;
}
function typeOf(s) {
  if (!s) return "";
  if (s.$ref) { const name = s.$ref.split("/").pop(); return el("a", {href: "#schema-" + name}, name); }
  if (s.anyOf || s.oneOf) {
    const span = el("span");
    (s.anyOf || s.oneOf).forEach((x, i) => { if (i) span.append(" | "); span.append(typeOf(x)); });
    return span;
  }
  if (s.enum) return s.enum.map(v => JSON.stringify(v)).join(" | ");
  if (s.type === "array") { const span = el("span", {}, "array of "); span.append(typeOf(s.items)); return span; }
  if (s.type === "object" && s.additionalProperties && s.additionalProperties !== true) {
    const span = el("span", {}, "map of "); span.append(typeOf(s.additionalProperties)); return span;
  }
  return (s.type || "any") + (s.format ? " (" + s.format + ")" : "");
}
function limits(s) {
  const out = [];
  for (const k of ["minLength", "maxLength", "minimum", "maximum", "minItems", "maxItems", "default"])
    if (s && s[k] !== undefined) out.push(k + " " + JSON.stringify(s[k]));
  return out.join(", ");
}
function table(head, rows) {
  const t = el("table", {}, el("tr", {}, ...head.map(h => el("th", {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map(c => el("td", {}, c))));
  return t;
}
fetch("openapi.json").then(r => r.json()).then(api => {
  document.getElementById("title").textContent = api.info.title + " " + api.info.version;
  document.getElementById("about").textContent = api.info.description || "";
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(api.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const box = el("details", {}, el("summary", {}, el("span", {class: "m " + method}, method.toUpperCase()),
        el("code", {}, path), " ", el("span", {class: "muted"}, op.summary || "")));
      if (op.description) box.append(el("p", {}, op.description));
      if (op.security) box.append(el("p", {}, "Needs Authorization: Bearer sgk_..."));
      if (op.parameters) box.append(table(["parameter", "in", "type", "required", "notes"],
        op.parameters.map(p => [el("code", {}, p.name), p.in, typeOf(p.schema), p.required ? "yes" : "",
          [p.description || "", limits(p.schema)].filter(Boolean).join("; ")])));
      const body = op.requestBody && op.requestBody.content["application/json"];
      if (body) { const p = el("p", {}, "Body: "); p.append(typeOf(body.schema)); box.append(p); }
      box.append(table(["status", "meaning", "body"], Object.entries(op.responses || {}).map(([code, r]) => {
        const json = r.content && r.content["application/json"];
        return [code, r.description || "", json ? typeOf(json.schema) : ""];
      })));
      ops.append(box);
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, s] of Object.entries((api.components || {}).schemas || {})) {
    const box = el("details", {id: "schema-" + name}, el("summary", {}, el("code", {}, name)));
    if (s.description) box.append(el("p", {}, s.description));
    const required = new Set(s.required || []);
    if (s.properties) box.append(table(["field", "type", "required", "notes"],
      Object.entries(s.properties).map(([k, p]) => [el("code", {}, k), typeOf(p), required.has(k) ? "yes" : "",
        [p.description || "", limits(p)].filter(Boolean).join("; ")])));
    else box.append(el("p", {}, typeOf(s)));
    schemas.append(box);
  }
  if (location.hash) { const t = document.querySelector(location.hash); if (t) { t.open = true; t.scrollIntoView(); } }
}).catch(e => { document.getElementById("about").textContent = "Could not load openapi.json: " + e; });
</script></body></html>
"""


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return HTMLResponse(_PAGE)
