// The live page: follows the websocket feed (docs/protocol.md), draws with uPlot, keeps bounded history.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const HOP_SECONDS = 2.1;
  // ?keep_hours=N shortens (or lengthens) what the page keeps; 12 h covers a night.
  const KEEP_HOURS = Number(params.get("keep_hours")) > 0 ? Number(params.get("keep_hours")) : 12;
  const MAX_POINTS = Math.ceil((KEEP_HOURS * 3600) / HOP_SECONDS);
  const TRIM_SLACK = Math.min(256, Math.ceil(MAX_POINTS / 10)); // trim in batches, not on every message
  const BANDS = ["delta", "theta", "alpha", "beta", "gamma"];
  const BAND_COLOURS = ["#a371f7", "#58a6ff", "#3fb950", "#d29922", "#f85149"];
  const FMRI = ["bold_mean", "bold_variance", "alff_mean", "alff_variance"];
  const FMRI_COLOURS = ["#79c0ff", "#56d364", "#e3b341", "#ff7b72"];
  const STAGES = ["N3", "N2", "N1", "R", "W"]; // scored hypnogram, deepest at the bottom
  const CLASS_COLOURS = {
    wake: "#f2cc60", sleep: "#58a6ff", W: "#f2cc60", N1: "#79c0ff", N2: "#388bfd", N3: "#1f4fa8",
    R: "#d2a8ff", rest: "#f2cc60",
  };
  const FALLBACK_COLOURS = ["#58a6ff", "#f2cc60", "#3fb950", "#f85149", "#a371f7", "#79c0ff"];

  const token = params.get("token");
  const withToken = (url) =>
    token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
  if (token) document.getElementById("analysis-link").href = withToken("/analysis");

  const $ = (id) => document.getElementById(id);

  // ---- the data kept in the page: parallel arrays, trimmed to MAX_POINTS ----
  const data = {
    t0: null,
    lastStreamTime: -Infinity,
    labels: [],
    time: [],
    probability: {},
    predicted: [],
    scored: [],
    bands: BANDS.map(() => []),
    fmri: FMRI.map(() => []),
    flagged: 0,
    received: 0,
    drops: 0,
  };

  function colourOf(label, index) {
    return CLASS_COLOURS[label] || FALLBACK_COLOURS[index % FALLBACK_COLOURS.length];
  }

  function scoredLevel(stage) {
    if (stage === null || stage === undefined) return null;
    const text = String(stage).trim().toUpperCase();
    const match = text.match(/^(W|N1|N2|N3|N4|R|REM|[0-4])/);
    if (!match) return null;
    const code = { "0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "N3", N4: "N3", REM: "R" }[match[1]] || match[1];
    return STAGES.indexOf(code);
  }

  const finiteOrNull = (value) => (typeof value === "number" && Number.isFinite(value) ? value : null);
  const positiveOrNull = (value) => (typeof value === "number" && value > 0 && Number.isFinite(value) ? value : null);

  function clock(seconds) {
    if (seconds === null || !Number.isFinite(seconds)) return "—";
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  }

  // ---- charts ----
  const charts = {};
  const syncKey = uPlot.sync("sleepstream-time");
  const axisStyle = { stroke: "#8b98a5", grid: { stroke: "#2a333d", width: 1 }, ticks: { stroke: "#2a333d" } };
  const timeAxis = { ...axisStyle, values: (u, splits) => splits.map((s) => clock(s)) };

  function chartWidth(id) {
    return Math.max(300, $(id).clientWidth || 600);
  }

  function baseOptions(id, height) {
    return {
      width: chartWidth(id),
      height,
      cursor: { sync: { key: syncKey.key }, drag: { x: true, y: false } },
      scales: { x: { time: false } },
      legend: { live: true },
    };
  }

  function makeProbabilityChart(labels) {
    const options = {
      ...baseOptions("chart-probability", 220),
      scales: { x: { time: false }, p: { range: [0, 1] } },
      axes: [timeAxis, { ...axisStyle, scale: "p", values: (u, s) => s.map((v) => v.toFixed(1)) }],
      series: [
        { label: "session time", value: (u, v) => clock(v) },
        ...labels.map((label, i) => ({
          label: `P(${label})`, scale: "p", stroke: colourOf(label, i), width: 2,
          value: (u, v) => (v === null ? "—" : v.toFixed(2)),
        })),
      ],
    };
    return new uPlot(options, [[], ...labels.map(() => [])], $("chart-probability"));
  }

  function categoryAxis(names, size) {
    return {
      ...axisStyle,
      size,
      splits: () => names.map((_, i) => i),
      values: (u, splits) => splits.map((i) => names[i] ?? ""),
    };
  }

  function makeHypnogramCharts(labels) {
    const container = $("chart-hypnogram");
    container.innerHTML = "";
    const predictedHolder = document.createElement("div");
    predictedHolder.id = "chart-hypnogram-predicted";
    const scoredHolder = document.createElement("div");
    scoredHolder.id = "chart-hypnogram-scored";
    container.append(predictedHolder, scoredHolder);
    const stepped = uPlot.paths.stepped({ align: 1 });
    const width = chartWidth("chart-hypnogram");
    const predicted = new uPlot(
      {
        width, height: 40 + 28 * labels.length,
        cursor: { sync: { key: syncKey.key } }, legend: { show: true },
        scales: { x: { time: false }, y: { range: [-0.5, labels.length - 0.5] } },
        axes: [timeAxis, categoryAxis(labels, 70)],
        series: [
          { label: "session time", value: (u, v) => clock(v) },
          { label: "predicted", stroke: "#58a6ff", width: 3, paths: stepped,
            value: (u, v) => (v === null ? "—" : labels[v]) },
        ],
      },
      [[], []],
      predictedHolder,
    );
    const scored = new uPlot(
      {
        width, height: 170,
        cursor: { sync: { key: syncKey.key } }, legend: { show: true },
        scales: { x: { time: false }, y: { range: [-0.5, STAGES.length - 0.5] } },
        axes: [timeAxis, categoryAxis(STAGES, 70)],
        series: [
          { label: "session time", value: (u, v) => clock(v) },
          { label: "scored", stroke: "#e6edf3", width: 3, paths: stepped,
            value: (u, v) => (v === null ? "—" : STAGES[v]) },
        ],
      },
      [[], []],
      scoredHolder,
    );
    return { predicted, scored };
  }

  function makeBandChart() {
    const options = {
      ...baseOptions("chart-bands", 240),
      scales: { x: { time: false }, y: { distr: 3 } },
      axes: [timeAxis, { ...axisStyle, size: 60 }],
      series: [
        { label: "session time", value: (u, v) => clock(v) },
        ...BANDS.map((band, i) => ({
          label: band, stroke: BAND_COLOURS[i], width: 1.5,
          value: (u, v) => (v === null ? "—" : v.toPrecision(3)),
        })),
      ],
    };
    return new uPlot(options, [[], ...BANDS.map(() => [])], $("chart-bands"));
  }

  function makeFmriChart() {
    const scales = { x: { time: false } };
    FMRI.forEach((name) => { scales[name] = { auto: true }; });
    const options = {
      ...baseOptions("chart-fmri", 240),
      scales,
      axes: [timeAxis, { ...axisStyle, scale: "bold_mean", size: 60 }],
      series: [
        { label: "session time", value: (u, v) => clock(v) },
        ...FMRI.map((name, i) => ({
          label: name.replace("_", " "), scale: name, stroke: FMRI_COLOURS[i], width: 1.5,
          value: (u, v) => (v === null ? "—" : v.toPrecision(4)),
        })),
      ],
    };
    return new uPlot(options, [[], ...FMRI.map(() => [])], $("chart-fmri"));
  }

  function ensureCharts(labels) {
    if (charts.probability && labels.join() === data.labels.join()) return;
    data.labels = labels.slice();
    labels.forEach((label) => { if (!data.probability[label]) data.probability[label] = []; });
    for (const chart of [charts.probability, charts.hypnogram?.predicted, charts.hypnogram?.scored]) {
      if (chart) chart.destroy();
    }
    charts.probability = makeProbabilityChart(labels);
    charts.hypnogram = makeHypnogramCharts(labels);
    if (!charts.bands) charts.bands = makeBandChart();
    if (!charts.fmri) charts.fmri = makeFmriChart();
  }

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      draw();
    });
  }

  function draw() {
    if (!charts.probability) return;
    charts.probability.setData([data.time, ...data.labels.map((label) => data.probability[label])]);
    charts.hypnogram.predicted.setData([data.time, data.predicted]);
    charts.hypnogram.scored.setData([data.time, data.scored]);
    charts.bands.setData([data.time, ...data.bands]);
    charts.fmri.setData([data.time, ...data.fmri]);
  }

  function trim() {
    const excess = data.time.length - MAX_POINTS;
    if (excess < TRIM_SLACK) return;
    const cut = (array) => array.splice(0, excess);
    cut(data.time);
    cut(data.predicted);
    cut(data.scored);
    Object.values(data.probability).forEach(cut);
    data.bands.forEach(cut);
    data.fmri.forEach(cut);
  }

  // ---- messages ----
  function addPrediction(message, live) {
    if (!(message.stream_time > data.lastStreamTime)) return false; // already shown (history overlap)
    const labels = Object.keys(message.probabilities);
    ensureCharts(labels);
    if (data.t0 === null) data.t0 = message.stream_time;
    data.lastStreamTime = message.stream_time;
    data.received += 1;
    data.time.push(message.stream_time - data.t0);
    for (const label of data.labels) data.probability[label].push(finiteOrNull(message.probabilities[label]));
    data.predicted.push(data.labels.indexOf(message.label));
    data.scored.push(scoredLevel(message.stage));
    BANDS.forEach((band, i) => data.bands[i].push(positiveOrNull(message.features[`eeg_${band}_power`])));
    FMRI.forEach((name, i) => data.fmri[i].push(finiteOrNull(message.features[name])));
    if (!message.quality.usable) data.flagged += 1;
    trim();
    showCurrent(message, live);
    scheduleDraw();
    return true;
  }

  function showCurrent(message, live) {
    const label = $("state-label");
    label.textContent = message.label;
    label.dataset.label = message.label;
    const p = message.probabilities[message.label];
    $("state-probability").textContent = `p = ${p.toFixed(2)}`;
    $("scored-stage").textContent = message.stage ?? "—";
    $("window-count").textContent = String(data.received);
    $("window-count").dataset.window = String(message.window);
    $("session-time").textContent = clock(message.stream_time - data.t0);
    const processing = message.latency_ms;
    if (live) {
      const delivery = Math.max(0, Date.now() - message.wall_time * 1000);
      $("latency").textContent = `${(processing + delivery).toFixed(0)} ms`;
      $("latency").title = `processing ${processing.toFixed(1)} ms + delivery ${delivery.toFixed(0)} ms`;
    } else {
      $("latency").textContent = `${processing.toFixed(1)} ms`;
      $("latency").title = "processing time (recorded)";
    }
    const quality = $("window-quality");
    if (message.quality.usable) {
      quality.textContent = "good";
      quality.className = "";
    } else {
      const problems = [...(message.quality.problems || []), ...(message.quality.feature_problems || [])];
      quality.textContent = "flagged";
      quality.className = "flagged";
      quality.title = problems.join("; ");
    }
  }

  function formatNumber(value, digits, unit = "") {
    return value === null || value === undefined ? "—" : `${Number(value).toFixed(digits)}${unit}`;
  }

  function lagText(lag) {
    if (lag === null || lag === undefined) return "—";
    // A replay faster than real time stamps samples ahead of the clock: no meaningful lag.
    if (Math.abs(lag) > 60) return "n/a";
    return `${(lag * 1000).toFixed(1)} ms`;
  }

  function showStatus(message) {
    if (message.session) showSession(message.session);
    const health = message.health;
    const body = $("health").querySelector("tbody");
    body.innerHTML = "";
    if (!health) {
      $("health-summary").textContent = "no acquisition (a recorded session or the analysis server)";
      return;
    }
    for (const [kind, stream] of Object.entries(health.streams)) {
      const row = document.createElement("tr");
      row.dataset.stream = kind;
      const since = stream.seconds_since_data;
      const stale = since === null ? "warn" : since > 15 ? "bad" : since > 5 ? "warn" : "ok";
      const cells = [
        [kind, ""],
        [stream.connected ? "connected" : "lost", stream.connected ? "ok" : "bad"],
        [`${formatNumber(stream.effective_rate, 2)} / ${formatNumber(stream.nominal_rate, 2)}`, ""],
        [lagText(stream.lag), ""],
        [since === null ? "never" : `${since.toFixed(1)} s ago`, kind === "truth" || kind === "triggers" ? "" : stale],
        [String(stream.gaps), stream.gaps ? "warn" : ""],
        [String(stream.dropped_samples), stream.dropped_samples ? "warn" : ""],
        [String(stream.reconnects), stream.reconnects ? "warn" : ""],
        [String(stream.restarts), stream.restarts ? "warn" : ""],
      ];
      for (const [text, state] of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (state) cell.className = state;
        row.append(cell);
      }
      if (!stream.connected) row.className = "bad";
      body.append(row);
    }
    const windows = health.windows;
    const pipeline = message.pipeline;
    $("health-summary").textContent =
      `windows: ${windows.emitted} cut, ${windows.skipped} skipped, ${windows.dropped} dropped, ` +
      `${windows.queued} queued · predictions ${pipeline.predictions}, errors ${pipeline.errors} · ` +
      `flagged windows on this page ${data.flagged} · feed clients ${message.clients}` +
      (data.drops ? ` · messages this page missed: ${data.drops}` : "") +
      (health.error ? ` · acquisition error: ${health.error}` : "");
  }

  function showSession(session) {
    const parts = [session.name, session.mode, session.speed ? `${session.speed}× replay` : null];
    $("session-name").textContent = parts.filter(Boolean).join(" · ");
  }

  // ---- connection ----
  let socket = null;
  let attempt = 0;
  let retryTimer = null;

  function setConnection(state, text) {
    const element = $("connection");
    element.dataset.state = state;
    element.textContent = text;
  }

  async function fetchJson(url) {
    const response = await fetch(withToken(url), { cache: "no-store" });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  // Live predictions that arrive while the history is being fetched wait here, so that the page
  // shows every window in order after a (re)connection.
  let pendingLive = null;

  async function backfill() {
    pendingLive = [];
    try {
      const limit = 5000;
      for (;;) {
        const since = Number.isFinite(data.lastStreamTime) ? data.lastStreamTime : 0;
        const history = await fetchJson(`/api/history?since=${since}&limit=${limit}`);
        for (const message of history) addPrediction(message, false);
        if (history.length < limit) break;
      }
    } finally {
      const waiting = pendingLive;
      pendingLive = null;
      for (const message of waiting) addPrediction(message, true);
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    setConnection(attempt ? "reconnecting" : "connecting", attempt ? "reconnecting…" : "connecting…");
    socket = new WebSocket(withToken(`${scheme}://${location.host}/ws?types=prediction,status,session`));
    socket.onopen = () => {
      attempt = 0;
      setConnection("connected", "connected");
      backfill().catch((error) => console.warn("history unavailable:", error.message));
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "prediction") {
        if (pendingLive) pendingLive.push(message);
        else addPrediction(message, true);
      }
      else if (message.type === "status") showStatus(message);
      else if (message.type === "session") showSession(message.session || {});
      else if (message.type === "drops") data.drops = message.dropped;
    };
    socket.onclose = (event) => {
      attempt += 1;
      const delay = Math.min(10, 2 ** Math.min(attempt - 1, 4));
      if (event.code === 1008) {
        setConnection("refused", "refused: open this page with ?token=…");
      } else {
        setConnection("reconnecting", `disconnected · retrying in ${delay} s`);
      }
      retryTimer = setTimeout(connect, delay * 1000);
    };
  }

  async function start() {
    try {
      const model = await fetchJson("/api/model");
      ensureCharts(model.label_names);
      $("footer-model").textContent =
        `model: ${model.labels}, K = ${model.context}, created ${model.created ?? "?"}`;
    } catch (error) {
      console.warn("model information unavailable:", error.message);
    }
    $("footer-client").textContent = `this page keeps the last ${KEEP_HOURS} hours (${MAX_POINTS} windows)`;
    connect();
  }

  window.addEventListener("resize", () => {
    for (const chart of [charts.probability, charts.hypnogram?.predicted, charts.hypnogram?.scored,
      charts.bands, charts.fmri]) {
      if (chart) chart.setSize({ width: chartWidth(chart.root.parentElement.id), height: chart.height });
    }
  });

  // What the browser tests (and a curious user in the console) can read.
  window.sleepstreamLive = {
    windows: () => data.received,
    hypnogramLength: () => data.predicted.length,
    scoredLength: () => data.scored.filter((v) => v !== null).length,
    maxPoints: MAX_POINTS,
    trimSlack: TRIM_SLACK,
    connection: () => $("connection").dataset.state,
  };

  start();
})();
