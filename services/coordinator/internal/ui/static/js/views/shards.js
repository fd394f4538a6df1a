// Shard map: per keyspace, every shard coloured by its owner DC, frozen
// and moving shards marked, a shard's route on click.
import {h, badge, table, enumName} from '../dom.js';

export const title = 'Shards';
export const topics = ['shards', 'status', 'topology'];

// Eight colours that keep white text readable; a DC beyond them reuses one
// (its name is always written next to the colour).
const PALETTE = ['#1f5fbf', '#b4451f', '#1d7a46', '#7a3fb0', '#9a6a00', '#0f7c86', '#b02a6a', '#4b5563'];

// selected remembers the shard whose route is shown, per keyspace, across
// live re-renders.
const selected = new Map();

export function dcColours(dcs) {
  const m = new Map();
  dcs.forEach((dc, i) => m.set(dc, PALETTE[i % PALETTE.length]));
  return m;
}

export async function render(app, params) {
  const topo = (await app.api.get('/v1/topology')).topology;
  const keyspaces = (topo.keyspaces || []).map((k) => k.name);
  if (!keyspaces.length) return h('div', {class: 'shards'}, h('h1', {}, 'Shards'), h('p', {}, 'No keyspace is configured.'));
  const ks = keyspaces.includes(params[0]) ? params[0] : keyspaces[0];
  const colours = dcColours((topo.dcs || []).map((d) => d.name));
  const tableResp = await app.api.get(`/v1/keyspaces/${encodeURIComponent(ks)}/shards`);
  const rt = tableResp.table;
  const shards = rt.shards || [];
  const sel = selected.get(ks);
  let route = null;
  if (sel !== undefined && shards.some((s) => s.id === sel)) {
    route = await app.api.get(`/v1/keyspaces/${encodeURIComponent(ks)}/shards/${sel}`);
  }

  const owned = new Map();
  let frozen = 0; let moving = 0;
  for (const s of shards) {
    owned.set(s.owner_dc, (owned.get(s.owner_dc) || 0) + 1);
    if (s.state === 'SHARD_STATE_FROZEN') frozen++;
    if (s.state === 'SHARD_STATE_MOVING') moving++;
  }

  const picker = h('nav', {class: 'tabs', 'aria-label': 'Keyspaces'},
    keyspaces.map((k) => h('a', {href: `#/shards/${encodeURIComponent(k)}`, 'aria-current': k === ks ? 'page' : null}, k)));

  const legend = h('ul', {class: 'legend', 'aria-label': 'Owner DCs'},
    [...colours.entries()].map(([dc, c]) => h('li', {},
      h('span', {class: 'swatch', style: {background: c}, 'aria-hidden': 'true'}),
      `${dc}: ${owned.get(dc) || 0} shards`)),
    h('li', {}, h('span', {class: 'swatch frozen', 'aria-hidden': 'true'}), `frozen: ${frozen}`),
    h('li', {}, h('span', {class: 'swatch moving', 'aria-hidden': 'true'}), `moving: ${moving}`));

  const grid = h('div', {class: 'shardgrid', role: 'group', 'aria-label': `Shards of ${ks} (arrow keys move between shards)`,
    onkeydown: (ev) => gridKeys(ev)},
    shards.map((s) => {
      const state = enumName(s.state, 'SHARD_STATE_');
      const label = `Shard ${s.id}, owner ${s.owner_dc}, backup ${s.backup_dc || 'none'}, ${state}`;
      return h('button', {
        type: 'button', id: `shard-${ks}-${s.id}`, class: `shard ${state}`, 'data-shard': s.id, 'data-owner': s.owner_dc,
        'data-state': state, style: {'--owner': colours.get(s.owner_dc) || '#888'}, title: label, 'aria-label': label,
        'aria-pressed': String(s.id === sel),
        onclick: () => { selected.set(ks, s.id === sel ? undefined : s.id); app.refresh(); },
      }, String(s.id));
    }));

  return h('div', {class: 'shards'},
    h('h1', {}, `Shards of ${ks}`),
    picker,
    h('p', {class: 'summary'}, `${shards.length} shards, ${rt.function} on cluster ${rt.cluster}, map revision ${rt.map_revision}.`),
    legend,
    h('div', {class: 'shardlayout'}, grid, routePanel(ks, route)));
}

function routePanel(ks, resp) {
  if (!resp) return h('aside', {class: 'route', 'aria-label': 'Route'}, h('p', {class: 'summary'}, 'Select a shard to see its route.'));
  const s = resp.shard; const r = resp.route || {};
  const m = r.master;
  const state = enumName(s.state, 'SHARD_STATE_');
  const rows = [
    ['Owner DC', s.owner_dc], ['Backup DC', s.backup_dc || '–'], ['Home DC', s.home_dc || '–'],
    ['State', badge(state, state === 'active' ? 'ok' : 'warn')],
    ['Frozen by', s.frozen_by || '–'],
    ['Key range', `[${s.lo}, ${s.hi === '0' ? '2^64' : s.hi})`],
    ['Master', m && m.instance ? `${m.instance} (${m.addr}), term ${m.term}` : 'no master record'],
    ['Shard revision', s.revision],
  ].map(([k, v]) => h('tr', {}, h('th', {scope: 'row'}, k), h('td', {}, v)));
  const fences = (s.fences || []).map((f) => h('tr', {}, h('td', {}, f.dc), h('td', {class: 'gtid'}, f.watermark || '(forced)'), h('td', {}, f.operation_id)));
  return h('aside', {class: 'route', 'aria-label': `Route of shard ${s.id}`, 'data-route': s.id},
    h('h2', {}, `Route of ${ks} shard ${s.id}`),
    h('table', {class: 'kv'}, h('tbody', {}, rows)),
    fences.length ? table('Handoff fences', ['DC', 'Watermark', 'Operation'], fences) : null);
}

// gridKeys moves the focus between shards with the arrow keys, Home and
// End; Enter or Space (the buttons' own) shows the route.
function gridKeys(ev) {
  const cells = [...ev.currentTarget.querySelectorAll('button.shard')];
  const i = cells.indexOf(document.activeElement);
  if (i < 0) return;
  // The grid wraps with the width: a row is the cells on the first one's line.
  const perRow = cells.filter((c) => c.offsetTop === cells[0].offsetTop).length || 1;
  const next = {ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + perRow, ArrowUp: i - perRow, Home: 0, End: cells.length - 1}[ev.key];
  if (next === undefined) return;
  ev.preventDefault();
  cells[Math.min(cells.length - 1, Math.max(0, next))].focus();
}
