// Audit search: the audit log by text, actor, action and time, newest
// first, a page at a time.
import {h, table} from '../dom.js';

export const title = 'Audit';
// Searches run when asked; new events do not move the results under the
// reader's eyes.
export const topics = [];

// The form's values, kept across renders.
const form = {query: '', actor: '', action: '', since: '', until: ''};

function toRFC3339(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function searchURL(pageToken) {
  const q = new URLSearchParams();
  if (form.query) q.set('query', form.query);
  for (const a of form.actor.split(',').map((s) => s.trim()).filter(Boolean)) q.append('actor', a);
  for (const a of form.action.split(',').map((s) => s.trim()).filter(Boolean)) q.append('action', a);
  if (toRFC3339(form.since)) q.set('since', toRFC3339(form.since));
  if (toRFC3339(form.until)) q.set('until', toRFC3339(form.until));
  q.set('page_size', '50');
  if (pageToken) q.set('page_token', pageToken);
  return `/v1/audit?${q}`;
}

function eventRow(e) {
  const params = Object.entries(e.params || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  return h('tr', {'data-audit': e.id},
    h('td', {}, h('time', {datetime: e.time}, e.time ? e.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '')),
    h('td', {}, e.actor),
    h('th', {scope: 'row'}, e.action),
    h('td', {}, e.target),
    h('td', {}, e.outcome),
    h('td', {class: 'params'}, params),
    h('td', {class: 'err'}, e.error || ''));
}

export async function render(app) {
  const resp = await app.api.get(searchURL(''));
  const tbody = h('tbody', {}, (resp.events || []).map(eventRow));
  let next = resp.next_page_token;
  const more = h('button', {type: 'button', id: 'audit-more', hidden: !next || null, onclick: async () => {
    try {
      const page = await app.api.get(searchURL(next));
      for (const e of page.events || []) tbody.append(eventRow(e));
      next = page.next_page_token;
      more.hidden = !next;
    } catch (e) {
      app.notify(`Audit search failed: ${e.message}`, true);
    }
  }}, 'More');
  const field = (id, label, type, placeholder) => h('div', {class: 'field'},
    h('label', {for: `audit-${id}`}, label),
    h('input', {id: `audit-${id}`, name: id, type, value: form[id], placeholder, autocomplete: 'off'}));
  const f = h('form', {class: 'filters', role: 'search', 'aria-label': 'Audit search', onsubmit: (ev) => {
    ev.preventDefault();
    for (const k of Object.keys(form)) form[k] = f.elements[k].value.trim();
    app.refresh();
  }},
  field('query', 'Text', 'search', 'e.g. dc-a1 AND outcome:denied'),
  field('actor', 'Actor', 'text', 'token:ops-admin, …'),
  field('action', 'Action', 'text', 'failover.switchover, …'),
  field('since', 'Since', 'datetime-local', ''),
  field('until', 'Until', 'datetime-local', ''),
  h('button', {type: 'submit', id: 'audit-search'}, 'Search'));
  return h('div', {class: 'audit'},
    h('h1', {}, 'Audit log'),
    f,
    h('p', {class: 'summary', role: 'status'}, `${resp.total} matching event${resp.total === '1' ? '' : 's'}, newest first.`),
    h('table', {class: 'auditlog'},
      h('caption', {class: 'sr-only'}, 'Audit events'),
      h('thead', {}, h('tr', {}, ['Time', 'Actor', 'Action', 'Target', 'Outcome', 'Parameters', 'Error'].map((x) => h('th', {scope: 'col'}, x)))),
      tbody),
    more);
}
