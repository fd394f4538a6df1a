// The REST API client: every call carries the session's bearer token.

// APIError is a refused call: the drplane error reason (e.g. PERMISSION_DENIED),
// the HTTP status and the message.
export class APIError extends Error {
  constructor(status, reason, message) {
    super(message || reason || `HTTP ${status}`);
    this.status = status;
    this.reason = reason || '';
  }
}

export class API {
  constructor(token) {
    this.token = token;
  }

  headers(extra) {
    return Object.assign({Authorization: 'Bearer ' + this.token, Accept: 'application/json'}, extra || {});
  }

  async call(method, path, body) {
    const init = {method, headers: this.headers(), cache: 'no-store', credentials: 'omit'};
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = null;
    }
    if (!resp.ok) {
      let reason = '';
      for (const d of (data && data.details) || []) {
        if (d.reason) reason = d.reason;
      }
      throw new APIError(resp.status, reason, (data && data.message) || text);
    }
    return data;
  }

  get(path) { return this.call('GET', path); }

  post(path, body) { return this.call('POST', path, body || {}); }
}

// Roles in order: each may do what the ones before it may.
const ROLES = ['viewer', 'operator', 'admin'];

// can tells whether role may do what needs the role need.
export function can(role, need) {
  return ROLES.indexOf(role) >= ROLES.indexOf(need) && ROLES.indexOf(need) >= 0;
}
