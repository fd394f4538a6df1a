// Topology: cities → DCs → clusters → instances, as the HA agents last
// observed them, with the cluster health and the operator actions.
import {h, badge, table, ago, enumName} from '../dom.js';

export const title = 'Topology';
export const topics = ['topology', 'status'];

const HEALTH = {OK: 'ok', DEGRADED: 'warn', NO_MASTER: 'bad', TWO_WRITABLE: 'bad'};
const DC_STATE = {active: 'ok', draining: 'warn', evacuated: 'neutral', down: 'bad'};

const idPart = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, '_');

export async function render(app) {
  const [topo, status] = await Promise.all([app.api.get('/v1/topology'), app.api.get('/v1/status')]);
  const cities = (topo.topology.cities || []).map((c) => c.name);
  const dcs = status.dcs || [];
  for (const dc of dcs) if (!cities.includes(dc.city)) cities.push(dc.city);

  let clusters = 0; let healthy = 0;
  for (const dc of dcs) for (const cl of dc.clusters || []) { clusters++; if (cl.health === 'OK') healthy++; }

  return h('div', {class: 'topology'},
    h('h1', {}, 'Topology'),
    h('p', {class: 'summary'},
      `${cities.length} cities, ${dcs.length} DCs, ${clusters} clusters (${healthy} OK). Observed `,
      ago(status.generated_at), '.'),
    cities.map((city) => h('section', {class: 'city', 'aria-labelledby': `city-${idPart(city)}`},
      h('h2', {id: `city-${idPart(city)}`}, `City ${city}`),
      h('div', {class: 'dcs'}, dcs.filter((d) => d.city === city).map((dc) => dcCard(app, dc))))));
}

function dcCard(app, dc) {
  const state = enumName(dc.state, 'DC_STATE_');
  const hid = `dc-${idPart(dc.name)}`;
  const services = (dc.services || []).map((s) => s.name).sort();
  return h('article', {class: 'dc', 'aria-labelledby': hid, 'data-dc': dc.name},
    h('h3', {id: hid}, dc.name, ' ', badge(state || 'unknown', DC_STATE[state])),
    h('p', {class: 'services'}, services.length ? `Services: ${[...new Set(services)].join(', ')}` : 'No drplane service registered.'),
    (dc.clusters || []).map((cl) => clusterBlock(app, dc, cl)));
}

function clusterBlock(app, dc, cl) {
  const hid = `cl-${idPart(dc.name)}-${idPart(cl.name)}`;
  const hold = cl.failover_hold;
  const actions = [];
  if (app.can('operator')) {
    actions.push(h('button', {type: 'button', id: `switchover-${idPart(dc.name)}-${idPart(cl.name)}`, 'data-action': 'switchover',
      onclick: () => switchover(app, dc.name, cl.name)}, 'Switchover…'));
    if (hold) {
      actions.push(h('button', {type: 'button', id: `release-${idPart(dc.name)}-${idPart(cl.name)}`, 'data-action': 'release-hold',
        onclick: () => releaseHold(app, dc.name, cl.name)}, 'Release hold…'));
    }
  }
  const rows = (cl.instances || []).flatMap((i) => instanceRows(i, cl.master));
  return h('section', {class: 'cluster', 'aria-labelledby': hid, 'data-cluster': `${dc.name}/${cl.name}`},
    h('h4', {id: hid}, `Cluster ${cl.name} `, badge(cl.health || 'UNKNOWN', HEALTH[cl.health] || 'neutral'),
      h('span', {class: 'master'}, cl.master ? ` master ${cl.master}` : ' no master')),
    hold ? h('p', {class: 'hold', role: 'note'}, `Automatic failover held (${hold.reason}): ${hold.detail}`) : null,
    table(`Instances of ${dc.name}/${cl.name}`,
      ['Instance', 'Role', 'State', 'Lag', 'Semi-sync', 'GTID', 'Observed'], rows,
      {hideCaption: true, class: 'instances'}),
    actions.length ? h('div', {class: 'actions'}, actions) : null);
}

// instanceRows is the row of one instance, and a row under it with its
// last error when it has one.
function instanceRows(i, master) {
  const role = enumName(i.role, 'ROLE_') || 'unknown';
  const lag = i.seconds_behind_master;
  const semi = i.semi_sync_master ? `${i.semi_sync_clients} client${i.semi_sync_clients === 1 ? '' : 's'}` : 'off';
  let state;
  if (!i.reachable) state = badge('unreachable', 'bad');
  else if (!i.read_only) state = badge('writable', 'master');
  else state = 'read_only';
  const rows = [h('tr', {'data-instance': i.name, class: i.name === master ? 'is-master' : ''},
    h('th', {scope: 'row'}, h('span', {class: 'name'}, i.name), h('span', {class: 'addr'}, i.addr)),
    h('td', {}, badge(role, role === 'master' ? 'master' : role === 'replica' ? 'neutral' : 'warn')),
    h('td', {}, state),
    h('td', {}, lag === undefined || lag === null ? '–' : `${lag} s`),
    h('td', {}, role === 'master' ? semi : '–'),
    h('td', {class: 'gtid'}, i.gtid_current_pos || '–'),
    h('td', {}, ago(i.observed_at)))];
  if (i.last_error) {
    rows.push(h('tr', {class: 'errrow'}, h('td', {colspan: 7, class: 'err'}, `${i.name}: ${i.last_error}`)));
  }
  return rows;
}

async function switchover(app, dc, cluster) {
  const ok = await app.confirm('Switchover', `Promote the most advanced eligible replica of ${dc}/${cluster} and demote its master?`, 'Switch over');
  if (!ok) return;
  try {
    await app.api.post(`/v1/clusters/${encodeURIComponent(dc)}/${encodeURIComponent(cluster)}:switchover`, {});
    app.notify(`Switchover of ${dc}/${cluster} done.`);
  } catch (e) {
    app.notify(`Switchover of ${dc}/${cluster} failed: ${e.message}`, true);
  }
  app.refresh();
}

async function releaseHold(app, dc, cluster) {
  // The API requires the reason (it is audited).
  const reason = await app.ask('Release failover hold', `Let the HA agent of ${dc} fail over ${dc}/${cluster} automatically again?`, 'Release', {required: true});
  if (reason === null) return;
  try {
    await app.api.post(`/v1/clusters/${encodeURIComponent(dc)}/${encodeURIComponent(cluster)}:releaseFailoverHold`, {reason});
    app.notify(`Failover hold of ${dc}/${cluster} released.`);
  } catch (e) {
    app.notify(`Release of ${dc}/${cluster} failed: ${e.message}`, true);
  }
  app.refresh();
}
