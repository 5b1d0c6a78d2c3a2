// storetwin dashboard: the floor with live tracks, open carts, the review queue, receipts and health.
// Everything comes from the store's API over the same origin (the sign-in cookie); no CDN, no video.
"use strict";
const S = {plan: null, tracks: new Map(), trails: new Map(), carts: new Map(), t: 0, health: {}, latency: null,
           open: null, replay: null, dragging: false};
const $ = (id) => document.getElementById(id);
const api = async (path, opts = {}) => {
  const r = await fetch(path, {credentials: "same-origin", headers: {"Content-Type": "application/json"}, ...opts});
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).slice(0, 200)}`);
  return r.json();
};
const money = (v) => (S.plan ? S.plan.currency + " " : "") + Number(v).toFixed(2);
const colour = (key) => { let h = 0; for (const c of String(key)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${(h * 137.508) % 360},70%,60%)`; };
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

// -- floor ----------------------------------------------------------------------------------------
// COCO's 17 joints: the bones a skeleton is drawn with (head, arms, trunk, legs)
const BONES = [[0, 1], [0, 2], [1, 3], [2, 4], [5, 6], [5, 7], [7, 9], [6, 8], [8, 10], [5, 11], [6, 12], [11, 12],
               [11, 13], [13, 15], [12, 14], [14, 16]];
function floorXY(x, y) {
  const c = $("floor"), f = S.plan.floor, pad = 20;
  const k = Math.min((c.width - 2 * pad) / f.width_m, (c.height - 2 * pad) / f.depth_m);
  return [pad + x * k, c.height - pad - y * k, k];
}
function drawFloor() {
  const c = $("floor"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!S.plan) return;
  const f = S.plan.floor, [x0, y0] = floorXY(0, 0), [x1, y1] = floorXY(f.width_m, f.depth_m);
  g.strokeStyle = "#3a4a5a"; g.lineWidth = 2; g.strokeRect(x0, y1, x1 - x0, y0 - y1);
  g.fillStyle = "#24313e"; g.strokeStyle = "#3f5366";
  for (const u of S.plan.units) {
    g.beginPath(); u.corners.forEach(([x, y], i) => { const [px, py] = floorXY(x, y); i ? g.lineTo(px, py) : g.moveTo(px, py); });
    g.closePath(); g.fill(); g.stroke();
    const [cx, cy] = floorXY(u.corners.reduce((a, p) => a + p[0], 0) / 4, u.corners.reduce((a, p) => a + p[1], 0) / 4);
    g.fillStyle = "#8aa0b5"; g.font = "11px sans-serif"; g.fillText(u.id, cx - 4, cy + 4); g.fillStyle = "#24313e";
  }
  for (const gt of S.plan.gates) {
    const [ax, ay] = floorXY(...gt.a), [bx, by] = floorXY(...gt.b);
    g.strokeStyle = gt.kind === "entry" ? "#4caf7a" : "#d9774a"; g.lineWidth = 4;
    g.beginPath(); g.moveTo(ax, ay); g.lineTo(bx, by); g.stroke();
  }
  g.fillStyle = "#56687a";
  for (const cam of S.plan.cameras) { const [px, py] = floorXY(cam.x, cam.y); g.fillRect(px - 3, py - 3, 6, 6); }
  for (const [id, trail] of S.trails) {
    const tr = S.tracks.get(id); if (!tr) continue;
    g.strokeStyle = colour(tr.account_id || id); g.globalAlpha = 0.35; g.lineWidth = 2; g.beginPath();
    trail.forEach(([x, y], i) => { const [px, py] = floorXY(x, y); i ? g.lineTo(px, py) : g.moveTo(px, py); });
    g.stroke(); g.globalAlpha = 1;
  }
  for (const tr of S.tracks.values()) {
    const [px, py, k] = floorXY(tr.x, tr.y);
    g.strokeStyle = colour(tr.account_id || tr.track_id); g.lineWidth = 3;
    const sk = tr.skeleton || [];
    if (sk.length === 17) {     // the skeleton from above: its bones (the body's dot drawn smaller on it)
      g.lineWidth = 2;
      for (const [a, b] of BONES) {
        if (!sk[a] || !sk[b]) continue;
        const [ax, ay] = floorXY(sk[a][0], sk[a][1]), [bx, by] = floorXY(sk[b][0], sk[b][1]);
        g.beginPath(); g.moveTo(ax, ay); g.lineTo(bx, by); g.stroke();
      }
      g.lineWidth = 3;
    }
    for (const [hx, hy, hz] of tr.hands || []) {      // the arms: from the body to each wrist seen, its height as the dot's size
      const [qx, qy] = floorXY(hx, hy);
      g.beginPath(); g.moveTo(px, py); g.lineTo(qx, qy); g.stroke();
      g.beginPath(); g.arc(qx, qy, 2 + 2 * Math.max(0, hz), 0, 2 * Math.PI); g.stroke();
    }
    g.fillStyle = colour(tr.account_id || tr.track_id);
    g.beginPath(); g.arc(px, py, sk.length === 17 ? 4 : Math.max(5, 0.15 * k), 0, 2 * Math.PI); g.fill();
    g.fillStyle = "#fff"; g.font = "11px sans-serif"; g.fillText(tr.account_id || `#${tr.track_id}`, px + 9, py - 8);
  }
}

