/* iotrace report: draws the figure specs embedded in the page on canvases.
   No library, no network. Times in the specs are µs from the trace's first record. */
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message)); });
  var DPR = window.devicePixelRatio || 1;
  var FONT = "12px system-ui, sans-serif";
  var figs = {};
  var view = null; /* shared [t0, t1] of the timeline and in-flight plots, µs */
  var span = 0;

  function spec(id) {
    var el = document.querySelector('script[data-for="' + id + '"]');
    return el ? JSON.parse(el.textContent) : null;
  }

  function canvas(div) {
    var c = div.querySelector("canvas");
    if (!c) {
      c = document.createElement("canvas");
      div.appendChild(c);
    }
    var w = div.clientWidth, h = div.clientHeight;
    c.width = Math.round(w * DPR);
    c.height = Math.round(h * DPR);
    c.style.width = w + "px";
    c.style.height = h + "px";
    var g = c.getContext("2d");
    g.setTransform(DPR, 0, 0, DPR, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = FONT;
    return { c: c, g: g, w: w, h: h };
  }

  function tip(div) {
    var t = div.querySelector(".tip");
    if (!t) {
      t = document.createElement("div");
      t.className = "tip";
      div.appendChild(t);
    }
    return t;
  }

  /* --- axes ---------------------------------------------------------------- */

  function niceStep(range, n) {
    var raw = range / Math.max(n, 1);
    var p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  /* A time in µs, in the unit that suits the visible range. */
  function timeFmt(range, step) {
    var unit = range >= 2e6 ? [1e6, "s"] : range >= 2e3 ? [1e3, "ms"] : [1, "µs"];
    var dec = Math.max(0, Math.ceil(-Math.log10(step / unit[0]) - 1e-9));
    return function (us) { return (us / unit[0]).toFixed(Math.min(dec, 6)) + " " + unit[1]; };
  }

  function latFmt(us) {
    if (us >= 1e6) return +(us / 1e6).toPrecision(3) + " s";
    if (us >= 1e3) return +(us / 1e3).toPrecision(3) + " ms";
    if (us >= 1) return +us.toPrecision(3) + " µs";
    return +(us * 1e3).toPrecision(3) + " ns";
  }

  function timeAxis(g, x, y, w, t0, t1, gridTop, gridBottom) {
    var step = niceStep(t1 - t0, Math.max(2, Math.floor(w / 110)));
    var fmt = timeFmt(t1 - t0, step);
    g.strokeStyle = "#e6e6e6";
    g.fillStyle = "#444";
    g.textAlign = "center";
    g.textBaseline = "top";
    for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      var px = x + ((t - t0) / (t1 - t0)) * w;
      g.beginPath();
      g.moveTo(Math.round(px) + 0.5, gridTop);
      g.lineTo(Math.round(px) + 0.5, gridBottom);
      g.stroke();
      g.fillText(fmt(t), px, y);
    }
  }

  function legend(div, items, onToggle) {
    var box = div.nextElementSibling;
    if (!box || !box.classList.contains("legend")) {
      box = document.createElement("div");
      box.className = "legend";
      div.parentNode.insertBefore(box, div.nextSibling);
    }
    box.innerHTML = "";
    items.forEach(function (it, i) {
      var k = document.createElement("span");
      k.className = "key" + (onToggle ? " toggle" : "") + (it.off ? " off" : "");
      var sw = document.createElement("i");
      sw.style.background = it.color;
      k.appendChild(sw);
      k.appendChild(document.createTextNode(it.label));
      if (it.title) k.title = it.title;
      if (onToggle) k.addEventListener("click", function () { onToggle(i); });
      box.appendChild(k);
    });
  }

  /* Drag to zoom the shared time view, double-click to reset. */
  function zoomable(div, left, right, redrawAll) {
    var start = null, sel = null;
    div.addEventListener("mousedown", function (e) {
      var r = div.getBoundingClientRect();
      var x = e.clientX - r.left;
      if (x < left || x > r.width - right) return;
      start = x;
      sel = document.createElement("div");
      sel.style.cssText = "position:absolute;top:0;bottom:0;background:rgba(70,120,200,.15);pointer-events:none";
      sel.style.left = x + "px";
      sel.style.width = "0px";
      div.appendChild(sel);
    });
    window.addEventListener("mousemove", function (e) {
      if (start === null) return;
      var r = div.getBoundingClientRect();
      var x = Math.max(left, Math.min(r.width - right, e.clientX - r.left));
      sel.style.left = Math.min(x, start) + "px";
      sel.style.width = Math.abs(x - start) + "px";
    });
    window.addEventListener("mouseup", function (e) {
      if (start === null) return;
      var r = div.getBoundingClientRect();
      var x = Math.max(left, Math.min(r.width - right, e.clientX - r.left));
      var w = r.width - left - right;
      if (Math.abs(x - start) > 4) {
        var a = view[0] + ((Math.min(x, start) - left) / w) * (view[1] - view[0]);
        var b = view[0] + ((Math.max(x, start) - left) / w) * (view[1] - view[0]);
        view = [a, Math.max(b, a + 1)];
        redrawAll();
      }
      sel.remove();
      start = null;
    });
    div.addEventListener("dblclick", function () {
      view = [0, span];
      redrawAll();
    });
  }

  function shadeLost(g, lost, x, w, top, bottom, t0, t1, label) {
    g.fillStyle = "rgba(215,40,40,.18)";
    lost.forEach(function (r) {
      var a = x + ((r[0] - t0) / (t1 - t0)) * w;
      var b = x + ((r[1] - t0) / (t1 - t0)) * w;
      if (b < x || a > x + w) return;
      a = Math.max(a, x);
      b = Math.min(Math.max(b, a + 2), x + w);
      g.fillRect(a, top, b - a, bottom - top);
      if (label && b - a > 24) {
        g.fillStyle = "#a00";
        g.textAlign = "left";
        g.textBaseline = "top";
        g.fillText("lost", a + 3, top + 2);
        g.fillStyle = "rgba(215,40,40,.18)";
      }
    });
  }

  /* --- timeline ------------------------------------------------------------- */

  function decodeLanes(f) {
    return f.lanes.map(function (ln, i) {
      var c = f.calls[i] || [], o = f.off[i] || [];
      var cs = [], cd = [], cf = [], os = [], od = [];
      var t = 0, k;
      for (k = 0; k < c.length; k += 3) { t += c[k]; cs.push(t); cd.push(c[k + 1]); cf.push(c[k + 2]); }
      t = 0;
      for (k = 0; k < o.length; k += 2) { t += o[k]; os.push(t); od.push(o[k + 1]); }
      return { cs: cs, cd: cd, cf: cf, os: os, od: od };
    });
  }

  function drawTimeline(div, f) {
    var L = 230, R = 12, TOP = 22, LH = 20;
    var k = canvas(div), g = k.g, w = k.w - L - R;
    var t0 = view[0], t1 = view[1], sx = w / (t1 - t0);
    var rows = [], last = null;
    f.lanes.forEach(function (ln, i) {
      if (ln.process !== last) { rows.push({ proc: ln.process }); last = ln.process; }
      rows.push({ lane: i, label: ln.label });
    });
    var bottom = TOP + rows.length * LH;
    timeAxis(g, L, 4, w, t0, t1, TOP, bottom);
    var data = f._lanes;
    rows.forEach(function (r, ri) {
      var y = TOP + ri * LH;
      g.textBaseline = "middle";
      if (r.proc !== undefined) {
        g.fillStyle = "#f4f4f4";
        g.fillRect(0, y + 2, k.w - R, LH - 4);
        g.fillStyle = "#222";
        g.textAlign = "left";
        g.font = "bold " + FONT;
        g.fillText(r.proc, 4, y + LH / 2, L + w - 8);
        g.font = FONT;
        return;
      }
      g.fillStyle = "#333";
      g.textAlign = "right";
      g.fillText(r.label, L - 8, y + LH / 2, L - 16);
      var d = data[r.lane], j, a, b, lastPx;
      /* off-CPU: a grey band along the bottom of the lane */
      g.fillStyle = "#8d8d8d";
      lastPx = -1;
      for (j = 0; j < d.os.length; j++) {
        a = (d.os[j] - t0) * sx; b = (d.os[j] + d.od[j] - t0) * sx;
        if (b < 0 || a > w) continue;
        a = Math.max(a, 0); b = Math.min(Math.max(b, a + 1), w);
        if (Math.floor(b) <= lastPx) continue;
        lastPx = Math.floor(b);
        g.fillRect(L + a, y + 14, b - a, 4);
      }
      /* calls: coloured by family above it */
      var fam = -1;
      lastPx = -1;
      for (j = 0; j < d.cs.length; j++) {
        a = (d.cs[j] - t0) * sx; b = (d.cs[j] + d.cd[j] - t0) * sx;
        if (b < 0 || a > w) continue;
        a = Math.max(a, 0); b = Math.min(Math.max(b, a + 1), w);
        if (d.cf[j] !== fam) { fam = d.cf[j]; g.fillStyle = f.colors[fam]; lastPx = -1; }
        if (Math.floor(b) <= lastPx) continue;
        lastPx = Math.floor(b);
        g.fillRect(L + a, y + 3, b - a, 10);
      }
    });
    g.strokeStyle = "#bbb";
    g.strokeRect(L + 0.5, TOP + 0.5, w, bottom - TOP);
    shadeLost(g, f.lost, L, w, TOP, bottom, t0, t1, true);
    f._rows = rows;
    f._geom = { L: L, TOP: TOP, LH: LH, w: w };
    legend(div, f.families.map(function (fm, i) { return { label: fm + " calls", color: f.colors[i] }; })
      .concat([{ label: "off CPU", color: "#8d8d8d" }, { label: "lost records", color: "rgba(215,40,40,.35)" }]));
  }

  function timelineHover(div, f) {
    var t = tip(div);
    div.addEventListener("mousemove", function (e) {
      var r = div.getBoundingClientRect(), G = f._geom;
      if (!G) return;
      var x = e.clientX - r.left, y = e.clientY - r.top;
      var row = f._rows[Math.floor((y - G.TOP) / G.LH)];
      if (!row || row.lane === undefined || x < G.L || x > G.L + G.w) { t.style.display = "none"; return; }
      var us = view[0] + ((x - G.L) / G.w) * (view[1] - view[0]);
      var slack = (2 / G.w) * (view[1] - view[0]);
      var d = f._lanes[row.lane], text = null, j;
      for (j = 0; j < d.cs.length; j++) {
        if (d.cs[j] - slack <= us && us <= d.cs[j] + d.cd[j] + slack) {
          text = f.families[d.cf[j]] + " call · " + latFmt(Math.max(d.cd[j], 1)) + " from " + timeFmt(span, 1)(d.cs[j]);
          break;
        }
      }
      if (text === null) {
        for (j = 0; j < d.os.length; j++) {
          if (d.os[j] - slack <= us && us <= d.os[j] + d.od[j] + slack) {
            text = "off CPU · " + latFmt(Math.max(d.od[j], 1)) + " from " + timeFmt(span, 1)(d.os[j]);
            break;
          }
        }
      }
      t.textContent = row.label + ": " + (text || timeFmt(view[1] - view[0], (view[1] - view[0]) / 1000)(us));
      t.style.display = "block";
      t.style.left = Math.min(x + 12, r.width - t.offsetWidth - 4) + "px";
      t.style.top = y + 14 + "px";
    });
    div.addEventListener("mouseleave", function () { t.style.display = "none"; });
  }

  /* --- latency CDF --------------------------------------------------------- */

  function drawCdf(div, f) {
    var L = 56, R = 28, TOP = 10, B = 36;
    var k = canvas(div), g = k.g, w = k.w - L - R, h = k.h - TOP - B;
    var shown = f.lines.filter(function (ln) { return !ln.off; });
    var lo = Infinity, hi = -Infinity;
    shown.forEach(function (ln) {
      ln.x.forEach(function (v) { if (v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
    });
    if (!isFinite(lo)) { lo = 1; hi = 1000; }
    var d0 = Math.floor(Math.log10(lo)), d1 = Math.ceil(Math.log10(hi));
    if (d1 <= d0) d1 = d0 + 1;
    function X(v) { return L + ((Math.log10(Math.max(v, Math.pow(10, d0))) - d0) / (d1 - d0)) * w; }
    function Y(p) { return TOP + h - (p / 100) * h; }
    g.strokeStyle = "#e6e6e6";
    g.fillStyle = "#444";
    g.textAlign = "center";
    g.textBaseline = "top";
    for (var e = d0; e <= d1; e++) {
      var px = Math.round(X(Math.pow(10, e))) + 0.5;
      g.beginPath(); g.moveTo(px, TOP); g.lineTo(px, TOP + h); g.stroke();
      g.fillText(latFmt(Math.pow(10, e)), px, TOP + h + 6);
      for (var m = 2; m < 10 && e < d1; m++) {
        var mx = Math.round(X(m * Math.pow(10, e))) + 0.5;
        g.strokeStyle = "#f3f3f3";
        g.beginPath(); g.moveTo(mx, TOP); g.lineTo(mx, TOP + h); g.stroke();
        g.strokeStyle = "#e6e6e6";
      }
    }
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (var p = 0; p <= 100; p += 20) {
      var py = Math.round(Y(p)) + 0.5;
      g.beginPath(); g.moveTo(L, py); g.lineTo(L + w, py); g.stroke();
      g.fillText(p + "%", L - 6, py);
    }
    g.textAlign = "center";
    g.fillText("latency (log scale) — share of requests at or below", L + w / 2, TOP + h + 26);
    g.strokeStyle = "#bbb";
    g.strokeRect(L + 0.5, TOP + 0.5, w, h);
    shown.forEach(function (ln) {
      var n = ln.x.length;
      g.strokeStyle = ln.color;
      g.lineWidth = 2;
      g.beginPath();
      var prev = 0;
      for (var i = 0; i < n; i++) {
        var yv = ln.quantiles ? (100 * i) / Math.max(n - 1, 1) : (100 * (i + 1)) / n;
        var xv = X(ln.x[i]);
        if (i === 0) g.moveTo(xv, Y(0));
        g.lineTo(xv, Y(prev));
        g.lineTo(xv, Y(yv));
        prev = yv;
      }
      g.stroke();
      g.lineWidth = 1;
    });
    legend(div, f.lines.map(function (ln) {
      return { label: ln.label + " — " + ln.detail + " (" + ln.n.toLocaleString() + ")", color: ln.color, off: ln.off,
               title: "click to hide or show" };
    }), function (i) { f.lines[i].off = !f.lines[i].off; drawCdf(div, f); });
  }

  /* --- in flight ---------------------------------------------------------------- */

  function drawDepth(div, f) {
    var L = 56, R = 12, TOP = 10, B = 30;
    var k = canvas(div), g = k.g, w = k.w - L - R, h = k.h - TOP - B;
    var t0 = view[0], t1 = view[1];
    var top = 1;
    f.series.forEach(function (s) {
      if (s.off) return;
      s.max.forEach(function (v) { if (v !== null && v > top) top = v; });
    });
    top = Math.ceil(top * 1.1);
    function X(us) { return L + ((us - t0) / (t1 - t0)) * w; }
    function Y(v) { return TOP + h - (v / top) * h; }
    timeAxis(g, L, TOP + h + 6, w, t0, t1, TOP, TOP + h);
    g.strokeStyle = "#e6e6e6";
    g.fillStyle = "#444";
    g.textAlign = "right";
    g.textBaseline = "middle";
    var ystep = niceStep(top, 5);
    for (var v = 0; v <= top; v += ystep) {
      var py = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(L, py); g.lineTo(L + w, py); g.stroke();
      g.fillText(String(v), L - 6, py);
    }
    g.save();
    g.beginPath();
    g.rect(L, TOP, w, h);
    g.clip();
    var bw = f.bin_us;
    f.series.forEach(function (s) {
      if (s.off) return;
      var i, x0, x1;
      /* max of each bin: a light band */
      g.fillStyle = s.color;
      g.globalAlpha = 0.22;
      for (i = 0; i < s.max.length; i++) {
        if (s.max[i] === null) continue;
        x0 = X(i * bw); x1 = X((i + 1) * bw);
        if (x1 < L || x0 > L + w) continue;
        g.fillRect(x0, Y(s.max[i]), Math.max(x1 - x0, 1), Y(0) - Y(s.max[i]));
      }
      g.globalAlpha = 1;
      /* mean of each bin: a line, broken where records were lost */
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.beginPath();
      var pen = false;
      for (i = 0; i < s.mean.length; i++) {
        if (s.mean[i] === null) { pen = false; continue; }
        var xm = X((i + 0.5) * bw), ym = Y(s.mean[i]);
        if (pen) g.lineTo(xm, ym); else g.moveTo(xm, ym);
        pen = true;
      }
      g.stroke();
      g.lineWidth = 1;
    });
    g.restore();
    g.strokeStyle = "#bbb";
    g.strokeRect(L + 0.5, TOP + 0.5, w, h);
    shadeLost(g, f.lost, L, w, TOP, TOP + h, t0, t1, true);
    g.save();
    g.translate(12, TOP + h / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = "center";
    g.fillStyle = "#444";
    g.fillText("requests in flight", 0, 0);
    g.restore();
    legend(div, f.series.map(function (s) {
      return { label: s.label + " — mean (line), max per bin (band)", color: s.color, off: s.off,
               title: "click to hide or show" };
    }), function (i) { f.series[i].off = !f.series[i].off; drawDepth(div, f); });
  }

  /* --- page ------------------------------------------------------------------------ */

  function guard(name, fn) {
    try { fn(); } catch (err) {
      errors.push(name + ": " + err);
      var div = document.getElementById(name);
      if (div) div.innerHTML = '<p class="fail">This figure could not be drawn: ' + String(err) + "</p>";
    }
  }

  function redrawAll() {
    Object.keys(figs).forEach(function (id) {
      guard(id, function () {
        var f = figs[id], div = document.getElementById(id);
        if (f.type === "timeline") drawTimeline(div, f);
        else if (f.type === "cdf") drawCdf(div, f);
        else if (f.type === "depth") drawDepth(div, f);
      });
    });
    var de = document.documentElement;
    de.setAttribute("data-overflow", String(de.scrollWidth > window.innerWidth));
    de.setAttribute("data-errors", errors.join(" | "));
    de.setAttribute("data-drawn", String(Object.keys(figs).length));
    de.setAttribute("data-height", String(de.scrollHeight));
  }

  document.querySelectorAll(".plot").forEach(function (div) {
    guard(div.id, function () {
      var f = spec(div.id);
      if (!f) return;
      if (f.type === "timeline") {
        f._lanes = decodeLanes(f);
        span = Math.max(span, f.span_us, 1);
        timelineHover(div, f);
      }
      if (f.type === "depth") span = Math.max(span, f.span_us, 1);
      if (f.type === "timeline" || f.type === "depth") zoomable(div, f.type === "timeline" ? 230 : 56, 12, redrawAll);
      figs[div.id] = f;
    });
  });
  view = [0, Math.max(span, 1)];
  redrawAll();
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) clearTimeout(pending);
    pending = setTimeout(redrawAll, 100);
  });
})();
