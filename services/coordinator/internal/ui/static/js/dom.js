// Small DOM helpers: every text goes in through textContent, never as HTML.

// h builds an element: h('td', {class: 'x', 'aria-label': 'y', style: {'--c': 'red'}}, child, 'text').
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    // Styles go through the CSSOM: the content security policy refuses
    // style attributes.
    else if (k === 'style' && typeof v === 'object') for (const [p, x] of Object.entries(v)) el.style.setProperty(p, x);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// badge is a coloured status word; the word itself carries the meaning.
export function badge(text, kind) {
  return h('span', {class: 'badge ' + (kind || 'neutral')}, text);
}

// table builds a table with a caption (visible or not), headers and rows.
export function table(caption, headers, rows, opts = {}) {
  return h('table', {class: opts.class || ''},
    h('caption', {class: opts.hideCaption ? 'sr-only' : ''}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {scope: 'col'}, x)))),
    h('tbody', {}, rows));
}

// ago renders an RFC 3339 time as "12s ago" with the time as a tooltip.
export function ago(ts, now = Date.now()) {
  if (!ts) return '–';
  const t = Date.parse(ts);
  if (Number.isNaN(t) || t <= 0) return '–';
  const s = Math.max(0, Math.round((now - t) / 1000));
  let txt;
  if (s < 90) txt = `${s}s ago`;
  else if (s < 5400) txt = `${Math.round(s / 60)}m ago`;
  else if (s < 172800) txt = `${Math.round(s / 3600)}h ago`;
  else txt = `${Math.round(s / 86400)}d ago`;
  return h('time', {datetime: ts, title: ts}, txt);
}

// enumName strips a proto enum's prefix: ("ROLE_MASTER", "ROLE_") → "master".
export function enumName(v, prefix) {
  if (!v) return '';
  return String(v).replace(prefix, '').toLowerCase().replaceAll('_', ' ');
}

// seconds renders a protobuf Duration ("1.250s") as "1.25 s".
export function seconds(d) {
  if (!d) return '–';
  const v = parseFloat(String(d));
  return Number.isNaN(v) ? String(d) : `${v < 10 ? v.toFixed(2) : v.toFixed(1)} s`;
}

// rpo renders a failover record's RPO: the transactions the new master
// lacks, or unknown.
export function rpo(r) {
  const n = Number(r.rpo_transactions);
  if (n < 0) return 'unknown';
  return n === 0 ? '0 transactions' : `${n} transaction${n === 1 ? '' : 's'} lost`;
}
