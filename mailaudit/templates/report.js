(function () {
  "use strict";
  var table = document.getElementById("contact-table");
  var controls = document.getElementById("table-controls");
  if (!table || !controls) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var q = document.getElementById("f-q");
  var status = document.getElementById("f-status");
  var flag = document.getElementById("f-flag");
  var shown = document.getElementById("f-shown");

  function hasFlag(row, wanted) {
    var tokens = row.getAttribute("data-f").split(" ");
    return tokens.indexOf(wanted) >= 0;
  }

  function apply() {
    var text = q.value.trim().toLowerCase();
    var st = status.value;
    var fl = flag.value;
    var n = 0;
    rows.forEach(function (row) {
      var ok = (!st || row.getAttribute("data-s") === st) && (!fl || hasFlag(row, fl)) &&
        (!text || row.getAttribute("data-q").indexOf(text) >= 0);
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = n === rows.length ? rows.length + " contacts" : n + " of " + rows.length + " contacts";
  }

  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    return numeric ? parseFloat(raw) || 0 : raw.toLowerCase();
  }

  function sortBy(th, index) {
    var numeric = th.getAttribute("data-sort") === "num";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var keyed = rows.map(function (row, i) { return [cellValue(row, index, numeric), i, row]; });
    keyed.sort(function (a, b) {
      if (a[0] < b[0]) { return ascending ? -1 : 1; }
      if (a[0] > b[0]) { return ascending ? 1 : -1; }
      return a[1] - b[1];
    });
    rows = keyed.map(function (k) { return k[2]; });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
    if (!th.hasAttribute("data-sort")) { return; }
    var button = document.createElement("button");
    var label = document.createElement("span");
    button.type = "button";
    button.textContent = th.textContent;
    button.title = "Sort by " + th.textContent.toLowerCase();
    label.className = "print-only";
    label.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    th.appendChild(label);
    button.addEventListener("click", function () { sortBy(th, index); });
  });

  Array.prototype.forEach.call(document.querySelectorAll("a[data-status]"), function (link) {
    link.addEventListener("click", function () {
      status.value = link.getAttribute("data-status");
      flag.value = "";
      q.value = "";
      apply();
    });
  });

  [q, status, flag].forEach(function (el) { el.addEventListener("input", apply); });
  controls.hidden = false;
  apply();
}());
