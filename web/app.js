// qwenmux dashboard: plain JavaScript, no framework, no other origin. Data from the server's
// /dashboard/api/* endpoints and the existing API (/api/ps, /api/generate, /v1/chat/completions,
// /v1/pipelines/jobs, /v1/rag). Every text from the server goes through textContent.
'use strict';
(function () {
  const $ = (s) => document.querySelector(s);
  const KEY = 'qwenmux.apiKey';
  const state = { period: 5, samples: [], lastT: 0, models: [], authFailed: false, busy: {}, chatAbort: null };

  // ---------- helpers ----------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v;
      else if (k === 'style') Object.assign(e.style, v);  // CSSOM: allowed by the page's CSP
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function bytes(n) {
    if (!n) return '0 B';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']; let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (n >= 100 ? n.toFixed(0) : n.toFixed(1)) + ' ' + u[i];
  }
  function dur(s) {
    if (s === null || s === undefined) return '—';
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms';
    if (s < 120) return s.toFixed(1) + ' s';
    if (s < 7200) return (s / 60).toFixed(0) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }
  function headers(json) {
    const h = {};
    const k = sessionStorage.getItem(KEY);
    if (k) h.Authorization = 'Bearer ' + k;
    if (json) h['Content-Type'] = 'application/json';
    return h;
  }
  async function api(path, opts) {
    opts = opts || {};
    const r = await fetch(path, { method: opts.method || 'GET', headers: headers(!!opts.body),
      body: opts.body ? JSON.stringify(opts.body) : undefined, signal: opts.signal });
    if (r.status === 401) { authNeeded(); throw new Error('API key required'); }
    if (!opts.raw && !r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try { const j = await r.json(); msg = (j.error && (j.error.message || j.error)) || msg; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return opts.raw ? r : r.json();
  }
  function authNeeded() {
    if (!state.authFailed) {
      state.authFailed = true;
      $('#auth').hidden = false;
      $('#status').textContent = 'API key required';
      $('#key-input').focus();
    }
  }
  function setBar(bar, used, total, line) {
    const f = total > 0 ? Math.min(1, used / total) : 0;
    bar.querySelector('.fill').style.width = (f * 100).toFixed(1) + '%';
    const ln = bar.querySelector('.line');
    if (ln) ln.style.left = (line * 100) + '%';
    bar.classList.toggle('over', total > 0 && used / total > line);
    bar.setAttribute('aria-label', bytes(used) + ' of ' + bytes(total) + ' (' + (f * 100).toFixed(0) + '%)');
  }

  // ---------- models ----------
  async function refreshOverview() {
    const o = await api('/dashboard/api/overview');
    $('#status').textContent = (o.ready ? 'ready' : 'loading models') + ' · v' + o.version + ' · up ' + dur(o.uptime_s);
    const m = o.memory;
    $('#mem-text').textContent = bytes(m.in_use_bytes) + ' of ' + bytes(m.budget_bytes) + ' budget (' +
      (m.budget_bytes ? (100 * m.in_use_bytes / m.budget_bytes).toFixed(1) : '0') + '%, line at ' + (m.line * 100) + '%)';
    setBar($('#mem-bar'), m.in_use_bytes, m.budget_bytes, m.line);
    $('#gpu-row').hidden = !m.gpu_budget_bytes;
    if (m.gpu_budget_bytes) {
      $('#gpu-text').textContent = (m.gpu || 'GPU') + ': ' + bytes(m.gpu_in_use_bytes) + ' of ' + bytes(m.gpu_budget_bytes);
      setBar($('#gpu-bar'), m.gpu_in_use_bytes, m.gpu_budget_bytes, m.line);
    }
    state.models = o.models;
    const tb = $('#model-table tbody');
    tb.replaceChildren(...o.models.map((x) => modelRow(x, m)));
    const sel = $('#chat-model'), cur = sel.value;
    const names = ['auto'].concat(o.models.filter((x) => x.role === 'chat').flatMap((x) => [x.name].concat(x.adapters.map((a) => a.name))),
      o.backends.map((b) => b.name));
    if (sel.options.length !== names.length || names.some((n, i) => sel.options[i].value !== n)) {
      sel.replaceChildren(...names.map((n) => el('option', { value: n, text: n })));
      if (names.includes(cur)) sel.value = cur;
    }
    const bk = $('#backends');
    bk.hidden = !o.backends.length;
    bk.querySelector('ul').replaceChildren(...o.backends.map((b) =>
      el('li', {}, b.name + ' ', el('span', { class: 'badge ' + (b.healthy ? 'state-loaded' : 'bad'), text: b.healthy ? 'healthy' : 'unreachable' }))));
  }
  function modelRow(x, mem) {
    const memCell = el('td', {});
    if (x.state !== 'unloaded') {
      const bar = el('div', { class: 'bar', role: 'img' }, el('span', { class: 'fill' }));
      setBar(bar, x.ram_bytes, mem.budget_bytes, 2);
      memCell.append(el('div', { text: 'RAM ' + bytes(x.ram_bytes) }), bar);
      if (x.vram_bytes) {
        const g = el('div', { class: 'bar', role: 'img' }, el('span', { class: 'fill' }));
        setBar(g, x.vram_bytes, mem.gpu_budget_bytes, 2);
        memCell.append(el('div', { text: 'GPU ' + bytes(x.vram_bytes) }), g);
      }
    } else memCell.append(el('span', { class: 'muted', text: 'file ' + bytes(x.file_bytes) }));
    let keep = '—';
    if (x.state === 'loaded') keep = x.pinned ? 'pinned' : x.in_use ? 'in use (' + x.in_use + ')' : x.keep_forever ? 'forever' : dur(x.keep_alive_left_s);
    const busy = state.busy[x.name];
    const loadBtn = el('button', { type: 'button', 'data-action': 'load', 'data-model': x.name, disabled: busy || x.state !== 'unloaded' || x.role !== 'chat',
      'aria-label': 'Load ' + x.name, text: 'Load', onclick: () => loadUnload(x.name, true) });
    const unloadBtn = el('button', { type: 'button', 'data-action': 'unload', 'data-model': x.name, disabled: busy || x.state === 'unloaded' || x.pinned,
      'aria-label': 'Unload ' + x.name, text: 'Unload', onclick: () => loadUnload(x.name, false) });
    const desc = [x.role, x.parameter_size, x.quantization, 'ctx ' + x.n_ctx].filter(Boolean).join(' · ');
    return el('tr', { 'data-model': x.name },
      el('td', {}, el('strong', { text: x.name }), x.pinned ? el('span', { class: 'badge', text: 'pinned' }) : null,
        el('div', { class: 'muted', text: desc }), x.aliases.length ? el('div', { class: 'muted', text: 'aliases: ' + x.aliases.join(', ') }) : null),
      el('td', {}, el('span', { class: 'badge state-' + x.state, text: x.state }), x.device ? el('div', { class: 'muted', text: x.device }) : null,
        x.queue_waiting ? el('div', { class: 'warn', text: x.queue_waiting + ' waiting' }) : null),
      memCell,
      el('td', { text: keep }),
      el('td', {}, ...(x.adapters.length ? x.adapters.map((a) => el('div', { text: a.name + (a.loaded ? ' (loaded)' : '') })) : [el('span', { class: 'muted', text: '—' })])),
      el('td', {}, loadBtn, ' ', unloadBtn));
  }
  async function loadUnload(name, load) {
    state.busy[name] = true;
    refreshOverview().catch(() => {});
    try {
      await api('/api/generate', { method: 'POST', body: load ? { model: name } : { model: name, keep_alive: 0 } });
    } catch (e) { $('#status').textContent = (load ? 'load' : 'unload') + ' ' + name + ': ' + e.message; }
    delete state.busy[name];
    refreshOverview().catch(() => {});
  }

  // ---------- charts ----------
  const charts = [
    { id: 'tps', title: 'tokens/s', per: (m) => m.tokens_per_s, fmt: (v) => v.toFixed(1) },
    { id: 'ttft', title: 'TTFT p50 / p95', lines: [['p50', (s) => maxOver(s, 'ttft_p50_s')], ['p95', (s) => maxOver(s, 'ttft_p95_s')]], fmt: dur },
    { id: 'itl', title: 'inter-token p50 / p95', lines: [['p50', (s) => maxOver(s, 'itl_p50_s')], ['p95', (s) => maxOver(s, 'itl_p95_s')]], fmt: dur },
    { id: 'mem', title: 'memory use (% of budget)', lines: [['RAM', (s) => s.memory.budget_bytes ? 100 * s.memory.in_use_bytes / s.memory.budget_bytes : null],
      ['GPU', (s) => s.memory.gpu_budget_bytes ? 100 * s.memory.gpu_in_use_bytes / s.memory.gpu_budget_bytes : null]], fmt: (v) => v.toFixed(1) + '%', limit: 80, max: 100 },
    { id: 'queue', title: 'queue depth', per: (m) => m.queue_waiting, fmt: (v) => v.toFixed(0) },
    { id: 'err', title: 'error rate', lines: [['errors', (s) => s.requests.error_rate === null ? 0 : 100 * s.requests.error_rate]], fmt: (v) => v.toFixed(1) + '%' },
    { id: 'load', title: 'model load / switch time', lines: [['load', (s) => s.loads.mean_s], ['switch', (s) => s.loads.switch_mean_s]], fmt: dur, points: true },
  ];
  function maxOver(s, key) {
    let v = null;
    for (const m of Object.values(s.models)) if (m[key] !== null && m[key] !== undefined) v = v === null ? m[key] : Math.max(v, m[key]);
    return v;
  }
  function buildCharts() {
    $('#charts').replaceChildren(...charts.map((c) => el('figure', { id: 'chart-' + c.id },
      el('figcaption', {}, el('span', { text: c.title }), el('span', { class: 'now' })),
      svgEl('svg', { class: 'chart', viewBox: '0 0 300 110', preserveAspectRatio: 'none', role: 'img', 'aria-label': c.title, 'data-points': '0', 'data-nonzero': '0' }),
      el('div', { class: 'legend' }))));
  }
  function svgEl(tag, attrs) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'style') Object.assign(e.style, v); else e.setAttribute(k, v);
    }
    return e;
  }
  function drawCharts() {
    const S = state.samples;
    const t1 = S.length ? S[S.length - 1].t : Date.now();
    // The x axis spans the samples held (at most the window): a young server's few points are
    // spread out rather than squeezed against the right edge.
    const t0 = Math.max(t1 - state.window * 1000, S.length ? S[0].t - state.period * 1000 : t1 - 1);
    const colors = ['var(--c1)', 'var(--c2)', 'var(--c3)', 'var(--c4)'];
    for (const c of charts) {
      let lines = c.lines;
      if (c.per) {
        const names = new Set();
        for (const s of S) for (const n of Object.keys(s.models)) names.add(n);
        lines = [...names].map((n) => [n, (s) => (s.models[n] ? c.per(s.models[n]) : 0)]);
        if (c.id === 'tps' && lines.length > 1) lines.unshift(['all', (s) => Object.values(s.models).reduce((a, m) => a + m.tokens_per_s, 0)]);
      }
      const series = lines.map(([name, f]) => [name, S.map((s) => [s.t, f(s)])]);
      let max = c.max || 0;
      for (const [, pts] of series) for (const [, v] of pts) if (v !== null && v > max) max = v;
      if (!max) max = 1;
      const fig = $('#chart-' + c.id), svg = fig.querySelector('svg');
      const X = (t) => ((t - t0) / (t1 - t0 || 1)) * 290 + 5, Y = (v) => 100 - (v / max) * 92;
      const kids = [svgEl('line', { class: 'axis', x1: 5, y1: 100, x2: 295, y2: 100 })];
      if (c.limit) kids.push(svgEl('line', { class: 'limit', x1: 5, y1: Y(c.limit), x2: 295, y2: Y(c.limit) }));
      const top = svgEl('text', { x: 6, y: 9 }); top.textContent = c.fmt(max); kids.push(top);
      series.forEach(([, pts], i) => {
        let d = '', pen = false;
        for (const [t, v] of pts) {
          if (v === null || v === undefined) { pen = false; continue; }
          d += (pen ? 'L' : 'M') + X(t).toFixed(1) + ' ' + Y(v).toFixed(1);
          pen = true;
          if (c.points) kids.push(svgEl('circle', { cx: X(t).toFixed(1), cy: Y(v).toFixed(1), r: 2, style: { fill: colors[i % 4] } }));
        }
        kids.push(svgEl('path', { d: d, style: { stroke: colors[i % 4] } }));
      });
      svg.replaceChildren(...kids);
      svg.setAttribute('data-points', String(S.length));
      let nz = 0;
      for (const [, pts] of series) for (const [, v] of pts) if (v) nz++;
      svg.setAttribute('data-nonzero', String(nz));
      const last = series.map(([n, pts]) => { const p = pts.filter(([, v]) => v !== null && v !== undefined).pop(); return p ? n + ' ' + c.fmt(p[1]) : null; }).filter(Boolean);
      fig.querySelector('.now').textContent = last.join(' · ');
      fig.querySelector('.legend').replaceChildren(...series.map(([n], i) => el('span', { style: { color: colors[i % 4] }, text: '— ' + n })));
    }
  }
  async function refreshKpis() {
    const k = await api('/dashboard/api/kpis?since=' + state.lastT);
    state.period = k.period_s; state.window = k.window_s;
    $('#kpi-window').textContent = 'last ' + Math.round(k.window_s / 60) + ' min, one sample every ' + k.period_s + ' s';
    if (k.samples.length) {
      state.samples = state.samples.concat(k.samples);
      state.lastT = state.samples[state.samples.length - 1].t;
      const cut = state.lastT - k.window_s * 1000;
      state.samples = state.samples.filter((s) => s.t > cut);
    }
    drawCharts();
  }

  // ---------- routing log ----------
  async function refreshRouting() {
    const r = await api('/dashboard/api/routing?limit=50');
    $('#routing-table tbody').replaceChildren(...r.entries.map((e) => el('tr', {},
      el('td', { text: new Date(e.t).toLocaleTimeString() }),
      el('td', { text: e.requested || '(default)' }),
      el('td', {}, e.chosen, e.degraded ? el('span', { class: 'badge warn', text: 'degraded → ' + e.served }) : null),
      el('td', { title: e.explanation }, el('strong', { text: e.reason }), el('div', { class: 'muted', text: e.explanation }),
        e.ok ? null : el('div', { class: 'bad', text: e.error })),
      el('td', { text: dur(e.latency_ms / 1000) + (e.ttft_ms !== null ? ' (TTFT ' + dur(e.ttft_ms / 1000) + ')' : '') }),
      el('td', { text: e.prompt_tokens + ' → ' + e.completion_tokens })
    )));
  }

  // ---------- playground ----------
  async function sendChat(ev) {
    ev.preventDefault();
    const text = $('#chat-input').value.trim();
    if (!text || state.chatAbort) return;
    const model = $('#chat-model').value, thinking = $('#chat-thinking').checked;
    const body = { model: model, stream: true, messages: [{ role: 'user', content: text }],
      max_tokens: Number($('#chat-max').value) || 256, chat_template_kwargs: { enable_thinking: thinking } };
    const log = $('#chat-log');
    log.append(el('div', { class: 'msg user' }, el('div', { class: 'who', text: 'you' }), el('div', { class: 'answer', text: text })));
    const think = el('div', { class: 'thinking', hidden: true, 'aria-label': 'thinking' });
    const answer = el('div', { class: 'answer' });
    const route = el('div', { class: 'route' });
    const msg = el('div', { class: 'msg assistant', 'data-state': 'streaming' }, el('div', { class: 'who', text: model }), think, answer, route);
    log.append(msg);
    try {
      if ($('#chat-json').checked) {
        body.response_format = { type: 'json_schema', json_schema: { name: 'answer', schema: JSON.parse($('#chat-schema').value) } };
      }
    } catch (e) { answer.textContent = 'schema: ' + e.message; msg.dataset.state = 'error'; return; }
    $('#chat-input').value = '';
    const ctrl = new AbortController();
    state.chatAbort = ctrl;
    $('#chat-send').disabled = true; $('#chat-stop').disabled = false;
    const t0 = performance.now();
    let ttft = null;
    try {
      const r = await api('/v1/chat/completions', { method: 'POST', body: body, raw: true, signal: ctrl.signal });
      if (!r.ok) { const j = await r.json().catch(() => ({})); throw new Error((j.error && j.error.message) || r.statusText); }
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          for (const line of chunk.split('\n')) {
            if (!line.startsWith('data: ')) continue;
            const data = line.slice(6);
            if (data === '[DONE]') continue;
            const j = JSON.parse(data);
            if (j.error) throw new Error(j.error.message);
            const d = j.choices && j.choices[0] && j.choices[0].delta;
            if (d && d.reasoning_content) { think.hidden = false; think.textContent += d.reasoning_content; }
            if (d && d.content) answer.textContent += d.content;
            if (ttft === null && d && (d.content || d.reasoning_content)) ttft = performance.now() - t0;
            if (j.qwenmux) {
              const q = j.qwenmux;
              route.textContent = 'model ' + (q.model || j.model) + ' · route ' + q.route + (q.explanation ? ': ' + q.explanation : '') +
                (q.degraded ? ' · degraded' : '');
            }
          }
        }
      }
      route.textContent += ' · ' + dur((performance.now() - t0) / 1000) + (ttft !== null ? ', first token ' + dur(ttft / 1000) : '');
      msg.dataset.state = 'done';
    } catch (e) {
      answer.append(el('div', { class: 'bad', text: e.name === 'AbortError' ? '(stopped)' : e.message }));
      msg.dataset.state = 'error';
    }
    state.chatAbort = null;
    $('#chat-send').disabled = false; $('#chat-stop').disabled = true;
    refreshRouting().catch(() => {});
  }

  // ---------- jobs and RAG ----------
  async function refreshJobs() {
    const j = await api('/v1/pipelines/jobs').catch(() => ({ data: [] }));
    $('#job-table tbody').replaceChildren(...(j.data.length ? j.data.map((x) => el('tr', {},
      el('td', { text: x.id }), el('td', { text: x.pipeline }),
      el('td', {}, el('span', { class: x.state === 'error' ? 'bad' : '', text: x.state }), x.error ? el('div', { class: 'bad', text: x.error }) : null),
      el('td', { text: (x.done || 0) + ' / ' + (x.documents || 0) + (x.skipped ? ' (' + x.skipped + ' skipped)' : '') }))) :
      [el('tr', {}, el('td', { colspan: 4, class: 'muted', text: 'no pipeline jobs' }))]));
    const c = await api('/dashboard/api/collections');
    $('#coll-table tbody').replaceChildren(...(c.collections.length ? c.collections.map((x) => el('tr', {},
      el('td', { text: x.name }), el('td', { text: x.documents }), el('td', { text: x.chunks }), el('td', { text: x.tokens }),
      el('td', { class: 'muted', text: x.embed_model + ' (' + x.dim + ')' }))) :
      [el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'no collections' }))]));
    const sel = $('#ask-coll'), cur = sel.value;
    sel.replaceChildren(...c.collections.map((x) => el('option', { value: x.name, text: x.name })));
    if (cur) sel.value = cur;
  }
  async function ask(ev) {
    ev.preventDefault();
    const q = $('#ask-input').value.trim(), coll = $('#ask-coll').value, out = $('#ask-out');
    if (!q || !coll) { out.textContent = coll ? '' : 'no collection to ask'; return; }
    out.replaceChildren(el('div', { class: 'muted', text: 'asking…' }));
    try {
      const r = await api('/v1/rag', { method: 'POST', body: { collection: coll, question: q } });
      const cites = (r.citations || []).map((c, i) => el('div', { class: 'cite' },
        el('strong', { text: '[' + (c.n || i + 1) + '] ' + (c.title || c.source || c.doc_id || '') }), el('div', { text: (c.text || '').slice(0, 400) })));
      out.replaceChildren(el('div', { class: 'answer', text: r.answer }), ...cites);
    } catch (e) { out.replaceChildren(el('div', { class: 'bad', text: e.message })); }
  }

  // ---------- polling ----------
  async function tick(fn, ms) {
    for (;;) {
      if (!document.hidden && !state.authFailed) {
        try { await fn(); } catch (e) { if (!state.authFailed) $('#status').textContent = e.message; }
      }
      await new Promise((r) => setTimeout(r, typeof ms === 'function' ? ms() : ms));
    }
  }
  function start() {
    buildCharts();
    $('#key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const v = $('#key-input').value.trim();
      if (v) sessionStorage.setItem(KEY, v); else sessionStorage.removeItem(KEY);
      $('#key-input').value = '';
      state.authFailed = false;
      $('#auth').hidden = true;
      refreshAll();
    });
    $('#key-button').addEventListener('click', () => { $('#auth').hidden = false; $('#key-input').focus(); });
    $('#chat-form').addEventListener('submit', sendChat);
    $('#chat-input').addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) sendChat(e); });
    $('#chat-stop').addEventListener('click', () => state.chatAbort && state.chatAbort.abort());
    $('#chat-clear').addEventListener('click', () => $('#chat-log').replaceChildren());
    $('#chat-json').addEventListener('change', (e) => { $('#chat-schema').hidden = !e.target.checked; });
    $('#ask-form').addEventListener('submit', ask);
    tick(refreshOverview, 2000);
    tick(refreshKpis, () => Math.max(1000, state.period * 1000));
    tick(refreshRouting, 2000);
    tick(refreshJobs, 5000);
  }
  function refreshAll() {
    refreshOverview().then(refreshKpis).then(refreshRouting).then(refreshJobs).catch(() => {});
  }
  window.qwenmuxDashboard = { refreshAll: refreshAll };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
