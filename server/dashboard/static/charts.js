// The run page's charts, drawn by plotly.js (served by the service). Each function takes the
// data it shows and redraws its div with Plotly.react (cheap when little changed).

export const COLORS = { mf: "#2563eb", mb: "#ea580c", success: "#15803d", grey: "#94a3b8" };
const WINDOW = 10; // episodes in the rolling success rate and MF fraction (the paper's Fig. 3)
const GATE_BOXES = 30; // newest gate decisions drawn as distributions

const CONFIG = { displaylogo: false, responsive: true,
  modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"] };

function layout(extra) {
  return {
    margin: { l: 56, r: 16, t: 8, b: 40 },
    font: { family: "system-ui, sans-serif", size: 12, color: "#334155" },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    legend: { orientation: "h", y: 1.12, x: 0 },
    hovermode: "closest",
    xaxis: { gridcolor: "#eef2f7", zeroline: false },
    yaxis: { gridcolor: "#eef2f7", zeroline: false },
    ...extra,
  };
}

function draw(div, traces, extraLayout) {
  window.Plotly.react(div, traces, layout(extraLayout), CONFIG);
}

function rolling(values, window) {
  const out = [];
  let sum = 0;
  for (let i = 0; i < values.length; i += 1) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

/** Episode return over episodes, one trace per policy (meta "episodes"), and a rolling mean. */
export function drawReturns(div, series) {
  const traces = ["mf", "mb"].map((kind) => {
    const x = [], y = [], text = [], symbol = [];
    series.policy_kind.forEach((k, i) => {
      if (k !== kind) return;
      x.push(i + 1);
      y.push(series.return[i]);
      text.push(`episode ${i + 1} (id ${series.id[i]})${series.success[i] ? " · success" : ""}`);
      symbol.push(series.success[i] ? "star" : "circle");
    });
    return {
      type: "scatter", mode: "markers", name: kind === "mf" ? "MF (SAC)" : "MB (model-based)",
      meta: "episodes", x, y, text,
      marker: { color: COLORS[kind], size: 7, symbol, opacity: 0.85 },
      hovertemplate: "%{text}<br>return %{y:.1f}<extra>%{fullData.name}</extra>",
    };
  });
  traces.push({
    type: "scatter", mode: "lines", name: `mean of last ${WINDOW}`,
    x: series.return.map((_, i) => i + 1), y: rolling(series.return, WINDOW),
    line: { color: COLORS.grey, width: 2 }, hoverinfo: "skip",
  });
  draw(div, traces, {
    xaxis: { title: { text: "episode" }, gridcolor: "#eef2f7", zeroline: false },
    yaxis: { title: { text: "return" }, gridcolor: "#eef2f7", zeroline: false },
  });
}

/** The paper's Fig. 3: rolling fraction of MF episodes, with the rolling success rate. */
export function drawFractions(div, series) {
  const x = series.id.map((_, i) => i + 1);
  const mf = rolling(series.policy_kind.map((k) => (k === "mf" ? 1 : 0)), WINDOW);
  const ok = rolling(series.success.map((s) => (s ? 1 : 0)), WINDOW);
  draw(div, [
    { type: "scatter", mode: "lines", name: `MF fraction (last ${WINDOW})`, x, y: mf,
      line: { color: COLORS.mf, width: 2, shape: "hv" },
      hovertemplate: "episode %{x}: %{y:.0%} MF<extra></extra>" },
    { type: "scatter", mode: "lines", name: `success rate (last ${WINDOW})`, x, y: ok,
      line: { color: COLORS.success, width: 2, dash: "dot", shape: "hv" },
      hovertemplate: "episode %{x}: %{y:.0%} success<extra></extra>" },
  ], {
    xaxis: { title: { text: "episode" }, gridcolor: "#eef2f7", zeroline: false },
    yaxis: { range: [-0.03, 1.03], tickformat: ".0%", gridcolor: "#eef2f7", zeroline: false },
  });
}

export function gateDifferences(decision) {
  const { j_mb: mb = [], j_mf: mf = [] } = decision.record || {};
  return mb.map((value, i) => value - mf[i]);
}

/** For the newest decisions with estimates: the K differences J(MB|w_i) − J(MF|w_i) as a box
 * (meta "gate"), coloured by the choice; zero is the EPS test's line. */
export function drawGate(div, decisions) {
  const shown = decisions.filter((d) => gateDifferences(d).length > 0).slice(-GATE_BOXES);
  const traces = shown.map((d) => ({
    type: "box", meta: "gate", name: `#${d.episodes_seen}`, y: gateDifferences(d),
    boxpoints: "outliers", marker: { color: COLORS[d.choice], size: 3 },
    line: { color: COLORS[d.choice], width: 1.5 }, fillcolor: `${COLORS[d.choice]}33`,
    showlegend: false,
    hovertemplate: `decision ${d.id} after ${d.episodes_seen} episodes<br>` +
      `choice ${d.choice.toUpperCase()} (${d.reason})<br>%{y:.1f}<extra></extra>`,
  }));
  draw(div, traces, {
    xaxis: { title: { text: "decision (episodes learnt when it was made)" }, type: "category",
      gridcolor: "#eef2f7" },
    yaxis: { title: { text: "Ĵ(MB|wᵢ) − Ĵ(MF|wᵢ)" }, gridcolor: "#eef2f7", zeroline: true,
      zerolinecolor: "#0f172a", zerolinewidth: 1.5 },
    annotations: [{ xref: "paper", yref: "paper", x: 1, y: 1.1, showarrow: false,
      text: `<span style="color:${COLORS.mb}">■ MB chosen</span>  ` +
        `<span style="color:${COLORS.mf}">■ MF chosen</span>`, xanchor: "right" }],
  });
}

const LOSS_KEYS = /(^|\/)(critic_loss|actor_loss|loss|nll|value_loss)$/;
const PARTS = [["sac/", "SAC"], ["model/", "dynamics"], ["mb/", "MB policy"]];

function statKeys(metrics, wanted) {
  return [...new Set(metrics.flatMap((m) => Object.keys(m.stats).filter(wanted)))].sort();
}

function statTrace(metrics, key, name, axis) {
  const rows = metrics.filter((m) => key in m.stats);
  return {
    type: "scatter", mode: "lines", name, x: rows.map((m) => m.episodes_seen),
    y: rows.map((m) => m.stats[key]), yaxis: axis, line: { width: 1.8 },
    hovertemplate: `${key}: %{y:.4g} after %{x} episodes<extra></extra>`,
  };
}

/** Learner losses over learnt episodes: one row per learner part (their scales differ). */
export function drawLosses(div, metrics) {
  const keys = statKeys(metrics, (key) => LOSS_KEYS.test(key));
  const parts = PARTS.filter(([prefix]) => keys.some((k) => k.startsWith(prefix)));
  const traces = [];
  const extra = { grid: { rows: Math.max(1, parts.length), columns: 1, pattern: "coupled",
    ygap: 0.12 }, xaxis: { title: { text: "episodes learnt" }, gridcolor: "#eef2f7" } };
  parts.forEach(([prefix, title], row) => {
    const axis = row ? `y${row + 1}` : "y";
    keys.filter((k) => k.startsWith(prefix)).forEach((key) => traces.push(
      statTrace(metrics, key, key, axis)));
    extra[row ? `yaxis${row + 1}` : "yaxis"] = { title: { text: title, font: { size: 11 } },
      gridcolor: "#eef2f7", zeroline: false };
  });
  draw(div, traces, extra);
}

/** Gradient updates per second of each learner part (rate/<part>_updates_per_s). */
export function drawRates(div, metrics) {
  const traces = statKeys(metrics, (key) => key.startsWith("rate/")).map((key) =>
    statTrace(metrics, key, key.slice(5).replace("_updates_per_s", ""), "y"));
  draw(div, traces, {
    xaxis: { title: { text: "episodes learnt" }, gridcolor: "#eef2f7", zeroline: false },
    yaxis: { title: { text: "updates / s" }, gridcolor: "#eef2f7", rangemode: "tozero" },
  });
}
