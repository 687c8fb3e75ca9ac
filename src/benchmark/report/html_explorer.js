// The item explorer of a gguf-shootout HTML report (benchmark/report/html.py writes it inline).
// Data: the JSON blob in #explorer-data (benchmark/report/html_data.py describes it; calls.raw -2 =
// reply text left out of the page, -1 = none). Every text
// from the run (items, replies, errors, names) is written with textContent, never as markup.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("explorer-data").textContent);
  var root = document.getElementById("explorer-root");
  var S = D.s, A = D.arms, M = A.length, R = D.iters.length, I = D.items.id.length, K = D.names.length;
  var C = D.calls, F = D.flags, label = D.kind === "label";
  var FOLD = 360;  // characters of a long text shown before it is unfolded

  function str(k) { return k >= 0 ? S[k] : ""; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function ix(i, m, r) { return ((i * M) + m) * R + r; }
  function direction(v) { return Math.abs(v) < D.band ? 1 : (v > 0 ? 2 : 0); }
  function code(k) {  // the answer's code: a label index or a direction; K = invalid; -1 = no call
    if (C.ok[k] < 0) return -1;
    if (C.ok[k] === 0) return K;
    return label ? C.ans[k] : direction(C.ans[k]);
  }
  function answerText(k) {
    if (C.ok[k] < 0) return "\u2014";
    if (C.ok[k] === 0) return "(invalid)";
    if (label) return D.names[C.ans[k]];
    return (C.ans[k] > 0 ? "+" : "") + C.ans[k] + " " + D.names[direction(C.ans[k])].slice(0, 3);
  }
  function goldCode(i) {
    var g = D.items.gold[i];
    if (g === null || g === undefined || (label && g < 0)) return -1;
    return label ? g : direction(g);
  }
  function goldText(i) {
    var g = D.items.gold[i];
    if (g === null || g === undefined || (label && g < 0)) return "no gold";
    return label ? D.names[g] : String(g) + " (" + D.names[direction(g)] + ")";
  }
  function flag(name, i, m) { var v = F[name] ? F[name][i * M + m] : -1; return v === null ? -1 : v; }

  var state = { arm: -1, disagree: false, flip: false, changes: false, invalid: false, wrong: false,
                gold: -1, answered: -1, q: "", sort: "position", page: 0, size: 25 };
  var lower = null;  // lower-cased search texts, built on the first search

  function armsOf() { var out = []; for (var m = 0; m < M; m++) if (state.arm < 0 || state.arm === m) out.push(m); return out; }
  function anyArm(arms, name, i) { for (var j = 0; j < arms.length; j++) if (flag(name, i, arms[j]) > 0) return true; return false; }
  function total(arms, name, i) { var t = 0; for (var j = 0; j < arms.length; j++) t += Math.max(flag(name, i, arms[j]), 0); return t; }
  function answered(arms, i, c) {
    for (var j = 0; j < arms.length; j++) for (var r = 0; r < R; r++) if (code(ix(i, arms[j], r)) === c) return true;
    return false;
  }
  function passes(i, arms) {
    var names = ["disagree", "flip", "changes", "invalid", "wrong"];
    for (var n = 0; n < names.length; n++) if (state[names[n]] && !anyArm(arms, names[n], i)) return false;
    if (state.gold >= 0 && goldCode(i) !== state.gold) return false;
    if (state.answered >= 0 && !answered(arms, i, state.answered)) return false;
    if (state.q) {
      if (!lower) {
        lower = [];
        for (var k = 0; k < I; k++) lower.push((D.items.id[k] + "\n" + str(D.items.title[k]) + "\n" + str(D.items.text[k])).toLowerCase());
      }
      if (lower[i].indexOf(state.q) < 0) return false;
    }
    return true;
  }
  function sortKey(i, arms) {
    switch (state.sort) {
      case "flip": case "invalid": case "wrong": case "changes": case "disagree": return -total(arms, state.sort, i);
      case "abs_error":
        var worst = -1;
        for (var j = 0; j < arms.length; j++) { var e = flag("abs_error", i, arms[j]); if (e !== null && e > worst) worst = e; }
        return -worst;
      default: return 0;
    }
  }
  function selection() {
    var arms = armsOf(), out = [];
    for (var i = 0; i < I; i++) if (passes(i, arms)) out.push(i);
    if (state.sort === "id") out.sort(function (a, b) { return D.items.id[a] < D.items.id[b] ? -1 : D.items.id[a] > D.items.id[b] ? 1 : a - b; });
    else if (state.sort !== "position") {
      var key = {};
      out.forEach(function (i) { key[i] = sortKey(i, arms); });
      out.sort(function (a, b) { return key[a] - key[b] || a - b; });
    }
    return out;
  }

  // ------------------------------------------------------------------ controls
  var controls = el("div", "controls"), classBox = el("div", "class-errors"), status = el("p", "status");
  var list = el("div", "items"), pager = el("div", "pager");
  function option(sel, value, text) { var o = el("option", null, text); o.value = String(value); sel.appendChild(o); return o; }
  function labelled(text, control) { var l = el("label", null, text + " "); l.appendChild(control); controls.appendChild(l); return control; }

  var armSel = el("select"); armSel.id = "f-arm";
  option(armSel, -1, "any arm");
  A.forEach(function (a, m) { option(armSel, m, a + (D.ref[m] < 0 ? " (reference)" : " vs " + A[D.ref[m]])); });
  labelled("Arm", armSel).addEventListener("change", function () { state.arm = +armSel.value; update(); });

  var checks = [["disagree", "disagrees with its reference"], ["flip", "differs from the reference in an iteration"],
                ["changes", "answer changes across iterations"], ["invalid", "invalid replies"],
                ["wrong", label ? "wrong answers" : "wrong direction"]];
  var boxes = {};
  checks.forEach(function (c) {
    var b = el("input"); b.type = "checkbox"; b.id = "f-" + c[0]; boxes[c[0]] = b;
    var l = el("label", "check"); l.appendChild(b); l.appendChild(document.createTextNode(" " + c[1]));
    controls.appendChild(l);
    b.addEventListener("change", function () { state[c[0]] = b.checked; update(); });
  });
  var goldSel = el("select"); goldSel.id = "f-gold"; option(goldSel, -1, "any");
  var ansSel = el("select"); ansSel.id = "f-answer"; option(ansSel, -1, "any");
  D.names.forEach(function (n, k) { option(goldSel, k, n); option(ansSel, k, n); });
  option(ansSel, K, "(invalid)");
  labelled(label ? "Gold" : "Gold direction", goldSel).addEventListener("change", function () { state.gold = +goldSel.value; update(); });
  labelled("Answered", ansSel).addEventListener("change", function () { state.answered = +ansSel.value; update(); });
  var search = el("input"); search.type = "search"; search.id = "f-search"; search.placeholder = "id, title or text";
  labelled("Search", search).addEventListener("input", function () { state.q = search.value.trim().toLowerCase(); update(); });
  var sortSel = el("select"); sortSel.id = "f-sort";
  [["position", "run order"], ["id", D.noun + " id"], ["flip", "most iterations differing from the reference"],
   ["disagree", "most arms disagreeing"], ["changes", "most changing answers"], ["invalid", "most invalid replies"],
   ["wrong", "most wrong answers"]].concat(label ? [] : [["abs_error", "largest error"]])
    .forEach(function (s) { option(sortSel, s[0], s[1]); });
  labelled("Sort by", sortSel).addEventListener("change", function () { state.sort = sortSel.value; update(); });
  var sizeSel = el("select"); sizeSel.id = "f-size"; [10, 25, 100].forEach(function (n) { option(sizeSel, n, n); });
  sizeSel.value = "25";
  labelled("Per page", sizeSel).addEventListener("change", function () { state.size = +sizeSel.value; update(); });

  if (label && D.class_errors) {  // wrong calls per gold class and arm; a click filters to them
    classBox.appendChild(el("h3", null, "Errors per class (wrong calls, invalid counted as wrong)"));
    var t = el("table", "data"), head = el("tr");
    head.appendChild(el("th", null, "gold \\ arm"));
    A.forEach(function (a) { head.appendChild(el("th", null, a)); });
    t.appendChild(head);
    D.class_errors.forEach(function (row, k) {
      var tr = el("tr"); tr.appendChild(el("th", null, D.names[k]));
      row.forEach(function (n, m) {
        var td = el("td", "num"), b = el("button", "link", n);
        b.title = "show the " + D.noun + "s labelled " + D.names[k] + " that " + A[m] + " got wrong";
        b.addEventListener("click", function () {
          state.arm = m; state.gold = k; state.wrong = true; armSel.value = String(m); goldSel.value = String(k);
          boxes.wrong.checked = true; update();
        });
        td.appendChild(b); tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    classBox.appendChild(t);
  }

  // ------------------------------------------------------------------ items
  function folded(text, cls) {
    if (text.length <= FOLD) return el("div", cls, text);
    var d = el("details", cls + " folded"), s = el("summary", null, text.slice(0, FOLD) + " \u2026");
    d.appendChild(s);
    d.addEventListener("toggle", function once() {
      if (d.open && d.childNodes.length === 1) d.appendChild(el("div", "full", text));
    });
    return d;
  }
  function badge(parent, text, cls) { parent.appendChild(el("span", "badge " + cls, text)); }
  function replies(i) {
    var box = el("div", "replies");
    for (var m = 0; m < M; m++) {
      box.appendChild(el("h4", null, A[m]));
      for (var r = 0; r < R; r++) {
        var k = ix(i, m, r);
        if (C.ok[k] < 0) continue;
        var div = el("div", "reply" + (C.ok[k] === 0 ? " invalid" : ""));
        var meta = "iteration " + D.iters[r] + " \u00b7 " + answerText(k);
        if (C.conf.length && C.conf[k] !== null) meta += " \u00b7 confidence " + C.conf[k];
        if (C.err[k] >= 0) meta += " \u00b7 error: " + str(C.err[k]);
        div.appendChild(el("div", "meta", meta));
        if (C.raw[k] === -2) div.appendChild(el("p", "note", "(reply text left out of this page; see the note above)"));
        else div.appendChild(el("pre", "raw", str(C.raw[k])));
        box.appendChild(div);
      }
    }
    return box;
  }
  function card(i) {
    var art = el("article", "item"), head = el("header"), arms = armsOf();
    art.dataset.item = D.items.id[i];
    head.appendChild(el("span", "pos", "#" + (i + 1)));
    head.appendChild(el("code", "id", D.items.id[i]));
    if (D.items.title[i] >= 0) head.appendChild(el("span", "title", str(D.items.title[i])));
    head.appendChild(el("span", "gold", "gold: " + goldText(i)));
    if (D.items.split[i] >= 0) head.appendChild(el("span", "split", str(D.items.split[i])));
    var n;
    if ((n = total(arms, "flip", i))) badge(head, n + " differing from reference", "b-flip");
    if ((n = total(arms, "disagree", i))) badge(head, n + " disagreeing", "b-disagree");
    if ((n = total(arms, "changes", i))) badge(head, "changes across iterations", "b-changes");
    if ((n = total(arms, "invalid", i))) badge(head, n + " invalid", "b-invalid");
    art.appendChild(head);
    art.appendChild(folded(str(D.items.text[i]), "text"));
    var t = el("table", "answers"), tr = el("tr");
    tr.appendChild(el("th", null, "arm"));
    D.iters.forEach(function (r) { tr.appendChild(el("th", null, "iteration " + r)); });
    t.appendChild(tr);
    var g = goldCode(i);
    for (var m = 0; m < M; m++) {
      var row = el("tr"), ref = D.ref[m];
      row.appendChild(el("th", null, A[m] + (ref < 0 ? " (reference)" : "")));
      for (var r = 0; r < R; r++) {
        var k = ix(i, m, r), c = code(k), cls = "ans";
        if (c === K) cls += " inv";
        else if (ref >= 0 && code(ix(i, ref, r)) >= 0) cls += c === code(ix(i, ref, r)) ? " same" : " flip";
        var text = answerText(k);
        if (c >= 0 && g >= 0) { cls += c === g ? " right" : " wrong"; text += c === g ? " \u2713" : " \u2717"; }
        var td = el("td", cls, text);
        if (ref >= 0 && code(ix(i, ref, r)) >= 0) td.title = "reference " + A[ref] + ": " + answerText(ix(i, ref, r));
        row.appendChild(td);
      }
      t.appendChild(row);
    }
    art.appendChild(t);
    var d = el("details", "replies-box");
    d.appendChild(el("summary", null, "Replies"));
    d.addEventListener("toggle", function () { if (d.open && d.childNodes.length === 1) d.appendChild(replies(i)); });
    art.appendChild(d);
    return art;
  }

  function button(text, fn, disabled) { var b = el("button", null, text); b.disabled = !!disabled; b.addEventListener("click", fn); return b; }
  function render(sel) {
    var pages = Math.max(1, Math.ceil(sel.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var from = state.page * state.size, to = Math.min(sel.length, from + state.size);
    status.textContent = sel.length + " of " + I + " " + D.noun + "s match" +
      (sel.length ? "; showing " + (from + 1) + "\u2013" + to : "") + ".";
    list.replaceChildren();
    for (var j = from; j < to; j++) list.appendChild(card(sel[j]));
    pager.replaceChildren(button("\u2190 previous", function () { state.page--; render(sel); }, state.page === 0),
                          el("span", null, " page " + (state.page + 1) + " of " + pages + " "),
                          button("next \u2192", function () { state.page++; render(sel); }, state.page >= pages - 1));
  }
  function update() { state.page = 0; render(selection()); }

  var legend = el("p", "legend", "Cells: each arm's answer per iteration; green = the same as its reference's answer in " +
    "that iteration, orange = different, red = invalid reply; \u2713/\u2717 against the gold " +
    (label ? "label." : "direction (neutral band \u00b1" + D.band + ")."));
  var note = el("p", "note", D.note || "");
  root.replaceChildren(controls, classBox, legend, note, status, list, pager);
  update();
})();
