// City failovers in the operations view: each with its state, the shards
// flipped and held (and why), the time to the last flip and the loss
// estimated (or counted once the DC returned); for operators, a held one
// can be set going again, with or without accepting the loss.
import {h, badge, table, ago, enumName} from '../dom.js';

const STATE = {pending: 'neutral', running: 'warn', held: 'bad', done: 'ok', failed: 'bad'};

// open remembers which city failovers show their shards, across live
// updates.
const open = new Set();

// unfinished tells a city failover that needs someone: running, or held
// for an operator.
export function unfinished(f) {
  return ['CITY_FAILOVER_STATE_PENDING', 'CITY_FAILOVER_STATE_RUNNING', 'CITY_FAILOVER_STATE_HELD'].includes(f.state);
}

// load lists the city failovers, with their shards for the unfinished
// ones and the ones whose shards are shown.
export async function load(app) {
  const resp = await app.api.get('/v1/cityfailovers');
  return Promise.all((resp.failovers || []).map(async (f) => {
    if (!unfinished(f) && !open.has(f.id)) return f;
    const full = await app.api.get(`/v1/cityfailovers/${encodeURIComponent(f.id)}`);
    return full.failover || f;
  }));
}

// ms renders an int64 of milliseconds (a JSON string) as "850 ms" or
// "2.4 s"; negative is unknown.
function ms(v) {
  const n = Number(v);
  if (v === undefined || v === null || v === '' || Number.isNaN(n)) return '–';
  if (n < 0) return 'unknown';
  return n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(n < 10000 ? 2 : 1)} s`;
}

// shardState is a shard's word: flipped, held or (not yet) pending.
function shardState(s) {
  if (s.flipped) return 'flipped';
  return s.held ? 'held' : 'pending';
}

// heldReasons groups the held shards by reason: [[reason, [shards…]]…].
function heldReasons(shards) {
  const by = new Map();
  for (const s of shards) {
    if (s.flipped || !s.held) continue;
    if (!by.has(s.held)) by.set(s.held, []);
    by.get(s.held).push(`${s.keyspace}/${s.shard}`);
  }
  return [...by.entries()];
}

function lossText(f) {
  const x = f.exact;
  if (x && x.computed_at) {
    const n = Number(x.requests_total);
    return `Loss counted when ${f.dc} returned: ${n} request${n === 1 ? '' : 's'} its new owners never got (kept as divergence).`;
  }
  const e = f.estimate || {};
  const n = Number(e.requests_total || 0);
  const win = Number(e.max_lag_bound_ms);
  const window = Number.isNaN(win) ? '' : win < 0 ? '; the loss window of some shard is unknown' : `; loss window up to ${ms(win)}`;
  return `Estimated loss: ${n} request${n === 1 ? '' : 's'} the request ledger knew were not applied at the new owners${window}.`;
}

// card renders one city failover.
export function card(app, f) {
  const state = enumName(f.state, 'CITY_FAILOVER_STATE_');
  const shards = f.shards || [];
  const total = f.shards_total || shards.length;
  const flipped = f.shards_flipped || 0;
  const held = shards.filter((s) => !s.flipped && s.held).length;
  const hid = `cf-${f.id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const verdict = f.verdict ? ` · ${f.verdict}${(f.witnesses || []).length ? ` (seen by ${f.witnesses.join(', ')})` : ''}` : '';
  const since = Date.parse(f.lease_gone_since || '');
  const lastFlip = Date.parse(f.flipped_at || '');
  const timing = [];
  if (f.flip_ms && f.flip_ms !== '0') timing.push(`shards flipped ${ms(f.flip_ms)} after the start`);
  if (since > 0 && lastFlip > since) timing.push(`last flip ${ms(lastFlip - since)} after ${f.dc}'s lease was gone`);
  const actions = [];
  if (app.can('operator') && state === 'held') {
    actions.push(
      h('button', {type: 'button', id: `failover-${hid}`, 'data-action': 'city-failover', onclick: () => failOver(app, f, false)}, 'Fail over held shards…'),
      h('button', {type: 'button', id: `accept-${hid}`, 'data-action': 'city-failover-accept-loss', class: 'danger',
        onclick: () => failOver(app, f, true)}, 'Accept the loss and fail over…'));
  }
  const reasons = heldReasons(shards);
  const details = h('details', {open: open.has(f.id) || null, ontoggle: (ev) => {
    const was = open.has(f.id);
    if (ev.target.open) open.add(f.id); else open.delete(f.id);
    if (ev.target.open && !was && !shards.length) app.refresh();
  }},
  h('summary', {id: `shards-${hid}`}, shards.length ? `Shards (${shards.length})` : 'Shards'),
  table(`Shards of city failover ${f.id}`, ['Shard', 'From → to', 'State', 'Loss window', 'Ledger missing', 'Held because'],
    shards.map((s) => {
      const st = shardState(s);
      return h('tr', {'data-cityshard': `${s.keyspace}/${s.shard}`, 'data-state': st},
        h('th', {scope: 'row'}, `${s.keyspace}/${s.shard}`),
        h('td', {class: 'nowrap'}, `${s.from_dc} → ${s.to_dc || '?'}`),
        h('td', {}, badge(st, st === 'flipped' ? 'ok' : st === 'held' ? 'bad' : 'neutral')),
        h('td', {}, ms(s.lag_bound_ms)),
        h('td', {}, String(s.ledger_missing || 0)),
        h('td', {class: 'err'}, s.held || ''));
    }), {hideCaption: true}));
  return h('article', {class: 'cityfailover', 'aria-labelledby': hid, 'data-cityfailover': f.id, 'data-state': state},
    h('h3', {id: hid}, `city failover of ${f.dc} `, badge(state, STATE[state]), f.accept_loss ? ' ' : null, f.accept_loss ? badge('loss accepted', 'warn') : null),
    h('p', {class: 'meta'}, `${f.id} · ${f.trigger}${f.reason ? ` · “${f.reason}”` : ''}${verdict} · created `, ago(f.created_at),
      f.finished_at ? (state === 'held' ? ' · held since ' : ' · finished ') : null, f.finished_at ? ago(f.finished_at) : null, f.leader ? ` · run by ${f.leader}` : ''),
    h('div', {class: 'progress'},
      h('label', {for: `progress-${hid}`}, `${flipped} of ${total} shards flipped${shards.length ? `, ${held} held` : ''}`),
      h('progress', {id: `progress-${hid}`, max: Math.max(total, 1), value: flipped})),
    timing.length ? h('p', {class: 'meta', 'data-rto': ''}, `RTO: ${timing.join('; ')}.`) : null,
    h('p', {class: 'meta', 'data-rpo': ''}, lossText(f)),
    f.held && !reasons.length ? h('p', {class: 'hold'}, `Held: ${f.held}`) : null,
    reasons.length ? h('ul', {class: 'hold reasons', 'aria-label': 'Why shards are held'},
      reasons.map(([why, list]) => h('li', {}, `${list.length} shard${list.length === 1 ? '' : 's'} held: ${why}`))) : null,
    f.error ? h('p', {class: 'err', role: 'note'}, f.error) : null,
    actions.length ? h('div', {class: 'actions'}, actions) : null,
    details);
}

