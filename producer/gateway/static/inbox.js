// The inbox page: lists the user's notifications, shows the unread badge, marks what it shows
// seen and what is opened read, records a followed action, and follows the notification
// stream. Open it as /inbox#token=<user token>, optionally with &base=<the application's URL>
// against which relative action links resolve (the page is framed by that application). The
// fragment is never sent to servers or put in Referer headers, and the page takes it out of the
// address bar and the history at once; the tab's session storage keeps it for a reload.
// Where the browser can take web push and the server has a VAPID key, a button subscribes the
// browser to the push channel through the service worker inbox-sw.js, so that notifications
// reach it while the page is closed, and unsubscribes it again.
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

  // The answer's JSON (null for 204); an error carrying the status for any other than 2xx.
  function send(method, path, body, keepalive) {
    var init = { method: method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // A keepalive request outlives the page: the navigation that follows cannot cancel it.
    // (sendBeacon would too, but cannot carry the Authorization header.)
    if (keepalive) { init.keepalive = true; }
    return fetch(base + path, init).then(function (r) {
      if (!r.ok) {
        var err = new Error(path + " answered " + r.status);
        err.status = r.status;
        throw err;
      }
      return r.status === 204 ? null : r.json();
    });
  }

  // GET path, or POST body to it.
  function api(path, body, keepalive) {
    return send(body === undefined ? "GET" : "POST", path, body, keepalive);
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

  // Browser notifications. The server keeps the browser's push subscription as a device of the
  // user; this browser keeps the device's id by subscription endpoint, to remove it again.
  var DEVICES_KEY = "kai-inbox-push-devices";
  var pushBox = document.getElementById("push");
  var pushToggle = document.getElementById("push-toggle");
  var pushStatus = document.getElementById("push-status");
  // Relative to the page, as its other files: /inbox-sw.js, controlling /inbox. The worker
  // resolves relative links of notifications against the base the page was given, if any.
  var workerScope = "inbox";
  var workerUrl = "inbox-sw.js" + (httpUrl(params.get("base")) ? "?base=" + encodeURIComponent(linkBase) : "");
  var serverKey = null;  // the server's VAPID public key (base64url): the applicationServerKey
  var current = null;  // {subscription, id}: the subscription the server has as device id
  var busy = false;

  var BLOCKED = "Notifications are blocked for this site. Allow them in your browser's site settings, " +
    "then try again.";
  var FRAMED = "Your browser does not let this embedded inbox ask for notifications. Open the inbox " +
    "in a tab of its own to turn them on.";
  var DISMISSED = "Browser notifications stay off: you did not allow them.";
  var NO_PUSH = "Your browser could not sign up for push notifications. Private windows cannot; " +
    "otherwise, try again later.";
  var NOT_SAVED = "The server could not save this browser for notifications. Try again later.";
  var NOT_REMOVED = "Could not turn off browser notifications. Try again later.";

  function knownDevices() {
    try {
      var known = JSON.parse(localStorage.getItem(DEVICES_KEY) || "{}");
      return known && typeof known === "object" ? known : {};
    } catch (e) {
      return {};  // storage off or spoiled: the page offers to enable them again
    }
  }

  function rememberDevice(endpoint, id) {
    var known = knownDevices();
    if (id) { known[endpoint] = id; } else { delete known[endpoint]; }
    try { localStorage.setItem(DEVICES_KEY, JSON.stringify(known)); } catch (e) { /* storage off */ }
  }

  // An error whose message the page shows as it is.
  function plain(message) {
    var err = new Error(message);
    err.plain = true;
    return err;
  }

  function showPush(message, isError) {
    pushToggle.textContent = current ? "Disable browser notifications" : "Enable browser notifications";
    pushStatus.textContent = message || "";
    pushStatus.classList.toggle("error", Boolean(isError));
  }

  // The key as the bytes pushManager.subscribe takes.
  function keyBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes;
  }

  function madeWithServerKey(subscription) {
    var key = subscription.options && subscription.options.applicationServerKey;
    if (!key) { return false; }
    var given = new Uint8Array(key);
    var wanted = keyBytes(serverKey);
    return given.length === wanted.length && given.every(function (b, i) { return b === wanted[i]; });
  }

  // What the user's list of devices calls this one, e.g. "Firefox on Windows".
  function browserLabel() {
    var ua = navigator.userAgent;
    var names = [["Edg/", "Edge"], ["OPR/", "Opera"], ["Firefox/", "Firefox"], ["Chrome/", "Chrome"],
      ["Safari/", "Safari"]];
    var systems = [["Android", "Android"], ["iPhone", "iOS"], ["iPad", "iPadOS"], ["Windows", "Windows"],
      ["Mac OS X", "macOS"], ["CrOS", "ChromeOS"], ["Linux", "Linux"]];
    var name = "A browser";
    var system = "";
    for (var i = 0; i < names.length; i++) { if (ua.indexOf(names[i][0]) >= 0) { name = names[i][1]; break; } }
    for (var j = 0; j < systems.length; j++) { if (ua.indexOf(systems[j][0]) >= 0) { system = systems[j][1]; break; } }
    return system ? name + " on " + system : name;
  }

  // The subscription of this browser and its device id, if the user still has that device.
  function findDevice() {
    return navigator.serviceWorker.getRegistration(workerScope).then(function (registration) {
      return registration ? registration.pushManager.getSubscription() : null;
    }).then(function (subscription) {
      var id = subscription && knownDevices()[subscription.endpoint];
      if (!id) { return null; }
      return api("/api/notifications/devices?limit=200").then(function (page) {
        var kept = page.items.some(function (device) { return device.id === id; });
        return kept ? { subscription: subscription, id: id } : null;
      });
    });
  }

  // The user's answer; asked at once, in the click (older Safari answers through a callback).
  function askPermission() {
    return new Promise(function (resolve) {
      var answer = Notification.requestPermission(resolve);
      if (answer) { answer.then(resolve); }
    });
  }

  // Permission, the service worker, a subscription with the server's key, then the device.
  function enablePush() {
    return askPermission().then(function (permission) {
      if (permission === "denied") { throw plain(framed ? FRAMED : BLOCKED); }
      if (permission !== "granted") { throw plain(DISMISSED); }
      return navigator.serviceWorker.register(workerUrl, { scope: workerScope });
    }).then(function () {
      return navigator.serviceWorker.ready;  // subscribing takes an active worker
    }).then(function (registration) {
      return registration.pushManager.getSubscription().then(function (existing) {
        if (existing && madeWithServerKey(existing)) { return existing; }
        // One made with another key (the server's changed) cannot take this one's pushes.
        return (existing ? existing.unsubscribe() : Promise.resolve()).then(function () {
          var options = { userVisibleOnly: true, applicationServerKey: keyBytes(serverKey) };
          return registration.pushManager.subscribe(options);
        }).catch(function (err) {
          throw plain(err && err.name === "NotAllowedError" ? BLOCKED : NO_PUSH);
        });
      });
    }).then(function (subscription) {
      var body = subscription.toJSON();
      body.label = browserLabel();
      return api("/api/notifications/devices", body).then(function (device) {
        rememberDevice(subscription.endpoint, device.id);
        current = { subscription: subscription, id: device.id };
      }, function () {
        throw plain(NOT_SAVED);
      });
    }).then(function () {
      showPush("Browser notifications are on.");
    });
  }

  // The device first (a device the user has already removed is gone as well), then the
  // browser's subscription.
  function disablePush() {
    var device = current;
    return send("DELETE", "/api/notifications/devices/" + encodeURIComponent(device.id)).catch(function (err) {
      if (err.status !== 404) { throw plain(NOT_REMOVED); }
    }).then(function () {
      rememberDevice(device.subscription.endpoint, null);
      current = null;
      return device.subscription.unsubscribe().catch(function () { /* the device is gone: no pushes come */ });
    }).then(function () {
      showPush("Browser notifications are off.");
    });
  }

  pushToggle.addEventListener("click", function () {
    if (busy) { return; }
    busy = true;
    pushToggle.setAttribute("aria-disabled", "true");
    showPush(current ? "Turning browser notifications off…" : "Turning browser notifications on…");
    (current ? disablePush() : enablePush()).catch(function (err) {
      showPush(err && err.plain ? err.message : NO_PUSH, true);
    }).then(function () {
      busy = false;
      pushToggle.removeAttribute("aria-disabled");
    });
  });

  // The control shows only where the browser takes web push and the server sends it.
  function offerPush() {
    if (!("serviceWorker" in navigator && "PushManager" in window && "Notification" in window)) { return; }
    fetch(base + "/api/push/vapid-public-key").then(function (r) {
      return r.ok ? r.json() : null;
    }).then(function (answer) {
      if (!answer || typeof answer.publicKey !== "string") { return; }  // not configured
      serverKey = answer.publicKey;
      return findDevice().catch(function () { return null; }).then(function (found) {
        current = found;
        showPush("");
        pushBox.hidden = false;
      });
    }).catch(function () { /* no control: the inbox works without it */ });
  }

  if (!token) {
    statusLine.textContent = "open this page as /inbox#token=<user token>";
    return;
  }
  loadPage().then(follow, function (err) { statusLine.textContent = String(err.message || err); });
  offerPush();
})();
