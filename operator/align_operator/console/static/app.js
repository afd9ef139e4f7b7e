// align console: renders the pages from the read-only JSON API; every chart is drawn by uPlot (vendored).
"use strict";
const CONFIG = JSON.parse(document.body.dataset.config);
const main = document.getElementById("main");
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const fmt = (v) => v === null || v === undefined ? "" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : String(v);
const jobUrl = (ns, name) => `/jobs/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
async function api(path) {
  const r = await fetch(path, {headers: {Accept: "application/json"}});
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : {error: await r.text()};
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function showError(where, err) {
  let box = where.querySelector(":scope > .error.fetch");
  if (!err) { box?.remove(); return; }
  if (!box) { box = h("p", {class: "error fetch"}); where.prepend(box); }
  box.textContent = "could not refresh: " + err.message;
}
// Re-run `load` every poll seconds while the page is open (live pages); errors show without stopping the loop.
function live(load) {
  const tick = async () => {
    try { await load(); showError(main, null); } catch (err) { showError(main, err); }
    setTimeout(tick, CONFIG.poll * 1000);
  };
  tick();
}
function phaseBadge(phase) { return h("span", {class: `phase phase-${(phase || "Pending").toLowerCase()}`}, phase || "Pending"); }

// ---------------------------------------------------------------- charts (uPlot does all drawing)
class Chart {
  constructor(parent, title, labels, opts = {}) {
    this.box = h("div", {class: "chart", "data-metric": title});
    parent.append(this.box);
    const series = [{label: opts.xLabel || "step"}, ...labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
      ...(opts.bars ? {fill: COLORS[i % COLORS.length] + "55", paths: uPlot.paths.bars({size: [0.8 / labels.length, 60]})} : {}),
    }))];
    this.plot = new uPlot({title, width: Math.max(280, parent.clientWidth / (opts.columns || 2) - 24), height: opts.height || 180,
                           scales: {x: {time: false}}, axes: [{}, {size: 70}],  // room for "12,000" and "0.0004"
                           series}, [[], ...labels.map(() => [])], this.box);
  }
  set(data) {
    this.plot.setData(data);
    const points = data.slice(1).map((ys) => ys.filter((v) => v !== null && v !== undefined).length);
    this.box.dataset.points = String(Math.max(0, ...points));
  }
}
function curveCharts(parent, curves, charts, nonfiniteNote = true) {
  for (const [key, values] of Object.entries(curves.series || {})) {
    if (!charts[key]) charts[key] = new Chart(parent, key, [key]);
    charts[key].set([curves.steps, values]);
    const bad = (curves.nonfinite || {})[key];
    if (nonfiniteNote && bad) charts[key].box.dataset.nonfinite = bad, charts[key].box.title = `${bad} non-finite value(s) (NaN/Inf) not drawn`;
  }
}

// ---------------------------------------------------------------- jobs list
function jobsPage() {
  const params = new URLSearchParams(location.search);
  const state = {namespace: params.get("namespace") || "", label: params.get("label") || "",
                 phase: params.get("phase") || "", offset: +(params.get("offset") || 0), limit: +(params.get("limit") || 50)};
  const selected = new Set();
  const input = (name, placeholder) => h("input", {name, placeholder, value: state[name]});
  const form = h("form", {class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); }},
    input("namespace", "namespace (blank: default, * all)"), input("label", "label selector, e.g. team=nlp"),
    h("select", {name: "phase"}, ["", "Pending", "Queued", "Running", "Suspended", "Succeeded", "Failed", "Cancelled"].map(
      (p) => h("option", {value: p, selected: p === state.phase}, p || "any phase"))),
    h("button", {type: "submit"}, "Filter"));
  const compareBtn = h("button", {id: "compare-selected", disabled: true, onclick: () => {
    location.href = "/compare?" + [...selected].map((j) => "job=" + encodeURIComponent(j)).join("&"); }}, "Compare selected");
  const summary = h("span", {id: "summary"});
  const tbody = h("tbody");
  const pager = h("div", {class: "pager"});
  main.replaceChildren(h("h1", {}, "AlignmentJobs"), form, h("div", {class: "toolbar"}, summary, compareBtn),
    h("table", {id: "jobs"}, h("thead", {}, h("tr", {}, ["", "Name", "Namespace", "Phase", "Algorithm", "Model",
      "Progress", "Age", "Key metric"].map((c) => h("th", {}, c)))), tbody), pager);
  function apply() {
    for (const el of form.elements) if (el.name) state[el.name] = el.value;
    state.offset = 0; reload();
  }
  const query = () => new URLSearchParams(Object.entries(state).filter(([, v]) => v !== "" && v !== 0)).toString();
  async function reload() { history.replaceState(null, "", "/?" + query()); await load(); }
  async function load() {
    const data = await api("/api/jobs?" + query());
    summary.textContent = `${data.total} job(s)` + (Object.keys(data.phases).length ? " - " +
      Object.entries(data.phases).map(([p, n]) => `${p} ${n}`).join(", ") : "");
    tbody.replaceChildren(...data.items.map((j) => {
      const ref = `${j.namespace}/${j.name}`;
      const box = h("input", {type: "checkbox", checked: selected.has(ref), onchange: (e) => {
        e.target.checked ? selected.add(ref) : selected.delete(ref); compareBtn.disabled = selected.size < 2; }});
      const pct = j.percent === null || j.percent === undefined ? null : Math.round(j.percent);
      return h("tr", {"data-job": ref, "data-phase": j.phase},
        h("td", {}, box), h("td", {}, h("a", {href: jobUrl(j.namespace, j.name)}, j.name)), h("td", {}, j.namespace),
        h("td", {title: j.message || ""}, phaseBadge(j.phase), j.reason ? h("span", {class: "reason"}, " " + j.reason) : null),
        h("td", {}, j.algorithm), h("td", {class: "model"}, j.model),
        h("td", {}, pct === null ? "" : h("progress", {max: 100, value: pct}), j.step !== null && j.step !== undefined ?
          ` ${j.step}/${j.totalSteps ?? "?"}` : ""),
        h("td", {}, j.age), h("td", {}, j.keyMetric ? `${j.keyMetric.name} ${fmt(j.keyMetric.value)}` : ""));
    }));
    const last = Math.min(data.offset + data.limit, data.total);
    pager.replaceChildren(
      h("button", {disabled: data.offset === 0, onclick: () => { state.offset = Math.max(0, data.offset - data.limit); reload(); }}, "< Previous"),
      ` ${data.total ? data.offset + 1 : 0}-${last} of ${data.total} `,
      h("button", {disabled: last >= data.total, onclick: () => { state.offset = data.offset + data.limit; reload(); }}, "Next >"));
  }
  live(load);
}

// ---------------------------------------------------------------- job page
function pathJob() {
  const parts = location.pathname.split("/").map(decodeURIComponent);
  return {ns: parts[2], name: parts[3]};
}
function dl(entries) {
  return h("dl", {}, entries.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
function specSummary(spec) {
  const m = spec.model || {}, d = spec.data || {};
  return dl([["algorithm", spec.algorithm], ["model", m.base], ["reference", (m.reference || {}).kind],
    ["adapter", m.adapter ? `r=${m.adapter.r ?? ""} alpha=${m.adapter.alpha ?? ""}` : ""],
    ["train data", (d.train || {}).uri], ["eval data", (d.eval || {}).uri],
    ["hyperparameters", Object.entries(spec.hyperparameters || {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")],
    ["resources", JSON.stringify(spec.resources || {})], ["output", (spec.output || {}).uri],
    ["gates", ((spec.evaluation || {}).gates || []).join(", ")]]);
}

function jobPage() {
  const {ns, name} = pathJob();
  const head = h("div", {class: "jobhead"}), error = h("div", {id: "failure"}), summary = h("section", {});
  const progress = h("div", {id: "progress"}), links = h("p", {class: "links"});
  const curveNote = h("p", {class: "muted", id: "curve-source"}), grid = h("div", {class: "charts", id: "curves"});
  const latest = h("div", {}), timeline = h("tbody"), ckpts = h("tbody");
  main.replaceChildren(head, error, progress, links, h("h2", {}, "Spec"), summary,
    h("h2", {}, "Training curves"), curveNote, grid, h("h2", {}, "Latest metrics (status)"), latest,
    h("h2", {}, "Checkpoints"), h("table", {id: "checkpoints"}, h("thead", {}, h("tr", {}, ["Step", "Location", "Metrics at that step"].map((c) => h("th", {}, c)))), ckpts),
    h("h2", {}, "Conditions and events"), h("table", {id: "timeline"}, h("thead", {}, h("tr", {},
      ["Time", "Kind", "Type", "Status", "Reason", "Message"].map((c) => h("th", {}, c)))), timeline));
  const charts = {};
  let specShown = false;
  live(async () => {
    const d = await api(`/api/jobs/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
    const s = d.status, row = d.row;
    head.replaceChildren(h("h1", {}, name, " ", phaseBadge(row.phase)), h("p", {class: "muted"}, `namespace ${ns} - created ${row.age} ago`));
    error.replaceChildren(...(s.lastError ? [h("div", {class: "error", id: "last-error"}, h("strong", {}, s.lastError.reason), ": ", s.lastError.message)] : []));
    progress.replaceChildren(row.percent !== null && row.percent !== undefined ?
      h("span", {}, h("progress", {max: 100, value: row.percent}), ` step ${row.step}/${row.totalSteps ?? "?"} (${Math.round(row.percent)}%)` +
        (s.progress && s.progress.etaSeconds ? `, eta ${s.progress.etaSeconds}s` : "")) : "");
    links.replaceChildren(h("a", {href: d.logs, id: "logs-link"}, "trainer logs"), ` (or: ${d.commands.logs})`,
      s.evaluation || (s.artifacts || {}).report ? [" | ", h("a", {href: jobUrl(ns, name) + "/evaluation", id: "evaluation-link"}, "evaluation")] : [],
      " | ", h("a", {href: "/compare"}, "compare with..."));
    if (!specShown) { summary.replaceChildren(specSummary(d.spec), h("details", {}, h("summary", {}, "full spec"), h("pre", {}, JSON.stringify(d.spec, null, 2)))); specShown = true; }
    const c = d.curves;
    curveNote.textContent = `${c.steps.length} logged step(s) from ${c.source}` + (c.uri ? ` (${c.uri})` : c.pod ? ` (pod ${c.pod})` : "") + (c.note ? ` - ${c.note}` : "");
    curveCharts(grid, c, charts);
    latest.replaceChildren(dl(Object.entries(s.metrics || {}).map(([k, v]) => [k, fmt(v)])));
    ckpts.replaceChildren(...d.checkpoints.map((k) => h("tr", {}, h("td", {}, fmt(k.step)), h("td", {}, k.uri),
      h("td", {}, Object.entries(k.metrics).map(([m, v]) => `${m}=${fmt(v)}`).join(" ")))));
    timeline.replaceChildren(...d.timeline.map((e) => h("tr", {class: e.type === "Warning" || e.status === "False" ? "warn" : ""},
      h("td", {}, e.time || ""), h("td", {}, e.kind === "event" ? `event ${e.object}` : "condition"), h("td", {}, e.type),
      h("td", {}, e.status || (e.count ? `x${e.count}` : "")), h("td", {}, e.reason), h("td", {}, e.message))));
  });
}

