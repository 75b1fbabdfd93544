// The verdict page's picture and review form (served as /assets/review.js;
// the Content-Security-Policy allows no inline script).
//
// Zoom and pan: the wheel or a pinch zooms about the pointer (1x to 8x),
// dragging pans a zoomed picture, a double click or "Fit" shows it whole;
// the +/- buttons zoom about the centre. The finding boxes are drawn in the
// same figure, so they zoom with the picture.
//
// Drawing a missed defect: while the detailed review is open, a drag on the
// picture (mouse, pen or finger) draws a box; normalised to the picture it
// is appended to the "missed" field as `name x0 y0 x1 y1`. Without script
// the field can be typed into.
//
// The one-tap form's keys: 1-9 pick a reason, P and F decide.
(function () {
  var f = document.getElementById('part');
  if (!f) return;
  var view = f.parentNode;
  var svg = f.querySelector('svg');
  var vb = svg.viewBox.baseVal;
  // The review form comes after the picture: looked up when needed.
  function missedField() { return document.getElementById('missed'); }
  function drawing() {
    var m = missedField(), d = m && m.closest('details');
    return !!(d && d.open);
  }
  var MAX = 8;
  var z = 1, tx = 0, ty = 0;
  var pointers = {};
  var pinch = null, pan = null, draw = null;

  function apply() {
    var w = view.clientWidth, h = view.clientHeight;
    z = Math.min(MAX, Math.max(1, z));
    tx = Math.min(0, Math.max(w - w * z, tx));
    ty = Math.min(0, Math.max(h - h * z, ty));
    f.style.transform = 'translate(' + tx + 'px,' + ty + 'px) scale(' + z + ')';
    view.setAttribute('data-zoom', z.toFixed(2));
  }
  // Zoom to `to` keeping the picture's point under (px, py) in place.
  function zoomAt(px, py, to) {
    var cx = (px - tx) / z, cy = (py - ty) / z;
    z = Math.min(MAX, Math.max(1, to));
    tx = px - cx * z;
    ty = py - cy * z;
    apply();
  }
  function local(e) {
    var b = view.getBoundingClientRect();
    return [e.clientX - b.left, e.clientY - b.top];
  }
  function fit() { z = 1; tx = 0; ty = 0; apply(); }

  f.style.transformOrigin = '0 0';
  view.style.touchAction = 'none';
  view.addEventListener('wheel', function (e) {
    e.preventDefault();
    var p = local(e);
    zoomAt(p[0], p[1], z * Math.exp(-e.deltaY * 0.0015));
  }, { passive: false });
  view.addEventListener('dblclick', fit);
  document.querySelectorAll('[data-zoom-by]').forEach(function (b) {
    b.addEventListener('click', function () {
      var by = b.getAttribute('data-zoom-by');
      if (by === 'fit') { fit(); return; }
      zoomAt(view.clientWidth / 2, view.clientHeight / 2, z * parseFloat(by));
    });
  });

  // Where a pointer is on the picture, 0..1 each way.
  function at(e) {
    var b = f.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (e.clientX - b.left) / b.width)),
            Math.min(1, Math.max(0, (e.clientY - b.top) / b.height))];
  }
  function startDraw(e) {
    var r = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    r.setAttribute('fill', 'none');
    r.setAttribute('stroke', '#1f6feb');
    r.setAttribute('stroke-width', Math.max(2, vb.width / 200));
    r.setAttribute('stroke-dasharray', '6 4');
    svg.appendChild(r);
    draw = { from: at(e), rect: r };
  }
  function moveDraw(e) {
    var s = draw.from, p = at(e), r = draw.rect;
    r.setAttribute('x', Math.min(s[0], p[0]) * vb.width);
    r.setAttribute('y', Math.min(s[1], p[1]) * vb.height);
    r.setAttribute('width', Math.abs(p[0] - s[0]) * vb.width);
    r.setAttribute('height', Math.abs(p[1] - s[1]) * vb.height);
  }
  function endDraw(e) {
    var s = draw.from, p = at(e), r = draw.rect;
    draw = null;
    var x0 = Math.min(s[0], p[0]), y0 = Math.min(s[1], p[1]);
    var x1 = Math.max(s[0], p[0]), y1 = Math.max(s[1], p[1]);
    if (x1 - x0 < 0.01 || y1 - y0 < 0.01) { svg.removeChild(r); return; }
    var n = (document.getElementById('missed-name').value || 'missed').trim().replace(/\s+/g, '_');
    var missed = missedField();
    missed.value += (missed.value && !missed.value.endsWith('\n') ? '\n' : '') +
      [n, x0.toFixed(3), y0.toFixed(3), x1.toFixed(3), y1.toFixed(3)].join(' ') + '\n';
  }
  function pinchState() {
    var ps = Object.keys(pointers).map(function (k) { return pointers[k]; });
    var d = Math.hypot(ps[0][0] - ps[1][0], ps[0][1] - ps[1][1]) || 1;
    return { d: d, mid: [(ps[0][0] + ps[1][0]) / 2, (ps[0][1] + ps[1][1]) / 2] };
  }

  view.addEventListener('pointerdown', function (e) {
    pointers[e.pointerId] = local(e);
    view.setPointerCapture(e.pointerId);
    e.preventDefault();
    var n = Object.keys(pointers).length;
    if (n === 2) {
      // A second finger: the gesture is a pinch, whatever the first began.
      if (draw) { svg.removeChild(draw.rect); draw = null; }
      pan = null;
      var s = pinchState();
      pinch = { d: s.d, mid: s.mid, z: z, tx: tx, ty: ty };
    } else if (n === 1) {
      if (drawing()) startDraw(e);
      else pan = { from: local(e), tx: tx, ty: ty };
    }
  });
  view.addEventListener('pointermove', function (e) {
    if (!(e.pointerId in pointers)) return;
    pointers[e.pointerId] = local(e);
    if (pinch && Object.keys(pointers).length === 2) {
      var s = pinchState();
      // The picture's point under the first midpoint follows the fingers.
      var cx = (pinch.mid[0] - pinch.tx) / pinch.z, cy = (pinch.mid[1] - pinch.ty) / pinch.z;
      z = Math.min(MAX, Math.max(1, pinch.z * s.d / pinch.d));
      tx = s.mid[0] - cx * z;
      ty = s.mid[1] - cy * z;
      apply();
    } else if (draw) {
      moveDraw(e);
    } else if (pan) {
      var p = local(e);
      tx = pan.tx + p[0] - pan.from[0];
      ty = pan.ty + p[1] - pan.from[1];
      apply();
    }
  });
  function up(e) {
    if (!(e.pointerId in pointers)) return;
    delete pointers[e.pointerId];
    if (draw) endDraw(e);
    if (Object.keys(pointers).length < 2) pinch = null;
    pan = null;
  }
  view.addEventListener('pointerup', up);
  view.addEventListener('pointercancel', up);
  window.addEventListener('resize', apply);
})();

// The script is loaded with the picture, before the review forms: the keys
// are wired once the whole page is parsed.
function whenParsed(fn) {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', fn);
  else fn();
}

whenParsed(function () {
  var f = document.getElementById('tap');
  if (!f) return;
  var sel = document.getElementById('reason-choice');
  document.addEventListener('keydown', function (e) {
    var t = e.target;
    if ((t && /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)) || e.ctrlKey || e.metaKey || e.altKey) return;
    var k = e.key.toLowerCase();
    if (k >= '1' && k <= '9') {
      if (sel.options[+k]) { sel.selectedIndex = +k; e.preventDefault(); }
      return;
    }
    if (k === 'p' || k === 'f') {
      var b = f.querySelector('button[value=' + (k === 'p' ? 'PASS' : 'FAIL') + ']');
      e.preventDefault();
      if (b && f.reportValidity()) f.requestSubmit(b);
    }
  });
});
