// One run: charts of returns, Fig. 3 fractions, gate history, learner losses and rates; runners,
// safety stops and a page of episodes. Each refresh asks only for what is new (`after=`).

import { drawFractions, drawGate, drawLosses, drawRates, drawReturns } from "./charts.js";
import { episodesTable, eventsList, gateTable, runnerHint, runnersTable } from "./panels.js";
import {
  age, ApiError, badge, empty, get, getAllAfter, h, num, pct, replace, runAction,
  serverNow,
} from "./util.js";

const PAGE = 20; // episodes per table page
const KEEP = 300; // newest gate decisions and events kept in memory

function panel(title, hint, ...body) {
  return h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", {}, title), hint ? h("span", { class: "hint" }, hint)
      : null), ...body);
}

function tile(label, value, note) {
  return h("div", { class: "tile" }, h("div", { class: "label" }, label),
    h("div", { class: "value" }, value), h("div", { class: "note" }, note ?? ""));
}

/** A chart div with its empty state beside it; show() picks which is visible. */
class ChartSlot {
  constructor(id, tall = false) {
    this.div = h("div", { class: `chart${tall ? " tall" : ""}`, id, hidden: true });
    this.note = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    this.el = h("div", {}, this.note, this.div);
  }

  show(hasData, emptyState, drawFn) {
    if (!hasData) {
      this.div.hidden = true;
      replace(this.note, emptyState);
      return;
    }
    if (!window.Plotly) {
      replace(this.note, h("div", { class: "error-box" }, "The charts need plotly.js, which " +
        "this service could not serve: install the server extra (pip install -e '.[server]') " +
        "and restart it."));
      return;
    }
    replace(this.note);
    this.div.hidden = false;
    drawFn(this.div);
  }
}

export class RunView {
  constructor(runId, onChange) {
    this.runId = runId;
    this.onChange = onChange;
    this.base = `/api/v1/runs/${runId}`;
    this.series = { id: [], return: [], success: [], policy_kind: [] };
    this.gate = [];
    this.metrics = [];
    this.events = [];
    this.page = 0;
    this.pageKey = null; // what the episodes table shows now
    this.charts = {
      returns: new ChartSlot("chart-returns", true), fractions: new ChartSlot("chart-fractions"),
      gate: new ChartSlot("chart-gate", true), losses: new ChartSlot("chart-losses", true),
      rates: new ChartSlot("chart-rates", true),
    };
  }

  mount(main) {
    this.head = h("div", { class: "page-head" }, h("p", { class: "loading" }, "Loading the run…"));
    this.alert = h("div");
    this.tiles = h("div", { class: "tiles" });
    this.gateBody = h("div");
    this.runnersBody = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    this.eventsBody = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    this.episodesBody = h("div", {}, h("p", { class: "loading" }, "Loading…"));
    this.pager = h("div", { class: "pager" });
    const c = this.charts;
    replace(main, this.head, this.alert, this.tiles,
      h("div", { class: "grid2" },
        panel("Episode return", "each point an episode, coloured by the policy that ran; ★ success",
          c.returns.el),
        panel("MF fraction and success rate", "rolling over 10 episodes (the paper's Fig. 3)",
          c.fractions.el)),
      panel("Gate history", "per decision: the K differences Ĵ(MB|wᵢ) − Ĵ(MF|wᵢ); MB runs only " +
        "when all K are above 0", c.gate.el, this.gateBody),
      h("div", { class: "grid2" },
        panel("Learner losses", "per learnt episode, one row per learner part", c.losses.el),
        panel("Update rate", "gradient updates per second", c.rates.el)),
      panel("Runners", "heartbeat age and loop timing; a heartbeat older than a minute is stale",
        this.runnersBody),
      panel("Safety stops and runner events", "newest first", this.eventsBody),
      panel("Episodes", "newest first", this.episodesBody, this.pager));
  }

