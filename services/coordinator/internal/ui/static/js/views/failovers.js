// Failover history: every automatic failover and switchover, newest
// first, with its RTO and RPO.
import {h, badge, table, ago, enumName, seconds, rpo} from '../dom.js';

export const title = 'Failovers';
export const topics = ['failovers'];

const OUTCOME = {running: 'warn', succeeded: 'ok', failed: 'bad', aborted: 'bad'};

// filter is the DC the history is narrowed to ('' for all), kept across
// live updates.
let filter = '';


export async function render(app) {
  const [topo, resp] = await Promise.all([
    app.api.get('/v1/topology'),
    app.api.get(`/v1/failovers?limit=200${filter ? `&dc=${encodeURIComponent(filter)}` : ''}`),
  ]);
  const dcs = (topo.topology.dcs || []).map((d) => d.name);
  const recs = resp.records || [];
  const select = h('select', {id: 'failover-dc', onchange: (ev) => { filter = ev.target.value; app.refresh(); }},
    h('option', {value: ''}, 'all DCs'),
    dcs.map((dc) => h('option', {value: dc, selected: dc === filter || null}, dc)));
  const rows = recs.map((r) => {
    const outcome = enumName(r.outcome, 'FAILOVER_OUTCOME_');
    const lossy = Number(r.rpo_transactions) !== 0;
    return h('tr', {'data-failover': r.id},
      h('td', {}, ago(r.detected_at)),
      h('th', {scope: 'row'}, `${r.dc}/${r.cluster}`),
      h('td', {}, enumName(r.kind, 'FAILOVER_KIND_'), r.analysis ? h('span', {class: 'addr'}, r.analysis) : null),
      h('td', {}, r.trigger),
      h('td', {}, `${r.old_master || '?'} → ${r.new_master || 'none'}`),
      h('td', {}, badge(outcome, OUTCOME[outcome])),
      h('td', {'data-rto': ''}, seconds(r.rto)),
      h('td', {'data-rpo': ''}, lossy ? badge(rpo(r), 'bad') : rpo(r)),
      h('td', {}, r.block_window ? seconds(r.block_window) : '–'),
      h('td', {class: 'err'}, r.error || ''));
  });
  return h('div', {class: 'failovers'},
    h('h1', {}, 'Failover history'),
    h('div', {class: 'filters'}, h('div', {class: 'field'}, h('label', {for: 'failover-dc'}, 'DC'), select)),
    h('p', {class: 'summary'}, `${recs.length} record${recs.length === 1 ? '' : 's'}, newest first. RTO: failure seen to new master writable; RPO: transactions of the old master the new one lacks.`),
    recs.length
      ? table('Failovers and switchovers', ['Detected', 'Cluster', 'Kind', 'Trigger', 'Master', 'Outcome', 'RTO', 'RPO', 'Write block', 'Error'], rows, {hideCaption: true})
      : h('p', {}, 'No failover or switchover recorded.'));
}
