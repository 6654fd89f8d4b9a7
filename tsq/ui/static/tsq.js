// The web UI's behaviour: the pages are rendered by the server; this calls the API (/v1/…)
// for the buttons, the ledger, the explorer and the deploy form. No framework, no build step.
"use strict";

const tsq = (() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };

  // An API call: the JSON answer, or an Error carrying the API's error body and status.
  async function api(method, path, body) {
    const init = {method, headers: {}};
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const answer = await fetch(path, init);
    const text = await answer.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = {error: {message: text}}; }
    if (!answer.ok) {
      const error = new Error((data && data.error && data.error.message) || answer.statusText);
      error.status = answer.status;
      error.body = (data && data.error) || {};
      throw error;
    }
    return data;
  }

  // A datetime-local input's value as UTC ISO-8601 ("" when empty).
  const utc = (value) => (value ? (value.length === 16 ? value + ":00" : value) + "Z" : "");
  const localValue = (date) => date.toISOString().slice(0, 19);
  const withProject = (path, project) => project ? `${path}?project=${encodeURIComponent(project)}` : path;
  const say = (box, text, kind = "") => { box.className = "outcome " + kind; box.textContent = text; };

  // -- a loop's page -------------------------------------------------------------------------

  function loopPage() {
    const actions = $("#actions");
    const name = actions.dataset.loop, project = actions.dataset.project;
    const base = `/v1/loops/${encodeURIComponent(name)}`;
    const ledger = $("#ledger");
    let range = {from: "", to: ""};

    async function refreshLedger() {
      if (!ledger) return;
      const query = new URLSearchParams({project});
      if (range.from) query.set("from", range.from);
      if (range.to) query.set("to", range.to);
      try {
        renderLedger(ledger, await api("GET", `${base}/ledger?${query}`));
      } catch (error) {
        ledger.replaceChildren(el("p", {class: "error-box", text: error.message}));
      }
    }
    if (ledger) {
      refreshLedger();
      // The latest times fill in as the schedule fires; a range in the past stands still.
      setInterval(() => { if (!range.to || new Date(range.to) > new Date()) refreshLedger(); }, 2000);
      const form = $("#ledger-range");
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        range = {from: utc(form.from.value), to: utc(form.to.value)};
        refreshLedger();
      });
      for (const button of form.querySelectorAll("[data-preset]")) {
        button.addEventListener("click", () => {
          const seconds = Number(button.dataset.preset);
          if (!seconds) { range = {from: "", to: ""}; form.from.value = form.to.value = ""; }
          else {
            const now = new Date();
            const start = new Date(now.getTime() - seconds * 1000);
            form.from.value = localValue(start); form.to.value = localValue(now);
            range = {from: start.toISOString(), to: now.toISOString()};
          }
          refreshLedger();
        });
      }
    }

    const runForm = $("#run-form");
    runForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = $("#run-outcome");
      const body = {};
      if (runForm.event && runForm.event.value) body.event = runForm.event.value;
      if (runForm.start.value || runForm.end.value) {
        body.window = {start: utc(runForm.start.value), end: utc(runForm.end.value)};
      }
      try {
        const run = await api("POST", `${withProject(base + "/run", project)}${project ? "&" : "?"}async=true`, body);
        followRun(box, run);
        refreshLedger();
      } catch (error) { say(box, error.message, "error"); }
    });

    const backfillForm = $("#backfill-form");
    if (backfillForm) backfillForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = $("#backfill-outcome");
      try {
        const job = await api("POST", "/v1/backfill", {loop: name, project,
          from: utc(backfillForm.from.value), to: utc(backfillForm.to.value)});
        range = {from: utc(backfillForm.from.value), to: utc(backfillForm.to.value)};
        followBackfill(box, job, refreshLedger);
      } catch (error) { say(box, error.message, "error"); }
    });

    $("#rollback-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = $("#rollback-outcome");
      try {
        const loop = await api("POST", withProject(base + "/rollback", project),
                               {version: event.target.version.value});
        say(box, `${name} now at version ${loop.version.number}`, "ok");
        setTimeout(() => location.reload(), 600);
      } catch (error) { say(box, error.message, "error"); }
    });

    $("#delete-loop").addEventListener("click", async () => {
      if (!confirm(`Delete loop ${name}? Its schedule stops; its runs are kept.`)) return;
      try {
        await api("DELETE", withProject(base, project));
        location.href = "/";
      } catch (error) { alert(error.message); }
    });
  }

  function renderLedger(box, data) {
    const parts = [];
    for (const event of data.events) {
      const counts = Object.entries(event.counts).map(([status, n]) => `${n} ${status}`).join(", ");
      parts.push(el("h3", {text: `${event.name}`}, el("small", {text: ` ${event.cells.length} times: ${counts || "none"}`})));
      const days = new Map();
      for (const cell of event.cells) {
        const day = cell.time.slice(0, 10);
        if (!days.has(day)) days.set(day, []);
        days.get(day).push(cell);
      }
      const grid = el("div", {class: "ledger-grid", "data-event": event.name});
      for (const [day, cells] of days) {
        const row = el("div", {class: "cells"});
        for (const cell of cells) {
          const title = `${cell.time.slice(11, 19)} UTC: ${cell.status}` +
            (cell.attempt > 1 ? ` (attempt ${cell.attempt})` : "") +
            (cell.trigger ? `, ${cell.trigger}` : "");
          const attrs = {class: `cell ${cell.status}`, title, "data-status": cell.status,
                         "data-time": cell.time, "aria-label": title};
          row.append(cell.run ? el("a", {...attrs, href: `/ui/runs/${cell.run}`}) : el("span", attrs));
        }
        grid.append(el("div", {class: "day"}, el("span", {class: "date", text: day}), row));
      }
      parts.push(grid);
    }
    if (!data.events.length) parts.push(el("p", {class: "muted", text: "No scheduled event."}));
    box.replaceChildren(...parts);
  }

  // A queued run's status until it ends, with a link to its page.
  function followRun(box, run) {
    const link = el("a", {href: `/ui/runs/${run.id}`, text: `run ${run.id.slice(0, 12)}`});
    const status = el("span", {class: `status ${run.status}`, text: run.status});
    box.className = "outcome";
    box.replaceChildren(link, " ", status);
    const poll = async () => {
      const now = await api("GET", `/v1/runs/${run.id}`);
      status.className = `status ${now.status}`;
      status.textContent = now.status;
      if (now.status === "queued" || now.status === "running") setTimeout(poll, 700);
    };
    setTimeout(poll, 300);
  }

  function followBackfill(box, job, then) {
    const bar = el("progress", {max: job.total || 1, value: job.done || 0});
    const text = el("span");
    box.className = "outcome";
    box.replaceChildren(bar, " ", text);
    const show = (state) => {
      bar.max = state.total || 1;
      bar.value = state.done;
      text.textContent = `${state.done} of ${state.total} scheduled times` +
        ` (${state.success} succeeded, ${state.failed + state.timeout} failed, ${state.skipped} skipped)` +
        (state.status === "done" ? ": done" : "");
    };
    const poll = async () => {
      const state = await api("GET", `/v1/backfill/${job.id}`);
      show(state);
      then();
      if (state.status !== "done") setTimeout(poll, 1000);
    };
    poll();
  }

  // -- explore -------------------------------------------------------------------------------

  function explorePage() {
    const form = $("#query-form"), source = $("#tsl");
    source.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
    let chart = null;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = source.value;
      const errorBox = $("#query-error");
      errorBox.hidden = true;
      compile(text);
      try {
        const answer = await api("POST", "/v1/query", {tsl: text, explain: true});
        if (chart) { chart.destroy(); chart = null; }
        chart = plot(answer.series || []);
        showPlan(answer.plan || []);
        $("#meta-section").hidden = !answer.meta;
        if (answer.meta) $("#meta").textContent = JSON.stringify(answer.meta, null, 2);
      } catch (error) {
        showQueryError(errorBox, source, error);
      }
    });
  }

  function showQueryError(box, source, error) {
    const details = error.body.details || {};
    box.replaceChildren(el("strong", {text: error.body.type || "Error"}), ": " + error.message);
    if (details.line) {
      const lines = source.value.split("\n");
      const line = lines[details.line - 1] || "";
      const caret = " ".repeat(Math.max(0, (details.char || 1) - 1)) + "^";
      box.append(el("pre", {class: "caret", text: `${String(details.line).padStart(3)} | ${line}\n    | ${caret}`}));
      const offset = lines.slice(0, details.line - 1).reduce((n, l) => n + l.length + 1, 0) + (details.char || 1) - 1;
      source.focus();
      source.setSelectionRange(offset, Math.min(offset + 1, source.value.length));
    }
    box.hidden = false;
  }

  function showPlan(plan) {
    $("#plan-section").hidden = !plan.length;
    $("#plan").replaceChildren(...plan.map((step) => el("li", {}, el("span", {class: "muted", text: step.where + ": "}), step.step)));
  }

  async function compile(text) {
    try {
      const compiled = await api("POST", "/ui/api/compile", {tsl: text});
      for (const target of ["warpscript", "promql"]) {
        const shown = compiled[target];
        const box = $(`#compiled-${target}`);
        box.className = shown.error ? "error-text" : "";
        box.textContent = shown.error ? shown.error
          : typeof shown.text === "string" ? shown.text : JSON.stringify(shown.text, null, 2);
      }
      $("#compiled-section").hidden = false;
    } catch (_) { $("#compiled-section").hidden = true; }
  }

  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

  function seriesName(series) {
    const labels = Object.entries(series.labels || {}).map(([k, v]) => `${k}=${v}`).join(",");
    return labels ? `${series.name}{${labels}}` : series.name;
  }

  // uPlot wants one x array common to every series: the union of their times, nulls elsewhere.
  function aligned(series) {
    const times = [...new Set(series.flatMap((s) => s.timestamps))].sort((a, b) => a - b);
    const index = new Map(times.map((t, i) => [t, i]));
    const columns = series.map((s) => {
      const column = new Array(times.length).fill(null);
      s.timestamps.forEach((t, i) => { const v = s.values[i]; column[index.get(t)] = typeof v === "number" ? v : null; });
      return column;
    });
    return [times.map((t) => t / 1000), ...columns];
  }

  // Tick labels in UTC and 24 hours, as precise as the span asks: days, then minutes, seconds.
  function utcTicks(u, splits) {
    const span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
    return splits.map((s) => {
      const iso = new Date(s * 1000).toISOString();
      if (span > 3 * 86400) return iso.slice(5, 10);
      if (span > 86400) return iso.slice(5, 16).replace("T", " ");
      return iso.slice(11, span < 300 ? 19 : 16);
    });
  }

  function plot(series) {
    const section = $("#chart-section"), box = $("#chart");
    section.hidden = false;
    $("#series-count").textContent = `${series.length} series`;
    box.replaceChildren();
    $("#legend").replaceChildren(...series.map((s, i) => el("span", {}, el("i", {style: `background:${PALETTE[i % PALETTE.length]}`}), seriesName(s))));
    if (!series.length) { box.append(el("p", {class: "muted", text: "No series."})); return null; }
    if (typeof uPlot === "undefined") {
      box.append(el("p", {class: "error-box", text: "The chart library (uPlot) is not installed: run make install."}));
      return null;
    }
    const options = {
      width: Math.max(280, box.clientWidth), height: window.innerWidth < 600 ? 240 : 340,
      legend: {show: false}, cursor: {drag: {x: true, y: false}},
      series: [{}, ...series.map((s, i) => ({label: seriesName(s), stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: false}))],
      axes: [{values: utcTicks, label: "UTC", labelSize: 20}, {size: 60}],
    };
    const chart = new uPlot(options, aligned(series), box);
    window.addEventListener("resize", () => chart.setSize({width: Math.max(280, box.clientWidth), height: options.height}));
    return chart;
  }

  // -- deploy --------------------------------------------------------------------------------

  // The handler editors of the deploy form: [{name input, textarea, problems box}].
  const handlerEditors = (form) => [...form.querySelectorAll(".handler")].map((editor) => ({
    name: $("input[name=handler]", editor), area: $("textarea", editor), box: $(".problems", editor)}));

  function deployPage() {
    const form = $("#deploy-form"), outcome = $("#deploy-outcome");
    $("#add-file").addEventListener("click", () => {
      const copy = $(".handler", form).cloneNode(true);
      $("input[name=handler]", copy).value = `handler${handlerEditors(form).length + 1}.js`;
      $("textarea", copy).value = "export default async function (event) {\n  return {};\n}\n";
      $(".problems", copy).replaceChildren();
      $("#handlers").append(copy);
      $("input[name=handler]", copy).select();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      for (const box of form.querySelectorAll(".problems")) box.replaceChildren();
      for (const area of form.querySelectorAll("textarea")) area.classList.remove("has-problem");
      outcome.replaceChildren();
      const files = {};
      for (const {name, area} of handlerEditors(form)) if (name.value) files[name.value] = area.value;
      try {
        const answer = await api("POST", "/v1/loops", {file: form.file.value, content: form.content.value, files});
        outcome.className = "outcome ok";
        outcome.append(...answer.loops.flatMap((loop) => [
          el("div", {}, `deployed ${loop.name} version ${loop.version.number}${loop.created ? "" : " (unchanged)"}: `,
             el("a", {href: `/ui/loops/${encodeURIComponent(loop.name)}?project=${encodeURIComponent(loop.project)}`, text: `open ${loop.name}`}))]));
      } catch (error) {
        const problems = (error.body.details && error.body.details.problems) || [];
        outcome.className = "outcome error";
        outcome.textContent = problems.length
          ? `${problems.length} problem${problems.length === 1 ? "" : "s"}; nothing was deployed`
          : error.message;
        for (const problem of problems) showProblem(form, problem);
      }
    });
  }

  function showProblem(form, problem) {
    const editor = problem.file === form.file.value
      ? {area: form.content, box: $('.problems[data-for="content"]', form)}
      : handlerEditors(form).find(({name}) => name.value === problem.file);
    const area = editor ? editor.area : null;
    const box = editor ? editor.box : $("#deploy-outcome");
    const where = problem.line ? `${problem.file}:${problem.line}:${problem.col}` : problem.file;
    const item = el("div", {class: "problem", "data-line": problem.line || "", "data-col": problem.col || ""},
      el("a", {href: "#", text: where}), " ", problem.path ? `${problem.path}: ` : "", problem.message);
    if (area && problem.line) {
      area.classList.add("has-problem");
      const text = area.value.split("\n")[problem.line - 1] || "";
      item.append(el("pre", {class: "caret", text: `${String(problem.line).padStart(3)} | ${text}\n    | ${" ".repeat(Math.max(0, (problem.col || 1) - 1))}^`}));
      item.firstChild.addEventListener("click", (event) => {
        event.preventDefault();
        const lines = area.value.split("\n");
        const start = lines.slice(0, problem.line - 1).reduce((n, l) => n + l.length + 1, 0);
        area.focus();
        area.setSelectionRange(start + Math.max(0, (problem.col || 1) - 1), start + (lines[problem.line - 1] || "").length);
      });
    }
    box.append(item);
  }

  return {api, loopPage, explorePage, deployPage, renderLedger};
})();
