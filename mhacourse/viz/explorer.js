// The attention explorer's browser side (mhacourse.viz.AttentionExplorer).
//
// A plain ES module with no dependencies and no build step: anywidget loads it from the
// package, and save_html() inlines it. The kernel sends the weights once as binary codes,
// round(sqrt(w) * top) with top = 65535 (16 bits) or 255 (8 bits), one buffer per layer,
// laid out (head, query, key). Everything here (hover, heads, layers, views, zoom, export)
// runs in the browser; only scale, mask and valid_keys are sent to the kernel.
//
// Colours: the weights use viridis on a square-root ramp (colour bar "weight, √ scale"), signed
// values RdBu; both are safe for red-green colour blindness. Masked cells are grey. Text and
// background follow JupyterLab's theme (CSS variables --jp-ui-font-color0, --jp-layout-color0).

const GREY = 0xffd0d0d0; // masked cells (ABGR, as a Uint32 over RGBA bytes)
const NAN_COLOUR = 0xffff00ff;
const MAX_BARS = 48;
const DEADLINE_MS = 10000; // a kernel request unanswered this long shows an error and a retry button
const BAR_TICKS = [0, 0.01, 0.05, 0.2, 0.5, 1];
// Okabe-Ito: eight colours told apart with every common colour vision deficiency (heads overlaid).
const HEAD_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
const POSITIVE = "#0072B2", NEGATIVE = "#D55E00"; // products q_d k_d in the neuron view
const VECTOR_CELLS = 4096; // SVG export draws cells as rectangles up to this many, else one image

// ---------------------------------------------------------------- data

function bytesOf(view) {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function typed(view, Type) {
  // Typed arrays need aligned offsets; a buffer sliced from a message may not be.
  if (view.byteOffset % Type.BYTES_PER_ELEMENT === 0) {
    return new Type(view.buffer, view.byteOffset, view.byteLength / Type.BYTES_PER_ELEMENT);
  }
  return new Type(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}

function palette(flat) {
  const out = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    out[i] = (0xff << 24) | (flat[3 * i + 2] << 16) | (flat[3 * i + 1] << 8) | flat[3 * i];
  }
  return out;
}

function css(colour) {
  return `rgb(${colour & 255},${(colour >> 8) & 255},${(colour >> 16) & 255})`;
}

function fmt(v, digits = 3) {
  if (v === -Infinity || v <= -1e30) return "−∞";
  if (Number.isNaN(v)) return "NaN";
  if (v !== 0 && Math.abs(v) < 10 ** -digits) return v.toExponential(1);
  return v.toFixed(digits);
}

// A matrix the views can draw: rows x cols, value(i, j), colour(i0, i1, j0, j1) of a block.
function weightsPanel(meta, codes, keep, head, lut) {
  const { n_queries: rows, n_keys: cols, bits } = meta;
  const top = bits === 16 ? 65535 : 255;
  const shift = bits === 16 ? 8 : 0;
  const base = head * rows * cols;
  return {
    rows, cols, signed: false,
    value: (i, j) => (codes[base + i * cols + j] / top) ** 2,
    masked: (i, j) => keep !== null && keep[i * cols + j] === 0,
    // The largest code of each column c0 .. c0 + n over rows i0 .. i1 (long, cache-friendly loops).
    columnMax(i0, i1, c0, n, out) {
      out.fill(0, 0, n);
      for (let i = i0; i < i1; i++) {
        const row = base + i * cols + c0;
        for (let j = 0; j < n; j++) {
          const v = codes[row + j];
          if (v > out[j]) out[j] = v;
        }
      }
    },
    code: (best, i, j) => (i >= 0 && keep !== null && keep[i * cols + j] === 0 ? GREY : lut[best >> shift]),
    colour(i0, i1, j0, j1) {
      if (i1 - i0 === 1 && j1 - j0 === 1) {
        if (keep !== null && keep[i0 * cols + j0] === 0) return GREY;
        return lut[codes[base + i0 * cols + j0] >> shift];
      }
      let best = 0;
      for (let i = i0; i < i1; i++) {
        const row = base + i * cols;
        for (let j = j0; j < j1; j++) if (codes[row + j] > best) best = codes[row + j];
      }
      return lut[best >> shift];
    },
  };
}

// A head not received yet: drawn blank in the background colour, no numbers, until it arrives.
function loadingPanel(meta, colour) {
  const { n_queries: rows, n_keys: cols } = meta;
  return {
    rows, cols, signed: false, loading: true,
    value: () => NaN,
    masked: () => false,
    columnMax(i0, i1, c0, n, out) { out.fill(0, 0, n); },
    code: () => colour,
    colour: () => colour,
  };
}

// Float32 values: weights on the square-root ramp, or signed values on a diverging map.
function absMax(values, offset = 0, size = values.length) {
  let range = 0;
  for (let k = offset; k < offset + size; k++) {
    const v = Math.abs(values[k]);
    if (Number.isFinite(v) && v < 1e30 && v > range) range = v;
  }
  return range;
}

// signed: a diverging map over ±range (the panel's own largest |value| unless a shared range is given).
function floatPanel(values, rows, cols, offset, lut, signed, shared = null) {
  const range = signed ? (shared !== null ? shared : absMax(values, offset, rows * cols)) : 1;
  const scale = range > 0 ? range : 1;
  const colourOf = (v) => {
    if (Number.isNaN(v)) return NAN_COLOUR;
    if (signed) {
      if (v <= -1e30) return GREY; // masked (−∞ or the most negative float)
      return lut[Math.max(0, Math.min(255, Math.round(127.5 + (127.5 * v) / scale)))];
    }
    return lut[Math.round(Math.sqrt(Math.max(0, Math.min(1, v))) * 255)];
  };
  return {
    rows, cols, signed, range,
    value: (i, j) => values[offset + i * cols + j],
    masked: (i, j) => signed && values[offset + i * cols + j] <= -1e30,
    colour(i0, i1, j0, j1) {
      let pick = values[offset + i0 * cols + j0];
      for (let i = i0; i < i1; i++) {
        for (let j = j0; j < j1; j++) {
          const v = values[offset + i * cols + j];
          if (Number.isNaN(v)) return NAN_COLOUR;
          if (signed ? (Math.abs(v) > Math.abs(pick) && v > -1e30) : v > pick) pick = v;
        }
      }
      return colourOf(pick);
    },
  };
}

// ---------------------------------------------------------------- painters

// Canvas and SVG painters share one interface, so export redraws the view as vectors.
class CanvasPainter {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
  }
  measure(s, size) {
    this.ctx.font = `${size}px sans-serif`;
    return this.ctx.measureText(String(s)).width;
  }
  size(width, height) {
    if (this.canvas.width !== width) this.canvas.width = width;
    if (this.canvas.height !== height) this.canvas.height = height;
    this.ctx.clearRect(0, 0, width, height);
  }
  background(colour) {
    this.ctx.fillStyle = colour;
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }
  pixels(x, y, w, h, fill) {
    if (w <= 0 || h <= 0) return;
    const image = this.ctx.createImageData(w, h);
    fill(new Uint32Array(image.data.buffer), w, h);
    this.ctx.putImageData(image, x, y);
  }
  rect(x, y, w, h, colour) {
    this.ctx.fillStyle = typeof colour === "number" ? css(colour) : colour;
    this.ctx.fillRect(x, y, w, h);
  }
  frame(x, y, w, h, colour, width = 2) {
    this.ctx.strokeStyle = colour;
    this.ctx.lineWidth = width;
    this.ctx.strokeRect(x, y, w, h);
  }
  circle(x, y, r, colour, width = 2) {
    this.ctx.strokeStyle = colour;
    this.ctx.lineWidth = width;
    this.ctx.beginPath();
    this.ctx.arc(x, y, r, 0, 2 * Math.PI);
    this.ctx.stroke();
  }
  line(x1, y1, x2, y2, colour, alpha, width) {
    this.ctx.strokeStyle = colour;
    this.ctx.globalAlpha = alpha;
    this.ctx.lineWidth = width;
    this.ctx.beginPath();
    this.ctx.moveTo(x1, y1);
    this.ctx.lineTo(x2, y2);
    this.ctx.stroke();
    this.ctx.globalAlpha = 1;
  }
  text(s, x, y, { size, align = "left", baseline = "middle", rotate = 0, colour = null, bold = false }) {
    const ctx = this.ctx;
    colour = colour || this.fg || "#111";
    ctx.save();
    ctx.font = `${bold ? "bold " : ""}${size}px sans-serif`;
    ctx.fillStyle = colour;
    ctx.textAlign = align;
    ctx.textBaseline = baseline;
    ctx.translate(x, y);
    if (rotate) ctx.rotate(rotate);
    ctx.fillText(s, 0, 0);
    ctx.restore();
  }
}

const escapeXml = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

class SvgPainter {
  constructor() {
    this.parts = [];
  }
  size(width, height) {
    this.width = width;
    this.height = height;
  }
  measure(s, size) {
    return String(s).length * size * 0.6;
  }
  background(colour) {
    this.parts.push(`<rect width="${this.width}" height="${this.height}" fill="${colour}"/>`);
  }
  pixels(x, y, w, h, fill) {
    if (w <= 0 || h <= 0) return;
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    new CanvasPainter(canvas).pixels(0, 0, w, h, fill);
    this.parts.push(`<image x="${x}" y="${y}" width="${w}" height="${h}" href="${canvas.toDataURL("image/png")}"/>`);
  }
  rect(x, y, w, h, colour) {
    const fill = typeof colour === "number" ? css(colour) : colour;
    this.parts.push(`<rect x="${x.toFixed(2)}" y="${y.toFixed(2)}" width="${w.toFixed(2)}" height="${h.toFixed(2)}" fill="${fill}"/>`);
  }
  frame(x, y, w, h, colour, width = 2) {
    this.parts.push(`<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="none" stroke="${colour}" stroke-width="${width}"/>`);
  }
  circle(x, y, r, colour, width = 2) {
    this.parts.push(`<circle cx="${x}" cy="${y}" r="${r}" fill="none" stroke="${colour}" stroke-width="${width}"/>`);
  }
  line(x1, y1, x2, y2, colour, alpha, width) {
    this.parts.push(`<line x1="${x1}" y1="${y1.toFixed(1)}" x2="${x2}" y2="${y2.toFixed(1)}" stroke="${colour}" stroke-opacity="${alpha.toFixed(3)}" stroke-width="${width.toFixed(2)}"/>`);
  }
  text(s, x, y, { size, align = "left", baseline = "middle", rotate = 0, colour = null, bold = false }) {
    colour = colour || this.fg || "#111";
    const anchor = { left: "start", right: "end", center: "middle" }[align];
    const shift = baseline === "middle" ? "0.35em" : baseline === "top" ? "0.8em" : "0";
    const turn = rotate ? ` transform="rotate(${(rotate * 180) / Math.PI} ${x} ${y})"` : "";
    this.parts.push(`<text x="${x}" y="${y}" dy="${shift}" font-family="sans-serif" font-size="${size}" text-anchor="${anchor}" fill="${colour}"${bold ? ' font-weight="bold"' : ""}${turn}>${escapeXml(s)}</text>`);
  }
  // A title band above the drawing (exports carry the title).
  toString(title = "", subtitle = "", font = 14, theme = null) {
    const band = title ? Math.round(font * (subtitle ? 3.2 : 1.9)) : 0;
    const h = this.height + band;
    const bg = theme ? theme.bg : "white", fg = theme ? theme.fg : "#111";
    const head = title ? `<rect width="${this.width}" height="${band}" fill="${bg}"/>\n<text x="8" y="${Math.round(font * 1.3)}" font-family="sans-serif" font-size="${Math.round(font * 1.2)}" font-weight="bold" fill="${fg}">${escapeXml(title)}</text>\n` +
      (subtitle ? `<text x="8" y="${Math.round(font * 2.7)}" font-family="sans-serif" font-size="${font}" fill="${fg}">${escapeXml(subtitle)}</text>\n` : "") : "";
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${this.width}" height="${h}" viewBox="0 0 ${this.width} ${h}">\n${head}<g transform="translate(0 ${band})">\n${this.parts.join("\n")}\n</g>\n</svg>\n`;
  }
}

