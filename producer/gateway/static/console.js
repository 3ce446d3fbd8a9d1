// The operator console: one page over this gateway's own API (the same endpoints the README
// documents), signed in with a server key kept in this tab's session storage and sent only as
// an Authorization header. No cookie, so no request can be forged from another site; no
// framework and nothing fetched from elsewhere.
(function () {
  "use strict";

  var KEY_STORE = "kai-console-key";
  var THEME_STORE = "kai-console-theme";
  var CHANNELS = ["email", "sms", "webhook", "in_app", "push", "chat"];
  var STATUSES = ["scheduled", "queued", "processing", "sent", "delivered", "failed", "skipped", "canceled"];
  var PARTS = {
    email: ["subject", "text", "html"], sms: ["sms"], in_app: ["title", "message", "actionUrl"],
    webhook: ["payload"], push: ["title", "message", "actionUrl"], chat: ["text", "payload"], partial: ["text"],
  };
  var FLEET_REFRESH_MS = 5000;
  var PREVIEW_DELAY_MS = 250;

  var view = document.getElementById("view");
  var signin = document.getElementById("signin");
  var announcer = document.getElementById("announce");
  var timers = [];

  // ---- the API ------------------------------------------------------------------------

  function ApiError(status, body) {
    this.status = status;
    this.body = body || {};
    var error = this.body.error || {};
    this.message = (error.message || "request failed") + " (" + status + (error.code ? ", " + error.code : "") + ")";
  }

  function api(method, path, body, headers) {
    var init = { method: method, headers: Object.assign({ Authorization: "Bearer " + key() }, headers || {}) };
    if (body !== undefined) {
      init.headers["Content-Type"] = (headers && headers["Content-Type"]) || "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      if (response.status === 401) { signOut("Your key was refused: sign in again."); }
      if (response.status === 204) { return null; }
      return response.text().then(function (text) {
        var parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = { error: { message: text } }; }
        if (!response.ok) { throw new ApiError(response.status, parsed); }
        return parsed;
      });
    });
  }

  function query(params) {
    var pairs = Object.keys(params).filter(function (k) { return params[k] !== "" && params[k] != null; })
      .map(function (k) { return encodeURIComponent(k) + "=" + encodeURIComponent(params[k]); });
    return pairs.length ? "?" + pairs.join("&") : "";
  }

  function key() { return sessionStorage.getItem(KEY_STORE) || ""; }

  // ---- building the page --------------------------------------------------------------

  // h("tag.class", {attr: value, onclick: fn}, children…): elements from data, never from HTML
  // strings, so nothing the API returns is ever parsed as markup.
  function h(spec, attrs) {
    var parts = spec.split(".");
    var node = document.createElement(parts[0]);
    if (parts.length > 1) { node.className = parts.slice(1).join(" "); }
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value == null || value === false) { return; }
      if (name.slice(0, 2) === "on") { node.addEventListener(name.slice(2), value); }
      else if (name === "text") { node.textContent = value; }
      else if (name in node && name !== "list" && typeof value !== "string") { node[name] = value; }
      else { node.setAttribute(name, value === true ? "" : value); }
    });
    for (var i = 2; i < arguments.length; i++) { append(node, arguments[i]); }
    return node;
  }

  function append(node, child) {
    if (child == null || child === false) { return; }
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  function announce(text) { announcer.textContent = ""; setTimeout(function () { announcer.textContent = text; }, 30); }

  function status(value) { return h("span.status." + String(value).replace(/[^a-z_]/g, ""), { text: value }); }

  function when(iso) {
    if (!iso) { return ""; }
    var date = new Date(iso);
    return date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function errorBox(error) {
    return h("p.error", { role: "alert", text: error && error.message ? error.message : String(error) });
  }

  function field(labelText, input) {
    var id = input.id || ("f-" + Math.random().toString(36).slice(2));
    input.id = id;
    return h("div", {}, h("label", { for: id, text: labelText }), input);
  }

  function select(name, options, value) {
    return h("select", { name: name }, options.map(function (o) {
      var pair = Array.isArray(o) ? o : [o, o];
      return h("option", { value: pair[0], text: pair[1], selected: pair[0] === value });
    }));
  }

  function thead(headers) {
    return h("thead", {}, h("tr", {}, headers.map(function (c) {
      return h("th" + (c.num ? ".num" : ""), { scope: "col", text: c.label || c });
    })));
  }

  function table(headers, rows) { return h("table", {}, thead(headers), h("tbody", {}, rows)); }

  // A list of the API ({items, nextCursor}) as a table, a hundred rows at a time.
  function paged(holder, path, headers, rowOf, emptyText) {
    var body = h("tbody"), cursor = null;
    var more = h("button", { type: "button", text: "Load more", hidden: true });
    holder.appendChild(h("table", {}, thead(headers), body));
    holder.appendChild(more);
    function load() {
      api("GET", path + query({ limit: 100, cursor: cursor })).then(function (page) {
        page.items.forEach(function (item) { body.appendChild(rowOf(item)); });
        if (!body.firstChild) { body.appendChild(h("tr", {}, h("td", { colspan: headers.length, text: emptyText }))); }
        cursor = page.nextCursor;
        more.hidden = !cursor;
      }).catch(function (e) { holder.appendChild(errorBox(e)); });
    }
    more.addEventListener("click", load);
    load();
  }

  function facts(pairs) {
    return h("dl.facts", {}, pairs.filter(function (p) { return p[1] != null && p[1] !== ""; }).map(function (p) {
      return [h("dt", { text: p[0] }), h("dd", {}, typeof p[1] === "object" && p[1].nodeType ? p[1] : String(p[1]))];
    }));
  }

  function json(value) { return h("pre", { text: JSON.stringify(value, null, 2) }); }

  // ---- charts: SVG drawn from numbers, with the numbers in a table beside it ----------

  function chart(caption, labels, series, options) {
    options = options || {};
    var width = 640, height = 200, left = 44, bottom = 22, top = 8;
    var values = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (v != null) { values.push(v); } }); });
    var max = options.max || Math.max.apply(null, values.concat([1]));
    var x = function (i) { return left + (labels.length < 2 ? 0 : i * (width - left - 8) / (labels.length - 1)); };
    var y = function (v) { return top + (height - top - bottom) * (1 - v / max); };
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", caption + " (the values are in the table below)");
    svg.classList.add("chart");
    function line(x1, y1, x2, y2, cls) {
      var l = document.createElementNS(ns, "line");
      [["x1", x1], ["y1", y1], ["x2", x2], ["y2", y2]].forEach(function (a) { l.setAttribute(a[0], a[1]); });
      l.setAttribute("class", cls);
      svg.appendChild(l);
    }
    function text(tx, ty, content, anchor) {
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", tx); t.setAttribute("y", ty); t.setAttribute("text-anchor", anchor || "start");
      t.textContent = content;
      svg.appendChild(t);
    }
    line(left, top, left, height - bottom, "axis");
    line(left, height - bottom, width - 8, height - bottom, "axis");
    [0, 0.5, 1].forEach(function (f) {
      var v = max * f;
      text(left - 4, y(v) + 4, options.format ? options.format(v) : String(v % 1 === 0 ? v : v.toFixed(1)), "end");
    });
    var step = Math.max(1, Math.ceil(labels.length / 6));
    labels.forEach(function (label, i) { if (i % step === 0) { text(x(i), height - 6, label, "middle"); } });
    series.forEach(function (s, n) {
      var points = [];
      s.values.forEach(function (v, i) {
        if (v == null) { return; }
        points.push(x(i) + "," + y(v));
        // A marker at each value: a series with one value (or gaps) still shows.
        var dot = document.createElementNS(ns, "circle");
        dot.setAttribute("cx", x(i)); dot.setAttribute("cy", y(v)); dot.setAttribute("r", 3);
        dot.setAttribute("class", "s" + n);
        svg.appendChild(dot);
      });
      var poly = document.createElementNS(ns, "polyline");
      poly.setAttribute("points", points.join(" "));
      poly.setAttribute("class", "s" + n);
      svg.appendChild(poly);
    });
    var legend = h("p.legend", {}, series.map(function (s, n) { return h("span", {}, h("i.s" + n, { "aria-hidden": "true" }), s.name); }));
    var data = h("details", {}, h("summary", { text: "Values" }),
      table([""].concat(series.map(function (s) { return s.name; })),
        labels.map(function (label, i) {
          return h("tr", {}, h("th", { scope: "row", text: label }), series.map(function (s) {
            var v = s.values[i];
            return h("td.num", { text: v == null ? "–" : (options.format ? options.format(v) : String(v)) });
          }));
        })));
    return h("figure.chart.card", {}, h("figcaption", { text: caption }), svg, legend, data);
  }

  function percent(v) { return (Math.round(v * 1000) / 10) + "%"; }

  // ---- routing --------------------------------------------------------------------------

  var AREAS = {
    "messages": messages, "dead-letters": deadLetters, "endpoints": endpoints, "templates": templates,
    "rules": rules, "users": users, "fleet": fleet, "analytics": analytics,
  };

  function route() {
    timers.forEach(clearInterval);
    timers = [];
    if (!key()) { showSignIn(); return; }
    document.getElementById("nav").hidden = false;
    document.getElementById("signout").hidden = false;
    signin.hidden = true;
    var hash = location.hash.replace(/^#/, "") || "messages";
    var parts = hash.split("/").map(decodeURIComponent);
    var area = AREAS[parts[0]] ? parts[0] : "messages";
    Array.prototype.forEach.call(document.querySelectorAll("nav a"), function (a) {
      if (a.getAttribute("href") === "#" + area) { a.setAttribute("aria-current", "page"); }
      else { a.removeAttribute("aria-current"); }
    });
    Array.prototype.forEach.call(view.querySelectorAll(":scope > :not(#signin)"), function (n) { n.remove(); });
    var section = h("section", { "aria-labelledby": "area-title" });
    view.appendChild(section);
    AREAS[area](section, parts.slice(1));
    view.focus({ preventScroll: true });
  }

  function title(section, text) {
    section.appendChild(h("h1", { id: "area-title", text: text }));
    document.title = text + " · KAI Messaging console";
  }

  function showSignIn(message) {
    document.getElementById("nav").hidden = true;
    document.getElementById("signout").hidden = true;
    Array.prototype.forEach.call(view.querySelectorAll(":scope > :not(#signin)"), function (n) { n.remove(); });
    signin.hidden = false;
    document.getElementById("signin-error").textContent = message || "";
    document.getElementById("key").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    showSignIn(message);
  }

  signin.addEventListener("submit", function (event) {
    event.preventDefault();
    var input = document.getElementById("key");
    var given = input.value.trim();
    fetch("/api/messages?limit=1", { headers: { Authorization: "Bearer " + given } }).then(function (response) {
      if (!response.ok) {
        document.getElementById("signin-error").textContent =
          response.status === 401 || response.status === 403 ? "That key is not a server key of this gateway." : "The gateway answered " + response.status + ".";
        return;
      }
      sessionStorage.setItem(KEY_STORE, given);
      input.value = "";
      route();
    });
  });
  document.getElementById("signout").addEventListener("click", function () { signOut("Signed out."); });

  function applyTheme(theme) {
    document.documentElement.setAttribute("data-theme", theme);
    var button = document.getElementById("theme");
    button.setAttribute("aria-pressed", theme === "dark" ? "true" : "false");
    localStorage.setItem(THEME_STORE, theme);
  }
  document.getElementById("theme").addEventListener("click", function () {
    applyTheme(document.documentElement.getAttribute("data-theme") === "dark" ? "light" : "dark");
  });
  applyTheme(localStorage.getItem(THEME_STORE) ||
    (window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));

  // ---- messages -------------------------------------------------------------------------

  function messages(section, rest) {
    if (rest[0]) { return message(section, rest[0]); }
    title(section, "Messages");
    var form = h("form.card.row", { "aria-label": "Filter messages" });
    var inputs = {
      id: h("input", { name: "id", placeholder: "message id" }),
      status: select("status", [["", "any status"]].concat(STATUSES)),
      channel: select("channel", [["", "any channel"]].concat(CHANNELS)),
      userId: h("input", { name: "userId" }),
      templateKey: h("input", { name: "templateKey" }),
      eventType: h("input", { name: "eventType" }),
    };
    form.appendChild(field("Find by id", inputs.id));
    form.appendChild(field("Status", inputs.status));
    form.appendChild(field("Channel", inputs.channel));
    form.appendChild(field("User", inputs.userId));
    form.appendChild(field("Template", inputs.templateKey));
    form.appendChild(field("Event type", inputs.eventType));
    form.appendChild(h("button.primary", { type: "submit", text: "Search" }));
    var body = h("tbody");
    var more = h("button", { type: "button", text: "Load more", hidden: true });
    var problem = h("div");
    var cursor = null;
    section.appendChild(form);
    section.appendChild(problem);
    section.appendChild(h("table", {},
      thead(["Created", "Channel", "Status", "Recipient", "Template", { label: "Attempts", num: true }, "Last error"]), body));
    section.appendChild(more);

    function load(reset) {
      if (inputs.id.value.trim()) { location.hash = "#messages/" + encodeURIComponent(inputs.id.value.trim()); return; }
      var params = { limit: 25, cursor: reset ? null : cursor };
      ["status", "channel", "userId", "templateKey", "eventType"].forEach(function (k) { params[k] = inputs[k].value.trim(); });
      clear(problem);
      api("GET", "/api/messages" + query(params)).then(function (page) {
        if (reset) { clear(body); }
        page.items.forEach(function (m) {
          body.appendChild(h("tr", {},
            h("td", {}, h("a", { href: "#messages/" + encodeURIComponent(m.id), text: when(m.createdAt) })),
            h("td", { text: m.channel }), h("td", {}, status(m.status)), h("td", { text: m.recipient || "" }),
            h("td", { text: m.templateKey || "" }), h("td.num", { text: m.attempts + "/" + m.maxAttempts }),
            h("td", { text: m.lastError || "" })));
        });
        if (!body.firstChild) { body.appendChild(h("tr", {}, h("td", { colspan: 7, text: "No messages match." }))); }
        cursor = page.nextCursor;
        more.hidden = !cursor;
        announce(page.items.length + " messages shown");
      }).catch(function (e) { problem.appendChild(errorBox(e)); });
    }
    form.addEventListener("submit", function (event) { event.preventDefault(); load(true); });
    more.addEventListener("click", function () { load(false); });
    load(true);
  }

  function message(section, id) {
    title(section, "Message " + id);
    section.appendChild(h("p", {}, h("a", { href: "#messages", text: "← All messages" })));
    var holder = h("div");
    section.appendChild(holder);
    function show() {
      clear(holder);
      Promise.all([api("GET", "/api/messages/" + encodeURIComponent(id)), api("GET", "/api/messages/" + encodeURIComponent(id) + "/story")])
        .then(function (answers) {
          var m = answers[0], story = answers[1];
          var actions = h("div.row");
          if (["scheduled", "queued"].indexOf(m.status) >= 0) {
            actions.appendChild(h("button.danger", { type: "button", text: "Cancel", onclick: function () {
              api("DELETE", "/api/messages/" + encodeURIComponent(id)).then(function () { announce("Canceled"); show(); })
                .catch(function (e) { holder.appendChild(errorBox(e)); });
            } }));
          }
          if (["failed", "sent", "delivered", "canceled", "skipped"].indexOf(m.status) >= 0) {
            actions.appendChild(h("button", { type: "button", text: "Replay", onclick: function () {
              api("POST", "/api/messages/" + encodeURIComponent(id) + "/replay", {}).then(function () { announce("Replayed"); show(); })
                .catch(function (e) { holder.appendChild(errorBox(e)); });
            } }));
          }
          holder.appendChild(h("div.card", {}, facts([
            ["Status", status(m.status)], ["Channel", m.channel], ["Recipient", m.recipient], ["User", m.userId],
            ["Template", m.templateKey ? m.templateKey + " v" + m.templateVersion : ""], ["Rule", m.ruleId],
            ["Event", m.eventType ? m.eventType + " (" + m.eventId + ")" : ""], ["Provider", m.provider],
            ["Provider message id", m.providerMessageId], ["Attempts", m.attempts + " of " + m.maxAttempts],
            ["Last error", m.lastError ? m.lastError + (m.errorCode ? " (" + m.errorCode + ")" : "") : ""],
            ["Created", when(m.createdAt)], ["Sent", when(m.sentAt)], ["Delivered", when(m.deliveredAt)],
            ["Next attempt", when(m.nextAttemptAt)], ["Variant", m.variant],
          ]), actions));
          holder.appendChild(h("h2", { text: "Payload" }));
          holder.appendChild(h("p.muted", { text: "Secret values (keys, tokens, passwords, credentials) are masked." }));
          holder.appendChild(json(story.payload));
          holder.appendChild(h("h2", { text: "Attempts" }));
          if (!story.attempts.length) {
            holder.appendChild(h("p.muted", { text: m.channel === "webhook"
              ? "No attempt logged yet."
              : "This channel keeps the count and the last error (above), not each attempt." }));
          }
          story.attempts.forEach(function (a) {
            holder.appendChild(h("details.card", { open: story.attempts.length === 1 },
              h("summary", {}, "Attempt " + a.attempt + " · ", status(a.success ? "ok" : "bad"), " ",
                (a.responseStatus || a.errorClass || "") + " · " + (a.durationMs == null ? "" : a.durationMs + " ms") + " · " + when(a.createdAt)),
              facts([["URL", a.url], ["Error", a.errorMessage], ["Phases (ms)", a.timings && Object.keys(a.timings).length ? JSON.stringify(a.timings) : ""]]),
              h("h3", { text: "Request" }), json({ headers: a.requestHeaders, body: a.requestBody }),
              h("h3", { text: "Response" }), json({ status: a.responseStatus, headers: a.responseHeaders, body: a.responseBody })));
          });
          holder.appendChild(h("h2", { text: "Receipts" }));
          var receipts = m.receipts || [];
          holder.appendChild(receipts.length ? table(["Received", "Kind", "Detail"], receipts.map(function (r) {
            return h("tr", {}, h("td", { text: when(r.at || r.occurredAt || r.createdAt) }), h("td", { text: r.kind || r.type || r.status || "" }),
              h("td", { text: r.detail || r.reason || r.description || "" }));
          })) : h("p.muted", { text: "No receipt yet." }));
        }).catch(function (e) { holder.appendChild(errorBox(e)); });
    }
    show();
  }

  // ---- dead letters ---------------------------------------------------------------------

  function deadLetters(section, rest) {
    title(section, "Dead letters");
    var channel = CHANNELS.indexOf(rest[0]) >= 0 ? rest[0] : "email";
    section.appendChild(h("div.tabs", { role: "group", "aria-label": "Channel" }, CHANNELS.map(function (c) {
      return h("button", { type: "button", text: c, "aria-pressed": c === channel ? "true" : "false",
        onclick: function () { location.hash = "#dead-letters/" + c; } });
    })));
    var holder = h("div");
    section.appendChild(holder);
    function act(path, body, what) {
      return api("POST", "/api/dead-letters/" + channel + path, body).then(function (answer) {
        announce(what + ": " + answer.count);
        show();
      }).catch(function (e) { holder.appendChild(errorBox(e)); });
    }
    function show() {
      api("GET", "/api/dead-letters/" + channel + "?limit=100").then(function (page) {
        clear(holder);
        holder.appendChild(h("div.row", {},
          h("p", { text: page.items.length + (page.items.length === 100 ? "+" : "") + " dead-lettered " + channel + " messages" }),
          h("button", { type: "button", text: "Replay all", disabled: !page.items.length, onclick: function () { act("/replay", {}, "Replayed"); } }),
          h("button.danger", { type: "button", text: "Purge all", disabled: !page.items.length, onclick: function () {
            if (confirm("Drop every dead letter of " + channel + "? Their messages keep the failure.")) { act("/purge", {}, "Purged"); }
          } })));
        holder.appendChild(table(["Message", "Recipient", "Attempts", "Error", "Failed", ""], page.items.map(function (d) {
          return h("tr", {},
            h("td", {}, h("a", { href: "#messages/" + encodeURIComponent(d.id), text: d.id })),
            h("td", { text: d.recipient || "" }), h("td.num", { text: d.attempts == null ? "" : d.attempts }),
            h("td", { text: (d.lastError || "") + (d.errorCode ? " (" + d.errorCode + ")" : "") }),
            h("td", { text: when(d.failedAt) }),
            h("td", {}, h("button", { type: "button", text: "Replay", "aria-label": "Replay " + d.id,
              onclick: function () { act("/replay", { ids: [d.id] }, "Replayed"); } }),
            " ", h("button.danger", { type: "button", text: "Purge", "aria-label": "Purge " + d.id,
              onclick: function () { act("/purge", { ids: [d.id] }, "Purged"); } })));
        })));
      }).catch(function (e) { clear(holder).appendChild(errorBox(e)); });
    }
    show();
  }

  // ---- webhook endpoints ----------------------------------------------------------------

  function endpoints(section, rest) {
    if (rest[0]) { return endpoint(section, rest[0]); }
    title(section, "Webhook endpoints");
    var holder = h("div");
    section.appendChild(holder);
    paged(holder, "/api/webhooks/configurations", ["Endpoint", "Events", "State", "Failing since", { label: "Failures in a row", num: true }], function (e) {
      var state = !e.active ? "disabled" : e.failingSince ? "failing" : "healthy";
      return h("tr", {},
        h("td", {}, h("a", { href: "#endpoints/" + encodeURIComponent(e.id), text: e.url }), e.description ? h("div.muted", { text: e.description }) : null),
        h("td", { text: (e.eventTypes || []).join(", ") || "all" }),
        h("td", {}, status(state === "healthy" ? "ok" : state === "failing" ? "warn" : "bad"), " ", state),
        h("td", { text: when(e.failingSince) }), h("td.num", { text: e.consecutiveFailures == null ? "" : e.consecutiveFailures }));
    }, "No endpoint yet: POST /api/webhooks/configurations.");
  }

  function endpoint(section, id) {
    var base = "/api/webhooks/configurations/" + encodeURIComponent(id);
    title(section, "Endpoint");
    section.appendChild(h("p", {}, h("a", { href: "#endpoints", text: "← All endpoints" })));
    var holder = h("div"), notice = h("div", { role: "status" });
    section.appendChild(notice);
    section.appendChild(holder);
    function show() {
      Promise.all([api("GET", base), api("GET", base + "/logs?limit=200")]).then(function (answers) {
        var e = answers[0], attempts = answers[1].items;
        clear(holder);
        var recoverSince = h("input", { type: "datetime-local", name: "since" });
        holder.appendChild(h("div.card", {}, facts([
          ["URL", e.url], ["Description", e.description], ["Events", (e.eventTypes || []).join(", ") || "all"],
          ["Active", e.active ? "yes" : "no"], ["Failing since", when(e.failingSince)],
          ["Circuit breaker", e.circuit ? e.circuit.state.replace("_", "-") + " (" + e.circuit.consecutiveFailures + " failures in a row" +
            (e.circuit.state === "open" ? ", next probe in " + Math.ceil(e.circuit.retryInMs / 1000) + " s" : "") + ")" : "kept by each worker (no Redis)"],
          ["Disabled", e.disabledAt ? when(e.disabledAt) + " — " + (e.disabledReason || "") : ""],
          ["Ordered", e.ordered ? "yes" : "no"], ["Rate limit", e.rateLimitPerSecond ? e.rateLimitPerSecond + "/s" : ""],
        ]), h("div.row", {},
          h("button", { type: "button", text: "Send test event", onclick: function () {
            api("POST", base + "/test", {}).then(function (a) { announce("Test sent: " + (a.responseStatus || a.status || "")); show(); })
              .catch(function (err) { notice.appendChild(errorBox(err)); });
          } }),
          h("button", { type: "button", text: e.active ? "Disable" : "Enable", onclick: function () {
            api("PATCH", base, { active: !e.active }, { "Content-Type": "application/merge-patch+json" })
              .then(function () { announce(e.active ? "Disabled" : "Enabled"); show(); })
              .catch(function (err) { notice.appendChild(errorBox(err)); });
          } }),
          h("button.danger", { type: "button", text: "Rotate secret", onclick: function () {
            api("POST", base + "/regenerate-secret", {}).then(function (s) {
              clear(notice).appendChild(h("div.card", {},
                h("h2", { text: "New signing secret" }),
                h("p", { text: "Shown once: copy it to the receiver now. The previous secret keeps signing until " + when(s.previousSecretExpiresAt) + "." }),
                h("p.secret", { id: "new-secret", text: s.secret })));
              announce("Secret rotated");
            }).catch(function (err) { notice.appendChild(errorBox(err)); });
          } }),
          field("Recover failures since", recoverSince),
          h("button", { type: "button", text: "Recover", onclick: function () {
            if (!recoverSince.value) { return; }
            api("POST", base + "/recover", { since: new Date(recoverSince.value).toISOString() })
              .then(function (a) { announce("Recovering " + a.replayed + " deliveries"); show(); })
              .catch(function (err) { notice.appendChild(errorBox(err)); });
          } }))));
        holder.appendChild(health(attempts));
        holder.appendChild(h("h2", { text: "Attempts" }));
        holder.appendChild(table(["When", "Message", "Result", { label: "Duration", num: true }, "Error"], attempts.slice(0, 50).map(function (a) {
          return h("tr", {}, h("td", { text: when(a.createdAt) }),
            h("td", {}, h("a", { href: "#messages/" + encodeURIComponent(a.messageId), text: a.messageId })),
            h("td", {}, status(a.success ? "ok" : "bad"), " ", String(a.responseStatus || a.errorClass || "")),
            h("td.num", { text: a.durationMs == null ? "" : a.durationMs + " ms" }), h("td", { text: a.errorMessage || "" }));
        })));
      }).catch(function (err) { clear(holder).appendChild(errorBox(err)); });
    }
    show();
  }

  // Success rate and latency per hour over the attempts shown, oldest first.
  function health(attempts) {
    var hours = {};
    attempts.forEach(function (a) {
      var hour = (a.createdAt || "").slice(0, 13);
      var bucket = hours[hour] || (hours[hour] = { ok: 0, all: 0, ms: [] });
      bucket.all += 1;
      if (a.success) { bucket.ok += 1; }
      if (a.durationMs != null) { bucket.ms.push(a.durationMs); }
    });
    var labels = Object.keys(hours).sort();
    if (!labels.length) { return h("p.muted", { text: "No attempt yet: nothing to chart." }); }
    function p50(ms) { if (!ms.length) { return null; } ms.sort(function (a, b) { return a - b; }); return ms[Math.floor(ms.length / 2)]; }
    return h("div.grid", {},
      chart("Success rate per hour", labels.map(function (l) { return l.slice(11) + "h"; }),
        [{ name: "success rate", values: labels.map(function (l) { return hours[l].ok / hours[l].all; }) }], { max: 1, format: percent }),
      chart("Latency per hour (median, ms)", labels.map(function (l) { return l.slice(11) + "h"; }),
        [{ name: "median ms", values: labels.map(function (l) { return p50(hours[l].ms); }) }]));
  }

  // ---- templates ------------------------------------------------------------------------

  function templates(section, rest) {
    if (rest[0] !== undefined) { return template(section, rest[0], rest[1] || "email", rest[2] || ""); }
    title(section, "Templates");
    section.appendChild(h("p", {}, h("a", { href: "#templates/", text: "New template" })));
    var holder = h("div");
    section.appendChild(holder);
    paged(holder, "/api/templates", ["Key", "Channel", "Locale", { label: "Version", num: true }, "Saved"], function (t) {
      return h("tr", {},
        h("td", {}, h("a", { href: "#templates/" + [t.key, t.channel, t.locale].map(encodeURIComponent).join("/"), text: t.key })),
        h("td", { text: t.channel }), h("td", { text: t.locale }), h("td.num", { text: t.version }), h("td", { text: when(t.createdAt) }));
    }, "No template yet.");
  }

  function template(section, key, channel, locale) {
    var creating = !key;
    title(section, creating ? "New template" : "Template " + key);
    section.appendChild(h("p", {}, h("a", { href: "#templates", text: "← All templates" })));
    var inputs = {
      key: h("input", { name: "key", value: key, readOnly: !creating, required: true }),
      channel: select("channel", ["email", "sms", "in_app", "push", "chat", "webhook", "partial"], channel),
      locale: h("input", { name: "locale", value: locale, placeholder: "default locale" }),
      sampleData: h("textarea.code", { name: "sampleData", text: "{}" }),
    };
    if (!creating) { inputs.channel.disabled = true; inputs.locale.readOnly = true; }
    var partsBox = h("div"), partErrors = {}, partInputs = {};
    var saveError = h("div", { role: "alert" });
    var previewBox = h("div", { "aria-live": "polite" });
    var historyBox = h("div"), localesBox = h("div");
    var current = null;
    var form = h("form.card", { "aria-label": "Template" },
      h("div.row", {}, field("Key", inputs.key), field("Channel", inputs.channel), field("Locale", inputs.locale)),
      partsBox, field("Sample data (JSON)", inputs.sampleData), saveError,
      h("button.primary", { type: "submit", text: creating ? "Create" : "Save as the next version" }));
    section.appendChild(h("div.editor", {}, form, h("div", {}, h("h2", { text: "Preview" }), previewBox)));
    section.appendChild(historyBox);
    section.appendChild(localesBox);

    function drawParts(values) {
      clear(partsBox);
      partInputs = {};
      partErrors = {};
      (PARTS[inputs.channel.value] || []).forEach(function (name) {
        var input = h("textarea.code", { name: name, text: values[name] == null ? "" : (name === "payload" ? JSON.stringify(values[name], null, 2) : values[name]),
          "aria-describedby": "error-" + name });
        input.addEventListener("input", schedulePreview);
        partInputs[name] = input;
        partErrors[name] = h("p.part-error", { id: "error-" + name });
        partsBox.appendChild(h("div", {}, field(name, input), partErrors[name]));
      });
    }

    function document_() {
      var doc = { key: inputs.key.value.trim(), channel: inputs.channel.value };
      if (inputs.locale.value.trim()) { doc.locale = inputs.locale.value.trim(); }
      Object.keys(partInputs).forEach(function (name) {
        var text = partInputs[name].value;
        if (name === "payload") {
          try { doc.payload = text.trim() ? JSON.parse(text) : null; } catch (e) { throw { part: "payload", message: "not JSON: " + e.message }; }
        } else if (text !== "") { doc[name] = text; }
      });
      try { doc.sampleData = JSON.parse(inputs.sampleData.value || "{}"); }
      catch (e) { throw { part: "sampleData", message: "not JSON: " + e.message }; }
      return doc;
    }

    function showErrors(details) {
      Object.keys(partErrors).forEach(function (name) { partErrors[name].textContent = ""; });
      clear(saveError);
      (details || []).forEach(function (d) {
        var where = d.part && partErrors[d.part] ? partErrors[d.part] : null;
        var text = (d.line ? "line " + d.line + ": " : "") + d.message;
        if (where) { where.textContent = text; } else { saveError.appendChild(h("p.error", { text: (d.part ? d.part + ": " : "") + text })); }
      });
    }

    var pending = null;
    function schedulePreview() { clearTimeout(pending); pending = setTimeout(preview, PREVIEW_DELAY_MS); }
    inputs.sampleData.addEventListener("input", schedulePreview);
    inputs.channel.addEventListener("change", function () { drawParts({}); schedulePreview(); });

    function preview() {
      var doc;
      try { doc = document_(); } catch (problem) { showErrors([problem]); return; }
      if (!doc.key) { doc.key = "preview"; }
      api("POST", "/api/templates/preview", doc).then(function (rendered) {
        showErrors([]);
        clear(previewBox).appendChild(renderPreview(doc.channel, rendered));
      }).catch(function (e) {
        showErrors(e.body && e.body.error && e.body.error.details ? e.body.error.details : [{ message: e.message }]);
      });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var doc;
      try { doc = document_(); } catch (problem) { showErrors([problem]); return; }
      var request = creating ? api("POST", "/api/templates", doc) : api("PUT", "/api/templates/" + encodeURIComponent(key), doc);
      request.then(function (saved) {
        announce("Saved version " + saved.version);
        location.hash = "#templates/" + [saved.key, saved.channel, saved.locale].map(encodeURIComponent).join("/");
        if (!creating) { route(); }
      }).catch(function (e) { showErrors(e.body && e.body.error && e.body.error.details ? e.body.error.details : [{ message: e.message }]); });
    });

    if (creating) { drawParts({}); preview(); return; }
    var one = query({ channel: channel, locale: locale });
    api("GET", "/api/templates/" + encodeURIComponent(key) + one).then(function (page) {
      current = page.items[0];
      if (!current) { throw new Error("no such template"); }
      inputs.sampleData.value = JSON.stringify(current.sampleData || {}, null, 2);
      drawParts(current);
      preview();
      history(current);
      otherLocales(current);
    }).catch(function (e) { saveError.appendChild(errorBox(e)); });

    function history(latest) {
      clear(historyBox).appendChild(h("h2", { text: "Versions" }));
      var versions = [];
      for (var v = latest.version; v >= Math.max(1, latest.version - 9); v--) { versions.push(v); }
      Promise.all(versions.map(function (v) {
        return api("GET", "/api/templates/" + encodeURIComponent(key) + query({ channel: latest.channel, locale: latest.locale, version: v }))
          .then(function (answer) { return answer.items ? answer.items[0] : answer; });
      })).then(function (found) {
        historyBox.appendChild(table(["Version", "Saved", "Change against the one before", ""], found.map(function (t, i) {
          var before = found[i + 1];
          return h("tr", {}, h("td", { text: "v" + t.version + (t.version === latest.version ? " (current)" : "") }),
            h("td", { text: when(t.createdAt) }),
            h("td", {}, before ? diffOf(before, t) : h("span.muted", { text: t.version === 1 ? "first version" : "" })),
            h("td", {}, t.version === latest.version ? null : h("button", { type: "button", text: "Restore v" + t.version, onclick: function () {
              var doc = { channel: t.channel, locale: t.locale, sampleData: t.sampleData || {} };
              PARTS[t.channel].forEach(function (name) { if (t[name] != null) { doc[name] = t[name]; } });
              api("PUT", "/api/templates/" + encodeURIComponent(key), doc).then(function (saved) {
                announce("Restored as version " + saved.version);
                route();
              }).catch(function (e) { historyBox.appendChild(errorBox(e)); });
            } })));
        })));
      }).catch(function (e) { historyBox.appendChild(errorBox(e)); });
    }

    function otherLocales(latest) {
      api("GET", "/api/templates/" + encodeURIComponent(key) + query({ channel: latest.channel })).then(function (page) {
        if (page.items.length < 2) { return; }
        clear(localesBox).appendChild(h("h2", { text: "Locales side by side" }));
        var grid = h("div.locales");
        localesBox.appendChild(grid);
        page.items.forEach(function (t) {
          api("POST", "/api/templates/" + encodeURIComponent(key) + "/preview", { channel: t.channel, locale: t.locale }).then(function (rendered) {
            grid.appendChild(h("div.card", {}, h("h3", { text: t.locale + " (v" + t.version + ")" }), renderPreview(t.channel, rendered)));
          });
        });
      });
    }
  }

  function diffOf(before, after) {
    var out = h("div.diff");
    PARTS[after.channel].forEach(function (name) {
      var a = before[name] == null ? "" : (typeof before[name] === "string" ? before[name] : JSON.stringify(before[name]));
      var b = after[name] == null ? "" : (typeof after[name] === "string" ? after[name] : JSON.stringify(after[name]));
      if (a === b) { return; }
      out.appendChild(h("div", {}, h("strong", { text: name + ": " }), wordDiff(a, b)));
    });
    if (!out.firstChild) { out.appendChild(h("span.muted", { text: "no change to the parts" })); }
    return out;
  }

  // A word diff by longest common subsequence (parts are short: this is quadratic in words).
  function wordDiff(a, b) {
    var x = a.split(/(\s+)/), y = b.split(/(\s+)/);
    var n = x.length, m = y.length, table_ = [];
    for (var i = 0; i <= n; i++) { table_.push(new Array(m + 1).fill(0)); }
    for (i = n - 1; i >= 0; i--) {
      for (var j = m - 1; j >= 0; j--) {
        table_[i][j] = x[i] === y[j] ? table_[i + 1][j + 1] + 1 : Math.max(table_[i + 1][j], table_[i][j + 1]);
      }
    }
    var out = h("span");
    i = 0; j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && x[i] === y[j]) { out.appendChild(document.createTextNode(x[i])); i++; j++; }
      else if (i < n && (j === m || table_[i + 1][j] >= table_[i][j + 1])) { out.appendChild(h("del.del", { text: x[i] })); i++; }
      else { out.appendChild(h("ins.add", { text: y[j] })); j++; }
    }
    return out;
  }

  function renderPreview(channel, rendered) {
    if (channel === "email") {
      var frame = h("iframe.email", { title: "Email preview", sandbox: "" });
      frame.srcdoc = rendered.html || "<pre>" + escapeText(rendered.text || "") + "</pre>";
      return h("div", {}, facts([["Subject", rendered.subject]]), frame,
        rendered.text ? h("details", {}, h("summary", { text: "Plain-text part" }), h("pre", { text: rendered.text })) : null);
    }
    if (channel === "sms") {
      var segments = rendered.segments || {};
      return h("div", {}, h("p.sms", { text: rendered.sms || "" }),
        h("p.muted", { id: "sms-segments", text: (rendered.sms || "").length + " characters · " + (segments.count || 0) + " segment" +
          (segments.count === 1 ? "" : "s") + (segments.encoding ? " (" + segments.encoding + ")" : "") }));
    }
    if (channel === "in_app" || channel === "push") {
      return h("div.inapp", {}, h("strong", { text: rendered.title || "" }), h("p", { text: rendered.message || "" }),
        rendered.actionUrl ? h("p.muted", { text: "Opens " + rendered.actionUrl }) : null);
    }
    if (channel === "chat") {
      return h("div", {}, h("p.sms", { text: rendered.text || "" }),
        rendered.payload ? json(rendered.payload) : null);
    }
    return json(rendered.payload !== undefined ? rendered.payload : rendered);
  }

  function escapeText(text) {
    return text.replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }[c]; });
  }

  // ---- rules ----------------------------------------------------------------------------

  function rules(section, rest) {
    if (rest[0] !== undefined) { return rule(section, rest[0]); }
    title(section, "Event rules");
    section.appendChild(h("p", {}, h("a", { href: "#rules/", text: "New rule" })));
    var holder = h("div");
    section.appendChild(holder);
    paged(holder, "/api/rules", ["Rule", "Event type", "Channels", "Template", "Conditions", "Active"], function (r) {
      return h("tr", {},
        h("td", {}, h("a", { href: "#rules/" + encodeURIComponent(r.id), text: r.name || r.id })),
        h("td", { text: r.eventType }), h("td", { text: (r.channels || []).join(", ") }), h("td", { text: r.templateKey || "" }),
        h("td", {}, r.conditions && Object.keys(r.conditions).length ? h("code", { text: JSON.stringify(r.conditions) }) : h("span.muted", { text: "none" })),
        h("td", { text: r.active === false ? "no" : "yes" }));
    }, "No rule yet.");
  }

  function rule(section, id) {
    title(section, id ? "Rule" : "New rule");
    section.appendChild(h("p", {}, h("a", { href: "#rules", text: "← All rules" })));
    var text = h("textarea.code", { name: "rule", rows: 22 });
    var problem = h("div", { role: "alert" });
    var form = h("form.card", { "aria-label": "Rule" }, field("The rule as JSON (conditions, channels, templates, digests, steps…)", text), problem,
      h("button.primary", { type: "submit", text: id ? "Save" : "Create" }));
    section.appendChild(form);
    if (id) {
      api("GET", "/api/rules/" + encodeURIComponent(id)).then(function (r) {
        var doc = {};
        Object.keys(r).forEach(function (k) { if (["id", "createdAt", "updatedAt"].indexOf(k) < 0) { doc[k] = r[k]; } });
        text.value = JSON.stringify(doc, null, 2);
      }).catch(function (e) { problem.appendChild(errorBox(e)); });
    } else {
      text.value = JSON.stringify({ name: "Order shipped", eventType: "order.shipped", channels: ["in_app"],
        templateKey: "order-shipped", conditions: ["data.total > 0"] }, null, 2);
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clear(problem);
      var doc;
      try { doc = JSON.parse(text.value); } catch (e) { problem.appendChild(errorBox("not JSON: " + e.message)); return; }
      (id ? api("PUT", "/api/rules/" + encodeURIComponent(id), doc) : api("POST", "/api/rules", doc)).then(function (saved) {
        announce("Rule saved");
        location.hash = "#rules/" + encodeURIComponent(saved.id);
      }).catch(function (e) {
        problem.appendChild(errorBox(e));
        ((e.body && e.body.error && e.body.error.details) || []).forEach(function (d) {
          problem.appendChild(h("p.error", { text: (d.field || d.part || "") + ": " + d.message }));
        });
      });
    });
  }

  // ---- users ----------------------------------------------------------------------------

  function users(section, rest) {
    title(section, "Users");
    var input = h("input", { name: "userId", value: rest[0] || "", required: true });
    var form = h("form.card.row", { "aria-label": "Look up a user" }, field("User id", input), h("button.primary", { type: "submit", text: "Look up" }));
    var holder = h("div");
    section.appendChild(form);
    section.appendChild(holder);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      location.hash = "#users/" + encodeURIComponent(input.value.trim());
    });
    if (!rest[0]) { return; }
    var user = rest[0], as = { "X-User-Id": user };
    Promise.all([
      api("GET", "/api/notifications/preferences", undefined, as),
      api("GET", "/api/users/" + encodeURIComponent(user) + "/contacts").catch(function (e) { return e.status === 404 ? null : Promise.reject(e); }),
      api("GET", "/api/notifications?limit=20", undefined, as),
      api("GET", "/api/notifications/unread-count", undefined, as),
    ]).then(function (answers) {
      var prefs = answers[0], contacts = answers[1], inbox = answers[2], unread = answers[3];
      holder.appendChild(h("div.grid", {},
        h("div.card", {}, h("h2", { text: "Preferences" }), json(prefs)),
        h("div.card", {}, h("h2", { text: "Contacts" }), contacts ? json(contacts) : h("p.muted", { text: "No contacts saved." }))));
      holder.appendChild(h("h2", { text: "Inbox (" + unread.count + " unread)" }));
      holder.appendChild(table(["Received", "Title", "Message", "Read"], inbox.items.map(function (n) {
        return h("tr", {}, h("td", { text: when(n.createdAt) }), h("td", { text: n.title }), h("td", { text: n.message }),
          h("td", { text: n.readAt ? when(n.readAt) : "unread" }));
      })));
    }).catch(function (e) { holder.appendChild(errorBox(e)); });
  }

  // ---- fleet ----------------------------------------------------------------------------

  function fleet(section) {
    title(section, "Fleet");
    section.appendChild(h("p.muted", { text: "Queue depths and consumers from RabbitMQ, outcomes of the last minute from the message log: what /metrics exports. Refreshed every 5 seconds." }));
    var holder = h("div"), charts = h("div");
    section.appendChild(holder);
    section.appendChild(charts);
    function show() {
      api("GET", "/api/fleet").then(function (answer) {
        clear(holder).appendChild(table(["Queue", { label: "Ready", num: true }, { label: "Consumers", num: true }, { label: "Delayed", num: true },
          { label: "Dead letters", num: true }, { label: "Done last minute", num: true }, { label: "Failed last minute", num: true }, { label: "Failure rate", num: true }],
          answer.queues.map(function (q) {
            var done = (q.recent.sent || 0) + (q.recent.delivered || 0), failed = q.recent.failed || 0;
            function n(v) { return v == null ? "–" : String(v); }
            return h("tr", {}, h("th", { scope: "row", text: q.queue }), h("td.num", { text: n(q.depth) }), h("td.num", { text: n(q.consumers) }),
              h("td.num", { text: n(q.delayed) }),
              h("td.num", {}, q.deadLettered ? h("a", { href: "#dead-letters/" + q.queue, text: String(q.deadLettered) }) : n(q.deadLettered)),
              h("td.num", { text: String(done) }), h("td.num", { text: String(failed) }),
              h("td.num", { text: done + failed ? percent(failed / (done + failed)) : "–" }));
          })));
        if (answer.broker === "embedded") { holder.appendChild(h("p.muted", { text: "The embedded broker keeps no shared queue state: depths are not available." })); }
      }).catch(function (e) { clear(holder).appendChild(errorBox(e)); });
    }
    show();
    timers.push(setInterval(show, FLEET_REFRESH_MS));
    trend(charts, { groupBy: "channel", interval: "hour", from: new Date(Date.now() - 24 * 3600e3).toISOString() }, "per hour, last 24 hours");
  }

  // ---- analytics and experiments ----------------------------------------------------------

  function analytics(section) {
    title(section, "Analytics");
    var charts = h("div"), experimentsBox = h("div");
    section.appendChild(charts);
    section.appendChild(h("h2", { text: "Experiments" }));
    section.appendChild(experimentsBox);
    var today = new Date(); today.setUTCHours(0, 0, 0, 0);
    var from = new Date(today.getTime() - 29 * 86400e3), to = new Date(today.getTime() + 86400e3);
    trend(charts, { interval: "day", from: from.toISOString(), to: to.toISOString() }, "per day, last 30 days");
    api("GET", "/api/experiments?limit=20").then(function (page) {
      if (!page.items.length) { experimentsBox.appendChild(h("p.muted", { text: "No experiment yet." })); return; }
      page.items.forEach(function (x) {
        api("GET", "/api/experiments/" + encodeURIComponent(x.id)).then(function (result) {
          var compared = {};
          result.comparisons.forEach(function (c) { compared[c.variant] = c; });
          experimentsBox.appendChild(h("div.card", {},
            h("h3", { text: x.name + " (" + x.status + ", " + x.metric + ", " + result.test + ")" }),
            table(["Variant", { label: "Sent", num: true }, { label: "Rate", num: true }, "Difference against " + result.control + " (CI)", "Verdict"],
              result.results.map(function (r) {
                var c = compared[r.name];
                return h("tr", {}, h("th", { scope: "row", text: r.name + (r.name === result.best ? " (best)" : "") }),
                  h("td.num", { text: String(r.trials) }), h("td.num", { text: r.rate == null ? "–" : percent(r.rate) }),
                  h("td", { text: c ? percent(c.difference) + " (" + percent(c.confidenceInterval[0]) + " to " + percent(c.confidenceInterval[1]) + ")" : "control" }),
                  h("td", { text: c ? c.verdict.replace("_", " ") : "" }));
              }))));
        });
      });
    }).catch(function (e) { experimentsBox.appendChild(errorBox(e)); });
  }

  // Delivery rate, failures and time to deliver over time, from GET /api/analytics.
  function trend(holder, params, span) {
    api("GET", "/api/analytics" + query(params)).then(function (answer) {
      var groups = answer.groups;
      if (!groups.length) { holder.appendChild(h("p.muted", { text: "Nothing sent in this period: no trend to chart." })); return; }
      var labels = groups[0].series.map(function (p) { return params.interval === "hour" ? p.start.slice(11, 13) + "h" : p.start.slice(5, 10); });
      function name(g) { return Object.keys(g.key).length ? Object.keys(g.key).map(function (k) { return g.key[k] || "(none)"; }).join(" ") : "all"; }
      var shown = groups.slice(0, 4);
      holder.appendChild(h("div.grid", {},
        chart("Messages sent, " + span, labels, shown.map(function (g) { return { name: name(g), values: g.series.map(function (p) { return p.sent; }) }; })),
        chart("Delivery rate, " + span, labels, shown.map(function (g) { return { name: name(g), values: g.series.map(function (p) { return p.rates.deliveryRate; }) }; }), { max: 1, format: percent }),
        chart("Failures, " + span, labels, shown.map(function (g) { return { name: name(g), values: g.series.map(function (p) { return p.failed; }) }; })),
        chart("Time to deliver p95 (ms), " + span, labels, shown.map(function (g) { return { name: name(g), values: g.series.map(function (p) { return p.timeToDeliver.p95Ms; }) }; }))));
    }).catch(function (e) { holder.appendChild(errorBox(e)); });
  }

  window.addEventListener("hashchange", route);
  route();
})();
