// The dashboard: token login, the views, live updates.
import {API, APIError, can} from './api.js';
import {Live} from './live.js';
import * as topology from './views/topology.js';
import * as shards from './views/shards.js';
import * as operations from './views/operations.js';
import * as failovers from './views/failovers.js';
import * as audit from './views/audit.js';
import * as replication from './views/replication.js';

const views = {topology, shards, operations, failovers, audit, replication};
const DEFAULT_VIEW = 'topology';

const $ = (id) => document.getElementById(id);

// app is what every view gets: the API client, the session (name, role),
// can(need), confirm(...), ask(...) and notify(...).
const app = {
  api: null,
  session: null,
  can(need) { return !!this.session && can(this.session.role, need); },
  confirm,
  ask,
  notify,
  refresh: () => refresh(),
};

let live = null;
let current = null; // {name, view}
let rendering = null; // the render in flight
let again = false; // a change arrived while rendering

function setTheme(dark) {
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  $('theme').setAttribute('aria-pressed', String(dark));
  $('theme').textContent = dark ? 'Light' : 'Dark';
  try { localStorage.setItem('drplane-theme', dark ? 'dark' : 'light'); } catch { /* private mode */ }
}

function initTheme() {
  let saved = null;
  try { saved = localStorage.getItem('drplane-theme'); } catch { /* private mode */ }
  const dark = saved ? saved === 'dark' : window.matchMedia('(prefers-color-scheme: dark)').matches;
  setTheme(dark);
  $('theme').addEventListener('click', () => setTheme(document.documentElement.dataset.theme !== 'dark'));
}

// confirm asks before an operator action; resolves true on Confirm.
function confirm(title, text, okLabel = 'Confirm') {
  return dialog(title, text, okLabel, false).then((r) => r.ok);
}

// ask asks before an operator action whose call takes a reason, with a
// field for it (one the call requires cannot be left empty); resolves the
// reason typed ('' for none) on Confirm, null otherwise.
function ask(title, text, okLabel = 'Confirm', {required = false} = {}) {
  return dialog(title, text, okLabel, true, required).then((r) => (r.ok ? r.reason : null));
}

// settle resolves the confirmation that is open (null when none); back is
// the element the focus returns to when it closes.
let settle = null;
let back = null;

// dialog opens the confirmation with the focus on Cancel; resolves
// {ok, reason}. The answer is taken when the operator gives it (the form's
// submit, Escape), not from the close event: that one comes later, and a
// confirmation opened again before it must not take the last one's answer.
function dialog(title, text, okLabel, withReason, required = false) {
  const dlg = $('confirm');
  if (settle) settle(false);
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  $('confirm-reason-field').hidden = !withReason;
  $('confirm-reason').value = '';
  // Only a shown field is validated: Confirm cannot submit it empty (or
  // blank) when required; Cancel never validates.
  $('confirm-reason').required = withReason && required;
  $('confirm-reason').pattern = withReason && required ? '.*\\S.*' : '.*';
  $('confirm-reason-label').textContent = required ? 'Reason (required, kept in the audit log)' : 'Reason (kept in the audit log)';
  back = document.activeElement;
  return new Promise((resolve) => {
    settle = (ok) => {
      settle = null;
      resolve({ok, reason: withReason ? $('confirm-reason').value.trim() : ''});
    };
    dlg.returnValue = '';
    dlg.showModal();
    $('confirm-cancel').focus();
  });
}

function initDialog() {
  const dlg = $('confirm');
  dlg.querySelector('form').addEventListener('submit', (ev) => {
    if (settle) settle(!!ev.submitter && ev.submitter.value === 'ok');
  });
  dlg.addEventListener('cancel', () => { if (settle) settle(false); });
  // A close event that comes after the next confirmation opened is the
  // last one's: it leaves the open one alone.
  dlg.addEventListener('close', () => {
    if (dlg.open) return;
    if (settle) settle(dlg.returnValue === 'ok');
    if (back && back.isConnected) back.focus();
  });
  // Enter in the reason field would submit the dialog with its first
  // button, Cancel: the operator confirms with the button.
  $('confirm-reason').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') ev.preventDefault(); });
}

// notify reports the outcome of an action in the live region.
function notify(text, isError) {
  const el = $('notice') || document.body.appendChild(Object.assign(document.createElement('div'), {id: 'notice'}));
  el.setAttribute('role', isError ? 'alert' : 'status');
  el.className = 'notice ' + (isError ? 'bad' : 'ok');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { el.hidden = true; }, isError ? 20000 : 8000);
}

