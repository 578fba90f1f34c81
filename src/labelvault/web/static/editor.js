// The labelling widgets shared by the annotator and the reviewer: content rendered as text
// (never markup), classification buttons, entity spans from the mouse selection, boxes drawn
// on a canvas over the watermarked image rendition. Coordinates: code points / image pixels.

import { el, watermark } from "./common.js";
import { Offsets } from "./offsets.js";

const MAX_SHORTCUT = 9;

export function summarize(result) {
  if (!result) return "";
  if (result.labels) return result.labels.join(", ") || "(none)";
  if (result.spans) return `${result.spans.length} span(s)`;
  if (result.boxes) return `${result.boxes.length} box(es)`;
  return "";
}

export class Editor {
  // options: { schema, text, image (ImageBitmap), width, height, result }
  constructor(root, options) {
    this.root = root;
    this.schema = options.schema || { kind: "text_classification", labels: [] };
    this.kind = this.schema.kind;
    this.labels = this.schema.labels || [];
    this.multi = Boolean(this.schema.multi);
    this.text = options.text ?? null;
    this.image = options.image || null;
    this.width = options.width || (this.image ? this.image.width : 0);
    this.height = options.height || (this.image ? this.image.height : 0);
    const prior = options.result || {};
    this.chosen = new Set(prior.labels || []);
    this.spans = (prior.spans || []).map((s) => ({ ...s }));
    this.boxes = (prior.boxes || []).map((b) => ({ ...b }));
    this.active = 0; // the label new spans/boxes get
    this.pendingSelection = null;
    root.replaceChildren();
    this.build();
  }

  build() {
    const content = el("div", { class: "content", dataset: { testid: "content" } });
    if (this.text !== null) {
      this.offsets = new Offsets(this.text);
      this.textBody = el("div", { class: "text-body", dataset: { testid: "item-text" } });
      content.append(this.textBody);
      if (this.kind === "text_spans") this.bindSelection();
    }
    if (this.image) {
      this.canvas = el("canvas", { class: "image-canvas", dataset: { testid: "image-canvas" } });
      this.canvas.width = this.width;
      this.canvas.height = this.height;
      content.append(this.canvas);
      if (this.kind === "image_boxes") this.bindDrawing();
    }
    watermark(content);
    this.labelBar = el("div", { class: "labels", role: "group", "aria-label": "Labels" });
    this.labels.forEach((label, index) => {
      const key = index < MAX_SHORTCUT ? String(index + 1) : "";
      const button = el("button", {
        type: "button", class: "label", dataset: { index: String(index), testid: `label-${index + 1}` },
      }, key ? el("kbd", {}, key) : null, " ", label);
      button.addEventListener("mousedown", (event) => event.preventDefault()); // keep the selection
      button.addEventListener("click", () => {
        this.pressLabel(index);
        button.blur();
      });
      this.labelBar.append(button);
    });
    this.list = el("ul", { class: "marks", dataset: { testid: "marks" } });
    this.hint = el("p", { class: "small hint" }, this.hintText());
    this.root.append(content, this.labelBar, this.hint, this.list);
    this.render();
  }

  hintText() {
    if (this.kind === "text_spans") return "Select text with the mouse, then press a label's number.";
    if (this.kind === "image_boxes") return "Choose a label, then drag a box on the image.";
    return this.multi ? "Toggle every label that applies." : "Choose one label.";
  }

  // -- labels -----------------------------------------------------------------------------
  pressLabel(index) {
    if (index < 0 || index >= this.labels.length) return;
    const label = this.labels[index];
    if (this.kind === "text_classification" || this.kind === "image_classification") {
      if (this.multi) {
        if (this.chosen.has(label)) this.chosen.delete(label);
        else this.chosen.add(label);
      } else {
        this.chosen = new Set([label]);
      }
    } else if (this.kind === "text_spans") {
      this.active = index;
      const picked = this.currentSelection() || this.pendingSelection;
      if (picked) this.addSpan(picked.start, picked.end, label);
      this.pendingSelection = null;
      const selection = window.getSelection();
      if (selection) selection.removeAllRanges();
    } else {
      this.active = index;
    }
    this.render();
  }

  // -- spans ------------------------------------------------------------------------------
  bindSelection() {
    this.textBody.addEventListener("mouseup", () => {
      this.pendingSelection = this.currentSelection();
    });
  }

  unitOffset(node, offset) {
    const range = document.createRange();
    range.setStart(this.textBody, 0);
    range.setEnd(node, offset);
    return range.toString().length;
  }

  currentSelection() {
    const selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return null;
    const range = selection.getRangeAt(0);
    if (!this.textBody.contains(range.startContainer) || !this.textBody.contains(range.endContainer)) {
      return null;
    }
    const startUnit = this.unitOffset(range.startContainer, range.startOffset);
    const endUnit = this.unitOffset(range.endContainer, range.endOffset);
    const start = this.offsets.toCodePoint(Math.min(startUnit, endUnit));
    const end = this.offsets.toCodePoint(Math.max(startUnit, endUnit));
    return end > start ? { start, end } : null;
  }

