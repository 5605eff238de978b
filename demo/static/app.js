// syncgate demo page: a projects list kept live with the sidecar's generic socket protocol.
//
// No library and no build step, so every step of the protocol is visible:
//   1. GET /api/projects and read X-Sync-Position ("projects=17"): the channel's seq the list is at;
//   2. open ws(s)://<this host>/api/ws, wait for {"op":"welcome"} and keep its client_id;
//   3. send {"op":"subscribe","channel":"projects","since":17}: nothing made in between is missed;
//   4. on every projects event refetch the list (events carry no data, only "something changed");
//      on {"op":"reset"} refetch too (the gap was too old for the sidecar's history);
//   5. send X-Sync-Client on our own mutations, so the sidecar does not echo them back to this tab;
//   6. on close, reconnect with backoff and resubscribe with since = the last seq seen.
"use strict";

const CHANNEL = "projects";
const LOG_LINES = 200;

const state = {
  socket: null,
  clientId: null,
  lastSeq: null, // the newest seq of CHANNEL that the list on screen reflects
  attempt: 0, // reconnect attempts since the last successful welcome
  reconnectTimer: null,
  refetching: null, // the in-flight refetch, so bursts of events coalesce
  refetchAgain: false,
};

const $ = (id) => document.getElementById(id);

// --- log and status -------------------------------------------------------------------------------

function log(kind, text) {
  const line = document.createElement("div");
  line.className = kind;
  line.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  const box = $("log");
  box.prepend(line);
  while (box.childElementCount > LOG_LINES) box.lastElementChild.remove();
}

function setStatus(status) {
  $("status").textContent = status;
  $("status").className = `status ${status.split(" ")[0]}`;
}

function noteSeq(seq) {
  if (typeof seq === "number" && (state.lastSeq === null || seq > state.lastSeq)) state.lastSeq = seq;
  $("seq").textContent = state.lastSeq ?? "–";
}

// --- REST through the sidecar --------------------------------------------------------------------

/** "projects=17, project:4=2" -> {projects: 17, "project:4": 2} */
function parsePosition(header) {
  const positions = {};
  for (const part of (header || "").split(",")) {
    const at = part.lastIndexOf("=");
    if (at > 0) positions[part.slice(0, at).trim()] = Number(part.slice(at + 1));
  }
  return positions;
}

async function fetchProjects() {
  const res = await fetch("/api/projects", { credentials: "same-origin" });
  if (!res.ok) throw new Error(`GET /api/projects: ${res.status}`);
  const position = parsePosition(res.headers.get("X-Sync-Position"))[CHANNEL];
  render(await res.json());
  noteSeq(position);
  return position;
}

/** Refetches the list; events arriving during a refetch cause one more, never a pile-up. */
function refetch() {
  if (state.refetching) {
    state.refetchAgain = true;
    return state.refetching;
  }
  state.refetching = fetchProjects()
    .catch((err) => log("problem", String(err)))
    .finally(() => {
      state.refetching = null;
      if (state.refetchAgain) {
        state.refetchAgain = false;
        refetch();
      }
    });
  return state.refetching;
}

async function mutate(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.clientId) headers["X-Sync-Client"] = state.clientId;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) log("problem", `${method} ${path}: ${res.status}`);
  // The sidecar skips this tab when it fans out our own change, so refresh here.
  await refetch();
}

// --- rendering -----------------------------------------------------------------------------------

function render(projects) {
  const list = $("projects");
  list.replaceChildren();
  if (projects.length === 0) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "No projects yet.";
    list.append(empty);
  }
  for (const project of projects) {
    const item = document.createElement("li");
    const id = document.createElement("span");
    id.className = "id";
    id.textContent = `#${project.id}`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = project.name;
    const rename = document.createElement("button");
    rename.textContent = "Rename";
    rename.onclick = () => {
      const newName = prompt("New name", project.name);
      if (newName) mutate("PATCH", `/api/projects/${project.id}`, { name: newName });
    };
    const remove = document.createElement("button");
    remove.textContent = "Delete";
    remove.onclick = () => mutate("DELETE", `/api/projects/${project.id}`);
    item.append(id, name, rename, remove);
    list.append(item);
  }
}

