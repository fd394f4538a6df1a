// Live updates: the coordinator's event stream (/ui/api/events), read with
// fetch so that it carries the bearer token. Each "change" event names a
// topic; the page fetches that part again. A lost stream is reported and
// reopened by itself, with a growing pause (1 s up to 5 s).

const HEARTBEAT_LOST_MS = 30000;

export class Live {
  // onChange(topic) is called per change and with '*' after every
  // (re)connection; onState(state, detail) with 'connecting', 'live' or
  // 'lost'.
  constructor(token, onChange, onState) {
    this.token = token;
    this.onChange = onChange;
    this.onState = onState;
    this.stopped = false;
    this.abort = null;
    this.failures = 0;
  }

  start() {
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async loop() {
    while (!this.stopped) {
      this.onState(this.failures ? 'lost' : 'connecting', this.failures ? 'reconnecting' : '');
      let err = '';
      try {
        await this.once();
        err = 'the stream ended';
      } catch (e) {
        err = e && e.message ? e.message : String(e);
      }
      if (this.stopped) return;
      this.failures++;
      this.onState('lost', err);
      const pause = Math.min(5000, 1000 * this.failures);
      await new Promise((r) => setTimeout(r, pause));
    }
  }

  async once() {
    this.abort = new AbortController();
    const signal = this.abort.signal;
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.abort.abort(new Error('no heartbeat')), HEARTBEAT_LOST_MS);
    };
    arm();
    try {
      const resp = await fetch('/ui/api/events', {
        headers: {Authorization: 'Bearer ' + this.token, Accept: 'text/event-stream'},
        cache: 'no-store', credentials: 'omit', signal,
      });
      if (!resp.ok) throw new Error(`event stream refused: HTTP ${resp.status}`);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) return;
        arm();
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          this.dispatch(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } finally {
      clearTimeout(timer);
    }
  }

  dispatch(block) {
    let event = 'message';
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trim();
    }
    if (event === 'hello') {
      this.failures = 0;
      this.onState('live', '');
      this.onChange('*');
    } else if (event === 'change') {
      try {
        this.onChange(JSON.parse(data).topic);
      } catch {
        // a malformed event changes nothing
      }
    }
  }
}
