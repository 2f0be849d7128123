// The chat page, on the nexios browser client (served by the framework, no build step).
// The client reconnects, resubscribes, dedupes, orders and recovers by itself; this file
// only renders. Groups: chat:<room> (messages, presence) and typing:<room>.
import { NexiosClient } from "/_nexios/nexios.js";

const $ = (id) => document.getElementById(id);
const STORE_KEY = "nexios-chat";
const NOTICE_KEY = "nexios-chat-notice";
const HISTORY = 50;
const TYPING_EVERY_MS = 1500; // send "typing" at most this often
const TYPING_SHOW_MS = 3000; // show someone as typing this long after their last signal
const ERROR_SHOW_MS = 8000;

const state = { client: null, chat: null, typing: null, online: false, lastTypingSent: 0, typers: new Map() };

function setStatus(value) {
  const status = $("status");
  status.textContent = status.dataset.state = value;
  status.className = `status ${value}`;
}

// ------------------------------------------------------------------ joining

function join(name, room) {
  state.client?.close();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const client = new NexiosClient(`${scheme}//${location.host}/connect`, {
    token: name, // this demo's "token" is the name; a real app sends a signed token
    onState: (value) => {
      if (value === "connecting") setStatus(state.online ? "reconnecting" : "connecting");
      else if (value !== "connected") setStatus("offline");
    },
    onError: (error) => client === state.client && showError(error.message, "name"),
  });
  state.client = client;
  state.online = false;
  state.chat = client.subscribe(`chat:${room}`, {
    presence: true,
    onSubscribed: (result) => entered(name, room, result),
    onMessage: (m) => addMessage(m.data, m.seq),
    onPresence: (members, change) => {
      renderMembers(members);
      if (change.type !== "sync") addSystem(`${change.member.info.name} ${change.type === "join" ? "joined" : "left"}`);
    },
    onRecovered: ({ complete, recovered }) => {
      if (!complete) {
        // Messages were lost for good (history pruned or replaced): start afresh.
        sessionStorage.setItem(NOTICE_KEY, "1");
        return location.reload();
      }
      addSystem(recovered ? `Reconnected: ${recovered} missed message${recovered === 1 ? "" : "s"} recovered.` : "Reconnected: nothing was missed.");
    },
    onUnsubscribed: ({ reason }) => showError(reason, "room"),
  });
  state.typing = client.subscribe(`typing:${room}`, {
    onMessage: ({ data }) => data.id !== client.client && showTyping(data.id, data.name),
  });
}

// The first subscribe of this page: show the room and the messages before `seq`.
async function entered(name, room, { seq }) {
  setStatus("online");
  if (state.online) return;
  state.online = true;
  sessionStorage.setItem(STORE_KEY, JSON.stringify({ name, room }));
  $("room-title").textContent = `#${room}`;
  $("login").hidden = true;
  $("chat").hidden = false;
  $("join-error").hidden = true;
  if (sessionStorage.getItem(NOTICE_KEY)) {
    $("notice").textContent = `Some messages could not be recovered; showing the latest ${HISTORY}.`;
    $("notice").hidden = false;
    sessionStorage.removeItem(NOTICE_KEY);
  }
  $("text").focus();
  const page = await state.chat.history({ limit: HISTORY });
  const older = page.messages.filter((m) => m.seq <= seq).map((m) => messageItem(m.data, m.seq));
  $("messages").prepend(...older);
  scrollDown();
}

function leave() {
  state.client?.close();
  state.client = state.chat = state.typing = null;
  sessionStorage.removeItem(STORE_KEY);
  for (const id of ["messages", "online"]) $(id).replaceChildren();
  for (const id of ["notice", "error", "chat"]) $(id).hidden = true;
  $("room-title").textContent = "";
  $("login").hidden = false;
  setStatus("offline");
}

// ------------------------------------------------------------------ rendering

function messageItem(m, seq) {
  const li = document.createElement("li");
  li.className = m.id === state.client?.client ? "msg mine" : "msg";
  li.dataset.seq = String(seq);
  const date = new Date(m.ts * 1000);
  const who = Object.assign(document.createElement("span"), { className: "who", textContent: m.name });
  const when = Object.assign(document.createElement("time"), {
    dateTime: date.toISOString(),
    textContent: date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
  });
  const text = Object.assign(document.createElement("span"), { className: "text", textContent: m.text });
  li.append(who, when, text);
  return li;
}

function addMessage(m, seq) {
  stopTyping(m.id);
  $("messages").append(messageItem(m, seq));
  scrollDown();
}

function addSystem(text) {
  $("messages").append(Object.assign(document.createElement("li"), { className: "system", textContent: text }));
  scrollDown();
}

function scrollDown() {
  $("messages").scrollTop = $("messages").scrollHeight;
}

function renderMembers(members) {
  const sorted = [...members].sort((a, b) => a[1].name.localeCompare(b[1].name));
  $("online").replaceChildren(
    ...sorted.map(([id, info]) => {
      const li = document.createElement("li");
      li.textContent = id === state.client?.client ? `${info.name} (you)` : info.name;
      li.dataset.id = id;
      return li;
    }),
  );
  $("online-count").textContent = String(members.size);
}

function showTyping(id, name) {
  clearTimeout(state.typers.get(id)?.timer);
  state.typers.set(id, { name, timer: setTimeout(() => stopTyping(id), TYPING_SHOW_MS) });
  renderTyping();
}

function stopTyping(id) {
  if (!state.typers.has(id)) return;
  clearTimeout(state.typers.get(id).timer);
  state.typers.delete(id);
  renderTyping();
}

function renderTyping() {
  const names = [...state.typers.values()].map((t) => t.name);
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…` : "";
}

function showError(message, field) {
  const login = !$("login").hidden;
  const target = login ? $("join-error") : $("error");
  target.textContent = message;
  target.hidden = false;
  if (login && field) $(field).setAttribute("aria-invalid", "true");
  if (!login) {
    clearTimeout(state.errorTimer);
    state.errorTimer = setTimeout(() => (target.hidden = true), ERROR_SHOW_MS);
  }
}

// ------------------------------------------------------------------ the page

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  for (const id of ["name", "room"]) $(id).removeAttribute("aria-invalid");
  join($("name").value, $("room").value);
});
$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  // Empty or too long messages go to the server too: it answers with the error.
  state.chat.publish({ text: $("text").value }).catch((error) => showError(error.message));
  $("text").value = "";
  state.lastTypingSent = 0; // our message ended the indicator: the next key restarts it
});
$("text").addEventListener("input", () => {
  if (state.typing && $("text").value && Date.now() - state.lastTypingSent > TYPING_EVERY_MS) {
    state.lastTypingSent = Date.now();
    state.typing.publish({}).catch(() => {}); // a lost "typing" does not matter
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

// For tests and the curious.
window.chat = { state };