// Fill a w x h box with a window of a panel: each pixel shows the largest weight of its block.
function paintMatrix(painter, panel, box, win) {
  const { x, y, w, h } = box;
  const { r0, c0, rows, cols } = win;
  if (rows * cols <= VECTOR_CELLS && painter instanceof SvgPainter) {
    const cw = w / cols, ch = h / rows;
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        painter.rect(x + j * cw, y + i * ch, cw + 0.02, ch + 0.02, panel.colour(r0 + i, r0 + i + 1, c0 + j, c0 + j + 1));
      }
    }
    return;
  }
  const colStart = new Int32Array(w + 1);
  for (let px = 0; px <= w; px++) colStart[px] = c0 + Math.floor((px * cols) / w);
  const maxima = panel.columnMax ? new Uint32Array(cols) : null;
  painter.pixels(x, y, w, h, (out, width, height) => {
    let previous = -1;
    for (let py = 0; py < height; py++) {
      const i0 = r0 + Math.floor((py * rows) / height);
      const i1 = Math.max(i0 + 1, r0 + Math.floor(((py + 1) * rows) / height));
      const line = py * width;
      if (i1 - i0 === 1 && i0 === previous) {
        out.copyWithin(line, line - width, line); // the same row of cells as the line above
        continue;
      }
      previous = i1 - i0 === 1 ? i0 : -1;
      if (maxima) {
        panel.columnMax(i0, i1, c0, cols, maxima);
        for (let px = 0; px < width; px++) {
          const j0 = colStart[px], j1 = Math.max(j0 + 1, colStart[px + 1]);
          let best = 0;
          for (let j = j0; j < j1; j++) if (maxima[j - c0] > best) best = maxima[j - c0];
          out[line + px] = i1 - i0 === 1 && j1 - j0 === 1 ? panel.code(best, i0, j0) : panel.code(best, -1, 0);
        }
        continue;
      }
      for (let px = 0; px < width; px++) {
        const j0 = colStart[px];
        out[line + px] = panel.colour(i0, i1, j0, Math.max(j0 + 1, colStart[px + 1]));
      }
    }
  });
}

// Labels of a window, thinned so that they never overlap.
function labelStep(cell, font) {
  return Math.max(1, Math.ceil((font * 1.15) / Math.max(cell, 1e-6)));
}

// Token labels shrink a little with the cells, never below 85% of the font (then they thin out).
function labelSize(font, cell) {
  return Math.round(Math.min(font, Math.max(font * 0.85, cell * 0.9)));
}

