// The inbox's service worker: shows the notifications of the push channel while no inbox page
// is open, and opens what a notification links to when it is clicked. The inbox page registers
// it with the scope of the page, as inbox-sw.js, or as inbox-sw.js?base=<the application's URL>
// when the page was given one: relative links of a notification resolve against it, as the
// page's action links do. It handles no fetch: the pages of its scope load from the network.
"use strict";

// What the page was opened from: relative links of a notification lead there.
var linkBase = httpUrl(new URL(self.location.href).searchParams.get("base")) || self.registration.scope;

// The URL if it is an absolute http(s) one, or a relative one resolved against ``against``
// (anything else, javascript: above all, is not).
function httpUrl(raw, against) {
  if (!raw || typeof raw !== "string") { return null; }
  try {
    var url = new URL(raw, against);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (e) {
    return null;
  }
}

function text(value) {
  return typeof value === "string" ? value : "";
}

// A new version of this script takes over at once: it keeps no state a page depends on.
self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (event) { event.waitUntil(self.clients.claim()); });

// The payload is the JSON the push worker sends: {title, body, url, icon, data, tag}. Every push
// shows a notification (the subscription promised it: userVisibleOnly).
self.addEventListener("push", function (event) {
  var message = {};
  if (event.data) {
    try {
      message = event.data.json();
    } catch (e) {
      message = { body: event.data.text() };
    }
  }
  if (!message || typeof message !== "object") { message = {}; }
  var options = { body: text(message.body), data: { url: httpUrl(message.url, linkBase) } };
  var icon = httpUrl(message.icon, linkBase);
  if (icon) { options.icon = icon; }
  if (text(message.tag)) { options.tag = message.tag; }
  event.waitUntil(self.registration.showNotification(text(message.title) || "New notification", options));
});

// Where the same page is open already, focus it; otherwise open a new window.
function focusOrOpen(windows, url) {
  for (var i = 0; i < windows.length; i++) {
    if (windows[i].url.split("#")[0] === url && "focus" in windows[i]) { return windows[i].focus(); }
  }
  return self.clients.openWindow(url);
}

// A notification with a link opens it; one without shows the inbox (an open one, if any).
self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var data = event.notification.data || {};
  var target = httpUrl(data.url) || self.registration.scope;
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
      return focusOrOpen(windows, target);
    })
  );
});
