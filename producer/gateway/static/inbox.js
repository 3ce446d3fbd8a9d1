// The inbox page: lists the user's notifications, shows the unread badge, marks what it shows
// seen and what is opened read, records a followed action, and follows the notification
// stream. Open it as /inbox#token=<user token>, optionally with &base=<the application's URL>
// against which relative action links resolve (the page is framed by that application). The
// fragment is never sent to servers or put in Referer headers, and the page takes it out of the
// address bar and the history at once; the tab's session storage keeps it for a reload.
(function () {
  "use strict";
  var KEY = "kai-inbox";
  var params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) {
    try { sessionStorage.setItem(KEY, params.toString()); } catch (e) { /* storage off: no reload */ }
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    try { params = new URLSearchParams(sessionStorage.getItem(KEY) || ""); } catch (e) { /* as above */ }
  }
  var token = params.get("token") || "";
  var base = params.get("api") || "";
  var linkBase = httpUrl(params.get("base")) || location.href;
  var framed = window.top !== window.self;
  var list = document.getElementById("list");
  var badge = document.getElementById("badge");
  var statusLine = document.getElementById("status");
  var more = document.getElementById("more");
  var empty = document.getElementById("empty");
  var shown = new Map();
  var nextCursor = null;

  function api(path, body, keepalive) {
    var init = { headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // A keepalive request outlives the page: the navigation that follows cannot cancel it.
    // (sendBeacon would too, but cannot carry the Authorization header.)
    if (keepalive) { init.keepalive = true; }
    return fetch(base + path, init).then(function (r) {
      if (!r.ok) { throw new Error(path + " answered " + r.status); }
      return r.json();
    });
  }

  function setBadge(count) {
    badge.textContent = String(count);
    badge.dataset.count = String(count);
  }

  // Returns whether the item was added (a replayed notification already shown is not).
  function render(item, atTop) {
    if (shown.has(item.id)) { return false; }
    var li = document.createElement("li");
    li.dataset.id = item.id;
    li.className = item.readAt ? "read" : "unread";
    var kind = document.createElement("span");
    kind.className = "kind " + item.type;
    var body = document.createElement("div");
    body.className = "body";
    var title = document.createElement("div");
    title.className = "title";
    title.textContent = item.title;
    var message = document.createElement("div");
    message.className = "message";
    message.textContent = item.message;
    var time = document.createElement("div");
    time.className = "time";
    time.textContent = new Date(item.createdAt).toLocaleString();
    body.append(title, message, time);
    li.append(kind, body);
    li.tabIndex = 0;  // reachable with Tab, opened with Enter like a link
    li.addEventListener("click", function () { open(item, li); });
    li.addEventListener("keydown", function (event) { if (event.key === "Enter") { open(item, li); } });
    shown.set(item.id, li);
    if (atTop) { list.prepend(li); } else { list.append(li); }
    empty.hidden = shown.size > 0;
    return true;
  }

  // One call for the notifications just put on screen; those seen before are left out.
  function markSeen(items) {
    var ids = items.filter(function (item) { return !item.seenAt; }).map(function (item) { return item.id; });
    if (ids.length === 0) { return; }
    // Best effort: a lost "seen" is reported again the next time the inbox shows it.
    api("/api/notifications/seen", { ids: ids }).then(function () {
      ids.forEach(function (id) {
        var li = shown.get(id);  // gone if a resync emptied the list meanwhile
        if (li) { li.dataset.seen = "true"; }
      });
    }, function () {});
  }

  // The URL if it is an absolute http(s) one (anything else, javascript: above all, is not).
  function httpUrl(raw, against) {
    if (!raw) { return null; }
    try {
      var url = new URL(raw, against);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function open(item, li) {
    var link = item.actionUrl ? httpUrl(item.actionUrl, linkBase) : null;
    // Framed, the action belongs to the application around the page, not to the frame.
    var follow = function () {
      if (link && framed) { window.open(link, "_top"); } else if (link) { location.assign(link); }
    };
    if (link) { api("/api/notifications/clicked", { ids: [item.id] }, true).catch(function () {}); }
    if (li.classList.contains("read")) { follow(); return; }
    api("/api/notifications/mark-as-read", { ids: [item.id] }).then(function (answer) {
      li.className = "read";
      setBadge(answer.unreadCount);
      follow();
    });
  }

  function loadPage() {
    var path = "/api/notifications?limit=20" + (nextCursor ? "&cursor=" + encodeURIComponent(nextCursor) : "");
    return api(path).then(function (page) {
      markSeen(page.items.filter(function (item) { return render(item, false); }));
      nextCursor = page.nextCursor;
      more.hidden = !nextCursor;
      empty.hidden = shown.size > 0;
    });
  }

  function follow() {
    var source = new EventSource(base + "/api/notifications/stream?access_token=" + encodeURIComponent(token));
    source.onopen = function () { statusLine.textContent = "live"; };
    source.onerror = function () { statusLine.textContent = "reconnecting…"; };
    source.addEventListener("notification", function (e) {
      var item = JSON.parse(e.data);
      if (render(item, true)) { markSeen([item]); }
    });
    source.addEventListener("unread-count", function (e) { setBadge(JSON.parse(e.data).count); });
    source.addEventListener("resync", function () {
      list.replaceChildren();
      shown.clear();
      nextCursor = null;
      loadPage();
    });
  }

  document.getElementById("mark-all").addEventListener("click", function () {
    api("/api/notifications/mark-all-as-read", {}).then(function (answer) {
      shown.forEach(function (li) { li.className = "read"; });
      setBadge(answer.unreadCount);
    });
  });
  more.addEventListener("click", loadPage);

  if (!token) {
    statusLine.textContent = "open this page as /inbox#token=<user token>";
    return;
  }
  loadPage().then(follow, function (err) { statusLine.textContent = String(err.message || err); });
})();
