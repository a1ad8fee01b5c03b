// The run page's tables and lists: gate history, runners, runner events, episodes.

import { gateDifferences } from "./charts.js";
import { age, badge, empty, h, kindBadge, num } from "./util.js";

// Where to start a runner; `dclaw run --help` has the options.
const RUNNER_HINT = (run) => [
  "On the robot PC (or any machine, on the simulator) run ",
  h("code", {}, `DCLAW_RUNNER_TOKEN=… dclaw run --learner ${location.origin} --run ${run.id} ` +
    "--name claw-1 --backend sim"),
  " (", h("code", {}, "--backend dynamixel --device /dev/ttyUSB0"),
  " on the robot). It appears here with its first heartbeat."];

export function runnerHint(run) {
  return RUNNER_HINT(run);
}

function table(id, headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, headers.map(([text, cls]) => h("th", { class: cls || "" }, text)))),
    h("tbody", {}, rows)));
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  return sorted[lo] + (sorted[Math.min(lo + 1, sorted.length - 1)] - sorted[lo]) * (pos - lo);
}

/** The newest gate decisions: choice, reason and a summary of the K differences. */
export function gateTable(decisions) {
  const rows = decisions.slice(-10).reverse().map((d) => {
    const diffs = gateDifferences(d).sort((a, b) => a - b);
    const positive = diffs.filter((v) => v > 0).length;
    return h("tr", {},
      h("td", { class: "num" }, d.id),
      h("td", { class: "num" }, d.episodes_seen),
      h("td", {}, kindBadge(d.choice)),
      h("td", {}, d.reason, d.record?.eps_choice && d.record.eps_choice !== d.choice
        ? h("span", { class: "muted" }, ` (EPS said ${d.record.eps_choice.toUpperCase()})`) : null),
      h("td", { class: "num" }, diffs.length || "–"),
      h("td", { class: "num" }, num(quantile(diffs, 0))),
      h("td", { class: "num" }, num(quantile(diffs, 0.5))),
      h("td", { class: "num" }, num(quantile(diffs, 1))),
      h("td", { class: "num" }, diffs.length ? `${positive} / ${diffs.length}` : "–"),
      h("td", {}, age(d.created_at)));
  });
  return table("gate-table", [["#", "num"], ["after episodes", "num"], ["choice"], ["reason"],
    ["K", "num"], ["min Δ", "num"], ["median Δ", "num"], ["max Δ", "num"], ["Δ > 0", "num"],
    ["when"]], rows);
}

/** Connected runners: heartbeat age, what they do, their loop timing. */
export function runnersTable(run, runners) {
  if (!runners.length) return empty("No runner connected.", ...RUNNER_HINT(run));
  const rows = runners.map((r) => {
    const d = r.details || {};
    return h("tr", { dataset: { runner: r.name } },
      h("td", {}, h("strong", {}, r.name), d.backend ? h("div", { class: "muted" }, d.backend)
        : null),
      h("td", {}, badge(r.status)),
      h("td", {}, age(r.last_seen_at, "heartbeat")),
      h("td", { class: "num" }, d.episode ?? r.last_seq ?? "–"),
      h("td", { class: "num" }, num(d.last_return)),
      h("td", { class: "num" }, num(d.period_error_p99_ms, 2)),
      h("td", { class: "num" }, num(d.compute_p99_ms, 2)),
      h("td", { class: "num" }, d.overruns ?? "–"),
      h("td", { class: "num" }, d.spooled ?? "–"),
      h("td", { class: "muted" }, d.message || ""));
  });
  return table("runners-table", [["Runner"], ["Status"], ["Heartbeat"], ["Episode", "num"],
    ["Last return", "num"], ["Period err p99 ms", "num"], ["Compute p99 ms", "num"],
    ["Overruns", "num"], ["Spooled", "num"], ["Message"]], rows);
}

/** Runner events, newest first; safety stops stand out with their cause. */
export function eventsList(events) {
  if (!events.length) {
    return empty("No safety stops or runner events.", "A runner reports here when it stops " +
      "the robot (temperature, current, a hardware error, missed deadlines) or aborts an " +
      "episode.");
  }
  return h("ul", { class: "events", id: "events-list" }, [...events].reverse().map((e) =>
    h("li", { class: e.kind },
      h("span", {}, badge(e.kind)),
      h("span", { class: "msg" }, e.message,
        e.details?.cause ? h("span", { class: "muted" }, ` · cause: ${e.details.cause}`) : null),
      h("span", { class: "meta" }, `${e.runner} · `, age(e.created_at)))));
}

/** One page of episodes, newest first; `first` is the 1-based number of the page's oldest. */
export function episodesTable(episodes, first) {
  const rows = episodes.map((e, i) => [e, first + i]).reverse().map(([e, n]) => {
    const t = e.timing || {};
    return h("tr", {},
      h("td", { class: "num" }, n),
      h("td", {}, e.runner, h("span", { class: "muted" }, ` #${e.seq}`)),
      h("td", {}, kindBadge(e.policy_kind), h("span", { class: "muted" }, ` v${e.policy_version}`)),
      h("td", { class: "num" }, num(e.return)),
      h("td", {}, e.success ? h("span", { class: "yes" }, "✓ yes") : h("span", { class: "no" }, "no")),
      h("td", { class: "num" }, num(t.period_error_p99_ms, 2)),
      h("td", { class: "num" }, num(t.compute_p99_ms, 2)),
      h("td", { class: "num" }, t.overruns ?? "–"),
      h("td", { class: "num" }, num(t.reset_s, 1)),
      h("td", {}, e.train_index === null ? h("span", { class: "muted" }, "waiting")
        : h("span", { class: "yes" }, "learnt")),
      h("td", {}, age(e.created_at)));
  });
  return table("episodes-table", [["Episode", "num"], ["Runner · seq"], ["Policy"],
    ["Return", "num"], ["Success"], ["Period err p99 ms", "num"], ["Compute p99 ms", "num"],
    ["Overruns", "num"], ["Reset s", "num"], ["Trainer"], ["When"]], rows);
}
