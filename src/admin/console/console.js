// sluice's console: the admin listener's /api/status, polled every second, drawn as a graph
// (ingress → topics → triggers and streams → functions, dead-letter and reply topics), with
// rates from the counters' deltas. A trigger's detail panel shows its partitions, config and
// last dead letters, and redrives them.
'use strict';

(() => {
  const POLL_MS = 1000;          // the server refreshes its status every second
  const FETCH_TIMEOUT = 5000;    // ms before a request counts as failed
  const RATE_WINDOW = 2000;      // ms of samples a rate is computed over
  const RISING_MS = 60000;       // ms a counter that went up stays marked
  const DEAD_LETTERS_SHOWN = 20;
  const DL_REFRESH_MIN = 3000;   // ms between automatic reloads of the dead letters
  const TOKEN_KEY = 'sluice-console:token';

  // Graph geometry.
  const W = 208;                 // node width
  const COL_GAP = 64;
  const V_GAP = 14;
  const PAD = 14;
  const TOP = 30;                // room for the column titles
  const ROW_H = 34;
  const NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const el = {
    version: $('version'), broker: $('broker'), edge: $('edge'), edgeFact: $('edge-fact'),
    uptime: $('uptime'), contact: $('contact'), updated: $('updated'),
    lost: $('lost'), brokerBanner: $('broker-banner'), notices: $('notices'),
    layout: $('layout'), graph: $('graph'), svg: $('topology'), empty: $('empty'), counts: $('counts'),
    detail: $('detail'), detailClose: $('detail-close'), partitions: $('partitions'),
    partitionsEmpty: $('partitions-empty'), deadLetters: $('dead-letters'),
    deadLettersNote: $('dead-letters-note'), dlRefresh: $('dl-refresh'),
    redrive: $('redrive'), redriveCount: $('redrive-count'), redriveWhere: $('redrive-where'),
    redriveGo: $('redrive-go'), redriveResult: $('redrive-result'), tokenRow: $('token-row'),
    token: $('token'), tooltip: $('tooltip'),
  };
  const detailField = (name) => el.detail.querySelector(`[data-field="${name}"]`);

  // ---- formatting -----------------------------------------------------------------------

  const grouped = new Intl.NumberFormat('en-US');
  const isNum = (n) => typeof n === 'number' && Number.isFinite(n);

  // Counts: exact up to a million, then 1.2M.
  function count(n) {
    if (!isNum(n)) return '—';
    if (Math.abs(n) < 1e6) return grouped.format(n);
    if (Math.abs(n) < 1e9) return `${(n / 1e6).toFixed(n < 1e7 ? 2 : 1)}M`;
    return `${(n / 1e9).toFixed(1)}G`;
  }

  function rate(r) {
    if (!isNum(r)) return '—';
    if (r < 0.05) return '0';
    if (r < 10) return r.toFixed(1);
    if (r < 10000) return grouped.format(Math.round(r));
    if (r < 1e6) return `${(r / 1e3).toFixed(1)}k`;
    return `${(r / 1e6).toFixed(1)}M`;
  }

  function seconds(s) {
    if (!isNum(s)) return '—';
    if (s < 1) return `${Math.max(0, Math.round(s * 1000))} ms`;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    return `${Math.floor(s / 60)}m ${String(Math.round(s % 60)).padStart(2, '0')}s`;
  }

  function uptime(s) {
    if (!isNum(s)) return '—';
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = Math.floor(s % 60);
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
    if (m) return `${m}m ${String(sec).padStart(2, '0')}s`;
    return `${sec}s`;
  }

  const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });

  // ---- requests -------------------------------------------------------------------------

  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';

  // {status, body} for any HTTP answer; throws only when there is none.
  async function request(path, options = {}) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT);
    const headers = { Accept: 'application/json', ...(options.headers || {}) };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    try {
      const res = await fetch(new URL(path, location.href), { ...options, headers, signal: ctl.signal, cache: 'no-store' });
      const text = await res.text();
      let body = null;
      try { body = text ? JSON.parse(text) : null; } catch { body = { error: text.slice(0, 300) }; }
      return { status: res.status, ok: res.ok, body };
    } catch (e) {
      throw new Error(e.name === 'AbortError' ? `no answer within ${FETCH_TIMEOUT / 1000} s` : (e.message || String(e)));
    } finally {
      clearTimeout(timer);
    }
  }

  const errorOf = (r) => (r.body && typeof r.body.error === 'string' && r.body.error) || `HTTP ${r.status}`;

  // ---- rates and rising counters --------------------------------------------------------

  const samples = new Map();     // key → [[ms, value], ...]
  const risen = new Map();       // key → {value, at}

  // The counter's rate per second over the last RATE_WINDOW, from samples at distinct times.
  function rateOf(key, t, v) {
    if (!isNum(v)) return null;
    let h = samples.get(key);
    if (!h) { h = []; samples.set(key, h); }
    const last = h[h.length - 1];
    if (last && v < last[1]) h.length = 0; // the counter started over (a restart)
    if (!h.length || t > h[h.length - 1][0]) h.push([t, v]);
    while (h.length > 2 && h[1][0] <= t - RATE_WINDOW) h.shift();
    if (h.length < 2) return null;
    const [t0, v0] = h[0];
    return t > t0 ? ((v - v0) * 1000) / (t - t0) : null;
  }

  // Whether the counter went up within the last RISING_MS.
  function rising(key, v, now) {
    if (!isNum(v)) return false;
    const r = risen.get(key);
    if (!r) { risen.set(key, { value: v, at: 0 }); return false; }
    if (v > r.value) r.at = now;
    r.value = v;
    return r.at > 0 && now - r.at < RISING_MS;
  }

  // ---- measuring text (for truncation and wrapping) ------------------------------------

  const ctx = document.createElement('canvas').getContext('2d');
  const fontFamily = getComputedStyle(document.documentElement).fontFamily;
  function textWidth(text, size, weight = 400) {
    ctx.font = `${weight} ${size}px ${fontFamily}`;
    return ctx.measureText(text).width;
  }
  function fit(text, max, size, weight) {
    if (textWidth(text, size, weight) <= max) return text;
    let lo = 0;
    let hi = text.length;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (textWidth(`${text.slice(0, mid)}…`, size, weight) <= max) lo = mid; else hi = mid - 1;
    }
    return `${text.slice(0, lo)}…`;
  }
  function wrap(text, max, size, lines) {
    const out = [];
    let line = '';
    for (const word of String(text).split(/\s+/).filter(Boolean)) {
      const next = line ? `${line} ${word}` : word;
      if (textWidth(next, size) <= max || !line) { line = next; continue; }
      out.push(line);
      line = word;
      if (out.length === lines) break;
    }
    if (out.length < lines && line) out.push(line);
    const shown = out.join(' ');
    if (shown.length < String(text).trim().replace(/\s+/g, ' ').length) {
      out[out.length - 1] = fit(`${out[out.length - 1]}…`, max, size);
    }
    return out.map((l) => fit(l, max, size));
  }

  // ---- the model: nodes and edges from a status -----------------------------------------

  // Cells per kind: [field, label]. The rows are laid out three to a row.
  const CELLS = {
    topic: [[['rate', 'records/s in'], ['records', 'records'], ['partitions', 'partitions']]],
    trigger: [
      [['rate', 'delivered/s'], ['delivered', 'delivered'], ['lag', 'lag']],
      [['in_flight', 'in flight'], ['retrying', 'retrying'], ['dead_lettered', 'dead letters']],
    ],
    function: [
      [['instances', 'ready'], ['starting', 'starting'], ['stopping', 'stopping']],
      [['cold_starts', 'cold starts'], ['last_cold_start', 'last start'], ['in_flight', 'in flight']],
    ],
    deadletter: [[['dead_lettered', 'dead letters'], ['records', 'in topic'], ['rate', 'records/s']]],
    reply: [[['rate', 'records/s'], ['records', 'records']]],
    ingress: [[['rate', 'stored/s'], ['stored', 'stored'], ['refused', 'refused']]],
    stream: [[['clients', 'clients'], ['rate', 'out/s'], ['messages_in', 'in']]],
    url: [],
  };
  const FOOT = {
    trigger: [['filtered', 'filtered'], ['waiting', 'waiting'], ['dropped', 'dropped']],
    function: [['waiting', 'waiting']],
    ingress: [['unavailable', 'unavailable']],
    stream: [['dropped_slow', 'dropped'], ['resumed', 'resumed'], ['not_recovered', 'gaps']],
  };
  const KIND_LABEL = {
    topic: 'topic', trigger: 'trigger', function: 'function', deadletter: 'dead letters',
    reply: 'replies', ingress: 'ingress', stream: 'stream', url: 'url',
  };
  const COLUMN_TITLES = ['ingress', 'topics', 'triggers', 'functions & outputs'];

  function modelOf(s) {
    const nodes = new Map();
    const edges = [];
    const edgeKeys = new Set();
    const add = (kind, name, col, extra = {}) => {
      const id = `${kind}:${name}`;
      if (!nodes.has(id)) nodes.set(id, { id, kind, name, col, order: nodes.size, ...extra });
      return nodes.get(id);
    };
    const link = (from, to, cls = '') => {
      const key = `${from.id}>${to.id}`;
      if (edgeKeys.has(key)) return;
      edgeKeys.add(key);
      edges.push({ from, to, cls });
    };
    const triggers = s.triggers || [];
    const ingress = s.edge?.ingress || [];
    const streams = s.edge?.streams || [];
    const functions = s.functions || [];

    // Topics only written to (dead letters, replies) are drawn on the right, not as sources.
    const read = new Set([...triggers.flatMap((t) => t.topics || []), ...ingress.map((i) => i.topic), ...streams.map((x) => x.topic)]);
    const outputs = new Set();
    for (const t of triggers) {
      if (t.dead_letter?.kind === 'topic' && t.dead_letter.topic) outputs.add(t.dead_letter.topic);
      if (t.reply) outputs.add(t.reply);
    }
    for (const t of triggers) for (const name of t.topics || []) add('topic', name, 1);
    for (const i of ingress) add('topic', i.topic, 1);
    for (const x of streams) add('topic', x.topic, 1);
    for (const t of s.topics || []) if (read.has(t.name) || !outputs.has(t.name)) add('topic', t.name, 1);

    for (const i of ingress) link(add('ingress', i.topic, 0), nodes.get(`topic:${i.topic}`));
    for (const t of triggers) {
      const n = add('trigger', t.name, 2);
      for (const name of t.topics || []) link(nodes.get(`topic:${name}`), n);
    }
    for (const x of streams) link(nodes.get(`topic:${x.topic}`), add('stream', x.path, 2));

    const fnKind = new Map(functions.map((f) => [f.name, f.kind]));
    const topicNames = new Set((s.topics || []).map((t) => t.name));
    for (const t of triggers) {
      const from = nodes.get(`trigger:${t.name}`);
      if (t.function) link(from, add('function', t.function, 3, { fnKind: fnKind.get(t.function) }));
      else if (t.target) link(from, add('url', t.target, 3));
      if (t.reply) link(from, add('reply', t.reply, 3, { known: topicNames.has(t.reply) }), 'to-reply');
      const dl = t.dead_letter;
      if (dl?.kind === 'topic' && dl.topic) link(from, add('deadletter', dl.topic, 3, { dlKind: 'topic', known: topicNames.has(dl.topic) }), 'to-deadletter');
      else if (dl?.kind === 'url' && dl.url) link(from, add('deadletter', dl.url, 3, { dlKind: 'url' }), 'to-deadletter');
    }
    for (const f of functions) add('function', f.name, 3, { fnKind: f.kind });

    // What changes the drawing (rather than only its figures).
    for (const f of functions) {
      const n = nodes.get(`function:${f.name}`);
      n.fnKind = f.kind;
      n.error = f.error || null;
    }
    return { nodes, edges };
  }

  const shapeKey = (m) => JSON.stringify([
    [...m.nodes.values()].map((n) => [n.id, n.col, n.fnKind || '', n.dlKind || '', n.known ? 1 : 0, n.error || '']),
    m.edges.map((e) => [e.from.id, e.to.id]),
  ]);

  // ---- drawing --------------------------------------------------------------------------

  function svg(tag, attrs = {}, ...children) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  // A URL node shows the host as its name and the path below it.
  const urlParts = (n) => {
    if (n.kind !== 'url' && !(n.kind === 'deadletter' && n.dlKind === 'url')) return null;
    try {
      const u = new URL(n.name);
      return { name: u.host, sub: `${u.pathname}${u.search}` };
    } catch {
      return { name: n.name, sub: '' };
    }
  };

  // Sizes a node and lays out its parts (relative to its top left corner).
  function shapeOf(n) {
    const rows = CELLS[n.kind] || [];
    let y = 39;
    if (urlParts(n)) y += 13;
    const cells = [];
    rows.forEach((row) => {
      const before = cells.length;
      row.forEach(([field, label], i) => {
        let shownLabel = label;
        if (n.kind === 'function' && field === 'instances') {
          shownLabel = n.fnKind === 'command' ? 'ready' : n.fnKind === 'url' ? 'remote' : 'running';
        }
        if ((n.kind === 'deadletter' || n.kind === 'reply') && !n.known && field !== 'dead_lettered') return;
        cells.push({ field, label: shownLabel, x: 12 + i * ((W - 24) / 3), y: y + 17 });
      });
      if (cells.length > before) y += ROW_H;
    });
    const foot = FOOT[n.kind] ? { y: y + 13 } : null;
    if (foot) y += 17;
    const errorY = y + 4;
    let errorLines = [];
    if (n.error) {
      errorLines = wrap(n.error, W - 24, 11, 3);
      y = errorY + errorLines.length * 13.5;
    }
    return { h: Math.max(y + 9, 52), cells, foot, errorLines, errorY };
  }

  // Stacks a column's nodes, each as near as it can be to the height it wants (null: none,
  // placed last), then centres the column on what it hangs off rather than pushing it down.
  function place(list, desired) {
    const want = new Map(list.map((n) => [n, desired(n)]));
    const key = (n) => (want.get(n) === null ? Infinity : want.get(n));
    list.sort((a, b) => key(a) - key(b) || a.order - b.order);
    let bottom = -Infinity;
    let drift = 0;
    let placed = 0;
    for (const n of list) {
      const d = want.get(n);
      n.y = d === null ? (Number.isFinite(bottom) ? bottom + V_GAP : 0) : Math.max(d - n.h / 2, bottom + V_GAP);
      bottom = n.y + n.h;
      if (d !== null) { drift += n.y + n.h / 2 - d; placed++; }
    }
    const shift = placed ? drift / placed : 0;
    for (const n of list) n.y -= shift;
  }

  function layout(m) {
    const cols = [[], [], [], []];
    for (const n of m.nodes.values()) cols[n.col].push(n);
    const near = new Map();
    const link = (a, b) => { if (!near.has(a.id)) near.set(a.id, []); near.get(a.id).push(b); };
    for (const e of m.edges) { link(e.from, e.to); link(e.to, e.from); }
    for (const n of m.nodes.values()) n.y = undefined;
    // Where a node wants to be: the mean height of its neighbours placed so far.
    const around = (n) => {
      const placed = (near.get(n.id) || []).filter((x) => x.y !== undefined);
      return placed.length ? placed.reduce((a, x) => a + x.y + x.h / 2, 0) / placed.length : null;
    };
    // Topics stacked, then each column where its neighbours are, swept both ways twice so
    // that a tall column of functions pulls its triggers and topics along.
    let y = 0;
    for (const n of cols[1]) { n.y = y; y += n.h + V_GAP; }
    for (const c of [0, 2, 3]) place(cols[c], around);
    for (let sweep = 0; sweep < 2; sweep++) {
      for (const c of [2, 1, 0, 2, 3]) place(cols[c], around);
    }
    // Columns present get x positions; the whole drawing is moved below the titles.
    const present = cols.map((c, i) => [c, i]).filter(([c]) => c.length);
    let minY = Infinity;
    let maxY = -Infinity;
    present.forEach(([c], i) => {
      for (const n of c) {
        n.x = PAD + i * (W + COL_GAP);
        minY = Math.min(minY, n.y);
        maxY = Math.max(maxY, n.y + n.h);
      }
    });
    for (const n of m.nodes.values()) n.y += TOP - minY;
    return {
      width: PAD * 2 + present.length * W + (present.length - 1) * COL_GAP,
      height: TOP + (maxY - minY) + PAD,
      titles: present.map(([, i], k) => ({ text: COLUMN_TITLES[i], x: PAD + k * (W + COL_GAP) })),
    };
  }

  function edgePath(e) {
    const x1 = e.from.x + W;
    const y1 = e.from.y + e.from.h / 2;
    const x2 = e.to.x - 6;
    const y2 = e.to.y + e.to.h / 2;
    const dx = Math.max(24, (x2 - x1) / 2);
    return `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
  }

  let drawn = null;              // {key, nodes: Map id → {g, fields, pill, ...}, edges: [{e, path}]}

  function draw(m) {
    if (!m.nodes.size) {
      el.svg.replaceChildren();
      drawn = { nodes: new Map(), edges: [] };
      return;
    }
    const size = layout(m);
    const nodes = new Map();
    const defs = svg('defs', {}, svg('marker', {
      id: 'arrow', viewBox: '0 0 10 10', refX: '2', refY: '5', markerWidth: '9', markerHeight: '9', markerUnits: 'userSpaceOnUse', orient: 'auto',
    }, svg('path', { d: 'M0,1 L8,5 L0,9 z' })));
    const titles = size.titles.map((t) => svg('text', { class: 'col-title', x: t.x + 2, y: 14 }, t.text));
    const edgeLayer = svg('g', { class: 'edges' });
    const edges = m.edges.map((e) => {
      const path = svg('path', {
        class: `edge ${e.cls}`.trim(), d: edgePath(e), 'data-from': e.from.id, 'data-to': e.to.id, 'marker-end': 'url(#arrow)',
      });
      edgeLayer.append(path);
      return { e, path };
    });
    const nodeLayer = svg('g', { class: 'nodes' });
    for (const n of m.nodes.values()) {
      const shape = shapeOf(n);
      const g = svg('g', {
        class: 'node', 'data-kind': n.kind, 'data-name': n.name, transform: `translate(${n.x},${n.y})`,
      });
      if (n.kind === 'trigger') {
        g.setAttribute('tabindex', '0');
        g.setAttribute('role', 'button');
        g.setAttribute('aria-label', `trigger ${n.name}: open its details`);
      }
      g.append(svg('title', {}, `${KIND_LABEL[n.kind]} ${n.name}${n.error ? `\n${n.error}` : ''}`));
      g.append(svg('rect', { class: 'box', width: W, height: n.h, rx: 8 }));
      g.append(svg('rect', { class: 'stripe', x: 0, y: 8, width: 3, height: n.h - 16, rx: 1.5 }));
      const kindText = n.kind === 'function' && n.fnKind ? `function · ${n.fnKind}` : KIND_LABEL[n.kind];
      g.append(svg('text', { class: 'kind', x: 12, y: 17 }, kindText));
      const pill = svg('g', { class: 'pill', 'data-field': 'state', visibility: 'hidden' }, svg('rect', { height: 16, rx: 8, y: -8 }), svg('text', { y: 3.5 }));
      g.append(pill);
      const url = urlParts(n);
      g.append(svg('text', { class: 'name', x: 12, y: 35 }, fit(url ? url.name : n.name, W - 24, 13.5, 650)));
      if (url) g.append(svg('text', { class: 'sub', x: 12, y: 49 }, fit(url.sub, W - 24, 11, 400)));
      const fields = new Map();
      for (const c of shape.cells) {
        const v = svg('text', { class: 'value', x: c.x, y: c.y, 'data-field': c.field }, '—');
        g.append(v, svg('text', { class: 'label', x: c.x, y: c.y + 12 }, c.label));
        fields.set(c.field, v);
      }
      if (shape.foot) {
        const t = svg('text', { class: 'foot', x: 12, y: shape.foot.y });
        const parts = [...(FOOT[n.kind] || [])];
        if (n.kind === 'function' && n.fnKind === 'job') parts.push(['lag', 'lag']);
        parts.forEach(([field, label], i) => {
          const v = svg('tspan', { class: 'n', 'data-field': field }, '0');
          t.append(...(i ? [svg('tspan', {}, '  ·  ')] : []), v, svg('tspan', {}, ` ${label}`));
          fields.set(field, v);
        });
        g.append(t);
      }
      if (shape.errorLines.length) {
        const t = svg('text', { class: 'error', 'data-field': 'error' });
        shape.errorLines.forEach((line, i) => t.append(svg('tspan', { x: 12, y: shape.errorY + 11 + i * 13.5 }, line)));
        g.append(t);
      }
      nodeLayer.append(g);
      nodes.set(n.id, { n, g, fields, pill, pillText: '' });
    }
    el.svg.replaceChildren(defs, ...titles, edgeLayer, nodeLayer);
    el.svg.setAttribute('viewBox', `0 0 ${size.width} ${size.height}`);
    el.svg.setAttribute('width', size.width);
    el.svg.setAttribute('height', size.height);
    el.svg.style.minWidth = `${Math.round(size.width * 0.75)}px`; // narrower than that, it scrolls
    drawn = { nodes, edges };
    if (selected) drawn.nodes.get(`trigger:${selected}`)?.g.classList.add('selected');
  }

  // Node shapes are laid out before their figures, so shapeOf needs the height first.
  function sized(m) {
    for (const n of m.nodes.values()) n.h = shapeOf(n).h;
    return m;
  }

  function setField(node, field, text, value, cls) {
    const e = node.fields.get(field);
    if (!e) return;
    if (e.textContent !== text) e.textContent = text;
    if (value === undefined || value === null) e.removeAttribute('data-value'); else e.setAttribute('data-value', String(value));
    const classes = [e.classList.contains('n') ? 'n' : 'value'];
    if (e.classList.contains('n')) {
      if (cls) classes.push(cls);
    } else {
      if (value === 0 || text === '0') classes.push('zero');
      if (cls) classes.push(cls);
    }
    const want = classes.join(' ');
    if (e.getAttribute('class') !== want) e.setAttribute('class', want);
  }

  function setState(node, state, text) {
    node.g.setAttribute('data-state', state);
    if (node.pillText === text) return;
    node.pillText = text;
    const [rect, label] = node.pill.children;
    if (!text) { node.pill.setAttribute('visibility', 'hidden'); return; }
    label.textContent = text;
    const w = textWidth(text, 10, 650) + 14;
    rect.setAttribute('x', W - 10 - w);
    rect.setAttribute('width', w);
    label.setAttribute('x', W - 10 - w + 7);
    node.pill.setAttribute('visibility', 'visible');
  }

  // ---- figures ---------------------------------------------------------------------------

  let figures = {};              // per poll: rates and marks by node id, for the detail panel too

  function update(s, t, now) {
    const topics = new Map((s.topics || []).map((x) => [x.name, x]));
    const functions = new Map((s.functions || []).map((f) => [f.name, f]));
    const triggers = s.triggers || [];
    const fig = {};
    for (const x of s.topics || []) fig[`topic:${x.name}`] = { rate: rateOf(`topic:${x.name}`, t, x.high) };
    for (const tr of triggers) {
      fig[`trigger:${tr.name}`] = {
        rate: rateOf(`trigger:${tr.name}`, t, tr.delivered),
        dlRising: rising(`dl:${tr.name}`, tr.dead_lettered, now),
      };
    }
    for (const i of s.edge?.ingress || []) fig[`ingress:${i.topic}`] = { rate: rateOf(`ingress:${i.topic}`, t, i.stored), bad: rising(`unavail:${i.topic}`, i.unavailable, now) };
    for (const x of s.edge?.streams || []) fig[`stream:${x.path}`] = { rate: rateOf(`stream:${x.path}`, t, x.messages_out) };
    figures = fig;
    if (!drawn) return;

    for (const node of drawn.nodes.values()) {
      const n = node.n;
      const f = fig[n.id] || {};
      if (n.kind === 'topic') {
        const x = topics.get(n.name);
        setField(node, 'rate', rate(f.rate), f.rate);
        setField(node, 'records', count(x?.records), x?.records);
        setField(node, 'partitions', x ? String(x.partitions) : '—', x?.partitions);
        if (x && x.partitions === 0) setState(node, 'bad', 'missing');
        else if (!x) setState(node, 'idle', 'not on broker');
        else setState(node, f.rate > 0 ? 'active' : 'ok', '');
      } else if (n.kind === 'trigger') {
        const tr = triggers.find((x) => x.name === n.name);
        if (!tr) continue;
        setField(node, 'rate', rate(f.rate), f.rate);
        setField(node, 'delivered', count(tr.delivered), tr.delivered);
        setField(node, 'lag', count(tr.lag), tr.lag);
        setField(node, 'in_flight', count(tr.in_flight), tr.in_flight);
        setField(node, 'retrying', count(tr.retrying), tr.retrying, tr.retrying > 0 ? 'hot-warn' : '');
        setField(node, 'dead_lettered', count(tr.dead_lettered), tr.dead_lettered, f.dlRising ? 'hot' : '');
        setField(node, 'filtered', count(tr.filtered ?? 0), tr.filtered ?? 0);
        setField(node, 'waiting', count(tr.waiting), tr.waiting);
        setField(node, 'dropped', count(tr.dropped), tr.dropped, tr.dropped > 0 ? 'hot-warn' : '');
        node.g.classList.toggle('paused', !!tr.paused);
        node.g.classList.toggle('retrying', tr.retrying > 0);
        node.g.classList.toggle('dl-rising', !!f.dlRising);
        if (f.dlRising) setState(node, 'bad', 'dead letters ↑');
        else if (tr.paused) setState(node, 'warn', 'paused');
        else if (tr.retrying > 0) setState(node, 'warn', 'retrying');
        else if (f.rate > 0) setState(node, 'active', 'delivering');
        else setState(node, 'ok', '');
      } else if (n.kind === 'function') {
        const fn = functions.get(n.name);
        if (!fn) { setState(node, 'idle', 'not defined'); continue; }
        const remote = fn.kind === 'url';
        setField(node, 'instances', remote ? '—' : String(fn.instances ?? 0), remote ? null : fn.instances ?? 0);
        setField(node, 'starting', remote ? '—' : count(fn.starting ?? 0), fn.starting ?? 0);
        setField(node, 'stopping', remote ? '—' : count(fn.stopping ?? 0), fn.stopping ?? 0);
        setField(node, 'cold_starts', remote ? '—' : count(fn.cold_starts ?? 0), fn.cold_starts ?? 0);
        setField(node, 'last_cold_start', seconds(fn.last_cold_start_seconds), fn.last_cold_start_seconds);
        setField(node, 'in_flight', count(fn.in_flight), fn.in_flight);
        setField(node, 'waiting', count(fn.waiting ?? 0), fn.waiting ?? 0, fn.waiting > 0 ? 'hot-warn' : '');
        setField(node, 'lag', count(fn.lag), fn.lag);
        if (fn.error) setState(node, 'bad', 'cannot start');
        else if (fn.starting > 0) setState(node, 'warn', 'starting');
        else if (!remote && !fn.instances) setState(node, 'idle', 'at zero');
        else if (fn.in_flight > 0) setState(node, 'active', 'busy');
        else setState(node, 'ok', '');
      } else if (n.kind === 'deadletter') {
        const feeding = triggers.filter((x) => (x.dead_letter?.topic ?? x.dead_letter?.url) === n.name);
        const total = feeding.reduce((a, x) => a + (x.dead_lettered || 0), 0);
        const up = feeding.some((x) => fig[`trigger:${x.name}`]?.dlRising);
        const x = topics.get(n.name);
        setField(node, 'dead_lettered', count(total), total, total > 0 ? 'hot' : '');
        setField(node, 'records', x ? count(x.records) : '—', x?.records);
        const r = x ? fig[`topic:${n.name}`]?.rate : null;
        setField(node, 'rate', rate(r), r);
        setState(node, up ? 'bad' : 'ok', up ? 'rising' : '');
      } else if (n.kind === 'reply') {
        const x = topics.get(n.name);
        const r = x ? fig[`topic:${n.name}`]?.rate : null;
        setField(node, 'rate', rate(r), r);
        setField(node, 'records', x ? count(x.records) : '—', x?.records);
        setState(node, r > 0 ? 'active' : 'ok', '');
      } else if (n.kind === 'ingress') {
        const i = (s.edge?.ingress || []).find((x) => x.topic === n.name);
        if (!i) continue;
        setField(node, 'rate', rate(f.rate), f.rate);
        setField(node, 'stored', count(i.stored), i.stored);
        setField(node, 'refused', count(i.refused), i.refused, i.refused > 0 ? 'hot-warn' : '');
        setField(node, 'unavailable', count(i.unavailable), i.unavailable, i.unavailable > 0 ? 'hot' : '');
        setState(node, f.bad ? 'bad' : f.rate > 0 ? 'active' : 'ok', f.bad ? 'unavailable' : i.tokens ? 'token' : '');
      } else if (n.kind === 'stream') {
        const x = (s.edge?.streams || []).find((y) => y.path === n.name);
        if (!x) continue;
        setField(node, 'clients', count(x.clients), x.clients);
        setField(node, 'rate', rate(f.rate), f.rate);
        setField(node, 'messages_in', count(x.messages_in), x.messages_in);
        setField(node, 'dropped_slow', count(x.dropped_slow), x.dropped_slow, x.dropped_slow > 0 ? 'hot-warn' : '');
        setField(node, 'resumed', count(x.resumed), x.resumed);
        setField(node, 'not_recovered', count(x.not_recovered), x.not_recovered, x.not_recovered > 0 ? 'hot-warn' : '');
        setState(node, f.rate > 0 ? 'active' : 'ok', x.publish ? 'publish' : '');
      } else if (n.kind === 'url') {
        setState(node, 'ok', '');
      }
    }

    // Edges carry flow when what they lead to moves.
    for (const { e, path } of drawn.edges) {
      let active = false;
      if (e.to.kind === 'trigger') active = fig[e.to.id]?.rate > 0;
      else if (e.from.kind === 'trigger' && e.to.kind === 'deadletter') active = !!fig[e.from.id]?.dlRising;
      else if (e.from.kind === 'trigger' && e.to.kind === 'reply') active = fig[`topic:${e.to.name}`]?.rate > 0;
      else if (e.from.kind === 'trigger') active = fig[e.from.id]?.rate > 0;
      else if (e.from.kind === 'ingress') active = fig[e.from.id]?.rate > 0;
      else if (e.to.kind === 'stream') active = fig[e.to.id]?.rate > 0;
      path.classList.toggle('active', !!active);
      path.classList.toggle('hl', !!selected && (e.from.id === `trigger:${selected}` || e.to.id === `trigger:${selected}`));
    }
  }

  // ---- header, banners ------------------------------------------------------------------

  function banner(kind, html) {
    const d = document.createElement('div');
    d.className = `banner ${kind}`;
    d.append(...html);
    return d;
  }
  const strong = (t) => Object.assign(document.createElement('strong'), { textContent: t });
  const code = (t) => Object.assign(document.createElement('code'), { textContent: t });

  function header(s) {
    el.version.textContent = s.version ? `v${s.version}` : '';
    const b = s.broker || {};
    const parts = [b.mode, b.storage].filter(Boolean).join(' · ');
    el.broker.replaceChildren(`${parts}${parts ? ' · ' : ''}`, code(b.bootstrap || '?'));
    el.broker.title = b.database ? `database ${b.database}` : '';
    const diskFull = !!(b.disk && b.disk.full);
    el.broker.classList.toggle('down', b.reachable === false || diskFull);
    el.edgeFact.hidden = !s.edge;
    if (s.edge) el.edge.replaceChildren(code(s.edge.listen || '?'));
    el.uptime.textContent = uptime(s.uptime_seconds);

    if (b.reachable === false) {
      el.brokerBanner.replaceChildren(strong('The broker is unreachable. '),
        `sluice cannot reach ${b.mode === 'embedded' ? 'its embedded broker' : 'the broker'} at `, code(b.bootstrap || '?'),
        `: ${b.error || 'no reason given'}. Nothing is delivered until it is back.`);
      el.brokerBanner.hidden = false;
    } else if (diskFull) {
      el.brokerBanner.replaceChildren(strong('The embedded broker\'s disk is full. '),
        `${b.disk.free_bytes} bytes free of ${b.disk.total_bytes} on the filesystem of `, code(b.disk.path),
        '. Producers are refused until space is freed; what is stored is kept.');
      el.brokerBanner.hidden = false;
    } else {
      el.brokerBanner.hidden = true;
    }

    const notices = [];
    for (const f of s.functions || []) {
      if (f.error) notices.push(banner('bad', [strong(`Function ${f.name} cannot start: `), f.error]));
    }
    const r = s.reload;
    if (r && r.outcome && r.outcome !== 'applied') {
      const why = r.error || (r.problems || []).join('; ') || 'no reason given';
      notices.push(banner('warn', [strong(`The last reload${r.at ? ` (${r.at})` : ''} was ${r.outcome}: `), why]));
    }
    if (s.discovery?.error) {
      notices.push(banner('warn', [strong('Discovery failed: '), `reading `, code(s.discovery.gateway || '?'), `: ${s.discovery.error}. The last good function list is kept.`]));
    }
    el.notices.replaceChildren(...notices);

    const n = (k, one) => `${k} ${one}${k === 1 ? '' : 's'}`;
    const bits = [n((s.topics || []).length, 'topic'), n((s.triggers || []).length, 'trigger'), n((s.functions || []).length, 'function')];
    if (s.edge) bits.push(n((s.edge.ingress || []).length, 'ingress topic'), n((s.edge.streams || []).length, 'stream'));
    el.counts.textContent = bits.join(' · ');
  }

  // ---- the detail panel ------------------------------------------------------------------

  let selected = null;           // the trigger whose panel is open
  let status = null;             // the last status
  let dl = { trigger: null, loading: false, at: 0, count: null, seq: 0 };

  function select(name) {
    if (selected !== name) {
      selected = name;
      el.redriveResult.textContent = '';
      el.redriveResult.removeAttribute('data-state');
      el.deadLetters.replaceChildren();
      el.deadLetters.dataset.state = 'idle';
      el.deadLettersNote.textContent = '';
      dl = { trigger: name, loading: false, at: 0, count: null, seq: dl.seq + 1 };
    }
    for (const node of drawn?.nodes.values() || []) node.g.classList.toggle('selected', node.n.id === `trigger:${name}`);
    el.detail.hidden = !name;
    el.layout.classList.toggle('with-detail', !!name);
    const hash = name ? `#trigger=${encodeURIComponent(name)}` : '';
    if (location.hash !== hash) history.replaceState(null, '', hash || location.pathname + location.search);
    if (name && status) {
      renderDetail(status);
      loadDeadLetters(true);
    }
  }

  function chip(kind, text) {
    return Object.assign(document.createElement('span'), { className: `chip ${kind}`, textContent: text });
  }

  function renderDetail(s) {
    if (!selected) return;
    const tr = (s.triggers || []).find((x) => x.name === selected);
    detailField('name').textContent = selected;
    if (!tr) {
      detailField('state').replaceChildren(chip('bad', 'no longer configured'));
      return;
    }
    const fig = figures[`trigger:${tr.name}`] || {};
    const chips = [];
    if (tr.paused) chips.push(chip('warn', 'paused'));
    if (tr.retrying > 0) chips.push(chip('warn', `${count(tr.retrying)} retrying`));
    if (fig.dlRising) chips.push(chip('bad', 'dead letters rising'));
    if (!chips.length) chips.push(fig.rate > 0 ? chip('good', 'delivering') : chip('', tr.lag > 0 ? 'behind' : 'caught up'));
    detailField('state').replaceChildren(...chips);

    detailField('group').textContent = tr.group || tr.config?.group || '—';
    detailField('topics').textContent = (tr.topics || []).join(', ') || '—';
    const fn = tr.function && (s.functions || []).find((f) => f.name === tr.function);
    detailField('target').replaceChildren(...(tr.function
      ? [`function `, strong(tr.function), fn ? ` (${fn.kind})` : '', fn?.error ? ` — cannot start: ${fn.error}` : '']
      : [code(tr.target || '—')]));
    const d = tr.dead_letter || { kind: 'none' };
    detailField('dead_letter').replaceChildren(...(d.kind === 'topic' ? ['topic ', code(d.topic)]
      : d.kind === 'url' ? ['posted to ', code(d.url)] : ['dropped (dead_letter: none)']));
    detailField('reply').replaceChildren(...(tr.reply ? ['topic ', code(tr.reply)] : ['—']));

    const stat = (field, v, text, cls = '') => {
      const e = detailField(field);
      e.textContent = text;
      e.className = cls;
      if (v === null || v === undefined) e.removeAttribute('data-value'); else e.dataset.value = String(v);
    };
    stat('rate', fig.rate, rate(fig.rate));
    stat('delivered', tr.delivered, count(tr.delivered));
    stat('lag', tr.lag, count(tr.lag));
    stat('in_flight', tr.in_flight, count(tr.in_flight));
    stat('waiting', tr.waiting, count(tr.waiting));
    stat('retrying', tr.retrying, count(tr.retrying), tr.retrying > 0 ? 'hot-warn' : '');
    stat('dead_lettered', tr.dead_lettered, count(tr.dead_lettered), fig.dlRising ? 'hot' : '');
    stat('dropped', tr.dropped, count(tr.dropped), tr.dropped > 0 ? 'hot-warn' : '');
    stat('filtered', tr.filtered ?? 0, count(tr.filtered ?? 0));

    // Partitions.
    const parts = [...(tr.partitions || [])].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
    const maxLag = Math.max(1, ...parts.map((p) => p.lag || 0));
    el.partitions.replaceChildren(...parts.map((p) => {
      const row = document.createElement('tr');
      row.dataset.topic = p.topic;
      row.dataset.partition = String(p.partition);
      const td = (field, text, cls = '') => {
        const c = document.createElement('td');
        if (field) c.dataset.field = field;
        c.className = cls;
        c.textContent = text;
        return c;
      };
      const bar = document.createElement('td');
      const track = document.createElement('span');
      track.className = 'lagbar';
      const fill = document.createElement('i');
      fill.style.width = `${Math.round(((p.lag || 0) / maxLag) * 100)}%`;
      track.append(fill);
      bar.append(track);
      row.append(td('topic', p.topic), td('partition', String(p.partition), 'num'),
        td('committed', p.committed === null || p.committed === undefined ? '—' : count(p.committed), 'num'),
        td('high', count(p.high), 'num'), td('lag', count(p.lag), `num${p.lag > 0 ? ' lagged' : ''}`), bar);
      row.querySelector('[data-field="lag"]').dataset.value = String(p.lag);
      return row;
    }));
    el.partitionsEmpty.hidden = parts.length > 0;

    // Config: every key the server sends, nested objects flattened one level.
    const rows = [];
    const put = (k, v) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      if (v === null || v === undefined) dd.textContent = '—';
      else if (typeof v === 'object') {
        const pre = document.createElement('pre');
        pre.textContent = JSON.stringify(v, null, 1).replace(/\n\s*/g, ' ');
        if (pre.textContent.length > 60) pre.textContent = JSON.stringify(v, null, 2);
        dd.append(pre);
      } else dd.textContent = String(v);
      rows.push(dt, dd);
    };
    for (const [k, v] of Object.entries(tr.config || {})) {
      if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) put(`${k}.${k2}`, v2);
      else put(k, Array.isArray(v) && !v.length ? null : v);
    }
    if (!rows.length) put('config', null);
    const cfg = detailField('config');
    const sig = JSON.stringify(tr.config || {});
    if (cfg.dataset.sig !== sig) { cfg.dataset.sig = sig; cfg.replaceChildren(...rows); }

    // Dead letters: only a topic can be listed and redriven.
    const topicDl = d.kind === 'topic';
    el.redriveGo.disabled = !topicDl;
    el.dlRefresh.disabled = !topicDl;
    if (!topicDl) {
      el.deadLetters.replaceChildren();
      el.deadLetters.dataset.state = 'unavailable';
      setNote(d.kind === 'url'
        ? 'Dead letters of this trigger are posted to a URL, so they cannot be listed or redriven here.'
        : 'This trigger drops what it cannot deliver (dead_letter: none).');
    } else if (dl.count !== null && tr.dead_lettered !== dl.count && Date.now() - dl.at > DL_REFRESH_MIN) {
      loadDeadLetters(false);
    }
  }

  function setNote(text, kind = '') {
    el.deadLettersNote.textContent = text;
    el.deadLettersNote.dataset.kind = kind;
  }

  async function loadDeadLetters(force) {
    const name = selected;
    const tr = status?.triggers?.find((x) => x.name === name);
    if (!name || !tr || tr.dead_letter?.kind !== 'topic' || (dl.loading && !force)) return;
    const seq = ++dl.seq;
    dl.loading = true;
    dl.at = Date.now();
    dl.count = tr.dead_lettered;
    if (el.deadLetters.dataset.state !== 'loaded') el.deadLetters.dataset.state = 'loading';
    let r;
    try {
      r = await request(`api/triggers/${encodeURIComponent(name)}/dead-letters?count=${DEAD_LETTERS_SHOWN}`);
    } catch (e) {
      r = { status: 0, ok: false, body: { error: e.message } };
    }
    if (seq !== dl.seq || name !== selected) return;
    dl.loading = false;
    if (!r.ok) {
      el.deadLetters.dataset.state = 'error';
      if (r.status === 409) setNote(`${errorOf(r)}`, '');
      else if (r.status === 401 || r.status === 403) { el.tokenRow.hidden = false; setNote(`Listing dead letters needs the admin token: ${errorOf(r)}`, 'error'); }
      else setNote(`Could not read the dead letters: ${errorOf(r)}`, 'error');
      return;
    }
    const list = [...(r.body?.dead_letters || [])].reverse();
    el.deadLetters.replaceChildren(...list.map(deadLetterRow));
    el.deadLetters.dataset.state = 'loaded';
    setNote(list.length ? '' : `None in ${r.body?.topic || tr.dead_letter.topic}.`);
  }

  // One dead letter: when, where from, why and after how many attempts on a first line; the
  // function's answer and the record below.
  function deadLetterRow(x) {
    const reason = x.reason || {};
    const row = document.createElement('tr');
    row.dataset.partition = String(x.partition);
    row.dataset.offset = String(x.offset);
    const part = (tag, field, cls, ...content) => {
      const e = document.createElement(tag);
      if (field) e.dataset.field = field;
      if (cls) e.className = cls;
      e.append(...content);
      return e;
    };
    const when = part('time', 'when', 'when');
    if (isNum(x.timestamp)) {
      when.textContent = clock(x.timestamp);
      when.dateTime = new Date(x.timestamp).toISOString();
      when.title = new Date(x.timestamp).toLocaleString();
    } else when.textContent = '—';
    const from = reason.source_topic !== undefined && reason.source_topic !== null
      ? `${reason.source_topic}/${reason.source_partition}@${reason.source_offset}` : `${x.partition}@${x.offset}`;
    const top = part('div', '', 'top', when, part('span', 'source', 'from', from));
    top.querySelector('.from').title = `dead letter at partition ${x.partition}, offset ${x.offset}`;
    if (reason.code) top.append(part('span', 'code', 'code', String(reason.code)));
    top.append(part('span', 'error', 'error', reason.error || 'no reason recorded'));
    if (isNum(reason.attempts)) top.append(part('span', 'attempts', 'tries', `${reason.attempts} attempt${reason.attempts === 1 ? '' : 's'}`));
    const cell = part('td', '', '', top);
    if (reason.excerpt) {
      const ex = part('div', 'excerpt', 'excerpt', clip(String(reason.excerpt), 160));
      ex.title = String(reason.excerpt);
      cell.append(ex);
    }
    const value = typeof x.value === 'string' ? x.value : x.value === null || x.value === undefined ? '∅' : JSON.stringify(x.value);
    const key = x.key === null || x.key === undefined ? '∅' : String(x.key);
    const rec = part('div', '', 'rec', part('b', 'key', '', clip(key, 40)), ' ', part('span', 'value', '', clip(value, 140)));
    rec.title = `key ${key}\nvalue ${value}${x.headers && Object.keys(x.headers).length ? `\nheaders ${JSON.stringify(x.headers)}` : ''}`;
    cell.append(rec);
    row.append(cell);
    return row;
  }

  const clip = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

  async function redrive(ev) {
    ev.preventDefault();
    const name = selected;
    if (!name) return;
    if (!el.tokenRow.hidden && el.token.value.trim()) sessionStorage.setItem(TOKEN_KEY, el.token.value.trim());
    const body = { count: Math.max(1, Number(el.redriveCount.value) || 10), where: el.redriveWhere.value.trim() || null };
    el.redriveGo.disabled = true;
    el.redriveResult.dataset.state = 'busy';
    el.redriveResult.textContent = 'Redriving…';
    let r;
    try {
      r = await request(`api/triggers/${encodeURIComponent(name)}/redrive`, {
        method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' },
      });
    } catch (e) {
      r = { status: 0, ok: false, body: { error: e.message } };
    }
    el.redriveGo.disabled = false;
    if (name !== selected) return;
    if (r.ok) {
      const a = r.body || {};
      el.redriveResult.dataset.state = 'ok';
      el.redriveResult.textContent = `Redrove ${count(a.redriven ?? 0)} dead letter${a.redriven === 1 ? '' : 's'} to their source topic${a.skipped ? `; skipped ${count(a.skipped)}` : ''}.`;
      el.redriveResult.dataset.redriven = String(a.redriven ?? 0);
      el.redriveResult.dataset.skipped = String(a.skipped ?? 0);
      el.tokenRow.hidden = true;
      loadDeadLetters(true);
    } else if (r.status === 401 || r.status === 403) {
      const had = !!token();
      if (had) sessionStorage.removeItem(TOKEN_KEY);
      el.tokenRow.hidden = false;
      el.token.value = '';
      el.token.focus();
      el.redriveResult.dataset.state = 'error';
      el.redriveResult.textContent = had
        ? `The token was refused (${errorOf(r)}). Enter the admin token and redrive again.`
        : `This sluice wants an admin token to redrive (${errorOf(r)}). Enter it and redrive again.`;
    } else {
      el.redriveResult.dataset.state = 'error';
      el.redriveResult.textContent = `Redrive failed: ${errorOf(r)}`;
    }
  }

  // ---- the hover card of a trigger -------------------------------------------------------

  let hovered = null;

  function renderTooltip() {
    if (!hovered || !status) return;
    const tr = (status.triggers || []).find((x) => x.name === hovered);
    if (!tr) { el.tooltip.hidden = true; return; }
    const h = document.createElement('h4');
    h.textContent = `${tr.name}: lag ${count(tr.lag)}`;
    const table = document.createElement('table');
    const parts = [...(tr.partitions || [])].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
    for (const p of parts.slice(0, 16)) {
      const row = table.insertRow();
      row.insertCell().textContent = `${p.topic}/${p.partition}`;
      const c = row.insertCell();
      c.className = 'num';
      c.textContent = count(p.lag);
      c.dataset.field = 'lag';
    }
    const extra = [];
    if (!parts.length) extra.push(Object.assign(document.createElement('div'), { className: 'more', textContent: 'no partitions assigned yet' }));
    if (parts.length > 16) extra.push(Object.assign(document.createElement('div'), { className: 'more', textContent: `and ${parts.length - 16} more; click for all` }));
    el.tooltip.replaceChildren(h, table, ...extra);
    el.tooltip.hidden = false;
  }

  function moveTooltip(ev) {
    const r = el.tooltip.getBoundingClientRect();
    let x = ev.clientX + 14;
    let y = ev.clientY + 14;
    if (x + r.width > innerWidth - 8) x = ev.clientX - r.width - 14;
    if (y + r.height > innerHeight - 8) y = ev.clientY - r.height - 14;
    el.tooltip.style.left = `${Math.max(4, x)}px`;
    el.tooltip.style.top = `${Math.max(4, y)}px`;
  }

  const triggerOf = (target) => {
    const g = target.closest?.('g.node[data-kind="trigger"]');
    return g ? g.dataset.name : null;
  };
  el.svg.addEventListener('mouseover', (ev) => {
    const name = triggerOf(ev.target);
    if (name === hovered) return;
    hovered = name;
    if (name) renderTooltip(); else el.tooltip.hidden = true;
  });
  el.svg.addEventListener('mousemove', (ev) => { if (hovered) moveTooltip(ev); });
  el.svg.addEventListener('mouseleave', () => { hovered = null; el.tooltip.hidden = true; });
  el.svg.addEventListener('click', (ev) => {
    const name = triggerOf(ev.target);
    if (name) select(name === selected ? null : name);
  });
  el.svg.addEventListener('keydown', (ev) => {
    const name = triggerOf(ev.target);
    if (name && (ev.key === 'Enter' || ev.key === ' ')) { ev.preventDefault(); select(name); }
  });
  el.detailClose.addEventListener('click', () => select(null));
  document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape' && selected) select(null); });
  el.dlRefresh.addEventListener('click', () => loadDeadLetters(true));
  el.redrive.addEventListener('submit', redrive);

  // ---- polling ---------------------------------------------------------------------------

  let shape = null;
  let lastOk = 0;

  function render(s, receivedAt) {
    status = s;
    const now = Date.now();
    const t = isNum(s.at_ms) ? s.at_ms : receivedAt;
    header(s);
    const m = modelOf(s);
    const key = shapeKey(m);
    if (key !== shape) {
      shape = key;
      draw(sized(m));
    }
    el.empty.hidden = m.nodes.size > 0;
    el.svg.style.display = m.nodes.size ? '' : 'none';
    update(s, t, now);
    if (selected) renderDetail(s);
    if (hovered) renderTooltip();
  }

  function contact(ok, error) {
    if (ok) {
      lastOk = Date.now();
      el.contact.dataset.state = 'live';
      el.contact.textContent = 'Live';
      el.updated.textContent = clock(lastOk);
      el.updated.dateTime = new Date(lastOk).toISOString();
      el.updated.dataset.ms = String(lastOk);
      el.lost.hidden = true;
      el.graph.classList.remove('stale');
      return;
    }
    el.contact.dataset.state = 'lost';
    el.contact.textContent = 'Lost contact';
    el.lost.replaceChildren(strong('Lost contact with sluice. '),
      `Asking ${location.host} for its status failed: ${error}. `,
      lastOk ? `The figures below are from ${clock(lastOk)}; retrying every second.` : 'Retrying every second.');
    el.lost.hidden = false;
    el.graph.classList.add('stale');
  }

  async function poll() {
    const started = Date.now();
    try {
      let r;
      try {
        r = await request('api/status');
      } catch (e) {
        contact(false, e.message);
        return;
      }
      if (!r.ok || !r.body || typeof r.body !== 'object') {
        contact(false, r.ok ? 'the answer was not JSON' : errorOf(r));
        return;
      }
      contact(true);
      render(r.body, Date.now());
    } finally {
      setTimeout(poll, Math.max(50, POLL_MS - (Date.now() - started)));
    }
  }

  // A panel asked for in the address (#trigger=NAME) opens once the first status is in.
  const wanted = /^#trigger=(.+)$/.exec(location.hash);
  if (wanted) {
    selected = null;
    const first = setInterval(() => {
      if (status) { clearInterval(first); select(decodeURIComponent(wanted[1])); }
    }, 100);
  }
  poll();
})();
