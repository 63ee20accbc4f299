// The page: counters and their rate, the newest events with filters and search, one event's
// detail, publishing, and the dead letters. Plain JavaScript against the API's own JSON; every
// value from an event is put in the page as text (textContent), never as HTML: events are what
// clients sent.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
let next = null; // the cursor of the page after the ones shown
let selected = null; // the key of the event shown in detail, "topic\u0000id"
let expanded = false; // "More" was pressed: following would throw those rows away

// The key lives in this tab only (sessionStorage): gone when the tab closes.
function headers(extra = {}) {
  const token = sessionStorage.getItem("aggToken");
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function api(path, options = {}, raw = false) {
  const response = await fetch(path, { ...options, headers: headers(options.headers || {}) });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (raw && response.ok) return { body, text };
  if (!response.ok) {
    const detail = body && body.detail !== undefined ? body.detail : body;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

function say(element, text, isError = false) {
  element.textContent = text;
  element.classList.toggle("error", isError);
}

// -- counters and rate ------------------------------------------------------------------------

async function refreshCounters() {
  try {
    const stats = await api("/stats");
    for (const name of ["received", "unique_processed", "duplicate_dropped", "dead_lettered"]) {
      $(name).textContent = stats[name].toLocaleString();
    }
    const history = await api("/stats/history");
    drawRate(history.samples);
    say($("status"), "");
  } catch (error) {
    say($("status"), `counters: ${error.message}`, true);
  }
}

function drawRate(samples) {
  const rates = [];
  for (let i = 1; i < samples.length; i++) {
    const seconds = samples[i].at - samples[i - 1].at;
    rates.push(seconds > 0 ? (samples[i].received - samples[i - 1].received) / seconds : 0);
  }
  $("rate").textContent = rates.length ? rates[rates.length - 1].toFixed(1) : "–";
  const top = Math.max(1, ...rates);
  const step = rates.length > 1 ? 600 / (rates.length - 1) : 0;
  const points = rates.map((r, i) => `${(i * step).toFixed(1)},${(78 - (r / top) * 74).toFixed(1)}`);
  $("chart-line").setAttribute("points", points.join(" "));
  const minutes = samples.length > 1 ? (samples[samples.length - 1].at - samples[0].at) / 60 : 0;
  $("chart-caption").textContent =
    `events received per second, last ${Math.max(1, Math.round(minutes))} min (peak ${top.toFixed(1)})`;
}

// -- events -----------------------------------------------------------------------------------

// The filters as last submitted: following reloads with those, not with what is half typed.
let applied = [];

function applyFilters() {
  applied = [];
  for (const [name, value] of new FormData($("filters")).entries()) {
    if (!value) continue;
    // datetime-local has no zone: the browser's own, said in full for the API.
    applied.push([name, name === "since" || name === "until" ? new Date(value).toISOString() : value]);
  }
}

function query(after) {
  const params = new URLSearchParams({ order: "desc", limit: String(PAGE) });
  for (const [name, value] of applied) params.set(name, value);
  if (after) params.set("after", after);
  return params;
}

async function loadEvents(more = false) {
  try {
    const page = await api(`/events?${query(more ? next : null)}`);
    const rows = $("event-rows");
    if (!more) rows.replaceChildren();
    expanded = more;
    for (const event of page.events) rows.append(row(event));
    next = page.next;
    $("more").hidden = !next;
    say($("found"), `${rows.children.length} shown${next ? ", more follow" : ""}`);
  } catch (error) {
    say($("found"), `events: ${error.message}`, true);
  }
}

function row(event) {
  const tr = document.createElement("tr");
  tr.dataset.topic = event.topic;
  tr.dataset.eventId = event.event_id;
  // Stored to the second (UTC) in the column, in full on hover.
  const stored = event.processed_at.replace("T", " ").slice(0, 19);
  const cells = [
    [stored, "when"], [event.topic, "key"], [event.event_id, ""], [event.source, ""],
    [event.publisher || "", "key"],
  ];
  for (const [value, kind] of cells) {
    const td = document.createElement("td");
    td.textContent = value;
    if (kind) td.className = kind;
    tr.append(td);
  }
  tr.firstChild.title = event.processed_at;
  if (`${event.topic}\u0000${event.event_id}` === selected) tr.classList.add("selected");
  tr.addEventListener("click", () => showDetail(tr, event.topic, event.event_id));
  return tr;
}

// An integer JavaScript cannot hold exactly (payloads may carry any 64-bit integer).
function inexact(value) {
  if (typeof value === "number") return Number.isInteger(value) && !Number.isSafeInteger(value);
  if (value && typeof value === "object") return Object.values(value).some(inexact);
  return false;
}

async function showDetail(tr, topic, eventId) {
  for (const shown of $("event-rows").querySelectorAll(".selected")) shown.classList.remove("selected");
  selected = `${topic}\u0000${eventId}`;
  tr.classList.add("selected");
  $("detail").hidden = false;
  $("detail-key").textContent = `${topic} / ${eventId}`;
  try {
    const path = `/events/${encodeURIComponent(topic)}/${encodeURIComponent(eventId)}`;
    const { body, text } = await api(path, {}, true);
    // Re-indented when nothing is lost by it; as the API sent it otherwise.
    $("detail-json").textContent = inexact(body) ? text : JSON.stringify(body, null, 2);
  } catch (error) {
    $("detail-json").textContent = error.message;
  }
}

function follow() {
  if ($("follow").checked && !expanded && document.visibilityState === "visible") loadEvents();
}

// -- publishing -------------------------------------------------------------------------------

function exampleEvent() {
  return JSON.stringify({
    topic: "page.demo",
    event_id: crypto.randomUUID(),
    timestamp: new Date().toISOString(),
    source: "the page",
    payload: { message: "hello from the page" },
  }, null, 2);
}

async function publish(submitted) {
  submitted.preventDefault();
  try {
    const body = $("publish-body").value;
    const answer = await api("/publish", {
      method: "POST", body, headers: { "Content-Type": "application/json" },
    });
    say($("publish-result"), `accepted ${answer.accepted}`);
    const sent = JSON.parse(body);
    $("publish-body").value = exampleEvent();
    await showWhenStored(Array.isArray(sent) ? sent[0] : sent);
  } catch (error) {
    say($("publish-result"), error.message, true);
  }
}

async function showWhenStored(event) {
  // The worker stores it within moments: look again a few times rather than once.
  for (let attempt = 0; attempt < 20; attempt++) {
    await loadEvents();
    const shown = [...$("event-rows").children].some(
      (tr) => tr.dataset.topic === event.topic && tr.dataset.eventId === event.event_id);
    if (shown) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

// -- dead letters -----------------------------------------------------------------------------

async function loadDead() {
  try {
    const dead = await api("/dead-letters?limit=20");
    $("dead-count").textContent = `(${dead.count})`;
    const list = $("dead-list");
    list.replaceChildren();
    for (const letter of dead.dead_letters) {
      const li = document.createElement("li");
      const what = document.createElement("strong");
      what.textContent = `${letter.routing_key}: ${letter.reason}`;
      const body = document.createElement("code");
      body.textContent = letter.body.slice(0, 300);
      li.append(what, body);
      list.append(li);
    }
    say($("dead-result"), "");
  } catch (error) {
    say($("dead-result"), error.message, true);
  }
}

async function replayDead() {
  try {
    const answer = await api("/dead-letters/replay", { method: "POST" });
    say($("dead-result"), `replayed ${answer.replayed}, ${answer.left} left`);
    await loadDead();
  } catch (error) {
    say($("dead-result"), error.message, true);
  }
}

// -- wiring -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = sessionStorage.getItem("aggToken") || "";
  $("token").addEventListener("change", () => {
    sessionStorage.setItem("aggToken", $("token").value);
    refreshCounters(); loadEvents(); loadDead();
  });
  $("filters").addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); loadEvents(); });
  $("filters").addEventListener("reset", () => setTimeout(() => { applyFilters(); loadEvents(); }, 0));
  $("more").addEventListener("click", () => loadEvents(true));
  $("publish-body").value = exampleEvent();
  $("publish-form").addEventListener("submit", publish);
  $("dead-refresh").addEventListener("click", loadDead);
  $("dead-replay").addEventListener("click", replayDead);
  refreshCounters();
  loadEvents();
  loadDead();
  setInterval(refreshCounters, 2000);
  setInterval(follow, 2000);
});
