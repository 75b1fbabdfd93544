// The line view's live updates: server-sent events from /line/events.
// `verdict`: a part was judged; `state`: cameras, broker, recipe (every 2 s);
// `reset`: the shift counters start again; `resync`: this page fell behind.
// After a dropped connection (EventSource reconnects by itself) the page
// reloads the snapshot from /api/v1/line, so no part is missed.
// The texts it writes come in the page's language from the `data-i18n`
// attribute (JSON, English text to the page's), English where absent.
(function () {
  'use strict';
  var STRIP = 20;
  var seen = {};
  var byId = function (id) { return document.getElementById(id); };
  var strip = byId('strip');
  var counters = byId('counters');
  var live = byId('live');
  var texts = {};
  try {
    var holder = document.querySelector('[data-i18n]');
    texts = (holder && JSON.parse(holder.getAttribute('data-i18n'))) || {};
  } catch (e) {
    texts = {};
  }
  // A text in the page's language; `{0}`, `{1}`, ... replaced by `values`.
  function t(en, values) {
    var s = typeof texts[en] === 'string' ? texts[en] : en;
    (values || []).forEach(function (v, i) { s = s.split('{' + i + '}').join(String(v)); });
    return s;
  }
  Array.prototype.forEach.call(strip.querySelectorAll('[data-id]'), function (a) {
    seen[a.getAttribute('data-id')] = true;
  });

  function clock(iso) {
    var t = new Date(iso);
    var off = -t.getTimezoneOffset();
    var sign = off >= 0 ? '+' : '-';
    var hh = String(Math.floor(Math.abs(off) / 60)).padStart(2, '0');
    var mm = String(Math.abs(off) % 60).padStart(2, '0');
    return t.toLocaleTimeString([], { hour12: false }) + ' (UTC' + sign + hh + ':' + mm + ')';
  }

  function svgEl(name, attrs) {
    var e = document.createElementNS('http://www.w3.org/2000/svg', name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function drawLatest(p) {
    var lamp = byId('lamp');
    lamp.className = 'lamp ' + p.decision;
    lamp.textContent = p.decision;
    lamp.setAttribute('data-id', p.id);
    lamp.setAttribute('data-decided-at', p.decided_at);
    var now = byId('now-part');
    now.textContent = '';
    now.append(t('Part') + ' ');
    var b = document.createElement('b');
    b.textContent = p.part_id || '\u2014';
    now.append(b, ' \u00b7 ' + t('camera') + ' ' + p.camera + ' \u00b7 ' + clock(p.decided_at));
    var fig = byId('latest');
    fig.textContent = '';
    if (!p.image) {
      var err = document.createElement('p');
      err.className = 'err';
      err.textContent = t('Image not kept.');
      fig.append(err);
      return;
    }
    var img = document.createElement('img');
    img.src = '/images/' + p.image;
    img.alt = t('latest part');
    var svg = svgEl('svg', { viewBox: '0 0 ' + p.width + ' ' + p.height, preserveAspectRatio: 'none' });
    p.findings.forEach(function (f, i) {
      var colour = f.violates ? '#e3261b' : '#f2a900';
      var x0 = f.at[0] * p.width, y0 = f.at[1] * p.height;
      svg.append(svgEl('rect', {
        x: x0, y: y0, width: (f.at[2] - f.at[0]) * p.width, height: (f.at[3] - f.at[1]) * p.height,
        fill: 'none', stroke: colour, 'stroke-width': Math.max(2, p.width / 150)
      }));
      var label = svgEl('text', {
        // Kept inside the picture: as far right as the label's width allows.
        x: Math.min(x0, Math.max(0, p.width - Math.max(12, p.width / 22) * 0.62 * (f.defect.length + 3))),
        y: Math.max(y0 - 4, p.height / 20), fill: colour,
        'font-size': Math.max(12, p.width / 22), 'font-weight': 700
      });
      label.textContent = (i + 1) + ' ' + f.defect;
      svg.append(label);
    });
    fig.append(img, svg);
  }

  function addThumb(p) {
    var a = document.createElement('a');
    a.className = 'thumb ' + p.decision;
    a.href = '/verdicts/' + p.id;
    a.setAttribute('data-id', p.id);
    if (p.image) {
      var img = document.createElement('img');
      img.src = '/images/' + p.image + '/thumb';
      img.alt = '';
      a.append(img);
    }
    var s = document.createElement('span');
    s.textContent = p.decision + ' \u00b7 ' + (p.part_id || '\u2014');
    a.append(s);
    strip.prepend(a);
    while (strip.children.length > STRIP) { strip.removeChild(strip.lastChild); }
  }

  function setCounters(c) {
    ['parts', 'pass', 'fail', 'review'].forEach(function (k) {
      counters.setAttribute('data-' + k, c[k]);
      byId('n-' + k).textContent = c[k];
    });
    byId('fpy').textContent = c.parts > 0 ? (100 * c.pass / c.parts).toFixed(1) + ' %' : '\u2014';
  }

  function count(decision) {
    var c = {};
    ['parts', 'pass', 'fail', 'review'].forEach(function (k) { c[k] = +counters.getAttribute('data-' + k); });
    c.parts += 1;
    c[decision.toLowerCase()] += 1;
    setCounters(c);
  }

  function show(p, counted) {
    if (seen[p.id]) { return; }
    seen[p.id] = true;
    drawLatest(p);
    addThumb(p);
    if (counted) { count(p.decision); }
  }

  function states(s) {
    var ul = byId('states');
    ul.textContent = '';
    s.cameras.forEach(function (c) {
      var li = document.createElement('li');
      li.className = c.up ? 'up' : 'down';
      li.textContent = t('camera {0}: {1}', [c.camera, c.up ? t('up') : t('DOWN')]);
      ul.append(li);
    });
    var b = document.createElement('li');
    b.className = s.broker_connected ? 'up' : 'down';
    b.textContent = t('broker: {0}', [s.broker_connected ? t('connected') : t('AWAY (verdicts wait in the outbox)')]);
    var r = document.createElement('li');
    r.textContent = t('recipe: {0}', [s.recipe]);
    ul.append(b, r);
  }

  function resync() {
    fetch('/api/v1/line', { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (snap) {
        snap.latest.slice().reverse().forEach(function (p) { show(p, false); });
        setCounters(snap.tally);
        states(snap.state);
      });
  }

  var dropped = false;
  var events = new EventSource('/line/events');
  events.addEventListener('open', function () {
    live.textContent = t('live');
    live.className = 'live';
    if (dropped) { dropped = false; resync(); }
  });
  events.addEventListener('error', function () {
    dropped = true;
    live.textContent = t('reconnecting\u2026');
    live.className = 'live down';
  });
  events.addEventListener('verdict', function (e) { show(JSON.parse(e.data), true); });
  events.addEventListener('state', function (e) { states(JSON.parse(e.data)); });
  events.addEventListener('reset', function () { resync(); });
  events.addEventListener('resync', function () { resync(); });
})();
