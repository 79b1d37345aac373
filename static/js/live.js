/* Live updates over the authenticated `ws/live/` websocket.
 *
 *   const sub = Live.subscribe(["vms", "pool:3"], (topic, event) => { ... });
 *   sub.close();   // stop receiving
 *
 * One shared socket per page; it reconnects with exponential backoff (1 s .. 30 s) and
 * re-subscribes. The header's connection indicator ([data-live-state]) shows the state:
 * idle, connecting, live, reconnecting, denied. Close codes 4401 (signed out) and 4403
 * (no role) are final: no reconnect.
 */
(function () {
  "use strict";
  const listeners = new Map();   // topic -> Set of callbacks
  const stateListeners = new Set();
  let socket = null;
  let state = "idle";
  let attempt = 0;
  let retryTimer = null;
  let stopped = false;

  function setState(next, detail) {
    state = next;
    document.querySelectorAll("[data-live-state]").forEach((el) => {
      el.dataset.liveState = next;
      const label = el.querySelector(".live-label");
      const text = {
        idle: "Live: idle", connecting: "Connecting…", live: "Live",
        reconnecting: "Reconnecting…", denied: "Live updates unavailable",
      }[next] || next;
      if (label) label.textContent = text;
      el.title = detail || text;
    });
    stateListeners.forEach((fn) => { try { fn(next); } catch (e) { console.error(e); } });
  }

  function url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws/live/";
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function connect() {
    if (stopped || socket) return;
    setState(attempt ? "reconnecting" : "connecting");
    const ws = new WebSocket(url());
    socket = ws;
    ws.onopen = () => {
      attempt = 0;
      setState("live");
      const topics = Array.from(listeners.keys());
      if (topics.length) send({ subscribe: topics });
    };
    ws.onmessage = (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch (e) { return; }
      if (data.subscribed) return;
      if (data.error) { console.warn("live:", data.error, data.topic || ""); return; }
      const callbacks = listeners.get(data.topic);
      if (!callbacks) return;
      callbacks.forEach((fn) => { try { fn(data.topic, data.event); } catch (e) { console.error(e); } });
    };
    ws.onclose = (event) => {
      socket = null;
      if (event.code === 4401 || event.code === 4403) {
        stopped = true;
        setState("denied", event.code === 4401 ? "Signed out: reload the page to sign in" : "Your account has no role");
        return;
      }
      if (stopped) { setState("idle"); return; }
      attempt += 1;
      const delay = Math.min(30000, 1000 * Math.pow(2, attempt - 1)) * (0.75 + Math.random() * 0.5);
      setState("reconnecting", "Connection lost; retrying in " + Math.round(delay / 1000) + " s");
      retryTimer = window.setTimeout(() => { retryTimer = null; connect(); }, delay);
    };
  }

  function subscribe(topics, onEvent) {
    const list = Array.isArray(topics) ? topics : [topics];
    const added = [];
    list.forEach((topic) => {
      if (!listeners.has(topic)) { listeners.set(topic, new Set()); added.push(topic); }
      listeners.get(topic).add(onEvent);
    });
    if (!socket) connect();
    else if (added.length) send({ subscribe: added });
    return {
      close() {
        const removed = [];
        list.forEach((topic) => {
          const set = listeners.get(topic);
          if (!set) return;
          set.delete(onEvent);
          if (!set.size) { listeners.delete(topic); removed.push(topic); }
        });
        if (removed.length) send({ unsubscribe: removed });
      },
    };
  }

  // Connect on every page: the header shows whether live updates work before any page
  // subscribes to something.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();

  window.Live = {
    subscribe,
    get state() { return state; },
    onStateChange(fn) { stateListeners.add(fn); return () => stateListeners.delete(fn); },
  };
  window.addEventListener("beforeunload", () => { stopped = true; if (retryTimer) clearTimeout(retryTimer); });
})();
