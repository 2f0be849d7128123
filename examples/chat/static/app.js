// The chat page: one WebSocket to /ws, JSON messages with a "type" (see app.py).
// Reconnects by itself after a drop and asks for what it missed with the last seq.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const STORE_KEY = "nexios-chat";
  const TYPING_EVERY_MS = 1500; // send "typing" at most this often
  const TYPING_SHOW_MS = 3000; // show someone as typing this long after their last event
  const ERROR_SHOW_MS = 8000;
  const RECONNECT_MAX_MS = 5000;

  const state = {
    ws: null,
    name: "",
    room: "",
    id: null, // our channel id in the room
    wanted: false, // the user wants to be in a room (reconnect when dropped)
    joined: false,
    synced: false, // we have the room's messages: on reconnect, ask only for what we missed
    hold: false, // dropSocket({hold: true}): do not reconnect until reconnectNow()
    lastSeq: 0,
    seen: new Set(), // seq of every message shown
    members: new Map(), // channel id -> name
    typing: new Map(), // channel id -> {name, timer}
    retries: 0,
    reconnects: 0,
    retryTimer: null,
    lastTypingSent: 0,
    errorTimer: null,
  };

  // ------------------------------------------------------------------ connection

  // A reconnect joins in the URL and says what it saw last: /ws?name=..&room=..&since=N.
  // The first join is a message instead, so that a refused name or room can be retried.
  function wsURL() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${scheme}//${location.host}/ws`;
    if (state.synced) {
      const query = new URLSearchParams({ name: state.name, room: state.room });
      query.set("since", String(state.lastSeq));
      url += `?${query}`;
    }
    return url;
  }

  function setStatus(value) {
    const status = $("status");
    status.textContent = value;
    status.dataset.state = value;
    status.className = `status ${value}`;
  }

  function connect() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    const ws = new WebSocket(wsURL());
    state.ws = ws;
    setStatus("connecting");
    ws.onopen = () => {
      if (ws !== state.ws) return;
      state.retries = 0;
      setStatus("connected"); // "online" once the server confirms the join
      if (!state.synced) sendJoin();
    };
    ws.onmessage = (event) => {
      if (ws !== state.ws) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        showError("The server sent a message that is not JSON.");
        return;
      }
      handle(data);
    };
    ws.onclose = () => {
      if (ws !== state.ws) return;
      state.ws = null;
      state.joined = false;
      clearTyping();
      if (state.wanted && !state.hold) {
        setStatus("reconnecting");
        scheduleReconnect();
      } else {
        setStatus("offline");
      }
    };
  }

  function scheduleReconnect() {
    const delay = Math.min(RECONNECT_MAX_MS, 250 * 2 ** state.retries) + Math.random() * 250;
    state.retries += 1;
    state.retryTimer = setTimeout(() => {
      state.reconnects += 1;
      connect();
    }, delay);
  }

  function send(payload) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      showError("Not connected: reconnecting, try again in a moment.");
      return false;
    }
    state.ws.send(JSON.stringify(payload));
    return true;
  }

  function sendJoin() {
    send({ type: "join", name: state.name, room: state.room });
  }

  // ------------------------------------------------------------------ server messages

  function handle(data) {
    switch (data.type) {
      case "joined":
        onJoined(data);
        break;
      case "recovered":
        catchUp(data, true);
        break;
      case "message":
        addMessage(data);
        stopTyping(data.id);
        break;
      case "typing":
        if (data.id !== state.id) showTyping(data.id, data.name);
        break;
      case "presence":
        onPresence(data);
        break;
      case "error":
        showError(data.message, data.field);
        break;
      case "pong":
        break;
      default:
        console.warn("unknown message from the server", data);
    }
  }

  function onJoined(data) {
    const reconnecting = state.synced;
    state.joined = true;
    state.id = data.id;
    state.name = data.name;
    state.room = data.room;
    sessionStorage.setItem(STORE_KEY, JSON.stringify({ name: data.name, room: data.room }));
    state.members = new Map(data.members.map((m) => [m.id, m.name]));
    renderMembers();
    $("room-title").textContent = `#${data.room}`;
    $("login").hidden = true;
    $("chat").hidden = false;
    $("join-error").hidden = true;
    setStatus("online");
    catchUp(data, reconnecting);
    state.synced = true;
    $("text").focus();
  }

  function catchUp(data, reconnecting) {
    if (data.replace) {
      replaceMessages(data.messages, data.last_seq);
    } else {
      data.messages.forEach(addMessage);
    }
    if (!data.complete) {
      showNotice("Some messages could not be recovered; showing the latest 50.");
    } else if (reconnecting) {
      const n = data.messages.length;
      if (n === 0) addSystem("Reconnected: nothing was missed.");
      else addSystem(`Reconnected: ${n} missed message${n === 1 ? "" : "s"} recovered.`);
    }
  }

  function onPresence(data) {
    const { id, name } = data.member;
    if (data.event === "join") {
      state.members.set(id, name);
      addSystem(`${name} joined`);
    } else if (state.members.delete(id)) {
      stopTyping(id);
      addSystem(`${name} left`);
    }
    renderMembers();
  }

  // ------------------------------------------------------------------ messages

  function messageItem(m) {
    const li = document.createElement("li");
    li.className = m.id === state.id ? "msg mine" : "msg";
    li.dataset.seq = String(m.seq);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.name;
    const when = document.createElement("time");
    const date = new Date(m.ts * 1000);
    when.dateTime = date.toISOString();
    when.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = m.text;
    li.append(who, when, text);
    return li;
  }

  // Messages are kept in seq order and shown once, however they arrive (live, history,
  // recovery may overlap around a join).
  function addMessage(m) {
    if (state.seen.has(m.seq)) return;
    state.seen.add(m.seq);
    state.lastSeq = Math.max(state.lastSeq, m.seq);
    const list = $("messages");
    const items = list.querySelectorAll("li.msg");
    let before = null;
    for (let i = items.length - 1; i >= 0 && Number(items[i].dataset.seq) > m.seq; i -= 1) {
      before = items[i];
    }
    list.insertBefore(messageItem(m), before);
    scrollDown();
  }

  function replaceMessages(messages, lastSeq) {
    const list = $("messages");
    // Live messages newer than the snapshot may have arrived before it: keep them.
    const newer = [];
    list.querySelectorAll("li.msg").forEach((li) => {
      if (Number(li.dataset.seq) > lastSeq) newer.push(li);
      li.remove();
    });
    state.seen = new Set(newer.map((li) => Number(li.dataset.seq)));
    state.lastSeq = lastSeq;
    const fragment = document.createDocumentFragment();
    for (const m of messages) {
      state.seen.add(m.seq);
      fragment.append(messageItem(m));
    }
    list.insertBefore(fragment, list.firstChild);
    for (const li of newer) {
      list.append(li);
      state.lastSeq = Math.max(state.lastSeq, Number(li.dataset.seq));
    }
    scrollDown();
  }

  function addSystem(text) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = text;
    $("messages").append(li);
    scrollDown();
  }

  function scrollDown() {
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }

  function renderMembers() {
    const list = $("online");
    list.replaceChildren();
    const members = [...state.members.entries()].sort((a, b) => a[1].localeCompare(b[1]));
    for (const [id, name] of members) {
      const li = document.createElement("li");
      li.textContent = id === state.id ? `${name} (you)` : name;
      li.dataset.id = id;
      list.append(li);
    }
    $("online-count").textContent = String(state.members.size);
  }

  // ------------------------------------------------------------------ typing

  function showTyping(id, name) {
    const current = state.typing.get(id);
    if (current) clearTimeout(current.timer);
    state.typing.set(id, { name, timer: setTimeout(() => stopTyping(id), TYPING_SHOW_MS) });
    renderTyping();
  }

  function stopTyping(id) {
    const current = state.typing.get(id);
    if (!current) return;
    clearTimeout(current.timer);
    state.typing.delete(id);
    renderTyping();
  }

  function clearTyping() {
    for (const id of [...state.typing.keys()]) stopTyping(id);
  }

  function renderTyping() {
    const names = [...state.typing.values()].map((t) => t.name);
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length > 1) text = `${names.join(", ")} are typing…`;
    $("typing").textContent = text;
  }

  // ------------------------------------------------------------------ errors & notices

  function showError(message, field) {
    const loginVisible = !$("login").hidden;
    const target = loginVisible ? $("join-error") : $("error");
    target.textContent = message;
    target.hidden = false;
    if (loginVisible && field) {
      const input = $(field);
      if (input) input.setAttribute("aria-invalid", "true");
    }
    if (!loginVisible) {
      clearTimeout(state.errorTimer);
      state.errorTimer = setTimeout(() => {
        target.hidden = true;
      }, ERROR_SHOW_MS);
    }
  }

  function showNotice(message) {
    const notice = $("notice");
    notice.textContent = message;
    notice.hidden = false;
  }

  // ------------------------------------------------------------------ the page

  function join(name, room) {
    state.name = name;
    state.room = room;
    state.wanted = true;
    $("name").removeAttribute("aria-invalid");
    $("room").removeAttribute("aria-invalid");
    if (state.ws && state.ws.readyState === WebSocket.OPEN) sendJoin();
    else if (!state.ws) connect();
  }

  function leave() {
    state.wanted = false;
    sessionStorage.removeItem(STORE_KEY);
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close(1000, "left");
    Object.assign(state, { joined: false, synced: false, id: null, lastSeq: 0 });
    state.seen = new Set();
    state.members = new Map();
    clearTyping();
    $("messages").replaceChildren();
    $("notice").hidden = true;
    $("error").hidden = true;
    $("room-title").textContent = "";
    $("chat").hidden = true;
    $("login").hidden = false;
    setStatus("offline");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("join-form").addEventListener("submit", (event) => {
      event.preventDefault();
      join($("name").value, $("room").value);
    });
    $("send-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("text");
      // Empty or too long messages go to the server too: it answers with the error.
      if (send({ type: "message", text: input.value })) {
        input.value = "";
        state.lastTypingSent = 0; // our message ended the indicator: the next key restarts it
      }
    });
    $("text").addEventListener("input", () => {
      const now = Date.now();
      if (state.joined && $("text").value && now - state.lastTypingSent > TYPING_EVERY_MS) {
        state.lastTypingSent = now;
        send({ type: "typing" });
      }
    });
    $("leave").addEventListener("click", leave);

    const saved = sessionStorage.getItem(STORE_KEY);
    if (saved) {
      const { name, room } = JSON.parse(saved);
      $("name").value = name;
      $("room").value = room;
      join(name, room);
    }
  });

  // For tests and the curious: window.chat.dropSocket() closes the socket abnormally
  // (code 4000) and takes the reconnect path; {hold: true} waits for reconnectNow().
  window.chat = {
    state,
    dropSocket(options = {}) {
      state.hold = Boolean(options.hold);
      if (state.ws) state.ws.close(4000, "dropped on purpose");
    },
    reconnectNow() {
      state.hold = false;
      if (!state.ws) {
        state.reconnects += 1;
        connect();
      }
    },
    send,
  };
})();
