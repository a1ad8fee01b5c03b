// The dashboard's entry: hash routes (#/ the runs, #/runs/<id> one run) and live updates.
//
// Live updates are short polling every 2 s, asking only for what is new (`after=`): it needs
// nothing but the stateless JSON API, so it works through any proxy and with several service
// workers sharing one database (server-sent events would need a push path between them).

import { RunView } from "./run.js";
import { RunsView } from "./runs.js";
import {
  askReadToken, forgetToken, h, POLL_MS, replace, showTokenState, tickAges,
} from "./util.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
const liveText = document.getElementById("live-text");
const banner = document.getElementById("banner");

let view = null;
let timer = null;
let busy = false; // one refresh at a time: each appends what is new since the last
let again = false;
let lastOk = null;

function route() {
  const match = location.hash.match(/^#\/runs\/(\d+)/);
  view = match ? new RunView(Number(match[1]), refreshNow) : new RunsView(refreshNow);
  document.getElementById("nav-runs").classList.toggle("active", !match);
  view.mount(main);
  refreshNow();
}

function refreshNow() {
  clearTimeout(timer);
  if (busy) again = true;
  else poll();
}

async function poll() {
  busy = true;
  const current = view;
  try {
    await current.refresh();
    if (current === view) {
      lastOk = Date.now();
      banner.hidden = true;
      live.className = "live ok";
      tick();
    }
  } catch (err) {
    if (current === view) showTrouble(err);
  }
  busy = false;
  if (again) {
    again = false;
    poll();
  } else {
    timer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }
}

function showTrouble(err) {
  console.warn("refresh failed:", err); // a warning: the page goes on polling
  live.className = "live bad";
  liveText.textContent = "service not answering";
  banner.hidden = false;
  const retry = `Retrying every ${POLL_MS / 1000} s.`;
  if (err.status === 401 || err.status === 403) {
    liveText.textContent = "token needed";
    replace(banner, `The service refused to show its data (${err.status}: ${err.message}). `,
      h("button", { class: "small", id: "read-token", onclick: async () => {
        if (await askReadToken()) refreshNow();
      } }, "Enter a token"));
    return;
  }
  banner.textContent = err.status === 0
    ? `The service does not answer (${err.message}). Is \`dclaw serve\` running? ${retry}`
    : `The service answered with an error: ${err.message} (HTTP ${err.status ?? "?"}). ${retry}`;
}

function tick() {
  tickAges();
  if (lastOk !== null && live.classList.contains("ok")) {
    const s = Math.floor((Date.now() - lastOk) / 1000);
    liveText.textContent = `live · updated ${s} s ago`;
  }
}

document.getElementById("forget-token").addEventListener("click", forgetToken);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refreshNow();
});
window.addEventListener("hashchange", route);
setInterval(tick, 1000);
showTokenState();
route();