// WCAG contrast ratio of two CSS colours (for the tests, and to pick text on cells).
function luminance(rgb) {
  const [r, g, b] = rgb.map((c) => {
    const v = c / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function parseColour(text) {
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = "#000";
  probe.fillStyle = text;
  probe.fillRect(0, 0, 1, 1);
  const d = probe.getImageData(0, 0, 1, 1).data;
  return [d[0], d[1], d[2]];
}

function contrast(a, b) {
  const [la, lb] = [luminance(parseColour(a)), luminance(parseColour(b))];
  return (Math.max(la, lb) + 0.05) / (Math.min(la, lb) + 0.05);
}

// Position and token, e.g. "12 the"; the position alone where the token is its position (no tokens given).
function numberedLabel(labels, i, separator = " ") {
  const text = `${labels[i]}`;
  return text === String(i) ? text : `${i}${separator}${text}`;
}

// The same in prose, with the token quoted: 12 “the”, or 12.
function quotedLabel(labels, i) {
  const text = `${labels[i]}`;
  return text === String(i) ? text : `${i} “${escapeXml(text)}”`;
}

function drawLabels(painter, labels, box, win, font, side) {
  const vertical = side === "left";
  const count = vertical ? win.rows : win.cols;
  const start = vertical ? win.r0 : win.c0;
  const cell = (vertical ? box.h : box.w) / count;
  const size = labelSize(font, cell);
  const step = labelStep(cell, size);
  const numbered = step > 1; // thinned: say which position each label is
  for (let k = Math.ceil(start / step) * step - start; k < count; k += step) {
    const text = numbered ? numberedLabel(labels, start + k).slice(0, 16) : `${labels[start + k]}`.slice(0, 14);
    if (vertical) {
      painter.text(text, box.x - 4, box.y + (k + 0.5) * cell, { size, align: "right" });
    } else {
      painter.text(text, box.x + (k + 0.5) * cell, box.y - 4, { size, align: "left", rotate: -Math.PI / 2 });
    }
  }
  return step;
}

function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, title, onClick) {
  const b = element("button", "", text);
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

// ---------------------------------------------------------------- the explorer

class Explorer {
  constructor(model, el) {
    this.model = model;
    this.el = el;
    this.meta = model.get("_meta");
    const m = this.meta;
    this.kind = m.kind;
    this.lut = palette(m.colormap);
    this.diverging = palette(m.diverging);
    this.view = this.kind === "explorer" ? model.get("view") : "heatmap";
    this.layer = model.get("layer");
    this.head = model.get("head");
    this.query = model.get("query");
    this.key = -1;
    this.pinned = false;
    this.step = 3; // stepper: start at the softmax; -1 is Q, K, V
    this.overlayHeads = null; // lines view: a Set of heads drawn together, each in its colour
    this.showVectors = false; // the neuron view: q and k behind the hovered weight
    this.vectorCache = new Map(); // "layer:head" -> {q, k, dims} (asked for on demand)
    this.win = { r0: 0, c0: 0, rows: m.n_queries, cols: m.n_keys };
    this.inFlight = false;
    this.pending = null;
    this.perf = { draws: 0, firstDrawMs: null, lastRepaintMs: null, lastFrameMs: null };
    this.t0 = performance.now();
    this.cleanups = [];

    this.root = element("div", "mha-explorer");
    this.root.tabIndex = 0;
    el.appendChild(this.root);
    this.root.classList.toggle("mha-large", model.get("large"));
    this.title = element("div", "mha-title");
    this.subtitle = element("div", "mha-subtitle");
    this.toolbar = element("div", "mha-toolbar");
    this.kernelBar = element("div", "mha-toolbar");
    this.body = element("div", "mha-body");
    this.stage = element("div", "mha-stage");
    this.base = element("canvas", "mha-base");
    this.overlay = element("canvas", "mha-overlay");
    this.tip = element("div", "mha-tip");
    this.stage.append(this.base, this.overlay, this.tip);
    this.side = element("div", "mha-side");
    this.numbers = element("div", "mha-numbers");
    this.bars = element("div", "mha-bars");
    this.vectorBox = element("div", "mha-vectors");
    this.side.append(this.numbers, this.vectorBox, this.bars);
    this.body.append(this.stage, this.side);
    this.root.append(this.title, this.subtitle, this.toolbar, this.kernelBar, this.body);
    this.basePainter = new CanvasPainter(this.base);
    this.overlayPainter = new CanvasPainter(this.overlay);

    if (this.kind === "stepper") {
      // scores, scaled and masked on one colour scale: scaling visibly shrinks the scores.
      this.stepRange = 0;
      for (let k = 0; k < 3; k++) {
        const s = m.steps[k];
        this.stepRange = Math.max(this.stepRange, absMax(this.stepValues(k), 0, s.rows * s.cols));
      }
      this.stepRange = this.stepRange || 1;
    }
    this.loadData();
    this.readTheme();
    this.buildToolbar();
    this.bindEvents();
    this.listen();
    this.redraw();
    this.perf.firstDrawMs = performance.now() - this.t0;
    if (typeof performance.mark === "function") performance.mark("mha-first-draw");
    this.ensureData(); // a layer or head set from Python before display and not sent yet
  }

  stepValues(k) {
    return typed(this.model.get("_extra").steps[k], Float32Array);
  }

  // -- theme: JupyterLab's CSS variables (light, dark, high contrast), else light defaults
  readTheme() {
    const style = getComputedStyle(this.root);
    const v = (name, fallback) => (style.getPropertyValue(name) || "").trim() || fallback;
    this.theme = {
      fg: v("--jp-ui-font-color0", "#111111"),
      bg: v("--jp-layout-color0", "#ffffff"),
      muted: v("--jp-ui-font-color2", "#555555"),
      frame: v("--jp-border-color1", "#888888"),
    };
    for (const p of [this.basePainter, this.overlayPainter]) p.fg = this.theme.fg;
    this.root.dataset.contrast = contrast(this.theme.fg, this.theme.bg).toFixed(2);
  }

  // -- data from the kernel
  // Only what is shown travels: each answer holds some heads of one layer (a small layer: all of
  // them; the other layers are empty) or the grid's thumbnails, tagged with the settings generation
  // they were computed at. Heads from older settings stay drawable (while the new ones are asked
  // for) but are not "fresh". codes[layer][head] is one head's (Lq, Lk) codes.
  loadData() {
    const m = this.meta, model = this.model;
    const Type = m.bits === 16 ? Uint16Array : Uint8Array;
    const generation = model.get("_generation") || 0;
    if (!this.codes) this.codes = Array.from({ length: m.num_layers || 0 }, () => new Array(m.num_heads || 0).fill(null));
    if (generation !== this.generation) {
      this.generation = generation;
      this.fresh = new Set();
      this.thumbsFresh = false;
    }
    let bytes = 0;
    if ((model.get("_weights_generation") || 0) === generation) {
      const heads = model.get("_weights_heads") || [];
      const size = m.n_queries * m.n_keys;
      (model.get("_weights") || []).forEach((v, l) => {
        if (!v || !v.byteLength) return;
        const all = typed(v, Type);
        const sent = heads[l] && heads[l].length ? heads[l] : Array.from({ length: m.num_heads }, (_, h) => h);
        sent.forEach((h, n) => {
          this.codes[l][h] = all.subarray(n * size, (n + 1) * size);
          this.fresh.add(`${l}:${h}`);
        });
        bytes += v.byteLength;
      });
    }
    const thumbs = model.get("_thumbs");
    if (thumbs && thumbs.byteLength && model.get("_thumbs_generation") === generation) {
      if (!this.thumbsFresh) bytes += thumbs.byteLength;
      this.thumbs = bytesOf(thumbs);
      const tk = model.get("_thumb_keep");
      this.thumbKeep = tk && tk.byteLength ? bytesOf(tk) : null;
      this.thumbsFresh = true;
    }
    this.perf.lastBytes = bytes;
    if (this.wantLayer !== null && this.wantLayer !== undefined && this.held(this.wantLayer, this.wantHead)) {
      this.layer = this.wantLayer;
      this.head = this.wantHead;
      this.wantLayer = this.wantHead = null;
      this.syncButtons();
      this.askVectors();
    }
    const keep = this.model.get("_keep");
    if (keep !== this.keepBuffer && keep && keep.byteLength) this.perf.lastBytes += keep.byteLength;
    this.keepBuffer = keep;
    this.keep = keep && keep.byteLength ? bytesOf(keep) : null;
    const extra = this.model.get("_extra") || {};
    this.extra = {};
    for (const [name, list] of Object.entries(extra)) this.extra[name] = list.map((v) => typed(v, Float32Array));
    this.rowCache = null;
    this.gridCache = null;
    this.revision = this.model.get("_revision");
  }

  held(layer, head) {
    return Boolean(this.codes && this.codes[layer] && this.codes[layer][head]);
  }

  // The layer and heads the view on screen shows (or is about to): one head, or those the lines
  // view overlays; every head of a small layer (sent whole).
  shownHeads() {
    const waiting = this.wantLayer !== null && this.wantLayer !== undefined;
    const layer = waiting ? this.wantLayer : this.layer, head = waiting ? this.wantHead : this.head;
    if (!this.meta.per_head) return { layer, heads: Array.from({ length: this.meta.num_heads }, (_, h) => h), whole: true };
    const heads = new Set([head]);
    if (this.view === "lines" && this.overlayHeads) for (const h of this.overlayHeads) heads.add(h);
    return { layer, heads: [...heads].sort((a, b) => a - b), whole: false };
  }

  // What to ask the kernel for: the grid's thumbnails, a whole layer, or some heads of a layer.
  wanted() {
    if (this.view === "grid") return "grid";
    const { layer, heads, whole } = this.shownHeads();
    return whole ? `layer:${layer}` : `layer:${layer}:${heads.join(",")}`;
  }

  // What the view on screen needs from the kernel and does not have at the current settings.
  need() {
    if (this.kind !== "explorer" || this.meta.offline) return null;
    if (this.view === "grid") return this.thumbsFresh ? null : "grid";
    const { layer, heads } = this.shownHeads();
    return heads.every((h) => this.fresh.has(`${layer}:${h}`)) ? null : this.wanted();
  }

  ensureData() {
    const need = this.need();
    if (need && !this.inFlight && !this.pending) this.request({});
  }

  on(name, callback) {
    this.model.on(name, callback);
    this.cleanups.push(() => this.model.off(name, callback));
  }

  listen() {
    this.on("change:_revision", () => {
      const start = performance.now();
      this.loadData();
      this.inFlight = false;
      clearTimeout(this.deadline);
      const error = this.model.get("_error");
      this.showBusy(error ? `error: ${error}` : "", Boolean(error));
      this.redraw();
      this.perf.lastAnswerMs = this.sentAt ? performance.now() - this.sentAt : null;
      this.perf.lastLoadDrawMs = performance.now() - start;
      this.perf.lastDrawnAt = performance.now(); // the answer is drawn: benchmarks time input -> here in the page
      const answered = this.revision; // and to the start of the first frame that shows it
      requestAnimationFrame(() => { this.perf.lastFramedAt = performance.now(); this.perf.framedRevision = answered; });
      this.sendPending();
      if (!error) this.ensureData();
    });
    for (const name of ["view", "layer", "head", "query"]) {
      this.on(`change:${name}`, () => {
        if (name === "layer" || name === "head") {
          this.setHead(this.model.get("layer"), this.model.get("head"));
          return;
        }
        this[name] = this.model.get(name);
        this.syncButtons();
        this.redraw();
        this.ensureData();
      });
    }
    this.on("change:_vectors_meta", () => {
      const v = this.model.get("_vectors_meta") || {};
      const key = `${v.layer}:${v.head}`;
      if (v.error) this.vectorCache.set(key, { error: v.error });
      else {
        const all = typed(this.model.get("_vectors"), Float32Array);
        this.vectorCache.set(key, { dims: v.dims, q: all.subarray(0, v.n_queries * v.dims), k: all.subarray(v.n_queries * v.dims) });
      }
      this.updateSide();
    });
    this.on("change:large", () => {
      this.root.classList.toggle("mha-large", this.model.get("large"));
      this.redraw();
    });
    for (const name of ["scale", "mask", "valid_keys", "_note"]) this.on(`change:${name}`, () => this.syncKernelControls());
    // A new theme, or a new size of the window or the notebook: draw again.
    if (typeof MutationObserver === "function") {
      const watch = new MutationObserver(() => { this.readTheme(); this.redraw(); });
      watch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name", "data-jp-theme-light", "class"] });
      this.cleanups.push(() => watch.disconnect());
    }
    if (typeof ResizeObserver === "function") {
      let last = "";
      const resize = new ResizeObserver(() => {
        const size = `${this.available().width}x${this.available().height}`;
        if (size !== last && this.root.classList.contains("mha-large")) {
          last = size;
          this.redraw();
        } else last = size;
      });
      resize.observe(this.el);
      this.cleanups.push(() => resize.disconnect());
    }
    this.cleanups.push(() => clearTimeout(this.deadline));
  }

  destroy() {
    for (const undo of this.cleanups.splice(0)) undo();
  }

  // -- what is on screen
  font() {
    return this.root.classList.contains("mha-large") ? 19 : 12;
  }

  large() {
    return this.root.classList.contains("mha-large");
  }

  // The room presenter mode may fill: the notebook's visible height, the output's width.
  available() {
    const scroller = this.root.closest(".jp-WindowedPanel-outer") || this.root.closest(".jp-Notebook");
    const height = Math.min(window.innerHeight, scroller && scroller.clientHeight > 200 ? scroller.clientHeight : window.innerHeight);
    const width = (this.el.clientWidth || this.root.clientWidth || window.innerWidth - 40);
    const chrome = this.stage.getBoundingClientRect().top - this.root.getBoundingClientRect().top;
    return { width, height, chrome: chrome > 0 ? chrome : 140 };
  }

  panel(which = "weights") {
    const m = this.meta;
    if (this.kind === "stepper") {
      const s = m.steps[this.step];
      const softmax = s.name === "softmax";
      return floatPanel(this.extra.steps[this.step], s.rows, s.cols, 0, softmax ? this.lut : this.diverging, !softmax,
        this.step < 3 ? this.stepRange : null);
    }
    if (this.kind === "compare") {
      const size = m.n_queries * m.n_keys;
      const offset = this.head * size;
      if (which === "difference") {
        const a = this.extra.yours[this.layer], b = this.extra.reference[this.layer];
        const diff = new Float32Array(size);
        for (let k = 0; k < size; k++) diff[k] = a[offset + k] - b[offset + k];
        return floatPanel(diff, m.n_queries, m.n_keys, 0, this.diverging, true);
      }
      return floatPanel(this.extra[which][this.layer], m.n_queries, m.n_keys, offset, this.lut, false);
    }
    if (!this.held(this.layer, this.head)) {
      const [r, g, b] = parseColour(this.theme.bg);
      return loadingPanel(m, ((0xff << 24) | (b << 16) | (g << 8) | r) >>> 0);
    }
    return weightsPanel(m, this.codes[this.layer][this.head], this.keep, 0, this.lut);
  }

  labels() {
    const m = this.meta;
    if (this.kind === "stepper" && m.steps[this.step].name === "weights @ V") {
      return [m.query_labels, Array.from({ length: m.steps[this.step].cols }, (_, d) => `d${d}`)];
    }
    return [m.query_labels, m.key_labels];
  }

  axisNames() {
    if (this.kind === "stepper" && this.meta.steps[this.step].name === "weights @ V") return ["queries", "value dimensions"];
    return ["queries", "keys"];
  }

  window() {
    const p = this.currentPanels[0];
    const win = this.win;
    if (this.kind === "stepper" || p.cols !== this.meta.n_keys) return { r0: 0, c0: 0, rows: p.rows, cols: p.cols };
    return win;
  }

  // The colour bars a view needs: the weight ramp, or a signed range.
  colourBars() {
    if (this.kind === "stepper") {
      const p = this.currentPanels[0];
      if (!p.signed) return [{ kind: "sqrt", name: "weight" }];
      const s = this.meta.steps[this.step];
      return [{ kind: "linear", name: s.name, range: p.range, shared: this.step < 3 }];
    }
    if (this.kind === "compare") return [{ kind: "sqrt", name: "weight" }, { kind: "linear", name: "yours − ref.", range: this.currentPanels[2].range }];
    return [{ kind: "sqrt", name: "weight" }];
  }

  // Layout of the stage: one or three matrices, axis titles and labels left and on top, colour bars right.
  layout() {
    const font = this.font();
    const large = this.large();
    const win = this.window();
    const [rowLabels, colLabels] = this.labels();
    const painter = this.basePainter;
    const longest = (labels, r0, n) => {
      let w = 0;
      const step = Math.max(1, Math.floor(n / 400)); // a sample is enough for long inputs
      for (let k = r0; k < r0 + n; k += step) w = Math.max(w, painter.measure(n > 40 ? numberedLabel(labels, k).slice(0, 16) : `${labels[k]}`.slice(0, 14), font));
      return w;
    };
    const axis = Math.round(font * 1.7); // room for "queries" / "keys"
    const labelW = Math.ceil(Math.min(font * 9, longest(rowLabels, win.r0, win.rows)) + 8);
    const labelH = Math.ceil(Math.min(font * 9, longest(colLabels, win.c0, win.cols)) + 8);
    const count = this.currentPanels.length;
    const names = count > 1 ? Math.round(font * 1.6) : 0;
    const sums = this.kind === "compare" ? Math.round(font * 3.6) : 0; // a row-sum column after yours and reference
    const bars = this.colourBars().length * Math.round(font * 6.2);
    const left = axis + labelW, top = axis + names + labelH;
    let side;
    if (large) {
      const room = this.available();
      const sideW = this.view === "heatmap" ? Math.round(font * 19) : 0;
      const byHeight = room.height - room.chrome - top - 24;
      const gap = Math.round(font * 1.5);
      const byWidth = (room.width - left - bars - sideW - 40 - (count - 1) * (gap + sums) - sums) / count;
      side = Math.max(160, Math.min(1100, Math.floor(Math.min(byHeight, byWidth))));
    } else {
      side = count === 1 ? 480 : 240;
    }
    if (this.kind === "stepper") side = Math.max(side, Math.min(large ? side : 760, win.cols * font * 2.8));
    const cell = Math.min(side / win.cols, side / win.rows);
    const w = Math.max(1, Math.round(cell * win.cols));
    const h = Math.max(1, Math.round(cell * win.rows));
    const gap = count === 1 ? 0 : Math.round(font * 1.5) + sums;
    const boxes = [];
    for (let k = 0; k < count; k++) boxes.push({ x: left + k * (w + gap), y: top, w, h });
    const barX = left + count * w + (count - 1) * gap + (sums && count > 1 ? sums : 0) + Math.round(font * 1.2);
    const width = barX + bars + 10;
    const height = Math.max(top + h + 10, top + Math.round(font * 12));
    return { boxes, width, height, font, win, axis, top, left, barX, sums };
  }

  // -- drawing
  redraw() {
    const start = performance.now();
    this.root.dataset.view = this.view;
    this.root.dataset.layer = this.layer;
    this.root.dataset.head = this.head;
    this.root.dataset.kind = this.kind;
    this.root.dataset.revision = this.revision;
    this.title.textContent = this.titleText();
    this.subtitle.textContent = this.subtitleText();
    if (this.kind === "stepper" && this.step < 0) {
      this.currentPanels = [];
      this.drawInputs(this.basePainter);
    } else {
      this.currentPanels = this.kind === "compare"
        ? [this.panel("yours"), this.panel("reference"), this.panel("difference")]
        : [this.panel()];
      if (this.view === "grid") this.drawGrid(this.basePainter);
      else if (this.view === "lines") this.drawLines(this.basePainter);
      else this.drawMatrices(this.basePainter);
    }
    this.overlay.width = this.base.width;
    this.overlay.height = this.base.height;
    if (this.large()) {
      const h = this.base.height;
      this.bars.style.maxHeight = `${Math.max(120, h - this.numbers.offsetHeight - 8)}px`;
    } else this.bars.style.maxHeight = "";
    this.repaint();
    this.perf.draws += 1;
    this.perf.lastDrawMs = performance.now() - start;
    this.root.dataset.draws = this.perf.draws;
  }

  // Only what hover changes: the overlay, the numbers and the bars.
  repaint() {
    this.root.dataset.query = this.query;
    this.overlayPainter.size(this.overlay.width, this.overlay.height);
    if (this.kind === "stepper" && this.step < 0) {
      this.updateSide();
      return;
    }
    if (this.view === "lines") this.drawLines(this.overlayPainter, true);
    else if (this.view !== "grid") this.drawMarks(this.overlayPainter);
    this.updateSide();
  }

  drawAxisTitles(painter, geo, box, names) {
    const font = geo.font;
    painter.text(`${names[1]} →`, box.x, Math.round(geo.axis / 2), { size: font, bold: true, colour: this.theme.fg });
    painter.text(`${names[0]} →`, Math.round(geo.axis / 2), box.y, { size: font, bold: true, rotate: Math.PI / 2, colour: this.theme.fg });
    this.root.dataset.axes = names.join(",");
  }

  drawMatrices(painter, exporting = false) {
    const geo = this.layout();
    this.geo = geo;
    const [rowLabels, colLabels] = this.labels();
    painter.size(geo.width, geo.height);
    painter.background(this.theme.bg);
    const names = this.kind === "compare" ? ["yours", "reference (MLX)", "yours − reference"] : [];
    geo.boxes.forEach((box, k) => {
      paintMatrix(painter, this.currentPanels[k], box, geo.win);
      painter.frame(box.x, box.y, box.w, box.h, this.theme.frame, 1);
      drawLabels(painter, colLabels, box, geo.win, geo.font, "top");
      if (k === 0) drawLabels(painter, rowLabels, box, geo.win, geo.font, "left");
      if (names[k]) painter.text(names[k], box.x, geo.axis + Math.round(geo.font * 0.8), { size: geo.font, bold: true });
    });
    this.drawAxisTitles(painter, geo, geo.boxes[0], this.axisNames());
    if (this.kind === "compare") this.drawRowSums(painter, geo);
    if (this.kind === "stepper") this.drawStepNumbers(painter, geo);
    this.drawColourBars(painter, geo.barX, geo.top, Math.max(geo.boxes[0].h, geo.font * 10), geo.font);
    const size = labelSize(geo.font, geo.boxes[0].h / geo.win.rows);
    this.root.dataset.labelStep = labelStep(geo.boxes[0].h / geo.win.rows, size);
    this.root.dataset.window = `${geo.win.r0},${geo.win.c0},${geo.win.rows},${geo.win.cols}`;
  }

  // Colour bars with their scale named, and the masked swatch.
  drawColourBars(painter, x0, y, height, font) {
    const bw = Math.round(font * 1.1);
    const h = Math.max(60, Math.round(height - font * 4.5));
    const bars = this.colourBars();
    bars.forEach((bar, n) => {
      const x = x0 + n * Math.round(font * 6.2);
      painter.text(bar.name, x, y, { size: font, bold: true, baseline: "top" });
      const sub = bar.kind === "sqrt" ? "√ scale" : bar.shared ? "shared, linear" : "linear";
      painter.text(sub, x, y + font * 1.2, { size: Math.round(font * 0.85), baseline: "top", colour: this.theme.muted });
      const top = y + Math.round(font * 2.6);
      const lut = bar.kind === "sqrt" ? this.lut : this.diverging;
      painter.pixels(x, top, bw, h, (out, w, hh) => {
        for (let py = 0; py < hh; py++) {
          const t = 1 - py / Math.max(1, hh - 1);
          const c = lut[Math.round(t * 255)];
          for (let px = 0; px < w; px++) out[py * w + px] = c;
        }
      });
      painter.frame(x, top, bw, h, this.theme.frame, 1);
      const ticks = bar.kind === "sqrt" ? BAR_TICKS.map((v) => [Math.sqrt(v), String(v)])
        : [-1, -0.5, 0, 0.5, 1].map((t) => [(t + 1) / 2, fmt(t * bar.range, bar.range >= 10 ? 0 : bar.range >= 1 ? 1 : 2)]);
      for (const [t, text] of ticks) {
        const ty = top + (1 - t) * h;
        painter.rect(x + bw, ty - 0.5, 4, 1, this.theme.fg);
        painter.text(text, x + bw + 6, ty, { size: Math.round(font * 0.85) });
      }
      if (n === 0 && (this.kind === "explorer" || (this.kind === "stepper" && this.step === 2))) {
        const sy = top + h + Math.round(font * 0.6);
        painter.rect(x, sy, bw, font, GREY);
        painter.frame(x, sy, bw, font, this.theme.frame, 1);
        painter.text("masked", x + bw + 6, sy + font / 2, { size: Math.round(font * 0.85) });
      }
    });
    this.root.dataset.colourBar = bars.map((b) => `${b.name} (${b.kind === "sqrt" ? "square root" : "linear"})`).join("; ");
  }

  // Compare: each row's sum beside yours and the reference; a softmax over the wrong axis shows here.
  drawRowSums(painter, geo) {
    const m = this.meta, win = geo.win;
    const ch = geo.boxes[0].h / win.rows;
    const size = Math.round(Math.min(geo.font * 0.85, ch * 0.85));
    for (const k of [0, 1]) {
      const box = geo.boxes[k], p = this.currentPanels[k];
      const x = box.x + box.w + 4;
      painter.text("Σ row", x, box.y - 4, { size: Math.round(geo.font * 0.85), baseline: "bottom", bold: true });
      const step = Math.max(1, Math.ceil((size * 1.1) / Math.max(ch, 1e-6)));
      for (let i = win.r0; i < win.r0 + win.rows; i++) {
        let sum = 0;
        for (let j = 0; j < m.n_keys; j++) sum += p.value(i, j);
        const off = !(Math.abs(sum - 1) <= 1e-3);
        const y = box.y + (i - win.r0 + 0.5) * ch;
        if (off) painter.rect(x, y - ch / 2, geo.sums - 8, Math.max(1, ch), "rgba(255,43,214,0.35)");
        if ((i - win.r0) % step === 0 && size >= 7) painter.text(fmt(sum, 2), x + 2, y, { size });
      }
    }
  }

  drawStepNumbers(painter, geo) {
    const box = geo.boxes[0], panel = this.currentPanels[0];
    const cw = box.w / panel.cols, ch = box.h / panel.rows;
    const size = Math.floor(Math.min(geo.font * 0.85, cw / 3.3, ch * 0.7));
    this.root.dataset.stepNumbers = size >= 8 ? "shown" : "hidden";
    if (size < 8) return;
    const digits = cw / size >= 4.2 ? 2 : 1;
    for (let i = 0; i < panel.rows; i++) {
      for (let j = 0; j < panel.cols; j++) {
        const v = panel.value(i, j);
        const cell = panel.colour(i, i + 1, j, j + 1);
        const light = 0.299 * (cell & 255) + 0.587 * ((cell >> 8) & 255) + 0.114 * ((cell >> 16) & 255) > 140;
        painter.text(fmt(v, digits), box.x + (j + 0.5) * cw, box.y + (i + 0.5) * ch, { size, align: "center", colour: light ? "#111" : "#f4f4f4" });
      }
    }
  }

  // Stepper, step "Q K V": the head's queries, keys and values, one colour scale.
  drawInputs(painter) {
    const m = this.meta, font = this.font();
    const data = this.extra.inputs;
    let range = 0;
    m.inputs.forEach((s, k) => { range = Math.max(range, absMax(data[k], 0, s.rows * s.cols)); });
    range = range || 1;
    const panels = m.inputs.map((s, k) => floatPanel(data[k], s.rows, s.cols, 0, this.diverging, true, range));
    const axis = Math.round(font * 1.7);
    const labelW = Math.ceil(Math.min(font * 9, Math.max(...m.query_labels.concat(m.key_labels).map((t) => painter.measure(`${t}`.slice(0, 14), font)))) + 8);
    const rowsMax = Math.max(...m.inputs.map((s) => s.rows));
    const colsSum = m.inputs.reduce((a, s) => a + s.cols, 0);
    const cell = Math.max(4, Math.min(this.large() ? 26 : 18, 900 / colsSum, 420 / rowsMax));
    const top = axis + Math.round(font * 1.8);
    let x = axis + labelW;
    const boxes = m.inputs.map((s) => {
      const b = { x, y: top, w: Math.round(cell * s.cols), h: Math.round(cell * s.rows) };
      x += b.w + labelW + font;
      return b;
    });
    this.currentPanels = panels;
    this.geo = null;
    const barX = x;
    painter.size(barX + Math.round(font * 6.2) + 10, top + Math.max(...boxes.map((b) => b.h), font * 12) + 10);
    painter.background(this.theme.bg);
    m.inputs.forEach((s, k) => {
      const box = boxes[k];
      paintMatrix(painter, panels[k], box, { r0: 0, c0: 0, rows: s.rows, cols: s.cols });
      painter.frame(box.x, box.y, box.w, box.h, this.theme.frame, 1);
      painter.text(`${s.name} (${k === 0 ? "L_q" : "L_k"}, ${k === 2 ? "D_v" : "D_h"}) = (${s.rows}, ${s.cols})`, box.x, axis, { size: font, bold: true });
      drawLabels(painter, k === 0 ? m.query_labels : m.key_labels, box, { r0: 0, c0: 0, rows: s.rows, cols: s.cols }, font, "left");
    });
    painter.text("dimensions →", boxes[0].x, top - 4, { size: Math.round(font * 0.85), baseline: "bottom", colour: this.theme.muted });
    const saved = this.colourBars;
    this.colourBars = () => [{ kind: "linear", name: "Q, K, V", range, shared: true }];
    this.drawColourBars(painter, barX, top, Math.max(...boxes.map((b) => b.h), font * 10), font);
    this.colourBars = saved;
  }

  cellRect(box, win, i, j) {
    const cw = box.w / win.cols, ch = box.h / win.rows;
    return { x: box.x + (j - win.c0) * cw, y: box.y + (i - win.r0) * ch, w: cw, h: ch };
  }

  drawMarks(painter) {
    const geo = this.geo;
    if (!geo) return;
    const win = geo.win;
    for (const box of geo.boxes) {
      if (this.query >= win.r0 && this.query < win.r0 + win.rows) {
        const r = this.cellRect(box, win, this.query, win.c0);
        painter.frame(box.x - 1, r.y - 1, box.w + 2, Math.max(r.h, 1) + 2, "#ff4040", 2);
      }
      if (this.key >= 0 && this.key >= win.c0 && this.key < win.c0 + win.cols && this.query >= win.r0 && this.query < win.r0 + win.rows) {
        const r = this.cellRect(box, win, this.query, this.key);
        painter.frame(r.x, r.y, Math.max(r.w, 2), Math.max(r.h, 2), "white", 2);
      }
    }
    if (this.kind === "compare") {
      const worst = this.headLargest();
      if (worst && worst.i >= win.r0 && worst.i < win.r0 + win.rows && worst.j >= win.c0 && worst.j < win.c0 + win.cols) {
        for (const box of geo.boxes) {
          const r = this.cellRect(box, win, worst.i, worst.j);
          painter.circle(r.x + r.w / 2, r.y + r.h / 2, Math.max(7, Math.max(r.w, r.h) * 0.8), "#ff2bd6", 3);
        }
      }
    }
  }

  // Keys the lines view shows: all that fit; with more keys, the selected query's strongest ones.
  linesKeys(panel, fit) {
    const m = this.meta;
    const keys = [];
    if (m.n_keys <= fit) {
      for (let j = 0; j < m.n_keys; j++) keys.push(j);
      return keys;
    }
    // With heads overlaid, a key's weight is its largest over those heads: each head's strongest keys show.
    const panels = [panel];
    if (this.overlayHeads && this.kind === "explorer") {
      for (const h of this.overlayHeads) {
        if (h !== this.head && this.held(this.layer, h)) panels.push(weightsPanel(m, this.codes[this.layer][h], this.keep, 0, this.lut));
      }
    }
    const weight = new Float64Array(m.n_keys);
    for (let j = 0; j < m.n_keys; j++) {
      let w = 0;
      for (const q of panels) { const v = q.value(this.query, j); if (v > w) w = v; }
      weight[j] = w;
    }
    const order = Array.from({ length: m.n_keys }, (_, j) => j);
    order.sort((a, b) => weight[b] - weight[a]);
    return order.slice(0, fit).sort((a, b) => a - b);
  }

  drawLines(painter, overlayOnly = false) {
    const m = this.meta;
    const font = this.font();
    const rowPx = Math.round(font * 1.5);
    let height = this.large() ? Math.max(240, this.available().height - this.available().chrome - font * 3) : 480;
    const fit = Math.max(2, Math.floor(height / rowPx));
    const nq = Math.min(fit, m.n_queries);
    // The query window follows the selected query; the key column shows its strongest keys.
    let r0 = this.linesGeo ? this.linesGeo.r0 : 0;
    if (this.query < r0 || this.query >= r0 + nq) r0 = Math.max(0, Math.min(m.n_queries - nq, this.query - (nq >> 1)));
    r0 = Math.max(0, Math.min(r0, m.n_queries - nq));
    if (overlayOnly && this.linesGeo) r0 = this.linesGeo.r0;
    const panel = this.currentPanels[0];
    const keys = overlayOnly && this.linesGeo ? this.linesGeo.keys : this.linesKeys(panel, fit);
    const nk = keys.length;
    height = Math.max(nq, nk) * rowPx;
    const numbered = m.n_queries > fit || m.n_keys > fit;
    const name = (labels, i) => (numbered ? numberedLabel(labels, i) : `${labels[i]}`).slice(0, 16);
    const labelW = Math.round(font * 8);
    const xL = labelW + 6, xR = xL + Math.round(font * 22);
    const width = xR + Math.max(labelW, Math.round(font * 15)) + 10;
    const top = Math.round(font * 1.8);
    const yq = (i) => top + (i - r0 + 0.5) * (height / nq);
    const slot = new Map(keys.map((j, n) => [j, n]));
    const yk = (j) => top + (slot.get(j) + 0.5) * (height / nk);
    if (!overlayOnly) this.linesGeo = { r0, nq, nk, xL, xR, top, height, labelW, keys, fit, query: this.query };
    if (!overlayOnly) {
      painter.size(width, top + height + 8 + (this.overlayHeads ? Math.round(font * 1.8) : 0));
      painter.background(this.theme.bg);
      painter.text("queries", xL - 6, 2, { size: font, align: "right", baseline: "top", bold: true });
      painter.text(nk < m.n_keys ? `keys (${nk} strongest of ${m.n_keys})` : "keys", xR + 6, 2, { size: font, baseline: "top", bold: true });
      for (let i = r0; i < r0 + nq; i++) painter.text(name(m.query_labels, i), xL - 6, yq(i), { size: font, align: "right" });
      for (const j of keys) painter.text(name(m.key_labels, j), xR + 6, yk(j), { size: font });
      for (let i = r0; i < r0 + nq; i++) {
        if (i === this.query) continue;
        for (const j of keys) {
          const w = panel.value(i, j);
          if (w > 0.01) painter.line(xL, yq(i), xR, yk(j), "#3b6fb6", Math.min(1, w) * 0.35, 1);
        }
      }
      this.root.dataset.lines = "drawn";
      this.root.dataset.linesKeys = keys.join(",");
      if (!(painter instanceof SvgPainter)) return;
    }
    // Heads overlaid: the selected query's lines from each head, one colour per head, and a legend.
    if (this.overlayHeads && this.kind === "explorer" && this.held(this.layer, this.head)) {
      const heads = [...this.overlayHeads];
      let x = xL;
      heads.forEach((h, n) => {
        const colour = HEAD_COLOURS[n % HEAD_COLOURS.length];
        painter.text(`head ${h}`, x, top + height + 2, { size: font * 0.9, baseline: "top", colour, bold: true });
        x += Math.round(font * 4.2);
        if (this.query < r0 || this.query >= r0 + nq) return;
        if (!this.held(this.layer, h)) return; // asked for; drawn when it arrives
        const hp = weightsPanel(m, this.codes[this.layer][h], this.keep, 0, this.lut);
        for (const j of keys) {
          const w = hp.value(this.query, j);
          if (w > 0.01) painter.line(xL, yq(this.query) + (n - heads.length / 2) * 1.5, xR, yk(j) + (n - heads.length / 2) * 1.5, colour, Math.max(0.35, Math.min(1, w)), 1 + 4 * w);
        }
      });
      this.root.dataset.overlay = heads.join(",");
      return;
    }
    if (this.root.dataset.overlay) delete this.root.dataset.overlay;
    // The selected query: its lines on top, opacity = weight.
    if (this.query >= r0 && this.query < r0 + nq) {
      painter.rect(0, yq(this.query) - rowPx / 2, xL - 2, rowPx, "rgba(255,64,64,0.25)");
      for (const j of keys) {
        const w = panel.value(this.query, j);
        if (w > 0.002) painter.line(xL, yq(this.query), xR, yk(j), "#e03030", Math.max(0.25, Math.min(1, w)), 1 + 3 * w);
      }
    }
  }

  drawGrid(painter, exporting = false) {
    const m = this.meta;
    const font = this.font();
    const H = m.num_heads, L = m.num_layers;
    const left = Math.round(font * 4), top = font + 8;
    let thumb;
    if (this.large()) {
      const room = this.available();
      const byW = Math.floor((room.width - left - 40 - Math.round(font * 6.2)) / H) - 6;
      const byH = Math.floor((room.height - room.chrome - top - 24) / L) - 6;
      thumb = Math.max(16, Math.min(160, byW, byH));
    } else {
      thumb = Math.max(24, Math.min(120, Math.floor((720 - 60) / H) - 6));
    }
    const width = left + H * (thumb + 6) + Math.round(font * 1.2) + Math.round(font * 6.2) + 10;
    const height = Math.max(top + L * (thumb + 6) + 10, top + font * 12);
    this.gridGeo = { left, top, thumb };
    painter.size(width, height);
    painter.background(this.theme.bg);
    for (let h = 0; h < H; h++) painter.text(`H${h}`, left + h * (thumb + 6) + thumb / 2, top - 4, { size: font, align: "center", baseline: "bottom" });
    // Thumbnails: 8-bit codes (layers, H, thumb_rows, thumb_cols), keys max-pooled, queries sampled.
    const tm = { n_queries: m.thumb_rows, n_keys: m.thumb_cols, bits: 8 };
    const full = { r0: 0, c0: 0, rows: m.thumb_rows, cols: m.thumb_cols };
    for (let l = 0; l < L; l++) {
      painter.text(`L${l}`, left - 6, top + l * (thumb + 6) + thumb / 2, { size: font, align: "right" });
      for (let h = 0; h < H; h++) {
        const box = { x: left + h * (thumb + 6), y: top + l * (thumb + 6), w: thumb, h: thumb };
        if (this.thumbs) paintMatrix(painter, weightsPanel(tm, this.thumbs, this.thumbKeep, l * H + h, this.lut), box, full);
        if (l === this.layer && h === this.head) painter.frame(box.x - 2, box.y - 2, thumb + 4, thumb + 4, "#ff4040", 3);
      }
    }
    const barX = left + H * (thumb + 6) + Math.round(font * 1.2);
    this.drawColourBars(painter, barX, top, Math.max(L * (thumb + 6), font * 10), font);
  }

  // -- the side panel: numbers and the selected row as bars
  rowStats() {
    const key = `${this.layer}/${this.head}/${this.step}/${this.revision}`;
    if (this.rowCache && this.rowCache.key === key) return this.rowCache;
    const p = this.currentPanels[0];
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < p.rows; i++) {
      let sum = 0;
      for (let j = 0; j < p.cols; j++) sum += p.value(i, j);
      lo = Math.min(lo, sum);
      hi = Math.max(hi, sum);
    }
    this.rowCache = { key, lo, hi };
    return this.rowCache;
  }

  sumRange(p) {
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < p.rows; i++) {
      let sum = 0;
      for (let j = 0; j < p.cols; j++) sum += p.value(i, j);
      if (!(sum >= lo)) lo = Number.isNaN(sum) ? NaN : Math.min(lo, sum);
      if (!(sum <= hi)) hi = Number.isNaN(sum) ? NaN : Math.max(hi, sum);
    }
    return [lo, hi];
  }

  headLargest() {
    const m = this.meta;
    if (this.kind !== "compare") return null;
    const size = m.n_queries * m.n_keys, offset = this.head * size;
    const a = this.extra.yours[this.layer], b = this.extra.reference[this.layer];
    let best = -1, at = 0;
    for (let k = 0; k < size; k++) {
      const d = Math.abs(a[offset + k] - b[offset + k]);
      const v = Number.isNaN(d) ? Infinity : d;
      if (v > best) { best = v; at = k; }
    }
    return { value: best, i: Math.floor(at / m.n_keys), j: at % m.n_keys };
  }

  updateSide() {
    const m = this.meta;
    const q = this.query;
    const label = quotedLabel;
    if (this.kind === "stepper" && this.step < 0) {
      this.numbers.innerHTML = [`<b>the inputs of head ${m.head_shown}</b>`, "Q and K make the scores (q · kᵀ); V is what the weights mix.",
        ...m.inputs.map((s, k) => `${s.name}: (${k === 0 ? "L_q" : "L_k"}, ${k === 2 ? "D_v" : "D_h"}) = (${s.rows}, ${s.cols})`)].join("<br>");
      this.bars.replaceChildren();
      return;
    }
    if (this.view === "grid") {
      const sampled = m.thumb_rows < m.n_queries || m.thumb_key_block > 1
        ? ` Thumbnails: ${m.thumb_rows} of ${m.n_queries} queries, each key block of ${m.thumb_key_block} at its largest weight.` : "";
      this.numbers.textContent = `${m.num_layers} layer(s) × ${m.num_heads} heads: click a thumbnail to open it.${sampled}`;
      this.bars.replaceChildren();
      return;
    }
    const p = this.kind === "compare" ? this.currentPanels[1] : this.currentPanels[0];
    if (p.loading) {
      this.numbers.textContent = `layer ${this.layer}, head ${this.head}: loading from the kernel…`;
      this.vectorBox.replaceChildren();
      this.bars.replaceChildren();
      return;
    }
    const [rowLabels, colLabels] = this.labels();
    const lines = [];
    if (this.kind === "stepper") {
      const s = m.steps[this.step];
      const shape = s.shape.map(([letter, n]) => letter).join(", ");
      const sizes = s.shape.map(([letter, n]) => n).join(", ");
      lines.push(`<b>step ${this.step + 1} of ${m.steps.length}: ${s.name}</b>`, `${s.formula}`,
        `shape (${shape}) = (${sizes})`);
      if (m.function_errors) {
        for (const [name, err] of Object.entries(m.function_errors)) {
          lines.push(`your function's ${name === "softmax" ? "weights" : "output"}: max |difference| ${fmt(err, 6)} ${err <= 1e-4 ? "✓" : "✗"}`);
        }
      }
    } else if (this.kind === "compare") {
      const [v, l, h, i, j] = m.largest_error;
      const head = this.headLargest();
      lines.push(`largest |yours − reference|: <b class="mha-max">${v === null ? "NaN/∞" : fmt(v, 6)}</b> at layer ${l}, head ${h}, query ${label(m.query_labels, i)} → key ${label(m.key_labels, j)}`);
      lines.push(`this head: ${fmt(head.value, 6)} at query ${label(m.query_labels, head.i)} → key ${label(m.key_labels, head.j)} (circled)`);
      const [ylo, yhi] = this.sumRange(this.currentPanels[0]), [rlo, rhi] = this.sumRange(this.currentPanels[1]);
      const bad = !(Math.abs(ylo - 1) <= 1e-3 && Math.abs(yhi - 1) <= 1e-3);
      lines.push(`row sums: yours <b class="${bad ? "mha-bad" : ""}">${fmt(ylo, 4)} to ${fmt(yhi, 4)}</b>, reference ${fmt(rlo, 4)} to ${fmt(rhi, 4)}${bad ? " ✗ (each row of weights must sum to 1)" : " ✓"}`);
    } else {
      const stats = this.rowStats();
      const rough = m.bits === 8 ? " (from 8-bit codes: each weight ±0.004)" : "";
      lines.push(`row sums: min <b>${fmt(stats.lo, 4)}</b>, max <b>${fmt(stats.hi, 4)}</b>${rough}`);
      if (q < p.rows) {
        let best = 0;
        for (let j = 1; j < p.cols; j++) if (p.value(q, j) > p.value(q, best)) best = j;
        lines.push(`query ${label(rowLabels, q)} looks most at ${label(colLabels, best)}: <b class="mha-max">${fmt(p.value(q, best), 4)}</b>`);
      }
    }
    if (this.key >= 0 && this.key < p.cols && q < p.rows) {
      lines.push(`hover: ${label(rowLabels, q)} → ${label(colLabels, this.key)}: <b>${fmt(p.value(q, this.key), 4)}</b>`);
    }
    this.numbers.innerHTML = lines.join("<br>");
    this.drawVectors();
    this.drawBars(p, rowLabels, colLabels);
  }

  drawBars(p, rowLabels, colLabels) {
    const q = this.query;
    if (q >= p.rows) return;
    const win = this.window();
    let keys = [];
    for (let j = win.c0; j < win.c0 + win.cols && j < p.cols; j++) keys.push(j);
    const byWeight = this.kind !== "stepper" || !p.signed;
    let note = byWeight ? ", largest first" : "";
    if (byWeight) keys.sort((a, b) => p.value(q, b) - p.value(q, a) || a - b);
    if (keys.length > MAX_BARS) {
      note = ` (the ${MAX_BARS} largest of keys ${win.c0}–${win.c0 + win.cols - 1})`;
      keys = keys.slice(0, MAX_BARS);
    }
    const yours = this.kind === "compare" ? this.currentPanels[0] : null; // p is then the reference
    const header = element("div", "", "");
    const what = this.kind === "stepper" && this.meta.steps[this.step].name !== "softmax" ? "row" : "attends to";
    header.innerHTML = `<b>query ${quotedLabel(rowLabels, q)}</b>${this.kind === "compare" ? " (blue: reference, orange: yours)" : ""} ${what}${note}:`;
    const rows = [header];
    let range = 1;
    if (p.signed) {
      range = 0;
      for (const j of keys) { const v = Math.abs(p.value(q, j)); if (Number.isFinite(v) && v < 1e30) range = Math.max(range, v); }
      range = range || 1;
    }
    const full = 160;
    for (const j of keys) {
      const row = element("div", "mha-bar-row" + (j === this.key ? " mha-hot" : ""));
      row.append(element("span", "", numberedLabel(colLabels, j, ": ")));
      const v = p.value(q, j);
      const cell = element("div", "mha-bar-cell");
      if (p.masked(q, j)) {
        cell.append(element("span", "mha-masked", "masked"));
      } else if (p.signed) {
        // Signed values grow from a zero line in the middle: negative to the left.
        const size = Math.max(0, Math.min(1, Math.abs(v) / range)) * (full / 2);
        const bar = element("div", v > 0 ? "mha-bar mha-warm" : "mha-bar"); // RdBu: + red, − blue
        bar.style.width = `${size}px`;
        bar.style.marginLeft = `${v > 0 ? full / 2 : full / 2 - size}px`;
        cell.classList.add("mha-signed");
        cell.append(bar);
      } else {
        const bar = element("div", "mha-bar");
        bar.style.width = `${Math.max(0, Math.min(1, v)) * full}px`;
        cell.append(bar);
        if (yours) {
          const mine = element("div", "mha-bar mha-ref");
          mine.style.width = `${Math.max(0, Math.min(1, yours.value(q, j))) * full}px`;
          cell.append(mine);
        }
      }
      row.append(cell, element("span", "mha-value", p.masked(q, j) ? "0" : yours ? `${fmt(v)} / ${fmt(yours.value(q, j))}` : fmt(v)));
      rows.push(row);
    }
    this.bars.replaceChildren(...rows);
  }

  maskText() {
    const mask = this.model.get("mask");
    const labels = this.meta.mask_labels || {};
    if (mask === "padding") return `padding (${this.model.get("valid_keys")} valid keys)`;
    return labels[mask] || mask;
  }

  titleText() {
    const m = this.meta;
    const parts = [];
    if (this.kind === "stepper") return `stepper · head ${m.head_shown} · ${this.step < 0 ? "Q, K, V" : m.steps[this.step].name}`;
    if (m.num_layers > 1 || this.kind === "compare") parts.push(`layer ${this.layer}`);
    parts.push(this.view === "grid" ? "all layers and heads" : `head ${this.head}`);
    if (this.kind === "compare") return `compare · ${parts.join(" · ")}`;
    parts.push(`mask: ${this.maskText()}`);
    parts.push(`scale ${this.model.get("scale").toFixed(3)}`);
    parts.push(this.view);
    return parts.join(" · ");
  }

  subtitleText() {
    if (this.kind === "compare") return "each row of weights sums to 1: the Σ column shows yours and the reference's";
    if (this.kind === "stepper") return this.step >= 0 && this.step < 3 ? "scores, scaled and masked share one colour scale" : "";
    return this.model.get("_note") || "";
  }

  // -- controls
  buildToolbar() {
    const m = this.meta;
    const bar = this.toolbar;
    this.buttons = { view: [], head: [], step: [] };
    const group = (name) => {
      const g = element("span", "mha-group");
      if (name) g.append(element("span", "", name));
      bar.append(g);
      return g;
    };
    if (this.kind === "explorer") {
      const g = group("view");
      for (const view of ["heatmap", "lines", "grid"]) {
        const b = button(view, `show the ${view}`, () => this.setView(view));
        b.dataset.view = view;
        this.buttons.view.push(b);
        g.append(b);
      }
      if (m.num_heads > 1) {
        this.overlayButton = button("overlay heads", "lines view: several heads at once, one colour each "
          + "(then click head numbers to add or remove them)", () => this.toggleOverlay());
        this.overlayButton.classList.add("mha-overlay");
        g.append(this.overlayButton);
      }
      if (m.has_vectors) {
        this.vectorButton = button("q·k", "the query and key vectors behind the hovered weight, "
          + "and their product in each dimension (asks the kernel for this head's vectors)", () => this.toggleVectors());
        this.vectorButton.classList.add("mha-vector-toggle");
        g.append(this.vectorButton);
      }
    }
    if (this.kind === "stepper") {
      const g = group("step");
      const inputs = button("0 Q K V", "the head's queries, keys and values", () => this.setStep(-1));
      inputs.dataset.step = -1;
      this.buttons.step.push(inputs);
      g.append(inputs);
      m.steps.forEach((s, k) => {
        const b = button(`${k + 1} ${s.name}`, s.formula, () => this.setStep(k));
        b.dataset.step = k;
        this.buttons.step.push(b);
        g.append(b);
      });
      g.append(button("◀", "previous step", () => this.setStep(Math.max(-1, this.step - 1))),
        button("▶", "next step", () => this.setStep(Math.min(m.steps.length - 1, this.step + 1))));
    }
    if (m.num_layers > 1) {
      const g = group("layer");
      this.layerSelect = element("select", "mha-layer");
      for (let l = 0; l < m.num_layers; l++) this.layerSelect.append(new Option(`layer ${l}`, l));
      this.layerSelect.addEventListener("change", () => this.setHead(Number(this.layerSelect.value), this.head));
      g.append(this.layerSelect);
    }
    if (m.num_heads > 1 && this.kind !== "stepper") {
      const g = group("head");
      if (m.num_heads <= 16) {
        for (let h = 0; h < m.num_heads; h++) {
          const b = button(`${h}`, `head ${h}`, () => (this.overlayHeads && this.view === "lines"
            ? this.toggleOverlayHead(h) : this.setHead(this.layer, h)));
          b.dataset.head = h;
          b.classList.add("mha-head");
          this.buttons.head.push(b);
          g.append(b);
        }
      } else {
        this.headSelect = element("select", "mha-head-select");
        for (let h = 0; h < m.num_heads; h++) this.headSelect.append(new Option(`head ${h}`, h));
        this.headSelect.addEventListener("change", () => this.setHead(this.layer, Number(this.headSelect.value)));
        g.append(this.headSelect);
      }
    }
    if (this.kind !== "stepper") {
      const g = group("zoom");
      g.append(button("−", "zoom out", () => this.zoom(2)), button("+", "zoom in", () => this.zoom(0.5)),
        button("fit", "the whole matrix", () => this.fit()));
    }
    const e = group("export");
    const png = button("PNG", "download the view as a PNG (with its title and colour bar)", () => this.exportPng());
    png.classList.add("mha-png");
    const svg = button("SVG", "download the view as an SVG (with its title and colour bar)", () => this.exportSvg());
    svg.classList.add("mha-svg");
    e.append(png, svg, button("A±", "presenter mode: large fonts, sized to the window", () => {
      this.root.classList.toggle("mha-large");
      this.redraw();
    }));
    this.buildKernelControls();
    this.syncButtons();
  }

  buildKernelControls() {
    const m = this.meta;
    const bar = this.kernelBar;
    this.busy = element("span", "mha-busy", "");
    if (this.kind !== "explorer" || !m.controls) return;
    if (m.offline) {
      bar.append(element("span", "mha-note", "standalone page: scale and mask need the Python kernel"));
      return;
    }
    const maskGroup = element("span", "mha-group");
    maskGroup.append(element("span", "", "mask"));
    this.maskSelect = element("select", "mha-mask");
    const labels = m.mask_labels || {};
    for (const option of m.mask_options) this.maskSelect.append(new Option(labels[option] ? labels[option].split(" (")[0] + " (given)" : option, option));
    this.maskSelect.addEventListener("change", () => this.request({ mask: this.maskSelect.value }));
    maskGroup.append(this.maskSelect);
    this.validGroup = element("span", "mha-group");
    this.validGroup.append(element("span", "", "valid keys"));
    this.validRange = element("input", "mha-valid");
    Object.assign(this.validRange, { type: "range", min: 1, max: m.n_keys, step: 1 });
    this.validReadout = element("span", "mha-readout");
    this.validRange.addEventListener("input", () => this.request({ valid_keys: Number(this.validRange.value) }));
    this.validGroup.append(this.validRange, this.validReadout);
    const scaleGroup = element("span", "mha-group");
    scaleGroup.append(element("span", "", m.scale_label));
    this.scaleRange = element("input", "mha-scale");
    Object.assign(this.scaleRange, { type: "range", min: 0, max: m.scale_max, step: m.scale_max / 80 });
    this.scaleReadout = element("span", "mha-readout mha-scale-readout");
    this.scaleRange.addEventListener("input", () => this.request({ scale: Number(this.scaleRange.value) }));
    scaleGroup.append(this.scaleRange, this.scaleReadout,
      button("reset", `back to ${m.default_scale.toFixed(3)}`, () => this.request({ scale: m.default_scale })));
    bar.append(maskGroup, this.validGroup, scaleGroup, this.busy);
    this.syncKernelControls();
  }

  syncKernelControls() {
    this.title.textContent = this.titleText();
    this.subtitle.textContent = this.subtitleText();
    if (!this.scaleRange) return;
    const model = this.model;
    this.maskSelect.value = model.get("mask");
    this.validRange.value = model.get("valid_keys");
    this.validReadout.textContent = model.get("valid_keys");
    this.validGroup.style.display = model.get("mask") === "padding" ? "" : "none";
    if (!this.pending && !this.inFlight) this.scaleRange.value = model.get("scale");
    this.scaleReadout.textContent = Number(this.scaleRange.value).toFixed(3);
  }

  showBusy(text, error = false) {
    this.busy.replaceChildren(text);
    this.busy.classList.toggle("mha-error", error);
    this.root.dataset.busy = text ? (error ? "error" : "computing") : "";
  }

  // Kernel-bound changes: one message in flight at a time; the latest wins; each carries a new
  // request number, so the kernel always answers (new weights, or an error) and nothing waits forever.
  request(change) {
    this.pending = { ...(this.pending || {}), ...change };
    if (change.scale !== undefined) this.scaleReadout.textContent = change.scale.toFixed(3);
    this.sendPending();
  }

  sendPending() {
    if (this.inFlight || !this.pending) return;
    const change = this.pending;
    this.pending = null;
    for (const [k, v] of Object.entries(change)) this.model.set(k, v);
    // What to send back: the heads on screen (or asked for), or the grid's thumbnails.
    this.model.set("_want", this.wanted());
    this.model.set("_request", (this.model.get("_request") || 0) + 1);
    this.inFlight = true;
    this.sentAt = performance.now();
    this.showBusy("computing…");
    this.model.save_changes();
    clearTimeout(this.deadline);
    this.deadline = setTimeout(() => {
      if (!this.inFlight) return;
      this.inFlight = false;
      this.showBusy(`no answer from the kernel after ${DEADLINE_MS / 1000} s (busy, restarted or stopped?) `, true);
      const retry = button("retry", "send the controls again", () => this.request({ scale: Number(this.scaleRange.value) }));
      retry.classList.add("mha-retry");
      this.busy.append(retry);
      this.sendPending();
    }, DEADLINE_MS);
  }

  syncButtons() {
    for (const b of this.buttons.view) b.classList.toggle("mha-on", b.dataset.view === this.view);
    const overlaid = (h) => this.overlayHeads !== null && this.view === "lines" && this.overlayHeads.has(h);
    for (const b of this.buttons.head) {
      const h = Number(b.dataset.head);
      b.classList.toggle("mha-on", h === this.head || overlaid(h));
      b.style.boxShadow = overlaid(h) ? `inset 0 -4px 0 ${HEAD_COLOURS[[...this.overlayHeads].indexOf(h) % HEAD_COLOURS.length]}` : "";
    }
    if (this.overlayButton) {
      this.overlayButton.classList.toggle("mha-on", this.overlayHeads !== null);
      this.overlayButton.style.display = this.view === "lines" ? "" : "none";
    }
    if (this.vectorButton) this.vectorButton.classList.toggle("mha-on", this.showVectors);
    for (const b of this.buttons.step) b.classList.toggle("mha-on", Number(b.dataset.step) === this.step);
    if (this.layerSelect) this.layerSelect.value = this.layer;
    if (this.headSelect) this.headSelect.value = this.head;
  }

  // Lines view: several heads at once. On: every head (at most eight, from the one shown).
  toggleOverlay() {
    if (this.overlayHeads) this.overlayHeads = null;
    else {
      const H = this.meta.num_heads;
      this.overlayHeads = new Set(Array.from({ length: Math.min(H, HEAD_COLOURS.length) }, (_, n) => (this.head + n) % H));
    }
    this.syncButtons();
    this.redraw();
    this.ensureData();
  }

  toggleOverlayHead(h) {
    if (this.overlayHeads.has(h)) {
      if (this.overlayHeads.size > 1) this.overlayHeads.delete(h);
    } else if (this.overlayHeads.size < HEAD_COLOURS.length) this.overlayHeads.add(h);
    this.syncButtons();
    this.redraw();
    this.ensureData();
  }

  // The neuron view: this head's q and k come from the kernel once, when first needed.
  toggleVectors() {
    this.showVectors = !this.showVectors;
    this.syncButtons();
    this.askVectors();
    this.updateSide();
  }

  askVectors() {
    if (!this.showVectors || this.meta.offline) return;
    const key = `${this.layer}:${this.head}`;
    if (this.vectorCache.has(key)) return;
    this.model.set("_want_vectors", key);
    this.model.save_changes();
  }

  // q_i, k_j and q_i,d · k_j,d for each dimension d: their sum times the scale is the score.
  drawVectors() {
    const box = this.vectorBox;
    if (!this.showVectors || this.kind !== "explorer" || this.view === "grid") {
      box.replaceChildren();
      return;
    }
    const v = this.vectorCache.get(`${this.layer}:${this.head}`);
    const m = this.meta, i = this.query, j = this.key;
    if (!v) {
      box.textContent = "q·k: asking the kernel for this head's queries and keys…";
      return;
    }
    if (v.error) {
      box.textContent = `q·k: ${v.error}`;
      return;
    }
    if (j < 0 || j >= m.n_keys) {
      box.textContent = "q·k: point at a cell to see its query and key vectors.";
      return;
    }
    const D = v.dims, scale = Number(this.model.get("scale"));
    const products = [];
    let sum = 0, top = 0;
    for (let d = 0; d < D; d++) {
      const q = v.q[i * D + d], k = v.k[j * D + d], p = q * k;
      products.push({ d, q, k, p });
      sum += p;
      top = Math.max(top, Math.abs(p));
    }
    let shown = products;
    let note = "";
    if (D > 32) {
      shown = [...products].sort((a, b) => Math.abs(b.p) - Math.abs(a.p)).slice(0, 32);
      note = ` (the 32 largest |q_d k_d| of ${D})`;
    }
    const label = quotedLabel;
    const rows = shown.map(({ d, q, k, p }) => {
      const width = top > 0 ? Math.round(80 * Math.abs(p) / top) : 0;
      const bar = `<span class="mha-vbar" style="display:inline-block;height:0.8em;width:${width}px;background:${p >= 0 ? POSITIVE : NEGATIVE}"></span>`;
      return `<tr data-dim="${d}"><td>${d}</td><td>${fmt(q, 3)}</td><td>${fmt(k, 3)}</td><td>${fmt(p, 3)}</td><td>${bar}</td></tr>`;
    });
    box.innerHTML = `<div><b>q·k behind ${label(m.query_labels, i)} → ${label(m.key_labels, j)}</b>, head ${this.head}</div>`
      + `<div>score = scale × Σ<sub>d</sub> q<sub>d</sub> k<sub>d</sub> = ${fmt(scale, 3)} × ${fmt(sum, 4)} = <b class="mha-score">${fmt(scale * sum, 4)}</b>${note}</div>`
      + `<table class="mha-vector-table"><tr><th>d</th><th>q<sub>d</sub></th><th>k<sub>d</sub></th><th>q<sub>d</sub>k<sub>d</sub></th><th>`
      + `<span style="color:${POSITIVE}">■ +</span> <span style="color:${NEGATIVE}">■ −</span></th></tr>${rows.join("")}</table>`;
    this.root.dataset.vectors = `${this.layer}:${this.head}:${i}:${j}`;
  }

  setView(view) {
    this.view = view;
    this.syncButtons();
    this.redraw();
    this.ensureData();
  }

  // A head never received yet is asked for; the picture switches when it arrives.
  setHead(layer, head) {
    this.rowCache = null;
    if (this.kind === "explorer" && this.codes && !this.held(layer, head) && !this.meta.offline) {
      this.wantLayer = layer;
      this.wantHead = head;
      this.showBusy(`loading layer ${layer}, head ${head}…`);
      this.syncButtons();
      this.ensureData();
      return;
    }
    this.wantLayer = this.wantHead = null;
    this.layer = layer;
    this.head = head;
    this.syncButtons();
    this.askVectors();
    this.redraw();
    this.ensureData();
  }

  setStep(step) {
    this.step = step;
    this.key = -1;
    this.syncButtons();
    this.redraw();
  }

  zoom(factor, centre) {
    const m = this.meta;
    const w = this.win;
    const ci = centre ? centre[0] : w.r0 + w.rows / 2;
    const cj = centre ? centre[1] : w.c0 + w.cols / 2;
    const rows = Math.max(Math.min(8, m.n_queries), Math.min(m.n_queries, Math.round(w.rows * factor)));
    const cols = Math.max(Math.min(8, m.n_keys), Math.min(m.n_keys, Math.round(w.cols * factor)));
    this.win = {
      rows, cols,
      r0: Math.max(0, Math.min(m.n_queries - rows, Math.round(ci - rows / 2))),
      c0: Math.max(0, Math.min(m.n_keys - cols, Math.round(cj - cols / 2))),
    };
    this.redraw();
  }

  fit() {
    this.win = { r0: 0, c0: 0, rows: this.meta.n_queries, cols: this.meta.n_keys };
    this.redraw();
  }

  pan(di, dj) {
    const m = this.meta, w = this.win;
    w.r0 = Math.max(0, Math.min(m.n_queries - w.rows, w.r0 + di));
    w.c0 = Math.max(0, Math.min(m.n_keys - w.cols, w.c0 + dj));
    this.redraw();
  }

  // -- pointer and keyboard
  hit(event) {
    const rect = this.overlay.getBoundingClientRect();
    const x = event.clientX - rect.left, y = event.clientY - rect.top;
    if (this.view === "grid") {
      const g = this.gridGeo;
      const h = Math.floor((x - g.left) / (g.thumb + 6)), l = Math.floor((y - g.top) / (g.thumb + 6));
      if (h >= 0 && h < this.meta.num_heads && l >= 0 && l < this.meta.num_layers) return { layer: l, head: h };
      return null;
    }
    if (this.kind === "stepper" && this.step < 0) return null;
    if (this.view === "lines") {
      const g = this.linesGeo;
      if (!g || x > g.xL + 4) return null;
      const i = g.r0 + Math.floor(((y - g.top) * g.nq) / g.height);
      return i >= g.r0 && i < g.r0 + g.nq ? { i, j: -1, x, y } : null;
    }
    const geo = this.geo;
    if (!geo) return null;
    for (const box of geo.boxes) {
      const inRows = y >= box.y && y < box.y + box.h;
      if (!inRows) continue;
      const i = geo.win.r0 + Math.floor(((y - box.y) * geo.win.rows) / box.h);
      if (x >= box.x && x < box.x + box.w) {
        return { i, j: geo.win.c0 + Math.floor(((x - box.x) * geo.win.cols) / box.w), x, y };
      }
      if (x < box.x && box === geo.boxes[0]) return { i, j: -1, x, y }; // on a query label
    }
    return null;
  }

  bindEvents() {
    const overlay = this.overlay;
    let drag = null;
    overlay.addEventListener("mousemove", (event) => {
      const start = performance.now();
      if (drag && this.view === "heatmap") {
        const geo = this.geo;
        const di = Math.round(((drag.y - event.clientY) * geo.win.rows) / geo.boxes[0].h);
        const dj = Math.round(((drag.x - event.clientX) * geo.win.cols) / geo.boxes[0].w);
        if (di || dj) {
          drag = { x: event.clientX, y: event.clientY, moved: true };
          this.pan(di, dj);
        }
        return;
      }
      const hit = this.hit(event);
      if (this.view === "grid" || !hit) {
        this.tip.style.display = "none";
        overlay.style.cursor = hit ? "pointer" : "default";
        return;
      }
      const moved = (!this.pinned && hit.i !== this.query) || hit.j !== this.key;
      if (!this.pinned) this.query = hit.i;
      this.key = hit.j;
      // Lines over more keys than fit: the key column follows the hovered query's strongest keys.
      const refit = this.view === "lines" && this.linesGeo && this.linesGeo.nk < this.meta.n_keys && this.linesGeo.query !== this.query;
      if (refit) this.redraw();
      else if (moved) this.repaint();
      this.showTip(hit);
      this.perf.lastRepaintMs = performance.now() - start;
      const stamp = event.timeStamp, hover = (this.perf.hovers = (this.perf.hovers || 0) + 1);
      requestAnimationFrame(() => {
        this.perf.lastFrameMs = performance.now() - stamp;
        this.perf.framedHover = hover;
      });
    });
    overlay.addEventListener("mouseleave", () => {
      this.tip.style.display = "none";
      this.key = -1;
      drag = null;
      this.repaint();
    });
    overlay.addEventListener("mousedown", (event) => {
      if (this.view === "heatmap" && this.kind !== "stepper") drag = { x: event.clientX, y: event.clientY, moved: false };
    });
    overlay.addEventListener("mouseup", () => {
      const wasDrag = drag && drag.moved;
      drag = null;
      if (wasDrag) return;
    });
    overlay.addEventListener("click", (event) => {
      const hit = this.hit(event);
      if (!hit) return;
      if (this.view === "grid") {
        this.layer = hit.layer;
        this.head = hit.head;
        this.wantLayer = this.wantHead = null;
        this.setView("heatmap"); // a head not received yet is drawn blank and asked for
        return;
      }
      this.pinned = !this.pinned || hit.i !== this.query;
      this.query = hit.i;
      this.root.dataset.pinned = this.pinned;
      if (this.view === "lines" && this.linesGeo && this.linesGeo.query !== this.query) this.redraw();
      else this.repaint();
    });
    overlay.addEventListener("wheel", (event) => {
      if (this.view !== "heatmap" || this.kind === "stepper") return;
      const hit = this.hit(event);
      if (!hit || hit.j < 0) return;
      event.preventDefault();
      this.zoom(event.deltaY > 0 ? 1.5 : 1 / 1.5, [hit.i, hit.j]);
    }, { passive: false });
    this.root.addEventListener("keydown", (event) => {
      const rows = this.currentPanels && this.currentPanels.length ? this.currentPanels[0].rows : this.meta.n_queries;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        this.query = Math.max(0, Math.min(rows - 1, this.query + (event.key === "ArrowDown" ? 1 : -1)));
        this.pinned = true;
        this.repaint();
        event.preventDefault();
      }
    });
  }

  showTip(hit) {
    if (hit.j < 0) {
      this.tip.style.display = "none";
      return;
    }
    const panels = this.currentPanels;
    const [rowLabels, colLabels] = this.labels();
    let text = `${rowLabels[hit.i]} → ${colLabels[hit.j]}: `;
    if (this.kind === "compare") {
      text += `yours ${fmt(panels[0].value(hit.i, hit.j), 4)}, reference ${fmt(panels[1].value(hit.i, hit.j), 4)}, difference ${fmt(panels[2].value(hit.i, hit.j), 6)}`;
    } else {
      text += fmt(panels[0].value(hit.i, hit.j), this.meta.bits === 8 && this.kind === "explorer" ? 3 : 4);
    }
    this.tip.textContent = text;
    this.tip.style.display = "block";
    this.tip.style.left = `${hit.x + 14}px`;
    this.tip.style.top = `${hit.y + 14}px`;
  }

  // -- export: the same drawing code, into a PNG or an SVG
  fileName(extension) {
    const view = this.kind === "explorer" ? this.view : this.kind;
    return `attention-${view}-layer${this.layer}-head${this.head}.${extension}`;
  }

  // The title band of an export: the title and the subtitle, in the theme's colours.
  exportTitle() {
    return [this.titleText(), this.subtitleText()];
  }

  // A PNG of what is on screen, with the title above it (the colour bar and labels are on the canvas).
  pngCanvas() {
    const font = this.font();
    const [title, subtitle] = this.exportTitle();
    const band = Math.round(font * (subtitle ? 3.2 : 1.9));
    const canvas = document.createElement("canvas");
    canvas.width = this.base.width;
    canvas.height = this.base.height + band;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = this.theme.bg;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = this.theme.fg;
    ctx.textBaseline = "alphabetic";
    ctx.font = `bold ${Math.round(font * 1.2)}px sans-serif`;
    ctx.fillText(title, 8, Math.round(font * 1.3));
    if (subtitle) {
      ctx.font = `${font}px sans-serif`;
      ctx.fillText(subtitle, 8, Math.round(font * 2.7));
    }
    ctx.drawImage(this.base, 0, band);
    ctx.drawImage(this.overlay, 0, band);
    return canvas;
  }

  exportPng() {
    this.pngCanvas().toBlob((blob) => download(this.fileName("png"), blob), "image/png");
  }

  svgText() {
    const painter = new SvgPainter();
    painter.fg = this.theme.fg;
    const saved = this.currentPanels;
    if (this.kind === "stepper" && this.step < 0) this.drawInputs(painter);
    else if (this.view === "grid") this.drawGrid(painter, true);
    else if (this.view === "lines") this.drawLines(painter);
    else {
      this.drawMatrices(painter, true);
      this.drawMarks(painter);
    }
    this.currentPanels = saved;
    const [title, subtitle] = this.exportTitle();
    return painter.toString(title, subtitle, this.font(), this.theme);
  }

  exportSvg() {
    download(this.fileName("svg"), new Blob([this.svgText()], { type: "image/svg+xml" }));
  }
}