  async refresh() {
    let run;
    try {
      run = await get(this.base);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replace(this.head, h("h1", {}, `Run ${this.runId}`));
        replace(this.alert, h("div", { class: "error-box" }, `There is no run ${this.runId} ` +
          "(deleted, or a wrong link). ", h("a", { href: "#/" }, "Back to the runs")));
        return;
      }
      throw err;
    }
    const [newSeries, newGate, newMetrics, runners, newEvents] = await Promise.all([
      this.fetchSeries(), getAllAfter(`${this.base}/gate`, this.lastId(this.gate)),
      getAllAfter(`${this.base}/metrics`, this.lastId(this.metrics)), get(`${this.base}/runners`),
      this.fetchEvents()]);
    this.run = run;
    this.runners = runners;
    this.gate = this.gate.concat(newGate).slice(-KEEP);
    this.metrics = this.metrics.concat(newMetrics);
    this.events = this.events.concat(newEvents).slice(-KEEP);
    this.renderHead();
    this.renderTiles();
    const first = this.drawn === undefined;
    if (first || newSeries) this.renderSeries();
    if (first || newGate.length) this.renderGate();
    if (first || newMetrics.length) this.renderMetrics();
    replace(this.runnersBody, runnersTable(run, runners));
    if (first || newEvents.length) replace(this.eventsBody, eventsList(this.events));
    await this.renderEpisodes();
    this.drawn = true;
  }

  lastId(items) {
    return items.length ? items[items.length - 1].id : 0;
  }

  async fetchSeries() {
    let grew = false;
    for (;;) {
      const ids = this.series.id;
      const part = await get(`${this.base}/episodes/series`,
        { after: ids.length ? ids[ids.length - 1] : 0 });
      for (const key of Object.keys(this.series)) this.series[key].push(...part[key]);
      grew = grew || part.id.length > 0;
      if (part.next_after === null) return grew;
    }
  }

  async fetchEvents() {
    const items = [];
    let after = this.lastId(this.events);
    for (;;) {
      const page = await get(`${this.base}/events`, { after, limit: 1000 });
      items.push(...page.items);
      if (page.next_after === null) return items;
      after = page.next_after;
    }
  }

  renderHead() {
    const run = this.run;
    document.title = `${run.name} (${run.status}) · D'Claw Unified RL`;
    replace(this.head,
      h("h1", { id: "run-name" }, run.name), badge(run.status),
      h("span", { class: "sub" }, `${run.algorithm} · ${run.preset} · ${run.mode} · created `,
        age(run.created_at), run.prior ? h("span", { id: "run-prior" }, ` · started from the ` +
          `last ${run.prior.count} successful episodes of run ${run.prior.run_id}`) : null),
      h("div", { class: "actions" },
        h("button", { id: "start-run", class: "primary", disabled: run.status === "running",
          onclick: () => this.act("start") }, "Start"),
        h("button", { id: "stop-run", class: "danger",
          disabled: !["running", "stopping"].includes(run.status),
          onclick: () => this.act("stop") }, "Stop")));
    replace(this.alert, run.error ? h("div", { class: "error-box" }, `The trainer failed: ` +
      `${run.error}. Fix the cause, then press Start: the run resumes from its last checkpoint.`)
      : null);
  }

  async act(action) {
    if (await runAction(this.run, action)) this.onChange();
  }

  renderTiles() {
    const { run, series } = this;
    const n = series.id.length;
    const recent = (list) => list.slice(-10);
    const mean = (list) => (list.length ? list.reduce((a, b) => a + b, 0) / list.length : null);
    const lastGate = this.gate[this.gate.length - 1];
    const lastMetric = this.metrics[this.metrics.length - 1];
    const fresh = this.runners.filter((r) => (serverNow() - Date.parse(r.last_seen_at)) < 60000);
    const sacRate = lastMetric?.stats["rate/sac_updates_per_s"];
    replace(this.tiles,
      tile("Episodes", n, `${run.episodes_learned} learnt by the trainer`),
      tile("Last return", num(series.return[n - 1]),
        n ? `best ${num(Math.max(...series.return))}` : "no episode yet"),
      tile("Success", pct(mean(recent(series.success).map(Number))),
        `last 10 · ${series.success.filter(Boolean).length} in all`),
      tile("MF share", pct(mean(recent(series.policy_kind).map((k) => Number(k === "mf")))),
        `last 10 · MB ran ${series.policy_kind.filter((k) => k === "mb").length} in all`),
      tile("Gate", lastGate ? lastGate.choice.toUpperCase() : "–",
        lastGate ? `${lastGate.reason}, after ${lastGate.episodes_seen} episodes` : "no decision yet"),
      tile("Trainer", run.trainer ? "training" : "none",
        run.trainer ? `${run.trainer.owner}${sacRate ? ` · ${num(sacRate, 0)} SAC updates/s` : ""}`
          : run.status === "running" ? "no trainer holds this run: is dclaw serve (with its " +
            "trainer) or dclaw trainer running?" : `the run is ${run.status}`),
      tile("Runners", `${fresh.length} / ${this.runners.length}`, "heard from in the last minute"));
  }

  noEpisodesHint() {
    const run = this.run;
    if (run.status === "created" || run.status === "stopped") {
      return empty("No episodes yet.", `The run is ${run.status}: press Start, then start a ` +
        "runner. ", ...runnerHint(run));
    }
    if (!this.runners.length) return empty("No episodes yet.", ...runnerHint(run));
    return empty("No episodes yet.", "A runner is connected; its first episode appears here " +
      "once the trainer has made the first gate decision and the episode is uploaded.");
  }

  renderSeries() {
    const has = this.series.id.length > 0;
    const hint = has ? null : this.noEpisodesHint();
    this.charts.returns.show(has, hint, (div) => drawReturns(div, this.series));
    this.charts.fractions.show(has, has ? null : this.noEpisodesHint(),
      (div) => drawFractions(div, this.series));
  }

  renderGate() {
    const withEstimates = this.gate.some((d) => (d.record?.j_mb || []).length > 0);
    const algorithm = this.run.algorithm;
    const hint = algorithm !== "unified"
      ? empty(`This run is the ${algorithm} ablation.`, `Every episode runs ` +
        `${algorithm === "sac" ? "MF (SAC)" : "MB"}: the gate compares nothing.`)
      : empty("No gate comparisons yet.", "During warm-up every episode runs MF; after it, " +
        "before each episode the gate estimates both policies' returns under K dropout masks " +
        "of the dynamics model, and they appear here.");
    this.charts.gate.show(withEstimates, hint, (div) => drawGate(div, this.gate));
    replace(this.gateBody, this.gate.length ? gateTable(this.gate) : null);
  }

  renderMetrics() {
    const has = this.metrics.length > 0;
    const hint = () => empty("No learner metrics yet.", "The trainer records losses and update " +
      "rates for every episode it learns from. Is a trainer running? (",
      h("code", {}, "dclaw serve"), " without --no-trainer, or ", h("code", {}, "dclaw trainer"),
      ")");
    this.charts.losses.show(has, has ? null : hint(), (div) => drawLosses(div, this.metrics));
    this.charts.rates.show(has, has ? null : hint(), (div) => drawRates(div, this.metrics));
  }

  async renderEpisodes() {
    const ids = this.series.id;
    const pages = Math.max(1, Math.ceil(ids.length / PAGE));
    this.page = Math.min(this.page, pages - 1);
    const end = ids.length - this.page * PAGE; // exclusive, in upload order
    const start = Math.max(0, end - PAGE);
    const key = `${start}:${end}:${ids[end - 1]}:${this.run.episodes_learned}`;
    if (key !== this.pageKey) {
      this.pageKey = key;
      if (!ids.length) {
        replace(this.episodesBody, this.noEpisodesHint());
      } else {
        const page = await get(`${this.base}/episodes`,
          { after: start > 0 ? ids[start - 1] : 0, limit: end - start });
        replace(this.episodesBody, episodesTable(page.items, start + 1));
      }
    }
    const go = (page) => () => {
      this.page = page;
      this.renderEpisodes();
    };
    replace(this.pager, ids.length > PAGE ? [
      h("button", { class: "small", disabled: this.page === 0, onclick: go(this.page - 1) },
        "← Newer"),
      h("span", {}, `page ${this.page + 1} of ${pages}`),
      h("button", { class: "small", id: "older", disabled: this.page >= pages - 1,
        onclick: go(this.page + 1) }, "Older →")] : []);
  }
}
