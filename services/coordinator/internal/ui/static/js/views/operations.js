// Operations: evacuations, restores and shard moves, city failovers, and
// failovers and switchovers inside a DC; running ones first, with
// per-shard progress (the steps of a failover); for operators, a form that
// evacuates or restores a DC (each asks first), cancel and resume, and the
// decision on a held city failover.
import {h, badge, table, ago, enumName} from '../dom.js';
import * as cityfail from './cityfail.js';
import * as switchovers from './switchovers.js';

export const title = 'Operations';
export const topics = ['operations', 'failovers'];

const STATE = {pending: 'neutral', running: 'warn', canceling: 'warn', canceled: 'neutral', succeeded: 'ok', failed: 'bad'};
const STEP = {pending: 'neutral', frozen: 'warn', 'catching up': 'warn', moved: 'ok', aborted: 'bad', skipped: 'neutral'};
const RUNNING = ['OPERATION_STATE_PENDING', 'OPERATION_STATE_RUNNING', 'OPERATION_STATE_CANCELING'];

// open remembers which operations show their shards, across live updates.
const open = new Set();

// The DC form's values, kept across live updates (they re-render the view).
const dcForm = {kind: 'evacuate', dc: '', to: '', parallel: '64', move_home: false, dry_run: false, reason: ''};

export async function render(app) {
  const [resp, topo, cities, fos] = await Promise.all([app.api.get('/v1/operations?page_size=100'),
    app.can('operator') ? app.api.get('/v1/topology') : null, cityfail.load(app), switchovers.load(app)]);
  // The list carries no per-shard steps: fetch them for the running
  // operations and the ones whose shards are shown.
  const ops = await Promise.all((resp.operations || []).map(async (o) => {
    if (!RUNNING.includes(o.state) && !open.has(o.id)) return o;
    const full = await app.api.get(`/v1/operations/${encodeURIComponent(o.id)}`);
    return full.operation || o;
  }));
  const running = ops.filter((o) => RUNNING.includes(o.state));
  const done = ops.filter((o) => !RUNNING.includes(o.state));
  const citiesOpen = cities.filter(cityfail.unfinished);
  const citiesDone = cities.filter((f) => !cityfail.unfinished(f));
  const nRunning = running.length + citiesOpen.length + fos.running.length;
  const nDone = done.length + citiesDone.length + fos.recent.length;
  return h('div', {class: 'operations'},
    h('h1', {}, 'Operations'),
    h('p', {class: 'summary'}, `${nRunning} running or held, ${nDone} finished.`),
    topo ? dcOpForm(app, ((topo.topology || {}).dcs || []).map((d) => d.name)) : null,
    h('h2', {}, 'Running and held'),
    nRunning ? [citiesOpen.map((f) => cityfail.card(app, f)), fos.running.map(switchovers.card), running.map((o) => opCard(app, o))]
      : h('p', {}, 'No operation is running.'),
    h('h2', {}, 'Finished evacuations and restores'),
    done.length ? done.map((o) => opCard(app, o)) : h('p', {}, 'No finished evacuation or restore is kept.'),
    h('h2', {}, 'Finished city failovers'),
    citiesDone.length ? citiesDone.map((f) => cityfail.card(app, f)) : h('p', {}, 'No finished city failover.'),
    h('h2', {}, 'Last switchovers'),
    fos.recent.length ? [fos.recent.map(switchovers.card), h('p', {class: 'meta'}, h('a', {href: '#/failovers'}, 'Every failover and switchover'))]
      : h('p', {}, 'No switchover recorded.'));
}