// -- panels ---------------------------------------------------------------------------------------
function renderCarts() {
  const body = $("carts").tBodies[0]; body.innerHTML = "";
  for (const [acc, c] of [...S.carts].sort()) {
    const tr = body.insertRow(); tr.id = `cart-${acc}`; tr.dataset.wall = c.wall || ""; tr.dataset.shownWall = c.shown || "";
    const items = Object.entries(c.items).map(([s, q]) => `${q}× ${esc(S.plan?.catalog[s]?.name || s)}`).join(", ");
    tr.innerHTML = `<td style="color:${colour(acc)}">${esc(acc)}</td><td class="items">${items || "<small>empty</small>"}</td>`;
    if (c.fresh) { tr.classList.add("flash"); c.fresh = false; }
  }
  $("cart-count").textContent = `(${S.carts.size})`;
}
const latest = {};    // a panel shows the answer to its newest request only (answers can come back out of order)
async function fresh(panel, path) {
  const n = latest[panel] = (latest[panel] || 0) + 1;
  const data = await api(path);
  return n === latest[panel] ? data : null;
}
async function renderQueue() {
  const q = await fresh("queue", "/api/review");
  if (q === null) return;
  $("queue-count").textContent = `(${q.length})`;
  $("queue").innerHTML = q.map((r) => `<li id="review-${r.receipt_id}" data-id="${r.receipt_id}"><b>${esc(r.account_id)}</b> ${money(r.total)}
    <small>${esc(r.reason)}</small></li>`).join("") || "<li><small>nothing to review</small></li>";
  for (const li of $("queue").querySelectorAll("li[data-id]")) li.onclick = () => openEvidence(Number(li.dataset.id));
}
async function renderReceipts() {
  const all = await fresh("receipts", "/api/receipts");
  if (all === null) return;
  const rs = all.slice(-12).reverse();
  const body = $("receipts").tBodies[0];
  body.innerHTML = rs.map((r) => `<tr id="receipt-${r.receipt_id}" data-status="${r.status}" data-version="${r.version}">
    <td>${esc(r.account_id)}</td><td>${r.lines.map((l) => `${l.qty}× ${esc(l.sku)}`).join(", ")}</td><td>${money(r.total)}</td>
    <td class="status-${r.status.replace(" ", "-")}">${r.status}${r.version > 1 ? ` v${r.version}` : ""}</td></tr>`).join("");
}
function renderHealth() {
  const h = S.health || {}, fps = h.fps || {};
  const cams = Object.entries(fps).map(([c, v]) => `<span class="pill ${v > 0 ? "ok" : "bad"}">${esc(c)} ${Number(v).toFixed(1)}</span>`).join(" ");
  $("health").innerHTML = (cams ? `<div>cameras ${cams}</div>` : "") +
    (h.cells_reporting !== undefined ? `<div>load cells reporting: ${h.cells_reporting}</div>` : "") +
    (h.busy !== undefined ? `<div>runtime busy ${(100 * h.busy).toFixed(0)} %, lag ${h.lag_s ?? "–"} s</div>` : "") +
    (h.mode ? `<div>${esc(h.mode)}</div>` : "");
  const L = S.latency, c = $("latency"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!L) return;
  $("lat-clock").textContent = `(${L.n} updates, p50 ${L.p50_s ?? "–"} s, p95 ${L.p95_s ?? "–"} s; ${L.clock === "wall" ? "wall clock" : "decision delay, stream time"})`;
  const m = Math.max(1, ...L.counts), w = c.width / L.counts.length;
  L.counts.forEach((n, i) => {
    g.fillStyle = L.edges_s[i + 1] <= 0.5 ? "#4caf7a" : "#d9774a";
    const hgt = (c.height - 20) * n / m; g.fillRect(i * w + 2, c.height - 14 - hgt, w - 4, hgt);
    g.fillStyle = "#8aa0b5"; g.font = "9px sans-serif"; g.fillText(L.edges_s[i], i * w + 2, c.height - 3);
  });
}
async function openEvidence(id) {
  S.open = id;
  const e = await api(`/api/review/${id}`), r = e.receipt, box = $("evidence");
  box.hidden = false;
  // a provisional update's weight trace and the shoppers near the bin come with the final one that settles it
  const settling = new Map(e.updates.filter((u) => u.settles).map((u) => [u.settles, u]));
  const ups = e.updates.filter((u) => u.delta_qty !== 0).map((u) => {
    const f = settling.get(u.update_id); if (!f || !f.evidence) return u;
    return {...u, evidence: {...u.evidence, trace: u.evidence.trace || f.evidence.trace, near: u.evidence.near || f.evidence.near}};
  });
  box.innerHTML = `<h3>Receipt ${id}: ${esc(r.account_id)}, ${money(r.total)} <span class="status-${r.status.replace(" ", "-")}">${r.status}</span></h3>
    <div><small>${esc(r.reason)}</small></div>
    <table>${r.lines.map((l) => `<tr><td>${l.qty}×</td><td>${esc(l.sku)}</td><td>${money(l.unit_price)}</td></tr>`).join("")}</table>
    ${ups.map((u, i) => `<div class="update"><small>${u.delta_qty > 0 ? "+" : ""}${u.delta_qty} ${esc(u.sku)} at ${u.t_interaction.toFixed(1)} s,
      confidence ${Number(u.confidence).toFixed(2)}; candidates: ${(u.evidence.candidates || []).map((c) =>
      `${esc(c.bin || "")} ${esc(JSON.stringify(c.items || ""))} ${c.residual_g ?? ""} g`).join("; ")};
      near: ${(u.evidence.near || []).map((n) => `${esc(n.account || "#" + n.track)} ${n.distance_m} m`).join(", ") || "–"}</small>
      ${(u.evidence.trace || []).length > 1 ? `<canvas class="trace" id="trace-${i}" width="340" height="60"></canvas>` : ""}
      ${(u.evidence.near || []).some((n) => n.skeleton) ? `<canvas class="trace" id="near-${i}" width="340" height="110"></canvas>` : ""}</div>`).join("")}
    <div><input id="why" placeholder="why (kept in the event log)" size="30"></div>
    <div><select id="line-sku">${r.lines.map((l) => `<option>${esc(l.sku)}</option>`).join("")}</select>
      <input id="line-qty" type="number" min="0" value="1" style="width:4em"></div>
    <button id="approve-${id}">Approve</button><button id="change-${id}">Set quantity</button>
    <button class="warn" id="refund-${id}">Refund line</button>`;
  ups.forEach((u, i) => { if ($(`trace-${i}`)) drawTrace($(`trace-${i}`), u.evidence.trace); });
  ups.forEach((u, i) => { if ($(`near-${i}`)) drawNear($(`near-${i}`), u.evidence.near); });
  const act = async (action, extra) => {
    const why = $("why").value.trim() || (action === "approve" ? "checked on the dashboard" : "");
    if (!why) { $("why").focus(); return; }
    await api(`/api/review/${id}/${action}`, {method: "POST", body: JSON.stringify({why, ...extra})});
    await Promise.all([renderQueue(), renderReceipts(), openEvidence(id)]);
  };
  $(`approve-${id}`).onclick = () => act("approve", {});
  $(`change-${id}`).onclick = () => act("change", {sku: $("line-sku").value, qty: Number($("line-qty").value)});
  $(`refund-${id}`).onclick = () => act("refund", {sku: $("line-sku").value, qty: Number($("line-qty").value)});
}
function drawTrace(c, pts) {
  const g = c.getContext("2d"); if (pts.length < 2) return;
  const ts = pts.map((p) => p[0]), gs = pts.map((p) => p[1]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts), g0 = Math.min(...gs), g1 = Math.max(...gs) + 1e-6;
  g.strokeStyle = "#6fb3ff"; g.beginPath();
  pts.forEach(([t, v], i) => { const x = 4 + (c.width - 8) * (t - t0) / (t1 - t0 || 1), y = c.height - 4 - (c.height - 8) * (v - g0) / (g1 - g0);
    i ? g.lineTo(x, y) : g.moveTo(x, y); });
  g.stroke(); g.fillStyle = "#8aa0b5"; g.font = "9px sans-serif"; g.fillText(`${(g1 - g0).toFixed(0)} g`, 4, 10);
}