// ---------------------------------------------------------------- evaluation
// An answer cell; a blank answer (a model that emitted only whitespace) says so instead of an empty cell.
function answer(cls, text) {
  return h("td", {class: `text ${cls}`}, (text || "").trim() ? text : h("span", {class: "muted"}, "(blank answer)"));
}
function evaluationPage() {
  const {ns, name} = pathJob();
  const sort = {key: "gain", dir: -1};
  let data = null;
  const table = h("table", {id: "samples"}), dist = h("div", {class: "charts", id: "distribution"});
  async function load() {
    data = await api(`/api/jobs/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/evaluation`);
    const gates = data.gates.map((g) => h("li", {class: g.passed ? "pass" : "fail"}, `${g.passed ? "PASS" : "FAIL"} ${g.expression}` + (g.passed ? "" : ` - ${g.message}`) + ` (${Object.entries(g.values || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(", ")})`));
    main.replaceChildren(h("h1", {}, h("a", {href: jobUrl(ns, name)}, name), " - evaluation ", data.phase ? phaseBadge(data.phase) : ""),
      data.problem ? h("p", {class: "error", id: "evaluation-problem"}, data.problem) : "",
      h("h2", {}, "Summary"), h("div", {id: "evaluation-summary"}, dl(Object.entries(data.summary).map(([k, v]) => [k, fmt(v)]))),
      h("h2", {}, "Gates"), gates.length ? h("ul", {id: "gates"}, gates) : h("p", {class: "muted"}, "no gates"),
      h("h2", {}, "Setup"), dl(Object.entries(data.context).map(([k, v]) => [k, fmt(v)])),
      h("h2", {}, "Reward distributions"), dist, h("h2", {}, "Answers, policy vs reference"), table);
    const hist = data.histogram;
    if (hist && hist.centers.length) new Chart(dist, "reward: samples per bin", ["policy", "reference"], {bars: true, xLabel: "reward", columns: 1, height: 220}).set([hist.centers, hist.policy, hist.reference]);
    renderSamples();
  }
  function renderSamples() {
    const rows = [...data.samples].sort((a, b) => sort.dir * (((a[sort.key] ?? -Infinity) > (b[sort.key] ?? -Infinity)) - ((a[sort.key] ?? -Infinity) < (b[sort.key] ?? -Infinity))));
    const th = (label, key) => h("th", {class: key ? "sortable" : "", "data-sort": key, onclick: key ? () => {
      sort.dir = sort.key === key ? -sort.dir : -1; sort.key = key; renderSamples(); } : null}, label + (sort.key === key ? (sort.dir < 0 ? " v" : " ^") : ""));
    table.replaceChildren(h("thead", {}, h("tr", {}, th("#", "index"), th("Prompt"), th("Policy answer"), th("score", "policy_reward"),
      th("Reference answer"), th("score", "reference_reward"), th("Gain", "gain"))),
      h("tbody", {}, rows.map((s) => h("tr", {class: "sample", "data-gain": s.gain},
        h("td", {}, s.index), h("td", {class: "text"}, s.prompt), answer("policy", s.policy), h("td", {}, fmt(s.policy_reward)),
        answer("reference", s.reference), h("td", {}, fmt(s.reference_reward)),
        h("td", {class: s.gain > 0 ? "gain up" : s.gain < 0 ? "gain down" : "gain"}, fmt(s.gain))))));
  }
  load().catch((err) => main.replaceChildren(h("p", {class: "error"}, err.message)));
}