function opCard(app, o) {
  const state = enumName(o.state, 'OPERATION_STATE_');
  const kind = enumName(o.kind, 'OPERATION_KIND_');
  const t = o.totals || {};
  const handoffs = o.handoffs || [];
  const total = t.shards || handoffs.length;
  const finished = (t.moved || 0) + (t.skipped || 0);
  const hid = `op-${o.id.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const where = kind === 'evacuate' ? `${o.dc} → ${o.to || 'backup DCs'}` : kind === 'restore' ? `to ${o.dc}${o.move_home ? ' (home shards)' : ''}` : o.dc;
  const actions = [];
  if (app.can('operator')) {
    if (['pending', 'running'].includes(state)) {
      actions.push(h('button', {type: 'button', id: `cancel-${hid}`, 'data-action': 'cancel', class: 'danger',
        onclick: () => act(app, o, 'cancel')}, 'Cancel…'));
    }
    if (['canceled', 'failed'].includes(state)) {
      actions.push(h('button', {type: 'button', id: `resume-${hid}`, 'data-action': 'resume',
        onclick: () => act(app, o, 'resume')}, 'Resume…'));
    }
  }
  const details = h('details', {open: open.has(o.id) || null, ontoggle: (ev) => {
    const was = open.has(o.id);
    if (ev.target.open) open.add(o.id); else open.delete(o.id);
    // Opening a finished operation fetches its steps.
    if (ev.target.open && !was && !handoffs.length) app.refresh();
  }},
  h('summary', {id: `shards-${hid}`}, handoffs.length ? `Shards (${handoffs.length})` : 'Shards'),
    table(`Shards of operation ${o.id}`, ['Shard', 'From → to', 'Wave', 'Step', 'Write block', 'Error'],
      handoffs.map((x) => {
        const st = enumName(x.state, 'HANDOFF_STATE_');
        return h('tr', {'data-handoff': `${x.keyspace}/${x.shard}`},
          h('th', {scope: 'row'}, `${x.keyspace}/${x.shard}`),
          h('td', {class: 'nowrap'}, `${x.from_dc} → ${x.to_dc}`),
          h('td', {}, String(x.wave)),
          h('td', {}, badge(st, STEP[st])),
          h('td', {}, x.block_ms && x.block_ms !== '0' ? `${x.block_ms} ms` : '–'),
          h('td', {class: 'err'}, x.error || ''));
      }), {hideCaption: true}));
  return h('article', {class: 'op', 'aria-labelledby': hid, 'data-operation': o.id, 'data-state': state},
    h('h3', {id: hid}, `${kind} ${where} `, badge(state, STATE[state]), o.dry_run ? ' ' : null, o.dry_run ? badge('dry run', 'neutral') : null),
    h('p', {class: 'meta'}, `${o.id} · by ${o.requested_by || '?'}${o.reason ? ` · “${o.reason}”` : ''} · created `, ago(o.created_at),
      o.finished_at ? ' · finished ' : null, o.finished_at ? ago(o.finished_at) : null),
    h('div', {class: 'progress'},
      h('label', {for: `progress-${hid}`}, `${finished} of ${total} shards handed over (${t.moved || 0} moved, ${t.skipped || 0} skipped, ${t.aborted || 0} aborted), wave ${t.waves_done || 0} of ${t.waves || 0} done`),
      h('progress', {id: `progress-${hid}`, max: Math.max(total, 1), value: finished})),
    t.block_max_ms && t.block_max_ms !== '0' ? h('p', {class: 'meta'}, `Write block per shard: p50 ${t.block_p50_ms} ms, p99 ${t.block_p99_ms} ms, max ${t.block_max_ms} ms.`) : null,
    o.error ? h('p', {class: 'err', role: 'note'}, o.error) : null,
    actions.length ? h('div', {class: 'actions'}, actions) : null,
    details);
}

async function act(app, o, what) {
  const kind = enumName(o.kind, 'OPERATION_KIND_');
  const cancel = what === 'cancel';
  const text = cancel
    ? `Stop ${kind} ${o.id} after its current wave? Shards already moved stay where they are; the others stay at their owner, unfrozen.`
    : `Go on with ${kind} ${o.id} from where it stopped?`;
  const reason = await app.ask(cancel ? 'Cancel operation' : 'Resume operation', text, cancel ? 'Cancel operation' : 'Resume');
  if (reason === null) return;
  try {
    await app.api.post(`/v1/operations/${encodeURIComponent(o.id)}:${what}`, reason ? {reason} : {});
    app.notify(`${cancel ? 'Cancel' : 'Resume'} of ${o.id} requested.`);
  } catch (e) {
    app.notify(`${cancel ? 'Cancel' : 'Resume'} of ${o.id} failed: ${e.message}`, true);
  }
  app.refresh();
}

// dcOpForm evacuates or restores a DC: what, which DC (and for an
// evacuation, where to), how many shards per wave, a dry run, and the
// reason the audit log keeps. Submitting asks for confirmation first.
function dcOpForm(app, dcs) {
  if (!dcs.includes(dcForm.dc)) dcForm.dc = dcs[0] || '';
  if (dcForm.to && !dcs.includes(dcForm.to)) dcForm.to = '';
  const evac = dcForm.kind === 'evacuate';
  const field = (id, label, control) => h('div', {class: 'field'}, h('label', {for: `dcop-${id}`}, label), control);
  const keep = (k, checkbox) => (ev) => {
    dcForm[k] = checkbox ? ev.target.checked : ev.target.value;
    if (k === 'kind') app.refresh(); // the fields of the other kind
  };
  const options = (values, selected, first) => [first ? h('option', {value: ''}, first) : null,
    ...values.map((v) => h('option', {value: v, selected: v === selected || null}, v))];
  const f = h('form', {class: 'filters dcop', id: 'dcop-form', 'aria-label': 'Evacuate or restore a DC', onsubmit: (ev) => {
    ev.preventDefault();
    submitDCOp(app);
  }},
  field('kind', 'Operation', h('select', {id: 'dcop-kind', name: 'kind', onchange: keep('kind')},
    h('option', {value: 'evacuate', selected: evac || null}, 'Evacuate'),
    h('option', {value: 'restore', selected: !evac || null}, 'Restore'))),
  field('dc', 'DC', h('select', {id: 'dcop-dc', name: 'dc', required: true, onchange: keep('dc')}, options(dcs, dcForm.dc))),
  evac ? field('to', 'To', h('select', {id: 'dcop-to', name: 'to', onchange: keep('to')},
    options(dcs.filter((d) => d !== dcForm.dc), dcForm.to, 'each shard\'s backup DC'))) : null,
  field('parallel', 'Shards per wave', h('input', {id: 'dcop-parallel', name: 'parallel', type: 'number', min: 1, max: 4096,
    required: true, value: dcForm.parallel, oninput: keep('parallel')})),
  evac ? null : h('div', {class: 'field check'}, h('label', {for: 'dcop-move-home'}, 'Home shards back'),
    h('input', {id: 'dcop-move-home', name: 'move_home', type: 'checkbox', checked: dcForm.move_home || null, onchange: keep('move_home', true)})),
  h('div', {class: 'field check'}, h('label', {for: 'dcop-dry-run'}, 'Dry run'),
    h('input', {id: 'dcop-dry-run', name: 'dry_run', type: 'checkbox', checked: dcForm.dry_run || null, onchange: keep('dry_run', true)})),
  field('reason', 'Reason', h('input', {id: 'dcop-reason', name: 'reason', type: 'text', required: true, autocomplete: 'off',
    placeholder: 'e.g. maintenance of dc-a1', value: dcForm.reason, oninput: keep('reason')})),
  h('button', {type: 'submit', id: 'dcop-submit', 'data-action': dcForm.kind}, evac ? 'Evacuate…' : 'Restore…'));
  return h('section', {class: 'dcops', 'aria-labelledby': 'dcops-title'}, h('h2', {id: 'dcops-title'}, 'Evacuate or restore a DC'), f);
}

async function submitDCOp(app) {
  const o = {...dcForm};
  const parallel = Number(o.parallel);
  const evac = o.kind === 'evacuate';
  const what = evac
    ? `Evacuate ${o.dc}: hand every shard it owns to ${o.to || 'its backup DC'}, ${parallel} at a time, through the safe handoff (each shard's writes block briefly); the DC goes DRAINING, then EVACUATED.`
    : `Restore ${o.dc}: set it ACTIVE again${o.move_home ? ` and hand its home shards back to it, ${parallel} at a time` : ''}.`;
  const text = o.dry_run ? `${what} Dry run: only the plan, nothing changes.` : what;
  if (!await app.confirm(evac ? 'Evacuate DC' : 'Restore DC', text, o.dry_run ? 'Plan' : evac ? 'Evacuate' : 'Restore')) return;
  const body = {parallel, dry_run: o.dry_run, reason: o.reason};
  if (evac && o.to) body.to = o.to;
  if (!evac) body.move_home = o.move_home;
  try {
    const resp = await app.api.post(`/v1/dcs/${encodeURIComponent(o.dc)}:${o.kind}`, body);
    const t = (resp.operation || {}).totals || {};
    if (o.dry_run) {
      app.notify(`Plan of the ${o.kind} of ${o.dc}: ${t.shards || 0} shards in ${t.waves || 0} waves; nothing changed.`);
    } else {
      app.notify(`${evac ? 'Evacuation' : 'Restore'} of ${o.dc} started: operation ${resp.operation_id}.`);
      dcForm.reason = '';
    }
  } catch (e) {
    app.notify(`${evac ? 'Evacuation' : 'Restore'} of ${o.dc} refused: ${e.message}`, true);
  }
  app.refresh();
}
