// Replication: per pair of DCs (origin → target) the capture → apply lag,
// the apply rate, the target's pending backlog, the requests retried and
// dead-lettered, and a sparkline of the lag over the last minutes; for
// operators, putting a DC's dead letters back.
import {h, badge, table, ago} from '../dom.js';

export const title = 'Replication';
export const topics = ['replication'];

// HISTORY is how far back the sparklines reach. The page gathers the
// samples itself, from every report it reads while it is open.
const HISTORY = 5 * 60 * 1000;
const SVG = 'http://www.w3.org/2000/svg';

// samples maps "origin>target" to [{t, lag}] (lag p99 in ms), oldest first.
const samples = new Map();

function remember(key, t, lag) {
  const list = samples.get(key) || [];
  if (!list.length || list[list.length - 1].t < t) list.push({t, lag});
  while (list.length && list[0].t < t - HISTORY) list.shift();
  samples.set(key, list);
  return list;
}

// sparkline draws the samples as a line, scaled to their own maximum; the
// text beside it says the range, so the picture is not the only carrier.
function sparkline(key, list) {
  const w = 120; const hgt = 24;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('width', String(w));
  svg.setAttribute('height', String(hgt));
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  const max = Math.max(1, ...list.map((s) => s.lag));
  const t0 = list.length ? list[0].t : 0;
  const span = Math.max(1, (list.length ? list[list.length - 1].t : 0) - t0);
  const points = list.map((s) => `${((s.t - t0) / span * (w - 2) + 1).toFixed(1)},${(hgt - 1 - s.lag / max * (hgt - 2)).toFixed(1)}`);
  const label = list.length
    ? `lag p99 of ${key.replace('>', ' to ')} over ${Math.round(span / 1000)} s: ${list.length} samples, at most ${max.toFixed(1)} ms`
    : `no lag samples of ${key.replace('>', ' to ')} yet`;
  svg.setAttribute('aria-label', label);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.join(' '));
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', 'currentColor');
  line.setAttribute('stroke-width', '1.5');
  svg.append(line);
  return h('span', {class: 'sparkcell', 'data-samples': list.length}, svg);
}

const ms = (v) => (v ? `${Number(v).toFixed(1)} ms` : '–');
const num = (v) => String(Number(v || 0));

export async function render(app) {
  const resp = await app.api.get('/v1/replication/status');
  const t = Date.parse(resp.generated_at) || Date.now();
  const pairs = resp.pairs || [];
  const deadByTarget = new Map();
  const rows = pairs.map((p) => {
    const key = `${p.origin_dc}>${p.target_dc}`;
    const list = p.reporting ? remember(key, t, Number(p.lag_p99_ms || 0)) : (samples.get(key) || []);
    const dead = Number(p.dead_lettered || 0);
    if (dead) deadByTarget.set(p.target_dc, (deadByTarget.get(p.target_dc) || 0) + dead);
    return h('tr', {'data-pair': key, class: p.reporting ? '' : 'quiet'},
      h('th', {scope: 'row', class: 'nowrap'}, `${p.origin_dc} → ${p.target_dc}`),
      h('td', {}, p.reporting ? badge('reporting', 'ok') : badge('no report', 'warn')),
      h('td', {'data-lag': ''}, p.reporting ? `${ms(p.lag_p50_ms)} / ${ms(p.lag_p99_ms)}` : '–'),
      h('td', {}, sparkline(key, list)),
      h('td', {'data-rate': ''}, p.reporting ? `${Number(p.events_per_sec || 0).toFixed(1)}/s` : '–'),
      h('td', {'data-pending': ''}, num(p.pending)),
      h('td', {'data-retried': ''}, resp.ledger ? num(p.retried) : '–'),
      h('td', {'data-dead': ''}, dead ? badge(num(dead), 'bad') : '0'),
      h('td', {}, ago(p.last_applied_at)));
  });
  const actions = [];
  if (app.can('operator')) {
    for (const [dc, n] of [...deadByTarget].sort()) {
      actions.push(h('button', {type: 'button', id: `dlq-retry-${dc.replace(/[^A-Za-z0-9_-]/g, '_')}`, 'data-action': 'dlq-retry',
        onclick: () => retry(app, dc, n)}, `Retry ${n} dead letter${n === 1 ? '' : 's'} of ${dc}…`));
    }
  }
  const backlog = (resp.backlog || []).map((b) => h('li', {'data-backlog': b.dc},
    `${b.dc}: ${num(b.backlog)} captured requests not applied everywhere (${num(b.pending)} pending, ${num(b.dead_lettered)} dead-lettered)`,
    b.oldest_pending_captured_at ? ['; oldest pending captured ', ago(b.oldest_pending_captured_at)] : null, '.'));
  return h('div', {class: 'replication'},
    h('h1', {}, 'Replication'),
    h('p', {class: 'summary'}, `${pairs.length} DC pairs, ${pairs.filter((p) => p.reporting).length} reporting. Reported `, ago(resp.generated_at),
      resp.ledger ? '.' : '. This coordinator does not index the request ledger: no retried counts or backlog.'),
    table('Replication between DCs',
      ['Origin → target', 'Report', 'Lag p50 / p99', 'Lag p99, last minutes', 'Apply rate', 'Pending', 'Retried', 'Dead-lettered', 'Last apply'],
      rows, {class: 'pairs', hideCaption: true}),
    actions.length ? h('div', {class: 'actions'}, actions) : null,
    backlog.length ? [h('h2', {}, 'Ledger backlog per origin'), h('ul', {class: 'backlog'}, backlog)] : null);
}

async function retry(app, dc, n) {
  if (!await app.confirm('Retry dead letters', `Put the ${n} dead letter${n === 1 ? '' : 's'} of ${dc} back on its inbound stream? Its collector applies each once more (exactly once).`, 'Retry')) return;
  try {
    const resp = await app.api.post(`/v1/replication/dlq/${encodeURIComponent(dc)}:retry`, {all: true});
    app.notify(`Dead letters of ${dc}: ${resp.retried || 0} put back, ${resp.failed || 0} failed.`, Number(resp.failed || 0) > 0);
  } catch (e) {
    app.notify(`Retry of the dead letters of ${dc} refused: ${e.message}`, true);
  }
  app.refresh();
}
