// <kai-inbox>: the inbox as a custom element for a product's own pages, served by the gateway as
// /inbox/widget.js. It calls the gateway cross-origin (the product's origin must be in the
// gateway's CORS_ALLOWED_ORIGINS) with a user token the product mints, and fetches nothing else.
//
//   <script src="https://notify.example.com/inbox/widget.js" defer></script>
//   <kai-inbox></kai-inbox>   then, from the product's script: element.token = "<user token>"
//
// Attributes: gateway (default: the origin this script came from), token (also a property, so
// it need not appear in the markup), base-url (what relative action links resolve against;
// default: the page's address), theme="light|dark" (default: the reader's preference). Colours
// come from --kai-inbox-* custom properties (see STYLE); everything else is in a shadow root.
// When the gateway refuses the token (it expired), the element fires "tokenexpired": the
// product's script mints another and sets element.token, and the feed starts again.
(function () {
  "use strict";
  if (!window.customElements || window.customElements.get("kai-inbox")) { return; }

  var script = document.currentScript;
  var SCRIPT_ORIGIN = script && script.src ? new URL(script.src).origin : location.origin;
  var PAGE_SIZE = 20;
  // Relative times ("5 minutes ago") are redrawn this often while the feed is open.
  var CLOCK_MS = 30000;
  var UNITS = [
    ["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
    ["hour", 3600], ["minute", 60],
  ];

  var STYLE = [
    ":host { display: inline-block; position: relative; font: 14px/1.4 system-ui, sans-serif;",
    "  --_accent: var(--kai-inbox-accent, #2457c5); --_on-accent: var(--kai-inbox-on-accent, #fff);",
    "  --_bg: var(--kai-inbox-bg, #fff); --_fg: var(--kai-inbox-fg, #1d2330);",
    "  --_muted: var(--kai-inbox-muted, #596170); --_unread: var(--kai-inbox-unread-bg, #eef4ff);",
    "  --_border: var(--kai-inbox-border, #d5dae1); --_badge: var(--kai-inbox-badge, #c62828);",
    "  --_radius: var(--kai-inbox-radius, 8px); --_width: var(--kai-inbox-width, 22rem); }",
    ":host([theme=dark]) { --_accent: var(--kai-inbox-accent, #9cc0ff); --_on-accent: var(--kai-inbox-on-accent, #0b1020);",
    "  --_bg: var(--kai-inbox-bg, #1b1f27); --_fg: var(--kai-inbox-fg, #e8ebf0); --_muted: var(--kai-inbox-muted, #aab2bf);",
    "  --_unread: var(--kai-inbox-unread-bg, #243049); --_border: var(--kai-inbox-border, #3a4150);",
    "  --_badge: var(--kai-inbox-badge, #ff8a80); }",
    "@media (prefers-color-scheme: dark) { :host(:not([theme=light])) {",
    "  --_accent: var(--kai-inbox-accent, #9cc0ff); --_on-accent: var(--kai-inbox-on-accent, #0b1020);",
    "  --_bg: var(--kai-inbox-bg, #1b1f27); --_fg: var(--kai-inbox-fg, #e8ebf0); --_muted: var(--kai-inbox-muted, #aab2bf);",
    "  --_unread: var(--kai-inbox-unread-bg, #243049); --_border: var(--kai-inbox-border, #3a4150);",
    "  --_badge: var(--kai-inbox-badge, #ff8a80); } }",
    "[hidden] { display: none !important; }",
    "button { font: inherit; color: inherit; cursor: pointer; }",
    ":focus-visible { outline: 2px solid var(--_accent); outline-offset: 2px; }",
    ".bell { position: relative; display: inline-flex; align-items: center; justify-content: center;",
    "  width: 2.5rem; height: 2.5rem; border: 1px solid var(--_border); border-radius: 50%;",
    "  background: var(--_bg); color: var(--_fg); padding: 0; }",
    ".bell svg { width: 1.25rem; height: 1.25rem; fill: currentColor; }",
    ".badge { position: absolute; top: -.3rem; right: -.3rem; min-width: 1.2rem; padding: 0 .3rem;",
    "  border-radius: 1rem; background: var(--_badge); color: var(--_bg); font-size: .75rem; font-weight: 700;",
    "  line-height: 1.2rem; text-align: center; box-sizing: border-box; }",
    ".panel { position: absolute; right: 0; top: calc(100% + .4rem); z-index: 2147483000;",
    "  width: min(var(--_width), 92vw); max-height: 28rem; display: flex; flex-direction: column;",
    "  background: var(--_bg); color: var(--_fg); border: 1px solid var(--_border);",
    "  border-radius: var(--_radius); box-shadow: 0 8px 24px rgba(0,0,0,.18); overflow: hidden; }",
    ".panel.start { left: 0; right: auto; }",
    ".panel:focus { outline: none; }",
    ".head { display: flex; align-items: center; gap: .5rem; padding: .6rem .8rem; border-bottom: 1px solid var(--_border); }",
    "h2 { flex: 1; margin: 0; font-size: 1rem; }",
    ".link { background: none; border: 0; padding: .2rem .3rem; color: var(--_accent); font-size: .85rem; }",
    ".scroll { overflow-y: auto; flex: 1; }",
    "ul { list-style: none; margin: 0; padding: 0; }",
    "li { display: flex; gap: .6rem; padding: .6rem .8rem; border-bottom: 1px solid var(--_border); }",
    "li.unread { background: var(--_unread); }",
    "li.unread .title { font-weight: 700; }",
    ".dot { flex: none; width: .5rem; height: .5rem; margin-top: .45rem; border-radius: 50%; background: transparent; }",
    "li.unread .dot { background: var(--_accent); }",
    ".body { flex: 1; min-width: 0; }",
    ".title { display: block; color: inherit; overflow-wrap: anywhere; }",
    "a.title { text-decoration: underline; text-decoration-color: var(--_border); }",
    ".message { margin: .1rem 0; overflow-wrap: anywhere; }",
    "time, .note { font-size: .8rem; color: var(--_muted); }",
    ".actions { display: flex; gap: .25rem; margin-top: .3rem; }",
    ".actions button { background: none; border: 1px solid var(--_border); border-radius: 4px; padding: .1rem .4rem; font-size: .8rem; }",
    ".state { padding: 1.5rem .8rem; text-align: center; }",
    ".more { display: block; width: 100%; padding: .5rem; border: 0; border-top: 1px solid var(--_border);",
    "  background: var(--_bg); color: var(--_accent); }",
    ".retry { margin-top: .5rem; background: var(--_accent); color: var(--_on-accent); border: 0; border-radius: 4px; padding: .3rem .8rem; }",
    ".sr { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }",
  ].join("\n");

  // A constructed sheet is not subject to the host page's style-src; a <style> element is the
  // fallback for browsers without one.
  var sheet = null;
  try {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLE);
  } catch (e) {
    sheet = null;
  }

  var BELL = "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66" +
    "A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2z";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // The URL if it resolves to an http(s) one: a javascript: or data: action never runs.
  function httpUrl(raw, against) {
    try {
      var url = new URL(raw, against);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  class KaiInbox extends HTMLElement {
    static get observedAttributes() { return ["token", "gateway"]; }

    constructor() {
      super();
      this._token = null;
      this._source = null;
      this._generation = 0;
      this._items = new Map();
      this._cursor = null;
      this._unread = 0;
      this._clock = null;
      this._build(this.attachShadow({ mode: "open" }));
    }

    get token() { return this._token !== null ? this._token : this.getAttribute("token") || ""; }
    set token(value) {
      this._token = value ? String(value) : null;
      this._restart();
    }

    get gateway() { return (this.getAttribute("gateway") || SCRIPT_ORIGIN).replace(/\/+$/, ""); }
    get baseUrl() { return this.getAttribute("base-url") || location.href; }

    connectedCallback() {
      this._onOutside = this._onOutside || this._closeIfOutside.bind(this);
      document.addEventListener("click", this._onOutside);
      this._restart();
    }

    disconnectedCallback() {
      document.removeEventListener("click", this._onOutside);
      this._stop();
    }

    attributeChangedCallback() { this._restart(); }

    _build(root) {
      if (sheet) { root.adoptedStyleSheets = [sheet]; } else { root.append(el("style", "", STYLE)); }
      var bell = this._bell = el("button", "bell");
      bell.type = "button";
      bell.setAttribute("aria-haspopup", "dialog");
      bell.setAttribute("aria-expanded", "false");
      bell.setAttribute("aria-controls", "panel");
      var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 24 24");
      svg.setAttribute("aria-hidden", "true");
      svg.setAttribute("focusable", "false");
      var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", BELL);
      svg.append(path);
      this._badge = el("span", "badge");
      this._badge.setAttribute("aria-hidden", "true");
      this._badge.hidden = true;
      bell.append(svg, this._badge);

      var panel = this._panel = el("div", "panel");
      panel.id = "panel";
      panel.hidden = true;
      panel.tabIndex = -1;
      panel.setAttribute("role", "dialog");
      panel.setAttribute("aria-labelledby", "heading");
      var head = el("div", "head");
      var heading = el("h2", "", "Notifications");
      heading.id = "heading";
      this._markAll = el("button", "link", "Mark all read");
      this._markAll.type = "button";
      head.append(heading, this._markAll);
      var scroll = el("div", "scroll");
      this._list = el("ul");
      this._list.setAttribute("aria-labelledby", "heading");
      this._empty = el("p", "state note", "You're all caught up.");
      this._empty.hidden = true;
      this._error = el("div", "state");
      this._error.setAttribute("role", "alert");
      this._error.hidden = true;
      this._errorText = el("p", "note");
      var retry = el("button", "retry", "Try again");
      retry.type = "button";
      this._error.append(this._errorText, retry);
      this._more = el("button", "more", "Load more");
      this._more.type = "button";
      this._more.hidden = true;
      scroll.append(this._list, this._empty, this._error, this._more);
      panel.append(head, scroll);
      this._live = el("div", "sr");
      this._live.setAttribute("role", "status");
      this._live.setAttribute("aria-live", "polite");
      root.append(bell, panel, this._live);

      var self = this;
      bell.addEventListener("click", function () { self._toggle(); });
      this._markAll.addEventListener("click", function () { self._markAllRead(); });
      this._more.addEventListener("click", function () { self._loadPage(); });
      retry.addEventListener("click", function () { self._restart(); });
      root.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && !panel.hidden) {
          event.stopPropagation();
          self._close(true);
        }
      });
      this._setUnread(0);
    }

    // --- the gateway ------------------------------------------------------------------------

    _api(path, body, keepalive) {
      var init = { headers: { Authorization: "Bearer " + this.token }, credentials: "omit" };
      if (body !== undefined) {
        init.method = "POST";
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      // A keepalive request outlives the page, so following an action cannot cancel it.
      if (keepalive) { init.keepalive = true; }
      var self = this, token = this.token;
      return fetch(this.gateway + path, init).then(function (r) {
        if (r.status === 401) { self._expired(token); }
        if (!r.ok) { throw new Error(r.status === 401 ? "Your session has expired." : "The inbox answered " + r.status + "."); }
        return r.json();
      }, function () {
        // Offline, or a gateway that does not allow this page's origin (CORS_ALLOWED_ORIGINS).
        throw new Error("The inbox could not be reached.");
      });
    }

    // The gateway refused the token: tell the host page once per token, so that it can mint
    // another and set it (element.token = …), which starts the feed again.
    _expired(token) {
      if (this._expiredToken === token) { return; }
      this._expiredToken = token;
      this.dispatchEvent(new CustomEvent("tokenexpired", { bubbles: true, composed: true }));
    }

    _restart() {
      if (this._pending) { return; }
      var self = this;
      // Attributes and the token property are often set one after another: start once.
      this._pending = true;
      queueMicrotask(function () {
        self._pending = false;
        self._stop();
        if (self.isConnected) { self._start(); }
      });
    }

    _stop() {
      this._generation += 1;
      if (this._source) { this._source.close(); this._source = null; }
      this._items.clear();
      this._list.replaceChildren();
      this._cursor = null;
      this._more.hidden = true;
      this._empty.hidden = true;
      this._error.hidden = true;
    }

    _start() {
      if (!this.token) {
        this._fail("Sign in to see your notifications.");
        return;
      }
      var self = this;
      var generation = this._generation;
      this._api("/api/notifications/unread-count").then(function (answer) {
        if (generation !== self._generation) { return; }
        self._setUnread(answer.count);
        return self._loadPage().then(function () { if (generation === self._generation) { self._follow(); } });
      }).catch(function (err) {
        if (generation === self._generation) { self._fail(err.message); }
      });
    }

    _fail(message) {
      this._errorText.textContent = message || "Notifications could not be loaded.";
      this._error.hidden = false;
      this._empty.hidden = true;
      this._bell.dataset.state = "error";
    }

    _loadPage() {
      var self = this;
      var generation = this._generation;
      var path = "/api/notifications?limit=" + PAGE_SIZE + (this._cursor ? "&cursor=" + encodeURIComponent(this._cursor) : "");
      return this._api(path).then(function (page) {
        if (generation !== self._generation) { return; }
        var added = page.items.filter(function (item) { return self._render(item, false); });
        self._cursor = page.nextCursor;
        self._more.hidden = !self._cursor;
        self._error.hidden = true;
        self._updateEmpty();
        if (!self._panel.hidden) { self._markSeen(added); }
      }, function (err) {
        if (generation === self._generation) { self._fail(err.message); }
      });
    }

    _follow() {
      var self = this;
      var source = this._source = new EventSource(
        this.gateway + "/api/notifications/stream?access_token=" + encodeURIComponent(this.token)
      );
      source.onopen = function () { self._bell.dataset.state = "live"; };
      source.onerror = function () { self._bell.dataset.state = "reconnecting"; };
      source.addEventListener("notification", function (event) {
        var item = JSON.parse(event.data);
        if (!self._render(item, true)) { return; }
        self._updateEmpty();
        self._live.textContent = "New notification: " + item.title;
        if (!self._panel.hidden) { self._markSeen([item]); }
      });
      source.addEventListener("unread-count", function (event) { self._setUnread(JSON.parse(event.data).count); });
      source.addEventListener("resync", function () {
        self._items.clear();
        self._list.replaceChildren();
        self._cursor = null;
        self._loadPage();
      });
    }

    // One call for what has just been shown; what was seen before is left out. Best effort: a
    // lost "seen" is recorded the next time the feed shows the notification.
    _markSeen(items) {
      var ids = items.filter(function (item) { return !item.seenAt; }).map(function (item) { return item.id; });
      if (ids.length === 0) { return; }
      var self = this;
      this._api("/api/notifications/seen", { ids: ids }).then(function () {
        ids.forEach(function (id) {
          var entry = self._items.get(id);
          if (entry) { entry.item.seenAt = entry.item.seenAt || new Date().toISOString(); entry.li.dataset.seen = "true"; }
        });
      }, function () {});
    }

    // --- what is shown ----------------------------------------------------------------------

    _setUnread(count) {
      this._unread = count;
      this._badge.textContent = count > 99 ? "99+" : String(count);
      this._badge.hidden = count === 0;
      this._bell.dataset.count = String(count);
      this._bell.setAttribute("aria-label", count === 0 ? "Notifications, none unread" : "Notifications, " + count + " unread");
      this._markAll.disabled = count === 0;
    }

    _updateEmpty() {
      this._empty.hidden = this._items.size > 0 || !this._error.hidden;
    }

    _formatter() {
      var lang = (this.closest("[lang]") || document.documentElement).getAttribute("lang") || undefined;
      try {
        return new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
      } catch (e) {
        return new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
      }
    }

    _relative(format, iso) {
      var seconds = (new Date(iso).getTime() - Date.now()) / 1000;
      for (var i = 0; i < UNITS.length; i++) {
        if (Math.abs(seconds) >= UNITS[i][1]) { return format.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]); }
      }
      return format.format(0, "second");
    }

    _tick() {
      var format = this._formatter();
      var self = this;
      this._list.querySelectorAll("time").forEach(function (time) {
        time.textContent = self._relative(format, time.dateTime);
      });
    }

    // Returns whether the item was added (a replayed notification already shown is not).
    _render(item, atTop) {
      if (this._items.has(item.id)) { return false; }
      var self = this;
      var li = el("li", item.readAt ? "read" : "unread");
      li.dataset.id = item.id;
      var dot = el("span", "dot");
      dot.setAttribute("aria-hidden", "true");
      var body = el("div", "body");
      var link = item.actionUrl ? httpUrl(item.actionUrl, this.baseUrl) : null;
      var title = el(link ? "a" : "span", "title", item.title);
      if (link) {
        title.href = link;
        title.addEventListener("click", function (event) { self._open(event, item, li, link); });
      }
      var time = el("time", "", this._relative(this._formatter(), item.createdAt));
      time.dateTime = item.createdAt;
      time.title = new Date(item.createdAt).toLocaleString();
      var actions = el("div", "actions");
      var toggle = el("button", "toggle");
      toggle.type = "button";
      var remove = el("button", "delete", "Delete");
      remove.type = "button";
      remove.setAttribute("aria-label", "Delete: " + item.title);
      actions.append(toggle, remove);
      body.append(title, el("p", "message", item.message), time, actions);
      li.append(dot, body);
      toggle.addEventListener("click", function () { self._toggleRead(item, li, toggle); });
      remove.addEventListener("click", function () { self._delete(item, li); });
      this._showRead(li, toggle, item, Boolean(item.readAt));
      this._items.set(item.id, { item: item, li: li });
      if (atTop) { this._list.prepend(li); } else { this._list.append(li); }
      return true;
    }

    _showRead(li, toggle, item, read) {
      li.className = read ? "read" : "unread";
      toggle.textContent = read ? "Mark unread" : "Mark read";
      toggle.setAttribute("aria-label", toggle.textContent + ": " + item.title);
    }

    // --- what the user does -----------------------------------------------------------------

    _toggle() {
      if (this._panel.hidden) { this._openPanel(); } else { this._close(false); }
    }

    _openPanel() {
      var self = this;
      this._panel.hidden = false;
      // Opens towards the side of the page that has room for it.
      this._panel.classList.toggle("start", this.getBoundingClientRect().right < this._panel.offsetWidth);
      this._bell.setAttribute("aria-expanded", "true");
      this._panel.focus();
      this._tick();
      this._clock = setInterval(function () { self._tick(); }, CLOCK_MS);
      this._markSeen(Array.from(this._items.values(), function (entry) { return entry.item; }));
    }

    _close(refocus) {
      this._panel.hidden = true;
      this._bell.setAttribute("aria-expanded", "false");
      clearInterval(this._clock);
      if (refocus) { this._bell.focus(); }
    }

    _closeIfOutside(event) {
      if (!this._panel.hidden && event.composedPath().indexOf(this) === -1) { this._close(false); }
    }

    _open(event, item, li, link) {
      // A click that opens a new tab or window leaves this page where it is.
      var elsewhere = event.ctrlKey || event.metaKey || event.shiftKey || event.button === 1;
      if (!elsewhere) { event.preventDefault(); }
      this._api("/api/notifications/clicked", { ids: [item.id] }, true).catch(function () {});
      if (!item.readAt) {
        item.readAt = new Date().toISOString();
        this._api("/api/notifications/mark-as-read", { ids: [item.id] }, true).catch(function () {});
      }
      if (!elsewhere) { location.assign(link); }
    }

    _toggleRead(item, li, toggle) {
      var self = this;
      var read = !item.readAt;
      var path = read ? "/api/notifications/mark-as-read" : "/api/notifications/mark-as-unread";
      this._api(path, { ids: [item.id] }).then(function (answer) {
        item.readAt = read ? new Date().toISOString() : null;
        self._showRead(li, toggle, item, read);
        self._setUnread(answer.unreadCount);
      }, function () { self._live.textContent = "That did not work; try again."; });
    }

    _markAllRead() {
      var self = this;
      this._api("/api/notifications/mark-all-as-read", {}).then(function (answer) {
        self._items.forEach(function (entry) {
          entry.item.readAt = entry.item.readAt || new Date().toISOString();
          self._showRead(entry.li, entry.li.querySelector(".toggle"), entry.item, true);
        });
        self._setUnread(answer.unreadCount);
      }, function () { self._live.textContent = "That did not work; try again."; });
    }

    _delete(item, li) {
      var self = this;
      this._api("/api/notifications/delete", { ids: [item.id] }).then(function (answer) {
        // Focus must not fall back to the page: it goes to the next item, or the panel.
        var next = li.nextElementSibling || li.previousElementSibling;
        li.remove();
        self._items.delete(item.id);
        self._setUnread(answer.unreadCount);
        self._updateEmpty();
        if (next) { next.querySelector(".toggle").focus(); } else { self._panel.focus(); }
      }, function () { self._live.textContent = "That did not work; try again."; });
    }
  }

  window.customElements.define("kai-inbox", KaiInbox);
})();