  addSpan(start, end, label) {
    if (this.spans.some((s) => s.start === start && s.end === end && s.label === label)) return;
    this.spans.push({ start, end, label });
    this.spans.sort((a, b) => a.start - b.start || a.end - b.end);
  }

  renderText() {
    if (!this.textBody) return;
    const nodes = [];
    if (this.kind !== "text_spans" || this.spans.length === 0) {
      nodes.push(document.createTextNode(this.text));
    } else {
      const cuts = new Set([0, this.offsets.length]);
      for (const s of this.spans) {
        cuts.add(s.start);
        cuts.add(s.end);
      }
      const points = [...cuts].sort((a, b) => a - b);
      for (let i = 0; i + 1 < points.length; i += 1) {
        const [from, to] = [points[i], points[i + 1]];
        const piece = this.offsets.slice(from, to);
        const covering = this.spans.filter((s) => s.start <= from && s.end >= to);
        if (covering.length === 0) {
          nodes.push(document.createTextNode(piece));
        } else {
          const labelIndex = this.labels.indexOf(covering[0].label);
          nodes.push(el("mark", {
            class: `span c${labelIndex % 8}${covering.length > 1 ? " nested" : ""}`,
            title: covering.map((s) => s.label).join(", "),
          }, piece));
        }
      }
    }
    this.textBody.replaceChildren(...nodes);
  }

  // -- boxes ------------------------------------------------------------------------------
  toImage(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * this.width;
    const y = ((event.clientY - rect.top) / rect.height) * this.height;
    return {
      x: Math.max(0, Math.min(this.width, x)),
      y: Math.max(0, Math.min(this.height, y)),
    };
  }

  bindDrawing() {
    let origin = null;
    this.canvas.addEventListener("pointerdown", (event) => {
      origin = this.toImage(event);
      this.canvas.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    this.canvas.addEventListener("pointermove", (event) => {
      if (!origin) return;
      this.draft = this.boxFrom(origin, this.toImage(event));
      this.drawCanvas();
    });
    this.canvas.addEventListener("pointerup", (event) => {
      if (!origin) return;
      const box = this.boxFrom(origin, this.toImage(event));
      origin = null;
      this.draft = null;
      if (box.w >= 2 && box.h >= 2) {
        this.boxes.push({ ...box, label: this.labels[this.active] });
      }
      this.render();
    });
  }

  boxFrom(a, b) {
    const x = Math.floor(Math.min(a.x, b.x));
    const y = Math.floor(Math.min(a.y, b.y));
    const w = Math.min(Math.ceil(Math.max(a.x, b.x)), this.width) - x;
    const h = Math.min(Math.ceil(Math.max(a.y, b.y)), this.height) - y;
    return { x, y, w, h };
  }

  drawCanvas() {
    if (!this.canvas) return;
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.drawImage(this.image, 0, 0);
    const line = Math.max(2, Math.round(this.width / 300));
    ctx.lineWidth = line;
    ctx.font = `${Math.max(12, Math.round(this.width / 40))}px sans-serif`;
    const all = this.draft ? [...this.boxes, { ...this.draft, label: this.labels[this.active] }] : this.boxes;
    for (const b of all) {
      ctx.strokeStyle = "#ffbf00";
      ctx.strokeRect(b.x, b.y, b.w, b.h);
      ctx.fillStyle = "#ffbf00";
      ctx.fillText(b.label, b.x + line, Math.max(b.y - line, 12));
    }
  }

  // -- output -----------------------------------------------------------------------------
  render() {
    for (const button of this.labelBar.querySelectorAll("button.label")) {
      const label = this.labels[Number(button.dataset.index)];
      const on = this.kind.endsWith("classification") ? this.chosen.has(label)
        : Number(button.dataset.index) === this.active;
      button.classList.toggle("on", on);
      button.setAttribute("aria-pressed", on ? "true" : "false");
    }
    this.renderText();
    this.drawCanvas();
    const entries = [];
    if (this.kind === "text_spans") {
      this.spans.forEach((s, i) => entries.push(this.entry(
        `${s.label}: “${this.offsets.slice(s.start, s.end)}” [${s.start}–${s.end}]`,
        () => this.spans.splice(i, 1))));
    }
    if (this.kind === "image_boxes") {
      this.boxes.forEach((b, i) => entries.push(this.entry(
        `${b.label}: x ${b.x}, y ${b.y}, ${b.w}×${b.h}`, () => this.boxes.splice(i, 1))));
    }
    this.list.replaceChildren(...entries);
  }

  entry(text, remove) {
    const button = el("button", { type: "button", class: "link" }, "remove");
    button.addEventListener("click", () => {
      remove();
      this.render();
    });
    return el("li", {}, text, " ", button);
  }

  result() {
    if (this.kind.endsWith("classification")) {
      return { labels: this.labels.filter((label) => this.chosen.has(label)) };
    }
    if (this.kind === "text_spans") {
      return { spans: this.spans.map(({ start, end, label }) => ({ start, end, label })) };
    }
    return { boxes: this.boxes.map(({ x, y, w, h, label }) => ({ x, y, w, h, label })) };
  }

  ready() {
    if (this.kind.endsWith("classification")) return this.multi || this.chosen.size === 1;
    return true;
  }
}

export async function loadImage(blob) {
  return createImageBitmap(blob);
}
