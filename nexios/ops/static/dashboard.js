// The nexios dashboard page: polls api/stats every second and draws what it says.
// Plain ES module, no build step. The pure helpers are exported for node's test runner
// (tests/js/dashboard.test.mjs); the page wiring runs only in a browser.
// Every value from the server reaches the page through textContent, never as HTML:
// group names and presence metadata come from clients.

export const POLL_MS = 1000;
export const RATE_WINDOW = 5; // seconds averaged for the "per second" cards

/** Mean of the last `window` values of a per-second series (0 when empty). */
export function recentRate(series, window = RATE_WINDOW) {
  const tail = (series || []).slice(-window);
  if (tail.length === 0) return 0;
  return tail.reduce((sum, value) => sum + value, 0) / tail.length;
}

/** SVG polyline points for `series` in a `width` x `height` box scaled to `max`. */
export function chartPoints(series, max, width = 300, height = 100) {
  const count = series.length;
  if (count === 0) return "";
  const step = count > 1 ? width / (count - 1) : 0;
  const top = max > 0 ? max : 1;
  return series
    .map((value, i) => {
      const y = height - (Math.min(value, top) / top) * height;
      return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

/** The largest value in any of the series (at least 1, so a quiet chart is flat). */
export function chartMax(...series) {
  let max = 1;
  for (const values of series) for (const value of values || []) if (value > max) max = value;
  return max;
}

/** 1234567 -> "1,234,567"; fractions keep one decimal below 10. */
export function formatCount(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const rounded = value < 10 && !Number.isInteger(value) ? Math.round(value * 10) / 10 : Math.round(value);
  return rounded.toLocaleString("en-US");
}

/** How a present member is named: a name-like metadata field, else its short id. */
export function memberLabel(member) {
  const metadata = member.metadata || {};
  for (const key of ["name", "user", "username", "nick", "id"]) {
    const value = metadata[key];
    if (typeof value === "string" && value) return value;
    if (typeof value === "number") return String(value);
  }
  return member.id;
}

/** The "who" cell of a group: up to a few labels, then how many more. */
export function presenceSummary(group) {
  if (group.presence === null || group.presence === undefined) return "unavailable";
  const labels = (group.present || []).map(memberLabel);
  const more = group.presence - labels.length;
  return labels.join(", ") + (more > 0 ? ` (+${more})` : "");
}

/** One process's channel-layer cell text and whether its link is up. */
export function layerSummary(layer) {
  if (!layer) return { text: "unknown", up: false };
  const state = layer.connected ? "up" : "down";
  const parts = [`${layer.url} ${state}`];
  if (layer.reconnects) parts.push(`${layer.reconnects} reconnect${layer.reconnects === 1 ? "" : "s"}`);
  if (!layer.connected && layer.last_error) parts.push(layer.last_error);
  return { text: parts.join(" · "), up: Boolean(layer.connected) };
}

// ---------------------------------------------------------------------------- the page

function setStat(name, value) {
  const element = document.querySelector(`[data-stat="${name}"]`);
  if (element) element.textContent = formatCount(value);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (typeof cell === "object" && cell !== null) {
      td.textContent = cell.text;
      if (cell.className) td.className = cell.className;
    } else {
      td.textContent = cell;
    }
    tr.append(td);
  }
  return tr;
}

/** The part of the per-second series to chart: since `rates.first` (the oldest process's
 * start, within the window), at least two points. */
export function chartedSeries(rates) {
  const shown = Math.max(2, rates.end - rates.first + 1);
  return { in: rates.in.slice(-shown), out: rates.out.slice(-shown), seconds: shown };
}

/** "last 42 s", "last 3 min". */
export function spanLabel(seconds) {
  return seconds < 120 ? `last ${seconds} s` : `last ${Math.round(seconds / 60)} min`;
}

function render(stats) {
  const { totals, rates } = stats;
  setStat("connections", totals.connections);
  setStat("members", totals.members);
  setStat("evictions", totals.evictions);
  setStat("processes", totals.processes);
  setStat("rate_in", recentRate(rates.in));
  setStat("rate_out", recentRate(rates.out));

  const charted = chartedSeries(rates);
  const max = chartMax(charted.in, charted.out);
  document.getElementById("line-in").setAttribute("points", chartPoints(charted.in, max));
  document.getElementById("line-out").setAttribute("points", chartPoints(charted.out, max));
  document.getElementById("chart-max").textContent = formatCount(max);
  document.getElementById("chart-span").textContent = spanLabel(charted.seconds);

  document.getElementById("groups").replaceChildren(
    ...stats.largest_groups.map((group) =>
      row([
        group.name,
        formatCount(group.members),
        formatCount(group.presence),
        { text: presenceSummary(group), className: "who" },
      ]),
    ),
  );
  document.getElementById("processes").replaceChildren(
    ...stats.processes.map((process) => {
      const layer = layerSummary(process.layer);
      return row([
        `${process.host} · pid ${process.pid}`,
        formatCount(process.connections),
        formatCount(process.groups),
        formatCount(process.members),
        formatCount(process.evictions),
        formatCount(process.received),
        formatCount(process.sent),
        { text: layer.text, className: `link ${layer.up ? "up" : "down"}` },
      ]);
    }),
  );
  const notes = document.getElementById("notes");
  notes.replaceChildren(
    ...(stats.notes || []).map((note) => {
      const li = document.createElement("li");
      li.textContent = note;
      return li;
    }),
  );
}

function setStatus(text, up) {
  document.getElementById("status").textContent = text;
  document.getElementById("live").className = `dot ${up ? "up" : "down"}`;
}

async function poll(api) {
  try {
    const response = await fetch(api, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok) {
      setStatus(`the server answered ${response.status}`, false);
    } else {
      render(await response.json());
      setStatus(`live · ${new Date().toLocaleTimeString()}`, true);
    }
  } catch (error) {
    setStatus(`cannot reach the server (${error.message})`, false);
  }
  setTimeout(() => poll(api), POLL_MS);
}

if (typeof document !== "undefined") {
  const api = new URL("api/stats", import.meta.url);
  const start = () => poll(api);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}