function drawNear(c, near) {
  // the skeletons nearest the bin at the step, from the side (along the floor's x, height up)
  const g = c.getContext("2d"), sks = near.filter((n) => n.skeleton).slice(0, 3);     // the three nearest
  const pts = sks.flatMap((n) => n.skeleton.joints.filter(Boolean)); if (!pts.length) return;
  const x0 = Math.min(...pts.map((p) => p[0])) - 0.3, x1 = Math.max(...pts.map((p) => p[0])) + 0.3;
  const s = Math.min((c.width - 8) / (x1 - x0), (c.height - 14) / 2.0);
  const at = (p) => [4 + (p[0] - x0) * s, c.height - 4 - p[2] * s];
  g.strokeStyle = "#56687a"; g.beginPath(); g.moveTo(0, c.height - 4); g.lineTo(c.width, c.height - 4); g.stroke();
  for (const n of sks) {
    const j = n.skeleton.joints; g.strokeStyle = colour(n.account || n.track); g.lineWidth = 2;
    for (const [a, b] of BONES) { if (!j[a] || !j[b]) continue; const [ax, ay] = at(j[a]), [bx, by] = at(j[b]);
      g.beginPath(); g.moveTo(ax, ay); g.lineTo(bx, by); g.stroke(); }
    const head = j.find(Boolean); const [hx, hy] = at(head);
    g.fillStyle = colour(n.account || n.track); g.font = "9px sans-serif"; g.fillText(n.account || `#${n.track}`, hx + 4, Math.max(10, hy - 4));
  }
  g.fillStyle = "#8aa0b5"; g.font = "9px sans-serif"; g.fillText("from the side, at the step", 4, 10);
}

