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
  // Units as in docs/features.md for definitions without bold_level and alff_measure (BOLD mean in the
  // scanner's units, the others from percent signal change); setFmriUnits adapts them to the model's.
  const FMRI = [
    { name: "bold_mean", title: "BOLD mean", unit: "scanner units", short: "a.u.", colour: "#79c0ff" },
    { name: "bold_variance", title: "BOLD variance", unit: "%²", short: "%²", colour: "#56d364" },
    { name: "alff_mean", title: "ALFF mean", unit: "%", short: "%", colour: "#e3b341" },
    { name: "alff_variance", title: "ALFF variance", unit: "%²", short: "%²", colour: "#ff7b72" },
  ];
  // Stage axis of the hypnograms, as clinical hypnograms draw it: W on top, then REM on its own level
  // (also marked by a thick bar), N1, N2, and N3 at the bottom.
  const STAGES = ["N3", "N2", "N1", "R", "W"];
  const REM_LEVEL = STAGES.indexOf("R");
  const REM_COLOUR = "#f85149";
  const NO_FMRI_COLOUR = "#d29922";
  const STAGE_CLASSES = new Set(["W", "N1", "N2", "N3", "N4", "R", "REM"]); // a bundle that predicts stages
  const LEVEL_PITCH = 24; // pixels per level of a hypnogram, so that both tracks share one scale
  const HYPNOGRAM_TOP = 10; // pixels above a hypnogram's plot (room for the top level's line)
  const HYPNOGRAM_AXIS = 44; // pixels of a hypnogram's time axis
  const CLASS_COLOURS = {
    wake: "#f2cc60", sleep: "#58a6ff", W: "#f2cc60", N1: "#79c0ff", N2: "#388bfd", N3: "#1f4fa8",
    R: "#d2a8ff", rest: "#f2cc60",
  };
  const STREAM_NAMES = { eeg: "EEG", fmri: "fMRI", triggers: "triggers", truth: "truth (scoring)" };
  // Problem codes (core/problems.py) about the fMRI data: the note under the fMRI charts gives their texts.
  const FMRI_PROBLEM_CODES = new Set([
    "few_fmri_volumes", "fmri_volumes_missing", "fmri_stale", "fmri_unmatched", "trigger_latency_high",
    "trigger_latency_changed", "fmri_features_need_volumes", "fmri_window_short",
  ]);
  const SYNTHETIC_BANNER = "model trained on synthetic data: its predictions say nothing about real brains";
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
    predicted: [], // predicted class names
    scored: [], // scored stages as levels of STAGES
    fmriUsed: [], // whether the model used each window's fMRI (false: predicted from the EEG alone)
    withoutFmri: 0, // windows predicted without fMRI received by this page
    bands: BANDS.map(() => []),
    fmri: FMRI.map(() => []),
    flagged: 0,
    received: 0,
    drawn: 0, // windows received when the charts were last redrawn
    lastWindow: null, // the feed's window number of the newest prediction
    fmriConnected: null, // from the status messages: null until one says
    lastMessage: null,
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

  // The axis of the predicted hypnogram: the scored one's stages when the bundle predicts stages, else
  // its own classes with the first one (wake, rest) on top, as W tops the stage axis.
  function predictedAxis(labels) {
    if (labels.length && labels.every((label) => STAGE_CLASSES.has(String(label).toUpperCase()))) {
      return { names: STAGES, stages: true, level: (label) => scoredLevel(label) };
    }
    const names = labels.slice().reverse();
    return { names, stages: false, level: (label) => (names.includes(label) ? names.indexOf(label) : null) };
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
  // Tick labels such as 0:00:05 need room: at least 64 px apart, also on the narrow fMRI charts.
  const timeAxis = { ...axisStyle, space: 64, values: (u, splits) => splits.map((s) => clock(s)) };

  function chartWidth(id) {
    return Math.max(240, $(id).clientWidth || 600);
  }

  // Not hovering, uPlot's legend shows no value; show the newest window's instead. Hovering (this chart
  // or a synced one) sets cursor.idx, and the legend then shows the hovered window as usual.
  function legendShowsLatest(u) {
    if (u.cursor.idx !== null && u.cursor.idx !== undefined) return;
    const last = u.data[0].length - 1;
    if (last < 0 || u.legend.idx === last) return;
    u.setLegend({ idx: last });
  }

  function baseOptions(width, height) {
    return {
      width,
      height,
      cursor: { sync: { key: syncKey.key }, drag: { x: true, y: false } },
      scales: { x: { time: false } },
      legend: { live: true },
      hooks: { setLegend: [legendShowsLatest] },
    };
  }

  function makeProbabilityChart(labels) {
    const options = {
      ...baseOptions(chartWidth("chart-probability"), 220),
      scales: { x: { time: false }, p: { range: [0, 1] } },
      axes: [timeAxis, { ...axisStyle, scale: "p", values: (u, s) => s.map((v) => v.toFixed(1)) }],
      series: [
        { label: "session time", value: (u, v) => clock(v) },
        ...labels.map((label, i) => ({
          label: `P(${label})`, scale: "p", stroke: colourOf(label, i), width: 2,
          value: (u, v) => (v == null ? "—" : v.toFixed(2)),
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

  // A thick bar over the stretches at REM: the level where a window is at REM and at the window after
  // it (the stepped line holds a window's level until the next window).
  function remBar(levels) {
    return levels.map((v, i) => (v === REM_LEVEL || (i > 0 && levels[i - 1] === REM_LEVEL) ? REM_LEVEL : null));
  }

  // A strip below the lowest level over the windows predicted without fMRI.
  const NO_FMRI_LEVEL = -0.38;
  function withoutFmriStrip(used) {
    return used.map((u, i) => (u === false || (i > 0 && used[i - 1] === false) ? NO_FMRI_LEVEL : null));
  }

  function hypnogramChart(holder, width, title, names, stroke, valueOf, extra = {}) {
    const remSeries = extra.rem
      ? [{ label: "REM", stroke: REM_COLOUR, width: 8, paths: uPlot.paths.stepped({ align: 1 }),
        points: { show: false },
        // The bar runs on to the next window; the legend tells the window's own level.
        value: (u, v, series, idx) => (idx != null && u.data[1][idx] === REM_LEVEL ? "REM" : "—") }]
      : [];
    const fmriSeries = extra.withoutFmri
      ? [{ label: "without fMRI", stroke: NO_FMRI_COLOUR, width: 5, paths: uPlot.paths.stepped({ align: 1 }),
        points: { show: false },
        value: (u, v, series, idx) => (idx != null && data.fmriUsed[idx] === false ? "EEG only" : "—") }]
      : [];
    // Fixed padding and axis size: the plot area is then LEVEL_PITCH pixels per level on every track.
    return new uPlot(
      {
        ...baseOptions(width, HYPNOGRAM_TOP + HYPNOGRAM_AXIS + LEVEL_PITCH * names.length),
        title,
        padding: [HYPNOGRAM_TOP, 16, 0, 0],
        scales: { x: { time: false }, y: { range: [-0.5, names.length - 0.5] } },
        axes: [{ ...timeAxis, size: HYPNOGRAM_AXIS }, categoryAxis(names, 70)],
        series: [
          { label: "session time", value: (u, v) => clock(v) },
          { label: title.split(" ")[0], stroke, width: 3, paths: uPlot.paths.stepped({ align: 1 }),
            value: (u, v) => (v == null ? "—" : valueOf(v)) },
          ...remSeries,
          ...fmriSeries,
        ],
      },
      [[], [], ...remSeries.map(() => []), ...fmriSeries.map(() => [])],
      holder,
    );
  }

  function makeHypnogramCharts(labels) {
    const container = $("chart-hypnogram");
    container.innerHTML = "";
    const predictedHolder = document.createElement("div");
    predictedHolder.id = "chart-hypnogram-predicted";
    const scoredHolder = document.createElement("div");
    scoredHolder.id = "chart-hypnogram-scored";
    container.append(predictedHolder, scoredHolder);
    const axis = predictedAxis(labels);
    const width = chartWidth("chart-hypnogram");
    const predictedTitle = axis.stages
      ? "predicted stage"
      : `predicted (${labels.join(" / ")}: the classes this model tells apart)`;
    $("hypnogram-hint").textContent = axis.stages
      ? "predicted (top) and scored by experts (bottom) on the same stage axis"
      : "predicted classes (top), aligned in time with the stages scored by experts (bottom)";
    const predicted = hypnogramChart(predictedHolder, width, predictedTitle, axis.names, "#58a6ff",
      (v) => axis.names[v], { rem: axis.stages, withoutFmri: true });
    const scored = hypnogramChart(scoredHolder, width, "scored by experts", STAGES, "#e6edf3",
      (v) => STAGES[v], { rem: true });
    return { predicted, scored, axis };
  }

  function makeBandChart() {
    const options = {
      ...baseOptions(chartWidth("chart-bands"), 300),
      scales: { x: { time: false }, y: { distr: 3 } },
      axes: [timeAxis, { ...axisStyle, size: 60, label: "power (µV²)", labelSize: 20 }],
      series: [
        { label: "session time", value: (u, v) => clock(v) },
        ...BANDS.map((band, i) => ({
          label: band, stroke: BAND_COLOURS[i], width: 1.5,
          value: (u, v) => (v == null ? "no data" : `${v.toPrecision(3)} µV²`),
        })),
      ],
    };
    return new uPlot(options, [[], ...BANDS.map(() => [])], $("chart-bands"));
  }

  // A value with four significant digits, without an exponent for the magnitudes these metrics take.
  const fourDigits = (v) =>
    (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5 ? String(Number(v.toPrecision(4))) : v.toPrecision(3));

  // Small multiples: one chart per fMRI metric, each with its own y axis in its own unit.
  function makeFmriCharts() {
    const container = $("chart-fmri");
    container.innerHTML = "";
    return FMRI.map((metric) => {
      const cell = document.createElement("div");
      cell.className = "multiple";
      cell.id = `chart-fmri-${metric.name}`;
      cell.dataset.metric = metric.name;
      const empty = document.createElement("div");
      empty.className = "no-data";
      empty.textContent = "no data";
      cell.append(empty);
      container.append(cell);
      const options = {
        ...baseOptions(chartWidth(cell.id), 170),
        title: `${metric.title} (${metric.unit})`,
        scales: {
          x: { time: false },
          // Nothing finite yet (fMRI lost from the start): an empty 0–1 axis, not uPlot's default.
          y: {
            range: (u, min, max) => {
              u.noData = min === null || max === null;
              return u.noData ? [0, 1] : uPlot.rangeNum(min, max, 0.1, true);
            },
          },
        },
        axes: [timeAxis, { ...axisStyle, size: 60, space: 18, label: metric.unit, labelSize: 18,
          values: (u, s) => s.map((v) => (u.noData ? "" : fourDigits(v))) }],
        series: [
          { label: "session time", value: (u, v) => clock(v) },
          { label: metric.title, stroke: metric.colour, width: 1.5,
            value: (u, v) => (v == null ? "no data" : `${fourDigits(v)} ${metric.short}`) },
        ],
      };
      return new uPlot(options, [[], []], cell);
    });
  }

  function allCharts() {
    return [charts.probability, charts.hypnogram?.predicted, charts.hypnogram?.scored, charts.bands,
      ...(charts.fmri || [])].filter(Boolean);
  }

  // The fMRI metrics' units follow the feature settings the model was trained with (docs/features.md),
  // which the run computes too (a bundle whose contract differs is refused).
  function setFmriUnits(contract) {
    const features = (contract && contract.features) || {};
    const [bold, , alff, alffVariance] = FMRI;
    if (features.bold_level && features.bold_level !== "raw") {
      Object.assign(bold, { unit: "% of baseline", short: "%" });
    }
    if (features.alff_measure === "falff") {
      Object.assign(alff, { unit: "fraction", short: "" });
      Object.assign(alffVariance, { unit: "fraction²", short: "" });
    } else if (features.alff_measure === "alff") {
      Object.assign(alff, { unit: "%/√Hz", short: "%/√Hz" });
      Object.assign(alffVariance, { unit: "(%/√Hz)²", short: "(%/√Hz)²" });
    }
  }

  function ensureCharts(labels) {
    if (charts.probability && labels.join() === data.labels.join()) return;
    data.labels = labels.slice();
    labels.forEach((label) => {
      if (!data.probability[label]) data.probability[label] = data.time.map(() => null);
    });
    for (const chart of [charts.probability, charts.hypnogram?.predicted, charts.hypnogram?.scored]) {
      if (chart) chart.destroy();
    }
    charts.probability = makeProbabilityChart(labels);
    charts.hypnogram = makeHypnogramCharts(labels);
    if (!charts.bands) charts.bands = makeBandChart();
    if (!charts.fmri) charts.fmri = makeFmriCharts();
    if (data.time.length) scheduleDraw();
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
    const axis = charts.hypnogram.axis;
    charts.probability.setData([data.time, ...data.labels.map((label) => data.probability[label])]);
    const predictedLevels = data.predicted.map(axis.level);
    charts.hypnogram.predicted.setData([
      data.time, predictedLevels, ...(axis.stages ? [remBar(predictedLevels)] : []),
      withoutFmriStrip(data.fmriUsed),
    ]);
    charts.hypnogram.scored.setData([data.time, data.scored, remBar(data.scored)]);
    const scoredTitle = charts.hypnogram.scored.root.querySelector(".u-title");
    scoredTitle.textContent = data.scored.some((v) => v !== null)
      ? "scored by experts"
      : "scored by experts: no scored epoch received (only replays with truth carry the scoring)";
    charts.bands.setData([data.time, ...data.bands]);
    charts.fmri.forEach((chart, i) => chart.setData([data.time, data.fmri[i]]));
    data.drawn = data.received;
    showMissing();
  }

  // Say so where the newest window has no value, rather than leave a chart that looks merely flat.
  function showMissing() {
    const message = data.lastMessage;
    if (!message) return;
    const last = data.time.length - 1;
    const coded = [
      ...(message.quality.problem_codes || []), ...(message.quality.feature_problem_codes || []),
    ];
    const missingFmri = FMRI.filter((metric, i) => data.fmri[i][last] === null);
    charts.fmri.forEach((chart, i) => {
      chart.root.parentElement.dataset.missing = String(data.fmri[i][last] === null);
    });
    const all = missingFmri.length === FMRI.length;
    $("chart-fmri").dataset.state = all ? "missing" : missingFmri.length ? "partial" : "ok";
    const fmriNote = $("fmri-note");
    fmriNote.hidden = missingFmri.length === 0;
    if (missingFmri.length) {
      const reasons = coded.filter((p) => FMRI_PROBLEM_CODES.has(p.code)).map((p) => p.text);
      if (data.fmriConnected === false) reasons.unshift("the fMRI stream is lost");
      const which = all ? "" : ` for ${missingFmri.map((m) => m.title).join(", ")}`;
      const why = reasons.length ? `: ${reasons.join("; ")}` : "";
      fmriNote.textContent = `no fMRI data in the latest window${which}${why}`;
    }
    const missingBands = BANDS.filter((band, i) => data.bands[i][last] === null);
    const bandsNote = $("bands-note");
    bandsNote.hidden = missingBands.length === 0;
    bandsNote.textContent = missingBands.length
      ? `no EEG band power in the latest window for ${missingBands.join(", ")}` : "";
  }

  function trim() {
    const excess = data.time.length - MAX_POINTS;
    if (excess < TRIM_SLACK) return;
    const cut = (array) => array.splice(0, excess);
    cut(data.time);
    cut(data.predicted);
    cut(data.scored);
    cut(data.fmriUsed);
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
    data.predicted.push(message.label);
    data.scored.push(scoredLevel(message.stage));
    const fmriUsed = message.fmri_used !== false; // absent in records older than the field: used
    data.fmriUsed.push(fmriUsed);
    if (!fmriUsed) data.withoutFmri += 1;
    BANDS.forEach((band, i) => data.bands[i].push(positiveOrNull(message.features[`eeg_${band}_power`])));
    FMRI.forEach((metric, i) => data.fmri[i].push(finiteOrNull(message.features[metric.name])));
    data.lastWindow = message.window;
    data.lastMessage = message;
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
    $("window-number").textContent = String(message.window);
    $("windows-received").textContent = `${data.received} received by this page`;
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
    const fmri = $("fmri-used");
    const fmriUsed = message.fmri_used !== false;
    fmri.textContent = fmriUsed ? "EEG + fMRI" : "EEG only";
    fmri.className = fmriUsed ? "" : "without-fmri";
    const why = (message.quality.problem_codes || []).find((p) => p.code === "predicted_without_fmri");
    fmri.title = fmriUsed
      ? "the model used the window's EEG and fMRI"
      : (why ? why.text : "predicted from the EEG alone");
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
    return Math.abs(lag) >= 1 ? `${lag.toFixed(1)} s` : `${(lag * 1000).toFixed(1)} ms`;
  }

  const PAIRING_NAMES = {
    run_start: "by order from the run start",
    expected_latency: "by the expected latency",
    assumed: "assumed (unverified)",
  };

  // The fMRI row's pairing: how volumes meet their triggers, and the export latency measured.
  function pairingCell(stream) {
    if (!stream.pairing) return ["", ""];
    const latency = stream.trigger_latency === null || stream.trigger_latency === undefined
      ? "latency n/a" : `latency ${stream.trigger_latency.toFixed(2)} s`;
    const problems = Array.isArray(stream.problem_codes) ? stream.problem_codes : [];
    const changes = stream.latency_changes ? ` · ${stream.latency_changes} change(s)` : "";
    const text = `${PAIRING_NAMES[stream.pairing] || stream.pairing} · ${latency}${changes}`;
    const flagged = problems.length > 0 || stream.pairing === "assumed";
    return [problems.length ? `${text} · ${problems.map((p) => p.text).join("; ")}` : text, flagged ? "warn" : ""];
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
    data.fmriConnected = health.streams.fmri ? Boolean(health.streams.fmri.connected) : null;
    const withoutFmri = [String(data.withoutFmri), data.withoutFmri ? "warn" : ""];
    for (const [kind, stream] of Object.entries(health.streams)) {
      const row = document.createElement("tr");
      row.dataset.stream = kind;
      if (stream.error) row.title = stream.error;
      const since = stream.seconds_since_data;
      const stale = since === null ? "warn" : since > 15 ? "bad" : since > 5 ? "warn" : "ok";
      const cells = [
        [STREAM_NAMES[kind] || kind, ""],
        [stream.connected ? "connected" : "lost", stream.connected ? "ok" : "bad"],
        [`${formatNumber(stream.effective_rate, 2)} / ${formatNumber(stream.nominal_rate, 2)}`, ""],
        [lagText(stream.lag), ""],
        [since === null ? "never" : `${since.toFixed(1)} s ago`, kind === "truth" || kind === "triggers" ? "" : stale],
        [String(stream.gaps), stream.gaps ? "warn" : ""],
        [String(stream.dropped_samples), stream.dropped_samples ? "warn" : ""],
        [String(stream.reconnects), stream.reconnects ? "warn" : ""],
        [String(stream.restarts), stream.restarts ? "warn" : ""],
        pairingCell(stream),
        kind === "fmri" ? withoutFmri : ["", ""],
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
    if (!health.streams.fmri) {
      // An EEG-only session: no fMRI stream to show, but every window is predicted without fMRI.
      const row = document.createElement("tr");
      row.dataset.stream = "fmri";
      const cells = [["fMRI", ""], ["none: EEG only", "warn"], ...Array(8).fill(["—", ""]), withoutFmri];
      for (const [text, state] of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (state) cell.className = state;
        row.append(cell);
      }
      body.append(row);
    }
    showArtefacts(health.artefacts);
    if (data.lastMessage) showMissing();
    const windows = health.windows;
    const pipeline = message.pipeline;
    $("health-summary").textContent =
      `windows: ${windows.emitted} cut, ${windows.skipped} skipped, ${windows.dropped} dropped, ` +
      `${windows.queued} queued · predictions ${pipeline.predictions}, errors ${pipeline.errors} · ` +
      `flagged windows on this page ${data.flagged} · predicted without fMRI ${data.withoutFmri} · ` +
      `feed clients ${message.clients}` +
      (data.drops ? ` · messages this page missed: ${data.drops}` : "") +
      (health.error ? ` · acquisition error: ${health.error}` : "");
  }

  // The in-scanner correction's state (health.artefacts; null when the EEG is not corrected).
  function showArtefacts(artefacts) {
    const table = $("artefacts");
    table.hidden = !artefacts;
    if (!artefacts) return;
    const body = table.querySelector("tbody");
    body.innerHTML = "";
    const gradient = artefacts.gradient;
    const bcg = artefacts.bcg;
    const residual = (ratio) =>
      typeof ratio === "number" && ratio > 0 ? `${(10 * Math.log10(ratio)).toFixed(1)} dB` : "—";
    const rows = [
      [
        ["MR gradient", ""],
        [gradient.template_ready ? "ready" : "building", gradient.template_ready ? "ok" : "warn"],
        [`${gradient.volumes_averaged} volumes`, ""],
        [gradient.tr_estimate ? `TR ${gradient.tr_estimate.toFixed(3)} s` : "no triggers yet", ""],
        [typeof gradient.residual_power_ratio === "number" ? `${gradient.residual_power_ratio.toFixed(1)} dB` : "—", ""],
        [
          `${gradient.triggers_inferred} trigger(s) inferred · ${gradient.segments_uncorrected} segment(s) uncorrected`,
          gradient.segments_uncorrected ? "warn" : "",
        ],
      ],
    ];
    if (bcg) {
      const source = bcg.beat_source === "eeg" ? "beats from the EEG (ECG unusable)" : "beats from the ECG";
      rows.push([
        ["pulse (BCG)", ""],
        [bcg.template_ready ? "ready" : "building", bcg.template_ready ? "ok" : "warn"],
        [`${bcg.beats_in_template} beats`, ""],
        [bcg.heart_rate_bpm ? `${bcg.heart_rate_bpm.toFixed(0)} bpm` : "no beats yet", ""],
        [residual(bcg.residual_power_ratio), ""],
        [`ECG ${bcg.ecg_quality} · ${source}`, bcg.ecg_quality === "good" ? "" : "warn"],
      ]);
    }
    rows.push([
      ["latency added", ""],
      [`${artefacts.latency_s.toFixed(2)} s`, ""],
      [`${artefacts.input_rate} → ${artefacts.output_rate} Hz`, ""],
      ["", ""],
      ["", ""],
      ["", ""],
    ]);
    for (const cells of rows) {
      const row = document.createElement("tr");
      for (const [text, state] of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (state) cell.className = state;
        row.append(cell);
      }
      body.append(row);
    }
  }

  function showSession(session) {
    const parts = [session.name, session.mode, session.speed ? `${session.speed}× replay` : null];
    $("session-name").textContent = parts.filter(Boolean).join(" · ");
    modelWarnings.session = Array.isArray(session.model_warnings) ? session.model_warnings : [];
    showModelBanner();
  }

  // The banner above the page: the model was trained on synthetic data (from /api/model), and the
  // session's own warnings about the model (EEG rate or TR outside the trained range).
  const modelWarnings = { synthetic: false, session: [] };
  function showModelBanner() {
    const lines = [
      ...(modelWarnings.synthetic ? [SYNTHETIC_BANNER] : []),
      ...modelWarnings.session.filter((text) => text !== SYNTHETIC_BANNER),
    ];
    const banner = $("model-banner");
    banner.replaceChildren(...lines.map((text) => {
      const line = document.createElement("div");
      line.textContent = text;
      return line;
    }));
    banner.hidden = lines.length === 0;
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
      setFmriUnits(model.feature_contract);
      ensureCharts(model.label_names);
      $("footer-model").textContent =
        `model: ${model.labels}, K = ${model.context}, created ${model.created ?? "?"}` +
        (model.contract ? ` · ${model.contract.description}` : "");
      modelWarnings.synthetic = Boolean(model.contract && model.contract.synthetic);
      showModelBanner();
    } catch (error) {
      console.warn("model information unavailable:", error.message);
    }
    $("footer-client").textContent = `this page keeps the last ${KEEP_HOURS} hours (${MAX_POINTS} windows)`;
    connect();
  }

  window.addEventListener("resize", () => {
    for (const chart of allCharts()) {
      chart.setSize({ width: chartWidth(chart.root.parentElement.id), height: chart.height });
    }
  });

  // The y axis of a chart as drawn: its scale, tick labels, axis label and title.
  const yAxis = (chart) => ({
    min: chart.scales.y.min,
    max: chart.scales.y.max,
    ticks: chart.axes[1]._values,
    label: chart.axes[1].label ?? null,
    title: chart.root.querySelector(".u-title")?.textContent ?? null,
    pixelsPerUnit: chart.bbox.height / uPlot.pxRatio / (chart.scales.y.max - chart.scales.y.min),
  });
  // What the browser tests (and a curious user in the console) can read.
  window.sleepstreamLive = {
    windows: () => data.received,
    drawnWindows: () => data.drawn,
    lastWindow: () => data.lastWindow,
    hypnogramAxes: () => ({
      predicted: yAxis(charts.hypnogram.predicted), scored: yAxis(charts.hypnogram.scored),
    }),
    fmriAxes: () => charts.fmri.map((chart, i) => ({
      metric: FMRI[i].name, ...yAxis(chart), drawn: data.fmri[i].filter((v) => v !== null).length,
    })),
    fmriPoints: () => data.fmri.map((values) => values.slice()),
    predictedLevels: () => charts.hypnogram.predicted.data[1].slice(),
    scoredLevels: () => charts.hypnogram.scored.data[1].slice(),
    // The REM bars as drawn (the REM level where drawn, else null), and the no-fMRI strip.
    predictedRemBar: () => (charts.hypnogram.axis.stages ? charts.hypnogram.predicted.data[2].slice() : []),
    scoredRemBar: () => charts.hypnogram.scored.data[2].slice(),
    withoutFmriStrip: () => charts.hypnogram.predicted.data[charts.hypnogram.axis.stages ? 3 : 2]
      .map((v) => v !== null),
    withoutFmri: () => data.withoutFmri,
    remColour: REM_COLOUR,
    bandPoints: () => data.bands.map((values) => values.filter((v) => v !== null).length),
    hypnogramLength: () => data.predicted.length,
    scoredLength: () => data.scored.filter((v) => v !== null).length,
    maxPoints: MAX_POINTS,
    trimSlack: TRIM_SLACK,
    connection: () => $("connection").dataset.state,
    modelBanner: () => ($("model-banner").hidden ? null : $("model-banner").textContent),
  };

  start();
})();
