// The runs list: status, algorithm, episodes, last return, runners; create, start and stop.

import {
  adminRequest, age, badge, empty, get, h, num, replace, runAction, toast,
} from "./util.js";

export class RunsView {
  constructor(onChange) {
    this.onChange = onChange; // asks the app for a refresh now
    this.body = h("div", {}, h("p", { class: "loading" }, "Loading runs…"));
    this.loaded = false;
  }

  mount(main) {
    document.title = "Runs · D'Claw Unified RL";
    replace(main,
      h("div", { class: "page-head" },
        h("h1", {}, "Runs"),
        h("span", { class: "sub" }, "Unified RL on the ROBEL D'Claw (DClawTurnFixed)"),
        h("div", { class: "actions" },
          h("button", { class: "primary", id: "new-run", onclick: () => this.create() },
            "New run"))),
      h("section", { class: "panel" }, this.body));
  }

  async refresh() {
    const [runs, summaries] = await Promise.all([
      get("/api/v1/runs", { limit: 1000 }), get("/api/v1/runs/summaries", { limit: 1000 })]);
    const byId = new Map(summaries.map((s) => [s.run_id, s]));
    this.loaded = true;
    replace(this.body, runs.length ? this.table(runs, byId) : empty(
      "No runs yet.", "Create one with ", h("em", {}, "New run"), " (it asks for the admin token), ",
      "or from a shell: ", h("code", {}, "curl -X POST -H 'Authorization: Bearer $DCLAW_ADMIN_TOKEN' " +
        `-H 'Content-Type: application/json' -d '{"name": "first"}' ${location.origin}/api/v1/runs`)));
  }

  table(runs, summaries) {
    const rows = [...runs].reverse().map((run) => {
      const s = summaries.get(run.id) || {};
      const trainer = run.trainer ? run.trainer.owner
        : run.status === "running" ? h("span", { class: "age stale" }, "no trainer") : "–";
      return h("tr", { dataset: { runId: run.id } },
        h("td", {}, h("a", { href: `#/runs/${run.id}` }, run.name),
          run.error ? h("div", { class: "muted", title: run.error }, "error: ",
            run.error.slice(0, 80)) : null),
        h("td", {}, badge(run.status)),
        h("td", {}, run.algorithm, h("div", { class: "muted" }, `${run.preset} · ${run.mode}`)),
        h("td", { class: "num" }, `${run.episodes_learned} / ${run.episodes}`),
        h("td", { class: "num" }, num(s.last_return)),
        h("td", {}, s.last_episode_at ? age(s.last_episode_at) : h("span", { class: "muted" }, "–")),
        h("td", {}, s.runners ? [`${s.runners} · `, age(s.last_heartbeat_at, "heartbeat")]
          : h("span", { class: "muted" }, "none")),
        h("td", {}, trainer),
        h("td", { class: "num" },
          h("button", { class: "small", disabled: run.status === "running",
            onclick: () => this.act(run, "start") }, "Start"), " ",
          h("button", { class: "small danger",
            disabled: !["running", "stopping"].includes(run.status),
            onclick: () => this.act(run, "stop") }, "Stop")));
    });
    return h("div", { class: "table-wrap" }, h("table", { id: "runs-table" },
      h("thead", {}, h("tr", {}, ["Run", "Status", "Algorithm", "Learnt / episodes",
        "Last return", "Last episode", "Runners", "Trainer", ""].map((t, i) =>
        h("th", { class: [3, 4].includes(i) ? "num" : "" }, t)))),
      h("tbody", {}, rows)));
  }

  async act(run, action) {
    if (await runAction(run, action)) this.onChange();
  }

  async create() {
    const dialog = document.getElementById("create-dialog");
    const form = document.getElementById("create-form");
    const error = document.getElementById("create-error");
    form.reset();
    error.hidden = true;
    document.getElementById("create-cancel").onclick = () => dialog.close("cancel");
    form.onsubmit = async (event) => {
      event.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      let overrides = {};
      try {
        overrides = data.overrides.trim() ? JSON.parse(data.overrides) : {};
      } catch (err) {
        error.textContent = `Overrides are not valid JSON: ${err.message}`;
        error.hidden = false;
        return;
      }
      try {
        const body = {
          name: data.name, algorithm: data.algorithm, preset: data.preset, mode: data.mode,
          overrides,
        };
        if (data.prior_run.trim()) {
          body.prior = { run_id: Number(data.prior_run), count: Number(data.prior_count || 5) };
        }
        const run = await adminRequest("POST", "/api/v1/runs", body);
        dialog.close("ok");
        toast(`Created run “${run.name}”. Start it when a runner is ready.`, "ok");
        this.onChange();
      } catch (err) {
        error.textContent = `Not created: ${err.message}`;
        error.hidden = false;
      }
    };
    dialog.showModal();
  }
}