// -- the live stream ------------------------------------------------------------------------------
function applySnapshot(s) {
  S.tracks = new Map(s.tracks.map((t) => [t.track_id, t])); S.trails = new Map();
  S.carts = new Map(s.carts.map((c) => [c.account_id, {items: c.items}]));
  S.health = s.health; S.latency = s.latency; S.t = s.t;
}
function onEvent(ev) {
  if (ev.type === "batch") { for (const e of ev.events) onEvent(e); return; }
  S.t = ev.t ?? S.t;
  if (ev.type === "snapshot") { applySnapshot(ev.data); renderCarts(); renderHealth(); renderQueue(); renderReceipts(); }
  else if (ev.type === "track") {
    const d = ev.data;
    if (d.ended) { S.tracks.delete(d.track_id); S.trails.delete(d.track_id); }
    else {
      const before = S.tracks.get(d.track_id);     // a forecast between ticks keeps the arms last seen
      if (before && (!d.hands || !d.hands.length) && Math.abs(d.t - before.t) < 0.3) d.hands = before.hands;
      if (before && (!d.skeleton || !d.skeleton.length) && Math.abs(d.t - before.t) < 0.3) d.skeleton = before.skeleton;
      S.tracks.set(d.track_id, d);
      const tr = S.trails.get(d.track_id) || []; tr.push([d.x, d.y]); if (tr.length > 60) tr.shift(); S.trails.set(d.track_id, tr);
    }
  } else if (ev.type === "cart_update") {
    const d = ev.data;
    S.carts.set(d.account_id, {items: d.cart, wall: ev.wall, shown: Date.now() / 1000, fresh: true});
    renderCarts();
  } else if (ev.type === "receipt") { S.carts.delete(ev.data.account_id); renderCarts(); renderQueue(); renderReceipts(); }
  else if (ev.type === "review") { renderQueue(); renderReceipts(); if (S.open === ev.data.receipt_id) openEvidence(S.open); }
  else if (ev.type === "health") { S.health = ev.data; api("/api/health").then((h) => { S.latency = h.latency; renderHealth(); }); }
  else if (ev.type === "reset") { api("/api/state").then((s) => { applySnapshot(s); renderCarts(); renderHealth(); renderQueue(); renderReceipts(); }); }
}
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/stream`);
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill ok"; };
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => { $("conn").textContent = "reconnecting"; $("conn").className = "pill bad"; setTimeout(connect, 1000); };
}
function tick() {
  $("store-t").textContent = S.t.toFixed(1);
  if (S.replay && !S.dragging) { $("slider").value = S.t; $("slider-t").textContent = S.t.toFixed(1); }
  drawFloor(); requestAnimationFrame(tick);
}

async function main() {
  S.plan = await api("/api/store");
  const me = await api("/api/whoami");
  $("store-name").textContent = `storetwin: ${S.plan.name}`; $("who").textContent = `${me.name} (${me.role})`;
  if (S.plan.replay) {
    S.replay = S.plan.replay; $("mode").textContent = "replay"; $("replay-bar").hidden = false;
    $("slider").max = S.replay.duration_s; $("slider-end").textContent = S.replay.duration_s.toFixed(1);
    $("slider").oninput = () => { S.dragging = true; $("slider-t").textContent = Number($("slider").value).toFixed(1); };
    $("slider").onchange = async () => { await api("/api/replay/seek", {method: "POST", body: JSON.stringify({t: Number($("slider").value)})}); S.dragging = false; };
  }
  connect(); tick();
  setInterval(() => { if (!S.replay) api("/api/health").then((h) => { S.latency = h.latency; renderHealth(); }).catch(() => {}); }, 5000);
}
main().catch((e) => { document.body.insertAdjacentHTML("afterbegin", `<pre style="color:#f66">${esc(e)}</pre>`); });