// anywidget calls render once per view and the returned function when the view goes away.
function render({ model, el }) {
  const explorer = new Explorer(model, el);
  el.mhaExplorer = explorer; // for tests and benchmarks: el.mhaExplorer.perf
  return () => {
    explorer.destroy();
    delete el.mhaExplorer;
  };
}
// save_html(): the same module inlined in a page, with a stand-in for the widget model.
function renderStandalone(data, el) {
  const state = data.state;
  data.buffer_paths.forEach((path, k) => {
    const text = atob(data.buffers[k]);
    const bytes = new Uint8Array(text.length);
    // A plain loop: at 12 x 12 x 512 (51 MB) the page draws in 0.6 s, against 2.5 s with Array.from.
    for (let n = 0; n < text.length; n++) bytes[n] = text.charCodeAt(n);
    let target = state;
    for (const part of path.slice(0, -1)) target = target[part];
    target[path[path.length - 1]] = new DataView(bytes.buffer);
  });
  const listeners = {};
  const model = {
    get: (name) => state[name],
    set: (name, value) => { state[name] = value; },
    on: (event, callback) => { (listeners[event] = listeners[event] || []).push(callback); },
    off: () => {},
    save_changes: () => {},
    send: () => {},
  };
  render({ model, el });
}

export default { render };
