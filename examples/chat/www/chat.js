// The chat example's page: a sluice stream (a Kafka topic served as a WebSocket) read and
// written from the browser. Messages are shown only when they come back as records, so the
// sender's own message appears once, at its place in the topic. What was shown and the last
// position are kept in sessionStorage, so a reload resumes with `?since=` and shows each
// missed message once.
'use strict';

(() => {
  const HISTORY = 50;          // records per partition fetched on a first visit
  const KEEP = 300;            // messages kept on the page and in sessionStorage
  const BACKOFF_START = 500;   // ms
  const BACKOFF_CAP = 5000;    // ms
  const STABLE_AFTER = 5000;   // ms open before the backoff starts over
  const OPEN_TIMEOUT = 10000;  // ms for the handshake before giving up on a connection

  const streamUrl = new URL('chat/stream', location.href);
  streamUrl.protocol = streamUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  streamUrl.search = '';
  streamUrl.hash = '';
  const storeKey = 'sluice-chat:' + streamUrl.pathname;
  const nameKey = 'sluice-chat:name';

  const $ = (id) => document.getElementById(id);
  const el = {
    name: $('name'), message: $('message'), send: $('send'), form: $('composer'),
    scroller: $('scroller'), messages: $('messages'), pending: $('pending'),
    status: $('status'), server: $('server'), serverDot: $('server-dot'),
    notice: $('notice'), noticeText: $('notice-text'), noticeClose: $('notice-close'),
  };

  // ---- stored state -------------------------------------------------------------------

  // position: the last record's position token (opaque, passed back as ?since=);
  // high: the highest offset seen per partition, to drop records seen before;
  // items: what the page shows, messages ({p, o, user, text, at}) and gaps ({gap, reason, at}).
  let state = load();

  function load() {
    try {
      const s = JSON.parse(sessionStorage.getItem(storeKey));
      if (s && typeof s === 'object' && Array.isArray(s.items) && s.high && typeof s.high === 'object') {
        return { position: typeof s.position === 'string' ? s.position : null, high: s.high, items: s.items };
      }
    } catch (_) { /* a broken entry is started over */ }
    return { position: null, high: {}, items: [] };
  }

  function save() {
    try {
      sessionStorage.setItem(storeKey, JSON.stringify(state));
    } catch (_) {
      // Full storage: keep fewer messages rather than lose the position.
      state.items = state.items.slice(-Math.floor(KEEP / 3));
      try { sessionStorage.setItem(storeKey, JSON.stringify(state)); } catch (_) { /* give up */ }
    }
  }

  // ---- rendering ----------------------------------------------------------------------

  // A colour per name or host; FNV-1a, then mixed so that "…:18080" and "…:18081" differ.
  function colorOf(s) {
    let h = 0x811c9dc5;
    for (const c of String(s)) h = Math.imul(h ^ c.codePointAt(0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    h = (h ^ (h >>> 12)) >>> 0;
    return `hsl(${h % 360} 55% 45%)`;
  }

  function myName() { return el.name.value.trim(); }

  function nearBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollDown() { el.scroller.scrollTop = el.scroller.scrollHeight; }

  function formatTime(ms) {
    if (!Number.isFinite(ms)) return ['', ''];
    const d = new Date(ms);
    return [d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }), d.toLocaleString()];
  }

  const GROUP_WITHIN = 5 * 60 * 1000; // ms between two messages of one sender shown as a group

  function renderItem(item, prev) {
    const li = document.createElement('li');
    if (item.gap) {
      li.className = 'gap';
      li.textContent = `Some earlier messages are no longer available${item.reason ? ` (${item.reason})` : ''}.`;
      return li;
    }
    li.className = 'message';
    li.dataset.partition = String(item.p);
    li.dataset.offset = String(item.o);
    if (item.user === myName()) li.classList.add('mine');
    if (prev && !prev.gap && prev.user === item.user && Math.abs(item.at - prev.at) < GROUP_WITHIN) {
      li.classList.add('cont'); // the same sender again: the name and avatar are not repeated
    }

    const avatar = document.createElement('span');
    avatar.className = 'avatar';
    avatar.setAttribute('aria-hidden', 'true');
    avatar.textContent = (item.user.trim()[0] || '?');
    avatar.style.background = colorOf(item.user);

    const meta = document.createElement('div');
    meta.className = 'meta';
    const user = document.createElement('span');
    user.className = 'user';
    user.textContent = item.user;
    const time = document.createElement('time');
    time.className = 'time';
    const [short, full] = formatTime(item.at);
    time.textContent = short;
    if (full) {
      time.title = full;
      time.dateTime = new Date(item.at).toISOString();
    }
    meta.append(user, time);

    const text = document.createElement('div');
    text.className = 'text';
    text.textContent = item.text;

    li.append(avatar, meta, text);
    return li;
  }

  function renderAll() {
    el.messages.replaceChildren(...state.items.map((item, i) => renderItem(item, state.items[i - 1])));
    scrollDown();
  }

  function append(item) {
    const stick = nearBottom();
    el.messages.append(renderItem(item, state.items[state.items.length - 1]));
    state.items.push(item);
    while (state.items.length > KEEP) {
      state.items.shift();
      el.messages.firstElementChild?.remove();
      el.messages.firstElementChild?.classList.remove('cont');
    }
    if (stick) scrollDown();
  }

  function markMine() {
    const me = myName();
    for (const li of el.messages.querySelectorAll('.message')) {
      li.classList.toggle('mine', li.querySelector('.user')?.textContent === me);
    }
  }

  // ---- connection state and notices ---------------------------------------------------

  function setStatus(kind, text) {
    el.status.dataset.state = kind;
    el.status.textContent = text;
    el.send.title = kind === 'live' ? '' : 'Messages are sent once the connection is back';
  }

  let noticeTimer = null;
  function showNotice(kind, text, hideAfter) {
    clearTimeout(noticeTimer);
    el.notice.dataset.kind = kind;
    el.noticeText.textContent = text;
    el.notice.hidden = false;
    if (hideAfter) noticeTimer = setTimeout(hideNotice, hideAfter);
  }
  function hideNotice() {
    clearTimeout(noticeTimer);
    el.notice.hidden = true;
    el.notice.dataset.kind = '';
  }
  el.noticeClose.addEventListener('click', hideNotice);

  // ---- records ------------------------------------------------------------------------

  // A record's chat message, or null for one the page does not show (binary values).
  function chatOf(r) {
    if (typeof r.value !== 'string') return null;
    const fallbackUser = typeof r.key === 'string' && r.key ? r.key : 'anonymous';
    try {
      const v = JSON.parse(r.value);
      if (v && typeof v === 'object' && typeof v.text === 'string') {
        return {
          user: typeof v.user === 'string' && v.user ? v.user : fallbackUser,
          text: v.text,
          at: Number.isFinite(v.sent) ? v.sent : r.timestamp,
        };
      }
    } catch (_) { /* a plain value, e.g. produced through ingress, is shown as it is */ }
    return { user: fallbackUser, text: r.value, at: r.timestamp };
  }

  function onRecord(r) {
    const p = Number(r.partition);
    const o = Number(r.offset);
    if (!Number.isInteger(p) || !Number.isInteger(o)) return;
    const seen = state.high[p];
    if (seen !== undefined && o <= seen) return; // already shown (a resume overlaps)
    state.high[p] = o;
    if (typeof r.position === 'string') state.position = r.position;
    const chat = chatOf(r);
    if (chat) append({ p, o, user: chat.user, text: chat.text, at: chat.at });
    const id = r.headers && r.headers['chat-id'];
    if (typeof id === 'string') dropPending(id);
    save();
  }

  function onRecovery(m) {
    if (m.recovered === false) {
      const reason = typeof m.reason === 'string' ? m.reason : '';
      append({ gap: true, reason, at: Date.now() });
      save();
      showNotice('lost', `Some history is lost: messages sent while this page was away are no longer held by the topic${reason ? ` (${reason})` : ''}. Showing what it still holds.`);
    } else if (m.recovered === true && el.notice.dataset.kind === 'closed') {
      showNotice('closed', `${droppedText} Caught up: nothing was missed.`, 8000);
    }
  }

  // ---- sending ------------------------------------------------------------------------

  // Sends not yet seen back as records: queued (not sent yet), sending (sent, no ack),
  // sent (acked), unconfirmed (the connection closed before the ack), failed (error).
  const pending = new Map();
  const session = Math.random().toString(36).slice(2, 8);
  let seq = 0;

  const pendingLabel = {
    queued: 'waiting for the connection…',
    sending: 'sending…',
    sent: 'sent',
    unconfirmed: 'may not have been sent',
    failed: 'not sent',
  };

  function renderPending(m) {
    if (!m.li) {
      m.li = document.createElement('li');
      m.li.className = 'pending';
      el.pending.append(m.li);
    }
    m.li.dataset.state = m.state;
    const text = document.createElement('span');
    text.className = 'p-text';
    text.textContent = m.text;
    const label = document.createElement('span');
    label.className = 'p-state';
    label.textContent = m.state === 'failed' && m.error ? `not sent: ${m.error}` : pendingLabel[m.state];
    const parts = [text, label];
    if (m.state === 'failed' || m.state === 'unconfirmed') {
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.textContent = 'Retry';
      retry.addEventListener('click', () => { m.state = 'queued'; renderPending(m); flush(); });
      const discard = document.createElement('button');
      discard.type = 'button';
      discard.textContent = 'Discard';
      discard.addEventListener('click', () => dropPending(m.id));
      parts.push(retry, discard);
    }
    m.li.replaceChildren(...parts);
  }

  function dropPending(id) {
    const m = pending.get(id);
    if (!m) return;
    pending.delete(id);
    m.li?.remove();
  }

  function send() {
    const user = myName();
    if (!user) {
      el.name.classList.add('needed');
      el.name.focus();
      return;
    }
    const text = el.message.value.trim();
    if (!text) return;
    const id = `c-${session}-${++seq}`;
    const frame = {
      id,
      key: user,
      value: JSON.stringify({ user, text, sent: Date.now() }),
      headers: { user, 'chat-id': id },
    };
    const m = { id, frame, text, state: 'queued', li: null };
    pending.set(id, m);
    renderPending(m);
    el.message.value = '';
    const stick = nearBottom();
    flush();
    if (stick) scrollDown();
  }

  function flush() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (const m of pending.values()) {
      if (m.state !== 'queued') continue;
      ws.send(JSON.stringify(m.frame));
      m.state = 'sending';
      renderPending(m);
    }
  }

  function onAck(m) {
    const p = pending.get(m.id);
    if (!p) return;
    const seen = state.high[m.partition];
    if (seen !== undefined && Number(m.offset) <= seen) { dropPending(m.id); return; }
    p.state = 'sent';
    renderPending(p);
  }

  function onError(m) {
    const p = pending.get(m.id);
    if (!p) return;
    p.state = 'failed';
    p.error = typeof m.error === 'string' ? m.error : '';
    renderPending(p);
  }

  // ---- the connection -----------------------------------------------------------------

  let ws = null;
  let backoff = BACKOFF_START;
  let openedAt = 0;
  let retryAt = 0;
  let retryTimer = null;
  let countdown = null;
  let droppedText = '';

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    retryTimer = countdown = null;
    const url = new URL(streamUrl);
    if (state.position) url.searchParams.set('since', state.position);
    else url.searchParams.set('history', String(HISTORY));
    setStatus('connecting', `Connecting to ${location.host}…`);

    let sock;
    try {
      sock = new WebSocket(url);
    } catch (_) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    const handshake = setTimeout(() => { if (sock.readyState === WebSocket.CONNECTING) sock.close(); }, OPEN_TIMEOUT);

    sock.onopen = () => {
      if (ws !== sock) return;
      clearTimeout(handshake);
      openedAt = Date.now();
      setStatus('live', `Connected to ${location.host}`);
      flush();
    };
    sock.onmessage = (ev) => {
      if (ws !== sock || typeof ev.data !== 'string') return;
      let m;
      try { m = JSON.parse(ev.data); } catch (_) { return; }
      if (!m || typeof m !== 'object') return;
      switch (m.type) {
        case 'record': onRecord(m); break;
        case 'ack': onAck(m); break;
        case 'error': onError(m); break;
        case 'recovery': onRecovery(m); break;
        default: break; // newer message kinds are ignored
      }
    };
    sock.onclose = (ev) => {
      clearTimeout(handshake);
      if (ws !== sock) return;
      ws = null;
      closed(ev);
    };
  }

  function closed(ev) {
    for (const m of pending.values()) {
      if (m.state === 'sending') { m.state = 'unconfirmed'; renderPending(m); }
    }
    if (ev.code === 4008) {
      droppedText = `The server dropped this connection: ${ev.reason || 'the page fell behind'}.`;
      showNotice('closed', `${droppedText} Resuming from the last message received.`);
    }
    if (openedAt && Date.now() - openedAt >= STABLE_AFTER) backoff = BACKOFF_START;
    openedAt = 0;
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const delay = backoff;
    backoff = Math.min(backoff * 2, BACKOFF_CAP);
    retryAt = Date.now() + delay;
    const tick = () => {
      const secs = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
      setStatus('disconnected', `Disconnected — reconnecting in ${secs}s…`);
    };
    tick();
    countdown = setInterval(tick, 250);
    retryTimer = setTimeout(connect, delay);
  }

  // Back online: try now rather than at the end of the backoff.
  window.addEventListener('online', () => { if (!ws) { backoff = BACKOFF_START; connect(); } });

  // ---- wiring -------------------------------------------------------------------------

  el.server.textContent = location.host;
  el.serverDot.style.background = colorOf(location.host);

  el.name.value = sessionStorage.getItem(nameKey) || '';
  el.name.addEventListener('input', () => {
    sessionStorage.setItem(nameKey, myName());
    el.name.classList.remove('needed');
    markMine();
  });
  el.name.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.isComposing) { ev.preventDefault(); el.message.focus(); }
  });
  el.form.addEventListener('submit', (ev) => { ev.preventDefault(); send(); });

  renderAll();
  connect();
  (myName() ? el.message : el.name).focus();
})();