function setLive(state, detail) {
  const el = $('live');
  el.dataset.state = state;
  el.textContent = state === 'live' ? 'Live' : state === 'lost' ? `Connection lost — reconnecting${detail && detail !== 'reconnecting' ? ` (${detail})` : ''}` : 'Connecting…';
}

async function login(token) {
  const api = new API(token);
  const session = await api.get('/ui/api/session');
  app.api = api;
  app.session = session;
  $('login').hidden = true;
  $('view').hidden = false;
  $('nav').hidden = false;
  $('logout').hidden = false;
  $('who').textContent = `${session.name} (${session.role})`;
  live = new Live(token, onChange, setLive);
  live.start();
  route();
}

function logout() {
  if (live) live.stop();
  live = null;
  app.api = null;
  app.session = null;
  current = null;
  $('view').replaceChildren();
  $('view').hidden = true;
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('live').textContent = '';
  $('login').hidden = false;
  $('token').value = '';
  $('token').focus();
}

function onChange(topic) {
  if (!current) return;
  if (topic === '*' || (current.view.topics || []).includes(topic)) refresh();
}

// refresh renders the current view again; changes during a render are
// gathered into one more render after it.
async function refresh() {
  if (!current) return;
  if (rendering) {
    again = true;
    return;
  }
  const {view} = current;
  const container = $('view');
  const focusId = document.activeElement && document.activeElement.id;
  rendering = (async () => {
    try {
      const node = await view.render(app, current.params);
      if (current && current.view === view) {
        container.replaceChildren(node);
        container.setAttribute('aria-busy', 'false');
        // A live update replaces the nodes: keep the keyboard focus on
        // the element of the same id.
        const el = focusId && document.getElementById(focusId);
        if (el && el !== document.activeElement && container.contains(el)) el.focus({preventScroll: true});
      }
    } catch (e) {
      if (e instanceof APIError && e.status === 401) {
        logout();
        $('login-error').textContent = 'The token is no longer accepted: sign in again.';
        return;
      }
      container.replaceChildren(Object.assign(document.createElement('p'), {className: 'error', role: 'alert', textContent: `Could not load: ${e.message}`}));
    }
  })();
  await rendering;
  rendering = null;
  if (again) {
    again = false;
    refresh();
  }
}

function route() {
  if (!app.session) return;
  const [name, ...rest] = (location.hash.replace(/^#\/?/, '') || DEFAULT_VIEW).split('/');
  const view = views[name] || views[DEFAULT_VIEW];
  const viewName = views[name] ? name : DEFAULT_VIEW;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === viewName) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const changed = !current || current.name !== viewName;
  current = {name: viewName, view, params: rest.map(decodeURIComponent)};
  document.title = `${view.title} · drplane`;
  if (changed) {
    $('view').setAttribute('aria-busy', 'true');
    $('view').replaceChildren(Object.assign(document.createElement('p'), {textContent: 'Loading…'}));
  }
  refresh().then(() => { if (changed) $('main').focus({preventScroll: true}); });
}

// shortcut switches views with the keys 1 to 6 (shown on the navigation
// links) unless the focus is in a field or a dialog is open.
function shortcut(ev) {
  if (!app.session || ev.ctrlKey || ev.metaKey || ev.altKey || $('confirm').open) return;
  const t = ev.target;
  if (t && (t.isContentEditable || ['INPUT', 'SELECT', 'TEXTAREA'].includes(t.tagName))) return;
  const links = [...document.querySelectorAll('#nav a')];
  const i = Number(ev.key) - 1;
  if (Number.isInteger(i) && i >= 0 && i < links.length) {
    ev.preventDefault();
    location.hash = links[i].getAttribute('href');
  }
}

function init() {
  // A blocked resource or style is a defect of the page: say so.
  document.addEventListener('securitypolicyviolation', (e) => console.error('content security policy violation:', e.violatedDirective, e.blockedURI || 'inline', e.sourceFile || '', e.lineNumber || ''));
  initTheme();
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    const token = $('token').value.trim();
    $('token').value = '';
    try {
      await login(token);
    } catch (e) {
      $('login-error').textContent = e instanceof APIError && e.status === 401 ? 'Unknown token.' : `Sign-in failed: ${e.message}`;
      $('token').focus();
    }
  });
  initDialog();
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', shortcut);
  $('token').focus();
}

init();