// --- the socket ----------------------------------------------------------------------------------

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/ws`;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  setStatus(state.attempt === 0 ? "connecting" : "reconnecting");
  const socket = new WebSocket(socketUrl());
  state.socket = socket;
  socket.onmessage = (msg) => onMessage(socket, msg);
  socket.onclose = (ev) => {
    if (state.socket !== socket) return; // replaced on purpose (sign-in change)
    state.clientId = null;
    $("client-id").textContent = "–";
    scheduleReconnect(`closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
  };
}

function scheduleReconnect(why) {
  // 0.5 s, 1 s, 2 s ... capped at 15 s, with jitter so a restarted sidecar is not hit all at once.
  const delay = Math.min(15000, 500 * 2 ** state.attempt) * (0.75 + Math.random() * 0.5);
  state.attempt += 1;
  setStatus(`reconnecting in ${(delay / 1000).toFixed(1)}s`);
  log("problem", `socket ${why}; retry in ${Math.round(delay)} ms`);
  state.reconnectTimer = setTimeout(connect, delay);
}

function onMessage(socket, msg) {
  let frame;
  try {
    frame = JSON.parse(msg.data);
  } catch {
    log("problem", `unreadable frame: ${msg.data}`);
    return;
  }
  switch (frame.op) {
    case "welcome": {
      state.clientId = frame.client_id;
      state.attempt = 0;
      $("client-id").textContent = frame.client_id;
      $("user").textContent = frame.user ?? "anonymous";
      setStatus("connected");
      const subscribe = { op: "subscribe", channel: CHANNEL };
      if (state.lastSeq !== null) subscribe.since = state.lastSeq;
      socket.send(JSON.stringify(subscribe));
      log("control", `welcome ${frame.client_id}; subscribe ${JSON.stringify(subscribe)}`);
      return;
    }
    case "subscribed":
      log("control", `subscribed ${frame.channel} at seq ${frame.seq}, recovered=${frame.recovered}`);
      if (frame.recovered === false) {
        // The gap was not replayed (or the sidecar restarted and counts anew): reload to be safe.
        state.lastSeq = null;
        refetch();
      }
      return;
    case "reset":
      log("control", `reset ${frame.channel}: refetching`);
      state.lastSeq = null;
      refetch();
      return;
    case "error":
      log("problem", `error ${frame.code} (${frame.ref}): ${frame.message}`);
      return;
    case "pong":
      return;
    case undefined:
      break; // an event envelope
    default:
      log("control", msg.data);
      return;
  }
  if (frame.channel !== CHANNEL) return;
  const latency = typeof frame.ts === "number" ? ` ${Date.now() - frame.ts} ms after the API answered` : "";
  log("event", `${frame.type} #${frame.resource_id} seq ${frame.seq} by ${frame.actor ?? "anonymous"}${latency}`);
  noteSeq(frame.seq);
  refetch();
}

// --- wiring --------------------------------------------------------------------------------------

function signIn(token) {
  document.cookie = token
    ? `session=${token}; path=/; SameSite=Lax`
    : "session=; path=/; max-age=0; SameSite=Lax";
  // The sidecar learns who we are at the handshake, so open a new socket; since keeps us in sync.
  const old = state.socket;
  state.socket = null;
  if (old) old.close(1000, "signing in");
  state.attempt = 0;
  connect();
}

$("create").onsubmit = (ev) => {
  ev.preventDefault();
  const input = $("new-name");
  const name = input.value.trim();
  if (!name) return;
  input.value = "";
  mutate("POST", "/api/projects", { name });
};

$("login").value = (document.cookie.match(/(?:^|; )session=([^;]*)/) || [])[1] || "";
$("login").onchange = (ev) => signIn(ev.target.value);

// Fetch first, then subscribe from the position the list is at (see "the fetch-then-subscribe race").
refetch().finally(connect);
