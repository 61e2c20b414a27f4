// thoracic viewer: upload a radiograph to /v1/analyze and draw the findings on a canvas.
// Plain JS, no external resources. The canvas carries data-boxes (boxes drawn), data-heatmap
// (on/off) and the status line data-state (idle/loading/done/error) for tests and tools.
"use strict";

(function () {
  const PALETTE = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#aaffc3",
  ];
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const state = { result: null, image: null, heatmap: null, lungs: null, urls: [] };

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
    if ($("show-boxes").checked) {
      const font = Math.max(12, Math.round(w / 45));
      ctx.font = font + "px sans-serif";
      ctx.textBaseline = "top";
      // lowest scores first so the best boxes end up on top
      const shown = res.findings.filter((f) => f.score >= minScore()).slice().reverse();
      for (const f of shown) {
        const [x0, y0, x1, y1] = f.box.map((v) => v * scale);
        const c = colour(f.class_id);
        ctx.lineWidth = Math.max(2, w / 250);
        ctx.strokeStyle = c;
        ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
        const text = f.label + " " + f.score.toFixed(2);
        const tw = ctx.measureText(text).width + 6;
        const ty = y0 - font - 4 >= 0 ? y0 - font - 4 : y0;
        ctx.fillStyle = c;
        ctx.fillRect(x0, ty, tw, font + 4);
        ctx.fillStyle = "#000";
        ctx.fillText(text, x0 + 3, ty + 2);
        drawn += 1;
      }
    }
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
      Object.assign(state, { result: res, image, heatmap, lungs });
      showSummary(res);
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
  $("min-score").addEventListener("input", () => { $("min-score-value").textContent = minScore().toFixed(2); draw(); });
  version();
})();