// failOver sets a held city failover going again as the operator's
// (FailOverDC): without acceptLoss the shards over their keyspace's
// max_rpo stay held.
async function failOver(app, f, acceptLoss) {
  const text = acceptLoss
    ? `Flip every shard ${f.dc} still owns to its backup DC, including those over their keyspace's max_rpo or whose loss window is unknown: writes ${f.dc} took that did not reach them are lost to the new owners (counted when ${f.dc} returns).`
    : `Flip the shards of ${f.dc} the policy held (kill switch, auto_city_failover) to their backup DCs; shards over their keyspace's max_rpo stay held.`;
  const reason = await app.ask(acceptLoss ? 'Accept the loss' : 'Fail over held shards', text,
    acceptLoss ? 'Accept the loss and fail over' : 'Fail over', {required: true});
  if (reason === null) return;
  try {
    const resp = await app.api.post(`/v1/dcs/${encodeURIComponent(f.dc)}:failover`, {accept_loss: acceptLoss, reason, timeout_seconds: 60});
    const g = resp.failover || {};
    app.notify(`City failover ${g.id || f.id} of ${f.dc}: ${enumName(g.state, 'CITY_FAILOVER_STATE_')}, ${g.shards_flipped || 0} of ${g.shards_total || 0} shards flipped.`);
  } catch (e) {
    app.notify(`City failover of ${f.dc} failed: ${e.message}`, true);
  }
  app.refresh();
}