// ---------------------------------------------------------------- compare
function comparePage() {
  const refs = new URLSearchParams(location.search).getAll("job");
  if (refs.length < 2) return comparePicker();
  const diff = h("tbody"), grid = h("div", {class: "charts", id: "compare-curves"}), phases = h("p", {});
  main.replaceChildren(h("h1", {}, `Compare ${refs.length} runs`), phases, h("h2", {}, "Curves on a shared step axis"), grid,
    h("h2", {}, "Spec differences"), h("table", {id: "spec-diff"}, h("thead", {}, h("tr", {}, h("th", {}, "Field"), refs.map((r) => h("th", {}, r)))), diff));
  const charts = {};
  live(async () => {
    const d = await api("/api/compare?" + refs.map((r) => "job=" + encodeURIComponent(r)).join("&"));
    phases.replaceChildren(...d.jobs.map((j, i) => h("span", {class: "legend", style: `border-color:${COLORS[i % COLORS.length]}`},
      h("a", {href: jobUrl(...j.split("/"))}, j), " ", phaseBadge(d.phases[j]))));
    const keys = [...new Set(d.jobs.flatMap((j) => Object.keys(d.curves[j].series || {})))];
    for (const key of keys) {
      const tables = d.jobs.map((j) => [d.curves[j].steps, d.curves[j].series[key] || d.curves[j].steps.map(() => null)]);
      if (!charts[key]) charts[key] = new Chart(grid, key, d.jobs);
      charts[key].set(uPlot.join(tables));  // uPlot aligns the runs' step axes
    }
    diff.replaceChildren(...(d.diff.length ? d.diff.map((row) => h("tr", {}, h("td", {}, row.field), d.jobs.map((j) => h("td", {}, fmt(row.values[j])))))
      : [h("tr", {}, h("td", {colspan: d.jobs.length + 1}, "the specs are identical"))]));
  });
}
async function comparePicker() {
  const data = await api("/api/jobs?limit=500");
  const chosen = new Set();
  const go = h("button", {disabled: true, onclick: () => { location.href = "/compare?" + [...chosen].map((j) => "job=" + encodeURIComponent(j)).join("&"); }}, "Compare");
  main.replaceChildren(h("h1", {}, "Compare runs"), h("p", {}, "Pick two or more jobs (the newest 500 are listed)."),
    h("ul", {class: "picker"}, data.items.map((j) => { const ref = `${j.namespace}/${j.name}`; return h("li", {},
      h("label", {}, h("input", {type: "checkbox", value: ref, onchange: (e) => { e.target.checked ? chosen.add(ref) : chosen.delete(ref); go.disabled = chosen.size < 2; }}),
        ` ${ref} `, phaseBadge(j.phase), ` ${j.algorithm || ""}`)); })), go);
}

({jobs: jobsPage, job: jobPage, evaluation: evaluationPage, compare: comparePage})[CONFIG.page]();
