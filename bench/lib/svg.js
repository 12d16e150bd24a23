// @ts-check
// Pure, hand-written SVG chart: requests/s (top) and p99 latency (bottom, log
// scale) over time for several servers on the same axes, with each server's
// reload windows shaded and a marker at each reload signal. No I/O.

/** @param {string} s */
const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** "Nice" linear ticks from 0 to >= max. @param {number} max @param {number} [n] */
export function niceTicks(max, n = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const ticks = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return ticks;
}

/**
 * @param {{ title: string, subtitle?: string, width?: number, height?: number, windowLabel?: string,
 *   series: Array<{ name: string, color: string, timeline: Array<{ t: number, rps: number, p99: number|null }>,
 *                   windows: Array<[number, number]> }> }} o   windows in ms, timeline t in s
 */
export function renderTimelineSvg(o) {
  const W = o.width ?? 960;
  const H = o.height ?? 610;
  const L = 72, R = 24;
  const top = { y0: 100, y1: 320 };
  const bot = { y0: 366, y1: 566 };
  const maxT = Math.max(1, ...o.series.flatMap((s) => [...s.timeline.map((b) => b.t + 0.5), ...s.windows.map((w) => w[1] / 1000)]));
  const maxRps = Math.max(1, ...o.series.flatMap((s) => s.timeline.map((b) => b.rps)));
  const p99s = o.series.flatMap((s) => s.timeline.map((b) => b.p99)).filter((v) => v != null && v > 0).map(Number);
  const lo = Math.min(1, 10 ** Math.floor(Math.log10(p99s.length ? Math.min(...p99s) : 1)));
  const hi = 10 ** Math.ceil(Math.log10(p99s.length ? Math.max(...p99s, lo * 10) : 10));
  const xT = niceTicks(maxT, 10);
  const xMax = xT[xT.length - 1];
  const yT = niceTicks(maxRps * 1.1, 5);
  const yMax = yT[yT.length - 1];
  const x = (/** @type {number} */ t) => L + (t / xMax) * (W - L - R);
  const yR = (/** @type {number} */ v) => top.y1 - (v / yMax) * (top.y1 - top.y0);
  const yL = (/** @type {number} */ v) => bot.y1 - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (bot.y1 - bot.y0);
  const f = (/** @type {number} */ n) => n.toFixed(1);
  const parts = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  parts.push(`<text x="${L}" y="24" font-size="16" font-weight="600">${esc(o.title)}</text>`);
  if (o.subtitle) parts.push(`<text x="${L}" y="44" fill="#555">${esc(o.subtitle)}</text>`);
  // Reload windows + markers (both panels).
  for (const s of o.series) {
    for (const [a, b] of s.windows) {
      const xa = x(a / 1000), xb = Math.max(x(b / 1000), xa + 1);
      for (const p of [top, bot]) {
        parts.push(`<rect x="${f(xa)}" y="${p.y0}" width="${f(xb - xa)}" height="${p.y1 - p.y0}" fill="${s.color}" fill-opacity="0.10"/>`);
        parts.push(`<line x1="${f(xa)}" x2="${f(xa)}" y1="${p.y0}" y2="${p.y1}" stroke="${s.color}" stroke-dasharray="4 3" stroke-opacity="0.8"/>`);
      }
      parts.push(`<path d="M${f(xa - 4)},${top.y0 - 8} L${f(xa + 4)},${top.y0 - 8} L${f(xa)},${top.y0 - 1} Z" fill="${s.color}"/>`);
    }
  }
  // Axes and grid.
  for (const [p, ticks, fy, fmt, label] of /** @type {const} */ ([
    [top, yT, yR, (/** @type {number} */ v) => (v >= 1000 ? `${v / 1000}k` : String(v)), 'requests/s (keep-alive client, completed)'],
    [bot, logTicks(lo, hi), yL, (/** @type {number} */ v) => (v >= 1000 ? `${v / 1000}s` : `${v}ms`), 'p99 latency (log scale)'],
  ])) {
    for (const v of ticks) {
      const yy = fy(v);
      parts.push(`<line x1="${L}" x2="${W - R}" y1="${f(yy)}" y2="${f(yy)}" stroke="#e5e5e5"/>`);
      parts.push(`<text x="${L - 6}" y="${f(yy + 4)}" text-anchor="end" fill="#444">${fmt(v)}</text>`);
    }
    parts.push(`<line x1="${L}" x2="${L}" y1="${p.y0}" y2="${p.y1}" stroke="#888"/>`);
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${p.y1}" y2="${p.y1}" stroke="#888"/>`);
    parts.push(`<text x="${L}" y="${p.y0 - 12}" fill="#222" font-weight="600">${esc(label)}</text>`);
    for (const t of xT) parts.push(`<text x="${f(x(t))}" y="${p.y1 + 15}" text-anchor="middle" fill="#444">${t}</text>`);
  }
  parts.push(`<text x="${W - R}" y="${bot.y1 + 32}" text-anchor="end" fill="#444">seconds since load start (▼ reload signal; shaded: ${esc(o.windowLabel ?? 'reload window')})</text>`);
  // Series lines.
  for (const s of o.series) {
    const rpsPts = s.timeline.map((b) => `${f(x(b.t))},${f(yR(b.rps))}`);
    if (rpsPts.length) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" points="${rpsPts.join(' ')}"/>`);
    /** @type {string[][]} */
    const segs = [[]];
    for (const b of s.timeline) {
      if (b.p99 == null) { if (segs[segs.length - 1].length) segs.push([]); continue; }
      segs[segs.length - 1].push(`${f(x(b.t))},${f(yL(b.p99))}`);
    }
    for (const seg of segs) if (seg.length) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" points="${seg.join(' ')}"/>`);
  }
  // Legend.
  let lx = L;
  o.series.forEach((s) => {
    const ly = 64;
    parts.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="3"/>`);
    parts.push(`<text x="${lx + 28}" y="${ly + 4}">${esc(s.name)}</text>`);
    lx += 40 + s.name.length * 7;
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** @param {number} lo @param {number} hi */
function logTicks(lo, hi) {
  const out = [];
  for (let v = lo; v <= hi * 1.0001; v *= 10) out.push(Math.round(v * 1000) / 1000);
  return out;
}
