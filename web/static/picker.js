// Searchable pickers (选择器): nobody types a code. Each picker is a text box to search in,
// a list of matches, and a hidden input that carries the code of the item picked.
//
//   <div class="picker" data-picker="category" data-name="category" data-value="component:01002"
//        data-text="污水井盖"></div>
//
// Kinds: category (GB/T 47678.5 by name, pinyin or initials), department (routing-rule
// suggestions for the form's category and grid cell first), place (gazetteer; the text box is
// the address and picking a place also fills the form's grid cell), grid_cell, inspector, case.
// Keyboard: type to search, ↓/↑ to move, Enter to pick, Esc to close; Backspace on a picked
// value clears it. `hotlinePicker.init(root)` wires every [data-picker] under root;
// `el.picker.set(value, text)` sets one from code, e.g. from the desk's suggestions.
(function () {
  function get(url) {
    return fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
      .then(function (r) { return r.ok ? r.json() : []; });
  }
  function formValue(el, name) {
    var form = el.closest("form");
    var input = form && form.elements[name];
    return input ? input.value : "";
  }
  var KINDS = {
    category: {
      placeholder: "输入名称或拼音搜索，如 井盖 / jinggai",
      minChars: 1,
      search: function (q) { return get("/api/categories?limit=40&q=" + encodeURIComponent(q)); },
      item: function (c) {
        return {value: c.key, text: c.name, label: c.name, badge: c.kind_label,
                detail: c.code + " · " + c.class_name, kind: c.kind};
      }
    },
    department: {
      placeholder: "选择处置部门（按类别和网格推荐）",
      minChars: 0,
      search: function (q, el) {
        var url = "/api/reference/departments?category=" + encodeURIComponent(formValue(el, "category")) +
          "&grid_cell=" + encodeURIComponent(formValue(el, "grid_cell"));
        return get(url).then(function (b) {
          return (b.departments || []).filter(function (d) { return !q || d.name.indexOf(q) >= 0; });
        });
      },
      item: function (d) {
        return {value: d.code, text: d.name, label: d.name, badge: d.suggested ? "推荐" : "", detail: d.phone || ""};
      }
    },
    place: {
      placeholder: "输入地址或地名，选择后自动带出单元网格",
      minChars: 1,
      freeText: true,  // the text box is the address itself (free text is allowed there)
      search: function (q) { return get("/api/reference/places?q=" + encodeURIComponent(q)); },
      item: function (p) {
        return {value: p.grid_cell, text: p.name, label: p.name, badge: "地名",
                detail: "网格 " + (p.grid_name || "") + " " + p.grid_cell, grid_name: p.grid_name};
      }
    },
    grid_cell: {
      placeholder: "输入网格名称搜索",
      minChars: 0,
      search: function (q) { return get("/api/reference/grid_cells?q=" + encodeURIComponent(q)); },
      item: function (g) {
        return {value: g.grid_cell, text: (g.grid_name || g.grid_cell), label: g.grid_name || g.grid_cell,
                detail: g.grid_cell + (g.inspector ? " · 监督员 " + g.inspector : "")};
      }
    },
    inspector: {
      placeholder: "留空则按单元网格自动指派",
      minChars: 0,
      search: function (q, el) {
        // On a case's action form the on-duty inspectors nearest to the case come first.
        var form = el.closest("form"), m = form && /\/cases\/(\d+)\//.exec(form.getAttribute("action") || "");
        return get("/api/reference/inspectors?grid_cell=" + encodeURIComponent(formValue(el, "grid_cell")) + (m ? "&case_id=" + m[1] : ""))
          .then(function (list) { return list.filter(function (u) { return !q || (u.name + u.username).indexOf(q) >= 0; }); });
      },
      item: function (u) {
        var near = u.distance_m != null ? (u.distance_m >= 1000 ? (u.distance_m / 1000).toFixed(1) + " 公里" : u.distance_m + " 米") : "";
        return {value: u.username, text: u.name, label: u.name, badge: near ? "在岗 " + near : (u.suggested ? "本网格" : ""), detail: u.username};
      }
    },
    "case": {
      placeholder: "输入案卷编号、电话或描述中的词搜索",
      minChars: 2,
      search: function (q) {
        var digits = q.replace(/[^0-9]/g, "");
        var param = /^[0-9-]+$/.test(q) && digits.length >= 7 && digits.length <= 11 && q.indexOf("-") < 0 && digits.charAt(0) === "1"
          ? "reporter_phone=" + digits : "q=" + encodeURIComponent(q);
        return get("/api/cases?limit=20&" + param);
      },
      item: function (c) {
        return {value: c.number, text: c.number, label: c.number, badge: c.status_label || "",
                detail: (c.description || "").slice(0, 40)};
      }
    }
  };

  function make(el) {
    if (el.picker) return el.picker;
    var kind = KINDS[el.dataset.picker];
    if (!kind) return null;
    var name = el.dataset.name || el.dataset.picker;
    var hidden = document.createElement("input");
    hidden.type = "hidden"; hidden.name = kind.freeText ? (el.dataset.codeName || "grid_cell") : name;
    hidden.className = "picker-value";
    var box = document.createElement("input");
    box.type = "text"; box.className = "picker-input"; box.autocomplete = "off";
    box.setAttribute("role", "combobox"); box.setAttribute("aria-autocomplete", "list"); box.setAttribute("aria-expanded", "false");
    box.placeholder = el.dataset.placeholder || kind.placeholder;
    if (kind.freeText) { box.name = name; box.maxLength = 200; }  // the address: free text is fine here
    if (el.dataset.inputId) box.id = el.dataset.inputId;
    var list = document.createElement("ul");
    list.className = "picker-list"; list.setAttribute("role", "listbox"); list.hidden = true;
    var chosen = document.createElement("span"); chosen.className = "picker-chosen";
    el.appendChild(hidden); el.appendChild(box); el.appendChild(chosen); el.appendChild(list);
    var items = [], active = -1, seq = 0, timer = null;

    function close() { list.hidden = true; box.setAttribute("aria-expanded", "false"); active = -1; }
    function highlight(i) {
      active = i;
      Array.prototype.forEach.call(list.children, function (li, j) { li.classList.toggle("active", j === i); });
      if (list.children[i]) list.children[i].scrollIntoView({block: "nearest"});
    }
    function show(found) {
      items = found; list.innerHTML = "";
      found.forEach(function (it, i) {
        var li = document.createElement("li"); li.setAttribute("role", "option"); li.dataset.value = it.value;
        var b = document.createElement("span"); b.className = "picker-badge" + (it.kind ? " picker-" + it.kind : "");
        b.textContent = it.badge || "";
        var l = document.createElement("span"); l.className = "picker-label"; l.textContent = it.label;
        var d = document.createElement("span"); d.className = "picker-detail"; d.textContent = it.detail || "";
        if (it.badge) li.appendChild(b);
        li.appendChild(l); li.appendChild(d);
        li.onmousedown = function (e) { e.preventDefault(); pick(i); };
        list.appendChild(li);
      });
      if (!found.length) {
        var empty = document.createElement("li"); empty.className = "picker-empty"; empty.textContent = "没有匹配项";
        list.appendChild(empty);
      }
      list.hidden = false; box.setAttribute("aria-expanded", "true");
      highlight(found.length ? 0 : -1);
    }
    function search() {
      var q = box.value.trim();
      if (q.length < kind.minChars) { close(); return; }
      var mine = ++seq;
      kind.search(q, el).then(function (raw) {
        if (mine !== seq || document.activeElement !== box) return;
        show(raw.map(kind.item));
      }, function () {});
    }
    function describe(it) {
      if (!it || !it.value) return "";
      if (kind.freeText) return "单元网格：" + (it.grid_name ? it.grid_name + " " : "") + it.value;
      return ((it.kind ? it.badge + " " : "") + (it.detail || "")).trim();
    }
    function set(value, text, extra) {
      hidden.value = value || "";
      if (text !== undefined && text !== null) box.value = text;
      el.dataset.value = hidden.value;
      chosen.textContent = describe(Object.assign({value: value}, extra || {}));
      el.classList.toggle("picked", !!hidden.value);
    }
    function pick(i) {
      var it = items[i];
      if (!it) return;
      set(it.value, it.text, it);
      close();
      el.dispatchEvent(new CustomEvent("picked", {bubbles: true, detail: it}));
    }
    box.addEventListener("input", function () {
      if (!kind.freeText && hidden.value) set("", undefined);  // typing again means choosing again
      clearTimeout(timer); timer = setTimeout(search, 120);
    });
    box.addEventListener("focus", function () { if (kind.minChars === 0 || box.value.trim()) search(); });
    box.addEventListener("blur", function () {
      setTimeout(close, 150);
      // Nothing picked: the box shows only what was picked, never a half-typed code.
      if (!kind.freeText && !hidden.value) box.value = "";
    });
    box.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { e.preventDefault(); if (list.hidden) search(); else highlight(Math.min(items.length - 1, active + 1)); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(Math.max(0, active - 1)); }
      else if (e.key === "Enter") { if (!list.hidden && active >= 0) { e.preventDefault(); pick(active); } }
      else if (e.key === "Escape") { if (!list.hidden) { e.preventDefault(); close(); } }
    });
    var api = {
      set: function (value, text, extra) { set(value, text, extra); },
      clear: function () { set("", ""); },
      value: function () { return hidden.value; },
      input: box
    };
    el.picker = api;
    if (el.dataset.value || el.dataset.text) set(el.dataset.value || "", el.dataset.text || "", {detail: el.dataset.detail || ""});
    return api;
  }

  window.hotlinePicker = {
    init: function (root) {
      Array.prototype.forEach.call((root || document).querySelectorAll("[data-picker]"), make);
    },
    make: make,
    kinds: KINDS   // a page may add its own kind (the phone app's offline category search)
  };
  document.addEventListener("DOMContentLoaded", function () { window.hotlinePicker.init(document); });
})();
