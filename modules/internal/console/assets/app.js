// The caddy-silo console. Every value from the admin API is put on the
// page as text (textContent, text nodes, attribute values); no HTML is
// ever built from data. The Content-Security-Policy allows only this
// file as script, so an injected <script> would not run anyway.
'use strict';

(function () {
  const HOUR = 3600; // seconds of rate samples kept and charted
  const RING_KEY = 'caddy-silo-console-rates';
  const SVG = 'http://www.w3.org/2000/svg';
  const ARM_MS = 5000; // a Delete button waits this long for its confirming click

  let settings = { read_only: false, refresh_seconds: 5 };
  let timer = null;
  const last = {}; // the JSON last rendered, per table: unchanged data is not re-rendered
  const armed = new Map(); // dead letter id -> time its Delete was armed

  const $ = (id) => document.getElementById(id);

  // el builds an element; children are nodes or strings (text nodes).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  // call sends one admin API request through the console (same origin,
  // relative to this page) and returns the decoded JSON; an error answer
  // throws an Error carrying the API's message and the status.
  async function call(method, route, body) {
    const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store', redirect: 'error' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch('sentry_silo/' + route, init);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const msg = data && typeof data.error === 'string' ? data.error : resp.status + ' ' + resp.statusText;
      const err = new Error(msg);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function seg(name) { return encodeURIComponent(name); }

  function when(s) {
    if (!s) return '—';
    return String(s).replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function age(seconds) {
    if (typeof seconds !== 'number' || !isFinite(seconds)) return '—';
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function pauseText(p) {
    if (!p) return '—';
    let t = 'paused ' + when(p.paused_at);
    if (p.paused_by) t += ' by ' + p.paused_by;
    if (p.reason) t += ': ' + p.reason;
    return t;
  }

  function badge(text, kind) { return el('span', { class: 'badge ' + kind }, text); }

  function button(label, action, data) {
    const attrs = { type: 'button', class: 'act ' + action, 'data-action': action };
    for (const [k, v] of Object.entries(data)) attrs['data-' + k] = v;
    return el('button', attrs, label);
  }

  function actions(...buttons) {
    return el('td', { class: 'actions' }, ...(settings.read_only ? [] : buttons));
  }

  // fill puts rows in a table's body, keyed by their data-key: a row
  // that is there already keeps its element and only its changed cells
  // are replaced, so a button stays where it is (and stays the same
  // element) while the data around it refreshes.
  function fill(table, rows, empty) {
    const body = $(table).tBodies[0];
    const cols = $(table).tHead.rows[0].cells.length;
    if (!rows.length) rows = [el('tr', { class: 'empty', 'data-key': '' }, el('td', { colspan: cols }, empty))];
    const old = new Map([...body.rows].map((r) => [r.dataset.key, r]));
    rows.forEach((fresh, i) => {
      let row = old.get(fresh.dataset.key);
      if (row && row.cells.length === fresh.cells.length && row.className === fresh.className) {
        old.delete(fresh.dataset.key);
        [...fresh.cells].forEach((cell, j) => {
          if (!row.cells[j].isEqualNode(cell)) row.replaceChild(cell, row.cells[j]);
        });
      } else {
        row = fresh;
      }
      if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
    });
    for (const r of old.values()) if (r.parentNode === body && !rows.includes(r)) r.remove();
  }

  // unchanged reports whether key's data is what was rendered last, and
  // remembers it: re-rendering the same rows every few seconds would
  // move buttons under the operator's pointer for nothing.
  function unchanged(key, data) {
    const s = JSON.stringify(data);
    if (last[key] === s) return true;
    last[key] = s;
    return false;
  }

  function renderSummary(st) {
    if (unchanged('summary', [st.mode, st.storage, st.drainer, st.directory])) return;
    const items = [];
    const add = (k, v, kind) => items.push(el('div', {}, el('dt', {}, k), el('dd', kind ? { class: kind } : {}, v)));
    add('mode', st.mode || '—');
    if (st.storage) {
      const s = st.storage;
      add('storage', s.engine + (s.ok ? ' · ok' + (typeof s.ping_ms === 'number' ? ' (' + s.ping_ms.toFixed(1) + ' ms)' : '') : ' · DOWN: ' + (s.error || 'unreachable')), s.ok ? '' : 'bad');
    }
    if (st.drainer) {
      const d = st.drainer;
      add('drainer', d.busy + ' of ' + d.workers + ' workers busy · ' + d.queued + ' queued · ' + d.leases_held + ' leases' + (d.pauses_error ? ' · pauses: ' + d.pauses_error : ''), d.pauses_error ? 'bad' : '');
    } else {
      add('drainer', 'off on this instance');
    }
    if (st.directory) {
      const dir = st.directory;
      add('directory', dir.cache_entries + ' cached' + (dir.error ? ' · ' + dir.error : '') + (dir.missing_tables && dir.missing_tables.length ? ' · missing ' + dir.missing_tables.join(', ') : ''), dir.error ? 'bad' : '');
    }
    $('summary').replaceChildren(...items);
  }

  function renderRegions(regions) {
    if (unchanged('regions', [regions, settings.read_only])) return;
    fill('regions', regions.map((r) => el('tr', { 'data-key': r.name, 'data-region': r.name },
      el('td', { class: 'name' }, r.name),
      el('td', {}, r.breaker === 'open' ? badge('open', 'bad') : badge(r.breaker || 'closed', 'good')),
      el('td', { class: 'num' }, r.in_flight ?? 0),
      el('td', { class: 'err' }, r.last_error ? r.last_error + ' (' + when(r.last_error_at) + ')' : '—'),
      el('td', {}, r.paused ? badge(pauseText(r.paused), 'warn') : '—'),
      actions(r.paused
        ? button('Resume', 'resume-region', { name: r.name })
        : button('Pause', 'pause-region', { name: r.name })))), 'no region configured');
  }

  function renderMailboxes(page) {
    if (unchanged('mailboxes', [page, settings.read_only])) return;
    const list = page.mailboxes || [];
    $('mailboxes-note').textContent = list.length ? 'deepest first' + (page.next !== null && page.next !== undefined ? ', first ' + list.length : '') : '';
    fill('mailboxes', list.map((m) => {
      let head = 'attempt ' + (m.head_attempts ?? 0);
      if (m.head_last_status) head += ' · ' + m.head_last_status;
      if (m.head_last_error) head += ' · ' + m.head_last_error;
      return el('tr', { 'data-key': m.name, 'data-mailbox': m.name },
        el('td', { class: 'name' }, m.name),
        el('td', {}, m.region || '—'),
        el('td', {}, m.provider || '—'),
        el('td', { class: 'num depth' }, String(m.depth) + (m.depth_capped ? '+' : '')),
        el('td', { class: 'num' }, age(m.oldest_age_seconds)),
        el('td', { class: 'err' }, head),
        el('td', {}, m.paused ? badge(pauseText(m.paused), 'warn') : '—'),
        actions(
          m.paused && m.paused.kind === 'mailbox'
            ? button('Resume', 'resume-mailbox', { name: m.name })
            : button('Pause', 'pause-mailbox', { name: m.name }),
          button('Retry now', 'retry-mailbox', { name: m.name })));
    }), 'no payload waiting');
  }

  function renderDeadLetters(page) {
    const list = page.dead_letters || [];
    const now = Date.now();
    for (const [id, t] of armed) if (now - t > ARM_MS) armed.delete(id);
    if (unchanged('dead-letters', [page, settings.read_only, [...armed.keys()]])) return;
    const more = page.next !== null && page.next !== undefined;
    $('dead-letters-note').textContent = list.length ? (more ? 'the first ' + list.length + ', oldest first' : list.length + ', oldest first') : '';
    fill('dead-letters', list.map((d) => {
      const id = String(d.id);
      const del = armed.has(id)
        ? el('button', { type: 'button', class: 'act delete-dead-letter armed', 'data-action': 'delete-dead-letter', 'data-id': id }, 'Confirm delete')
        : button('Delete', 'arm-delete', { id });
      return el('tr', { 'data-key': 'dl-' + id, 'data-dead-letter': id },
        el('td', { class: 'num' }, id),
        el('td', { class: 'name' }, d.mailbox),
        el('td', {}, badge(d.reason, 'bad')),
        el('td', { class: 'num' }, d.last_status || '—'),
        el('td', { class: 'err' }, d.last_error || '—'),
        el('td', {}, when(d.dead_at)),
        actions(button('Replay', 'replay-dead-letter', { id }), del));
    }), 'no dead letter');
  }

  // The rate charts: the status route gives this instance's rates over
  // its last minute; the page keeps one sample per refresh for an hour,
  // in sessionStorage so a reload keeps the curve.
  function loadRing() {
    try {
      const r = JSON.parse(sessionStorage.getItem(RING_KEY) || '[]');
      return Array.isArray(r) ? r.filter((s) => Array.isArray(s) && s.length === 3 && s.every((v) => typeof v === 'number')) : [];
    } catch (e) { return []; }
  }

  function addSample(rates) {
    const now = Date.now() / 1000;
    const ring = loadRing().filter((s) => now - s[0] <= HOUR);
    if (rates) ring.push([now, Number(rates.captures_per_second) || 0, Number(rates.deliveries_per_second) || 0]);
    try { sessionStorage.setItem(RING_KEY, JSON.stringify(ring)); } catch (e) { /* storage full or off: the chart still shows this page's samples */ }
    drawChart($('chart-captures'), ring, 1, now);
    drawChart($('chart-deliveries'), ring, 2, now);
    $('rates-note').textContent = rates ? '(this instance, each point its last ' + Math.round(rates.window_seconds || 60) + ' s)' : '';
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmtRate(v) { return v === 0 ? '0' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

  function drawChart(fig, ring, k, now) {
    const W = 320, H = 100, L = 34, B = 16;
    const max = niceMax(Math.max(0, ...ring.map((s) => s[k])));
    // The axis spans the samples the page has, from one minute up to the
    // hour it keeps, so a page opened a minute ago shows a readable curve.
    const span = Math.min(HOUR, Math.max(60, ring.length ? now - ring[0][0] : HOUR));
    const x = (t) => L + (t - (now - span)) / span * (W - L - 4);
    const y = (v) => 4 + (1 - v / max) * (H - B - 4);
    const g = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, class: 'plot', role: 'img' });
    for (const v of [0, max / 2, max]) {
      g.append(svg('line', { x1: L, x2: W - 4, y1: y(v), y2: y(v), class: 'grid' }));
      g.append(svg('text', { x: L - 4, y: y(v) + 3, class: 'axis', 'text-anchor': 'end' }, fmtRate(v)));
    }
    g.append(svg('text', { x: L, y: H - 3, class: 'axis' }, '−' + (span >= 120 ? Math.round(span / 60) + ' min' : Math.round(span) + ' s')));
    g.append(svg('text', { x: W - 4, y: H - 3, class: 'axis', 'text-anchor': 'end' }, 'now'));
    if (ring.length === 1) {
      g.append(svg('circle', { cx: x(ring[0][0]), cy: y(ring[0][k]), r: 2.5, class: 'dot' }));
    } else if (ring.length > 1) {
      g.append(svg('polyline', { points: ring.map((s) => x(s[0]).toFixed(1) + ',' + y(s[k]).toFixed(1)).join(' '), class: 'line' }));
    }
    const current = ring.length ? fmtRate(ring[ring.length - 1][k]) : '—';
    fig.querySelectorAll('svg, .value').forEach((n) => n.remove());
    fig.append(el('span', { class: 'value' }, current), g);
    fig.dataset.samples = String(ring.length);
  }

  function banner(text, kind) {
    const b = $('banner');
    b.textContent = text || '';
    b.className = 'banner ' + (kind || '');
    b.hidden = !text;
  }

  let notice = null; // the last action's outcome, kept until the next action

  // render draws one answer, and turns a failure to draw it (an answer of
  // an unexpected shape) into a problem to show, so one bad part never
  // stops the page from refreshing the others.
  function render(what, result, draw, problems) {
    if (result.status !== 'fulfilled') {
      problems.push(what + ': ' + result.reason.message);
      return false;
    }
    try {
      draw(result.value);
      return true;
    } catch (e) {
      problems.push(what + ': cannot show the answer (' + e.message + ')');
      return false;
    }
  }

  async function refresh() {
    clearTimeout(timer);
    const [status, mailboxes, dead] = await Promise.allSettled([
      call('GET', 'status'),
      call('GET', 'mailboxes?sort=depth&limit=50'),
      call('GET', 'dead_letters?limit=50'),
    ]);
    const problems = [];
    const sampled = render('status', status, (st) => {
      renderSummary(st);
      renderRegions(st.regions || []);
      addSample(st.rates);
    }, problems);
    if (!sampled) addSample(null);
    render('mailboxes', mailboxes, renderMailboxes, problems);
    render('dead letters', dead, renderDeadLetters, problems);
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString() + ' · every ' + settings.refresh_seconds + ' s' + (settings.read_only ? ' · read-only' : '');
    if (problems.length) banner(problems.join(' · '), 'bad');
    else if (notice) banner(notice.text, notice.kind);
    else banner('');
    timer = setTimeout(refresh, settings.refresh_seconds * 1000);
  }

  const ACTIONS = {
    'pause-region': (b) => ['POST', 'regions/' + seg(b.dataset.name) + '/pause', { reason: 'paused from the dashboard' },
      (r) => 'region ' + b.dataset.name + (r.created ? ' paused' : ' was paused already')],
    'resume-region': (b) => ['POST', 'regions/' + seg(b.dataset.name) + '/resume', undefined,
      (r) => 'region ' + b.dataset.name + (r.resumed ? ' resumed' : ' was not paused')],
    'pause-mailbox': (b) => ['POST', 'mailboxes/' + seg(b.dataset.name) + '/pause', { reason: 'paused from the dashboard' },
      (r) => 'mailbox ' + b.dataset.name + (r.created ? ' paused' : ' was paused already')],
    'resume-mailbox': (b) => ['POST', 'mailboxes/' + seg(b.dataset.name) + '/resume', undefined,
      (r) => 'mailbox ' + b.dataset.name + (r.resumed ? ' resumed' : ' was not paused')],
    'retry-mailbox': (b) => ['POST', 'mailboxes/' + seg(b.dataset.name) + '/retry', undefined,
      () => 'mailbox ' + b.dataset.name + ': head due now'],
    'replay-dead-letter': (b) => ['POST', 'dead_letters/' + seg(b.dataset.id) + '/replay', undefined,
      (r) => 'dead letter ' + b.dataset.id + ' replayed as payload ' + r.payload_id],
    'delete-dead-letter': (b) => ['DELETE', 'dead_letters/' + seg(b.dataset.id), undefined,
      () => 'dead letter ' + b.dataset.id + ' deleted'],
  };

  // One listener per table (event delegation): a click lands on whatever
  // button is there now, even if a refresh rebuilt the row.
  async function onClick(ev) {
    const b = ev.target.closest('button[data-action]');
    if (!b || b.disabled) return;
    const action = b.dataset.action;
    if (action === 'arm-delete') {
      armed.set(b.dataset.id, Date.now());
      delete last['dead-letters'];
      await refresh();
      setTimeout(() => { delete last['dead-letters']; refresh(); }, ARM_MS + 100);
      return;
    }
    const make = ACTIONS[action];
    if (!make) return;
    const [method, route, body, done] = make(b);
    b.disabled = true;
    try {
      const r = await call(method, route, body);
      notice = { text: done(r || {}), kind: 'good' };
    } catch (e) {
      let text = action.replace(/-/g, ' ') + ' failed: ' + e.message;
      if (e.status === 403 && /origin/i.test(e.message)) {
        text += ' · To act from this page, list its origin (' + location.origin + ') in the admin endpoint\'s origins, see docs/dashboard.md.';
      }
      notice = { text, kind: 'bad' };
    }
    if (action === 'delete-dead-letter') armed.delete(b.dataset.id);
    for (const k of Object.keys(last)) delete last[k];
    await refresh();
  }

  async function start() {
    try {
      const resp = await fetch('console.json', { cache: 'no-store' });
      if (resp.ok) settings = Object.assign(settings, await resp.json());
    } catch (e) { /* keep the defaults */ }
    if (!(settings.refresh_seconds > 0)) settings.refresh_seconds = 5;
    for (const id of ['regions', 'mailboxes', 'dead-letters']) $(id).addEventListener('click', onClick);
    await refresh();
  }

  document.addEventListener('DOMContentLoaded', start);
})();
