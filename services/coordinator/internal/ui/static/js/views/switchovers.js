// Failovers inside a DC in the operations view: the ones under way (an HA
// agent's record still RUNNING, automatic or a switchover) with their
// steps so far, and the last switchovers, with RTO, RPO and write block.
import {h, badge, table, ago, enumName, seconds, rpo} from '../dom.js';

const OUTCOME = {running: 'warn', succeeded: 'ok', failed: 'bad', aborted: 'bad'};

// RECENT is how many finished switchovers the view keeps; the failover
// history has them all.
const RECENT = 5;

// load returns {running, recent}: the records under way, and the newest
// finished switchovers.
export async function load(app) {
  const resp = await app.api.get('/v1/failovers?limit=200');
  const recs = resp.records || [];
  return {
    running: recs.filter((r) => r.outcome === 'FAILOVER_OUTCOME_RUNNING'),
    recent: recs.filter((r) => r.outcome !== 'FAILOVER_OUTCOME_RUNNING' && r.kind === 'FAILOVER_KIND_SWITCHOVER').slice(0, RECENT),
  };
}

// card renders one failover or switchover record.
export function card(r) {
  const kind = enumName(r.kind, 'FAILOVER_KIND_');
  const outcome = enumName(r.outcome, 'FAILOVER_OUTCOME_');
  const hid = `fo-${r.id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const steps = r.steps || [];
  const done = outcome !== 'running';
  // A running record's figures are not known yet.
  const figure = (v, fmt) => (v ? fmt(v) : done ? '–' : 'not yet');
  const figures = [`RTO ${figure(r.rto, seconds)}`, `RPO ${done ? rpo(r) : 'not yet'}`];
  if (kind === 'switchover') figures.push(`write block ${figure(r.block_window, seconds)}`);
  return h('article', {class: 'switchover', 'aria-labelledby': hid, 'data-switchover': r.id, 'data-kind': kind, 'data-state': outcome},
    h('h3', {id: hid}, `${kind} ${r.dc}/${r.cluster} `, badge(outcome, OUTCOME[outcome]), r.analysis ? ` ${r.analysis}` : null),
    h('p', {class: 'meta'}, `${r.old_master || '?'} → ${r.new_master || 'not chosen yet'} · ${r.trigger}${r.agent ? ` · by ${r.agent}` : ''} · `,
      kind === 'switchover' ? 'asked ' : 'detected ', ago(r.detected_at), r.finished_at ? ' · finished ' : null, r.finished_at ? ago(r.finished_at) : null),
    h('p', {class: 'meta', 'data-figures': ''}, figures.join(' · ')),
    r.error ? h('p', {class: 'err', role: 'note'}, r.error) : null,
    steps.length ? h('details', {open: !done || null},
      h('summary', {}, `Steps (${steps.length})`),
      table(`Steps of ${kind} ${r.id}`, ['Step', 'Started', 'Took', 'Error'], steps.map((s) => h('tr', {'data-step': s.name},
        h('th', {scope: 'row'}, s.name),
        h('td', {}, ago(s.at)),
        h('td', {}, seconds(s.took)),
        h('td', {class: 'err'}, s.error || ''))), {hideCaption: true})) : null);
}
