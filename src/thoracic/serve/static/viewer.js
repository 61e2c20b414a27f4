// thoracic viewer: upload a radiograph to /v1/analyze and draw the findings on a canvas.
// Plain JS, no external resources. The canvas carries data-boxes (boxes drawn), data-labels (the
// label tags drawn, JSON [[x, y, width, height], ...] in canvas pixels, best score first),
// data-heatmap (on/off), data-heatmap-source (detector, or the classifier label whose map is shown)
// and the status line data-state (idle/loading/done/error) for tests and tools. With a multi-label
// classifier the summary lists its findings under P(abnormal), most probable first (bold: at or above
// the finding's threshold); a click on one, or the "heatmap of" picker, shows that finding's map.
"use strict";

(function () {
  const PALETTE = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#aaffc3",
  ];
  const MIN_TEXT_PX = 14;  // smallest label text on screen, CSS pixels
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const state = { result: null, image: null, heatmap: null, lungs: null, urls: [], heatmaps: {}, source: "" };

  function colour(classId) {
    return PALETTE[((classId % PALETTE.length) + PALETTE.length) % PALETTE.length];
  }

  function token() {
    return $("token").value.trim();
  }

  function headers() {
    const t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.dataset.state = kind;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.error) return body.error.message + " (" + response.status + " " + body.error.type + ")";
    } catch (e) { /* not JSON */ }
    return "HTTP " + response.status;
  }

  async function fetchBitmap(url) {
    const r = await fetch(url, { headers: headers(), cache: "no-store" });
    if (!r.ok) throw new Error(await errorText(r));
    return createImageBitmap(await r.blob());
  }

  function minScore() {
    return parseFloat($("min-score").value);
  }

  // Where a label tag [x, y, width, height] goes for a box [x0, y0, x1, y1] on a w x h canvas: above
  // the box, else just inside its top, else below it, else inside its bottom, else further down its
  // side; always whole inside the canvas, covering as little of the tags already placed as it can.
  function placeLabel(box, tw, th, w, h, taken) {
    const [x0, y0, , y1] = box;
    tw = Math.min(tw, w);
    th = Math.min(th, h);
    const x = Math.min(Math.max(x0, 0), w - tw);
    const ys = [];
    if (y0 - th >= 0) ys.push(y0 - th);
    ys.push(y0);
    if (y1 + th <= h) ys.push(y1);
    ys.push(y1 - th);
    for (let y = y0 + th; y < y1 - th; y += th) ys.push(y);
    let best = null;
    for (const y of ys) {
      const yy = Math.min(Math.max(y, 0), h - th);
      const covered = taken.reduce((sum, t) =>
        sum + Math.max(0, Math.min(x + tw, t[0] + t[2]) - Math.max(x, t[0])) *
              Math.max(0, Math.min(yy + th, t[1] + t[3]) - Math.max(yy, t[1])), 0);
      if (best === null || covered < best.covered) best = { covered, tag: [x, yy, tw, th] };
      if (covered === 0) break;
    }
    return best.tag;
  }

  function draw() {
    const res = state.result;
    if (!res || !state.image) return;
    const w = state.image.width, h = state.image.height;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.clearRect(0, 0, w, h);
    ctx.drawImage(state.image, 0, 0, w, h);
    const scale = w / res.width;
    if ($("show-lungs").checked && state.lungs) ctx.drawImage(state.lungs, 0, 0, w, h);
    const heat = $("show-heatmap").checked && state.heatmap;
    if (heat) {
      ctx.save();
      ctx.globalAlpha = 0.6;
      ctx.drawImage(state.heatmap, 0, 0, w, h);
      ctx.restore();
    }
    canvas.dataset.heatmap = heat ? "on" : "off";
    canvas.dataset.heatmapSource = state.source || "detector";
    if ($("show-roi").checked && res.lung_roi) {
      const [x0, y0, x1, y1] = res.lung_roi.box.map((v) => v * scale);
      ctx.save();
      ctx.setLineDash([8, 6]);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#7CFC00";
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.restore();
    }
    let drawn = 0;
    const tags = [];
    if ($("show-boxes").checked) {
      // text at least MIN_TEXT_PX on screen however much the page shrinks the canvas, and ~1/45 of it
      const shrink = w / Math.max(1, canvas.clientWidth || w);
      const font = Math.round(Math.max(w / 45, MIN_TEXT_PX * Math.max(1, shrink)));
      const pad = Math.max(2, Math.round(font / 6));
      ctx.font = font + "px sans-serif";
      ctx.textBaseline = "top";
      // best scores first: they get the best label places and are drawn last, on top
      const shown = res.findings.filter((f) => f.score >= minScore());
      const items = shown.map((f) => {
        const box = f.box.map((v) => v * scale);
        const text = f.label + " " + f.score.toFixed(2);
        const tag = placeLabel(box, ctx.measureText(text).width + 2 * pad, font + 2 * pad, w, h, tags);
        tags.push(tag);
        return { box, text, tag, c: colour(f.class_id) };
      });
      ctx.lineWidth = Math.max(2, w / 250);
      for (const it of items.slice().reverse()) {
        const [x0, y0, x1, y1] = it.box;
        ctx.strokeStyle = it.c;
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      }
      for (const it of items.slice().reverse()) {
        const [tx, ty, tw, th] = it.tag;
        ctx.fillStyle = it.c;
        ctx.fillRect(tx, ty, tw, th);
        ctx.fillStyle = "#000";
        ctx.fillText(it.text, tx + pad, ty + pad, tw - 2 * pad);
        drawn += 1;
      }
    }
    canvas.dataset.labels = JSON.stringify(tags.map((t) => t.map((v) => Math.round(v * 10) / 10)));
    canvas.dataset.boxes = String(drawn);
    fillTable();
    const n = res.findings.length;
    $("shown").textContent = n + " finding" + (n === 1 ? "" : "s") + ", " + drawn + " drawn at score \u2265 " + minScore().toFixed(2)
      + (res.filtered ? " (image filtered as normal: no boxes)" : "");
  }

  function fillTable() {
    const body = $("findings").querySelector("tbody");
    body.replaceChildren();
    for (const f of state.result.findings) {
      if (f.score < minScore()) continue;
      const tr = document.createElement("tr");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colour(f.class_id);
      const cells = [sw, f.label, f.score.toFixed(3), f.box.map((v) => Math.round(v)).join(", ")];
      for (const c of cells) {
        const td = document.createElement("td");
        if (c instanceof Node) { td.className = "swatch"; td.appendChild(c); } else { td.textContent = c; }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function showSummary(res) {
    $("summary").hidden = false;
    $("p-abnormal").textContent = res.p_abnormal === null ? "n/a" : res.p_abnormal.toFixed(3);
    $("filtered").textContent = res.filtered ? "yes (all boxes dropped)" : "no";
    $("size").textContent = res.width + " x " + res.height + " " + res.format + (res.flags.length ? " (" + res.flags.join(", ") + ")" : "");
    $("seconds").textContent = res.seconds.toFixed(2) + " s";
    $("models").textContent = res.models.map((m) => m.role + ": " + m.name + " " + m.sha256.slice(0, 12)).join("; ");
    const dl = $("downloads");
    dl.replaceChildren();
    const kinds = res.dicom ? ["sr", "gsps", "seg"] : [];
    for (const kind of kinds) {
      const a = document.createElement("a");
      a.href = "#";
      a.textContent = "download " + kind.toUpperCase();
      a.addEventListener("click", (ev) => { ev.preventDefault(); download(res.links[kind], res.id + "-" + kind + ".dcm"); });
      dl.appendChild(a);
    }
  }

  // the classifier's findings under P(abnormal), most probable first, and the heatmap picker
  function showClassifier(res) {
    const clf = res.classifier || null;
    const list = $("classifier-findings");
    list.replaceChildren();
    const select = $("heatmap-source");
    while (select.options.length > 1) select.remove(1);
    const maps = clf && res.links.heatmap_finding ? clf.maps : [];
    for (const id of ["classifier-findings-title", "classifier-findings-box"]) $(id).hidden = !clf;
    $("heatmap-source-box").hidden = maps.length === 0;
    if (!clf) return;
    const sorted = Object.entries(clf.findings).sort((a, b) => b[1] - a[1]);
    const order = maps.includes("abnormal") ? ["abnormal"] : [];
    for (const [label, p] of sorted) {
      const li = document.createElement("li");
      li.dataset.label = label;
      const threshold = clf.thresholds[label];
      if (threshold !== undefined && p >= threshold) li.classList.add("above");
      const name = document.createElement(maps.includes(label) ? "button" : "span");
      name.textContent = label;
      if (maps.includes(label)) {
        name.type = "button";
        name.title = "show the classifier's map of " + label;
        name.addEventListener("click", () => { select.value = label; $("show-heatmap").checked = true; pickHeatmap(); });
        order.push(label);
      }
      const value = document.createElement("span");
      value.textContent = p.toFixed(3) + (threshold !== undefined ? " / " + threshold.toFixed(2) : "");
      li.append(name, value);
      list.appendChild(li);
    }
    for (const label of order) {
      const opt = document.createElement("option");
      opt.value = label;
      opt.textContent = label + " (classifier)";
      select.appendChild(opt);
    }
  }

  async function pickHeatmap() {
    const res = state.result;
    const label = $("heatmap-source").value;
    if (!res) return;
    try {
      if (!(label in state.heatmaps)) {
        const url = res.links.heatmap_finding.replace("{label}", encodeURIComponent(label));
        state.heatmaps[label] = await fetchBitmap(url);
      }
      if (state.result !== res) return;  // another image was analyzed meanwhile
      state.heatmap = state.heatmaps[label];
      state.source = label;
      for (const li of $("classifier-findings").children) li.classList.toggle("shown", li.dataset.label === label);
      draw();
    } catch (e) {
      setStatus("Heatmap failed: " + e.message, "error");
    }
  }

  async function download(url, name) {
    try {
      const r = await fetch(url, { headers: headers(), cache: "no-store" });
      if (!r.ok) throw new Error(await errorText(r));
      const href = URL.createObjectURL(await r.blob());
      const a = document.createElement("a");
      a.href = href;
      a.download = name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(href), 10000);
    } catch (e) {
      setStatus("Download failed: " + e.message, "error");
    }
  }

  async function analyze(ev) {
    ev.preventDefault();
    const file = $("file").files[0];
    if (!file) { setStatus("Choose a file first.", "error"); return; }
    sessionStorage.setItem("thoracic-token", token());
    setStatus("Analyzing…", "loading");
    $("analyze").disabled = true;
    canvas.dataset.boxes = "0";
    try {
      const form = new FormData();
      form.append("file", file, "upload");  // the file's own name may carry a patient's name
      const r = await fetch("/v1/analyze", { method: "POST", headers: headers(), body: form });
      if (!r.ok) {
        const retry = r.headers.get("Retry-After");
        throw new Error(await errorText(r) + (retry ? "; retry in " + retry + " s" : ""));
      }
      const res = await r.json();
      const [image, heatmap, lungs] = await Promise.all([
        fetchBitmap(res.links.image),
        res.links.heatmap ? fetchBitmap(res.links.heatmap) : null,
        res.links.lungs ? fetchBitmap(res.links.lungs) : null,
      ]);
      Object.assign(state, { result: res, image, heatmap, lungs, heatmaps: { "": heatmap }, source: "" });
      $("heatmap-source").value = "";
      showSummary(res);
      showClassifier(res);
      draw();
      setStatus("Done: " + $("shown").textContent + ".", "done");
    } catch (e) {
      setStatus("Failed: " + e.message, "error");
    } finally {
      $("analyze").disabled = false;
    }
  }

  async function version() {
    try {
      const r = await fetch("/health", { cache: "no-store" });
      if (r.ok) $("version").textContent = "v" + (await r.json()).version;
    } catch (e) { /* offline */ }
  }

  $("token").value = sessionStorage.getItem("thoracic-token") || "";
  $("upload-form").addEventListener("submit", analyze);
  for (const id of ["show-boxes", "show-heatmap", "show-lungs", "show-roi"]) $(id).addEventListener("change", draw);
  window.addEventListener("resize", draw);  // label size follows the size the canvas is shown at
  $("heatmap-source").addEventListener("change", pickHeatmap);
  $("min-score").addEventListener("input", () => { $("min-score-value").textContent = minScore().toFixed(2); draw(); });
  version();
})();
