/* The analysis page: upload a CSV of the 11 features, show the model's predictions in 8 views.
 *
 * The server (POST /api/analysis) validates the file, predicts every row with the shipped model and
 * computes the correlation matrix and the permutation importance; everything else (histograms,
 * heatmaps, the row view, the trends) is drawn here from its JSON, with uPlot (vendored) and a few
 * canvas helpers. Plain JS, no build step, nothing from the internet.
 */
(() => {
  "use strict";

  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  const authHeaders = token ? { Authorization: `Bearer ${token}` } : {};
  const withToken = (url) => (token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url);

  const FEATURE_LABELS = {
    eeg_delta_power: "EEG delta power",
    eeg_theta_power: "EEG theta power",
    eeg_alpha_power: "EEG alpha power",
    eeg_beta_power: "EEG beta power",
    eeg_gamma_power: "EEG gamma power",
    eeg_spectral_entropy: "EEG spectral entropy",
    eeg_mean_coherence: "EEG mean coherence",
    bold_mean: "BOLD mean",
    bold_variance: "BOLD variance",
    alff_mean: "ALFF mean",
    alff_variance: "ALFF variance",
  };
  const SHORT_LABELS = {
    eeg_delta_power: "delta",
    eeg_theta_power: "theta",
    eeg_alpha_power: "alpha",
    eeg_beta_power: "beta",
    eeg_gamma_power: "gamma",
    eeg_spectral_entropy: "entropy",
    eeg_mean_coherence: "coherence",
    bold_mean: "BOLD mean",
    bold_variance: "BOLD var",
    alff_mean: "ALFF mean",
    alff_variance: "ALFF var",
  };
  // Units of the features as extracted with the default settings (docs/features.md); the fMRI ones
  // follow the model's feature settings once known (setFmriUnits), as uploads are taken to match them.
  const FEATURE_UNITS = {
    eeg_delta_power: "µV²",
    eeg_theta_power: "µV²",
    eeg_alpha_power: "µV²",
    eeg_beta_power: "µV²",
    eeg_gamma_power: "µV²",
    eeg_spectral_entropy: "0–1, no unit",
    eeg_mean_coherence: "0–1, no unit",
    bold_mean: "% of baseline",
    bold_variance: "%²",
    alff_mean: "%/√Hz",
    alff_variance: "(%/√Hz)²",
  };

  function setFmriUnits(contract) {
    const features = (contract && contract.features) || {};
    if (features.bold_level === "raw") FEATURE_UNITS.bold_mean = "scanner units";
    if (features.alff_measure === "falff") {
      FEATURE_UNITS.alff_mean = "fraction";
      FEATURE_UNITS.alff_variance = "fraction²";
    }
  }
  const COUNT_LABEL = "count of windows";
  const ROW_LABEL = "row (one 2.1-s window each, in file order)";
  const CLASS_COLORS = ["#f2b84b", "#6c8cff", "#4cc9a0", "#e07a9f", "#b48ead", "#7fd1e8"];
  // Scored stages: wake in the wake class's amber, NREM from light to deep blue-violet, REM pink.
  const STAGE_COLORS = { W: "#f2b84b", N1: "#9fd8f5", N2: "#5b8ff9", N3: "#8a5cf6", R: "#e07a9f" };
  // Hypnogram order, top to bottom.
  const HYPNOGRAM_ORDER = ["W", "R", "N1", "N2", "N3"];
  const FEATURE_COLORS = [
    "#6cb6f5", "#f2b84b", "#4cc9a0", "#e07a9f", "#b48ead", "#e8793a",
    "#9bd36a", "#7fd1e8", "#f07178", "#c3a6ff", "#d7c27a",
  ];
  const EEG_COLOR = "#6cb6f5";
  const FMRI_COLOR = "#4cc9a0";
  const THEME = {
    text: "#dde3ea",
    muted: "#93a0b2",
    grid: "#27313d",
    panel: "#161c24",
    font: "13px system-ui, sans-serif",
  };
  const VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];

  const $ = (id) => document.getElementById(id);
  const state = {
    file: null,
    result: null,
    row: 0,
    charts: [],
    trendFeatures: new Set(),
    redraw: [],
    classColors: CLASS_COLORS,
    probabilitySplit: null,
  };

  // ---------------------------------------------------------------- header links keep the token
  for (const id of ["nav-live", "nav-analysis"]) {
    const link = $(id);
    link.href = withToken(link.getAttribute("href"));
  }
  $("sample-link").href = withToken("/api/analysis/sample.csv");

  // ---------------------------------------------------------------- upload: drag and drop, browse
  const dropzone = $("dropzone");
  const input = $("csv-file");
  dropzone.addEventListener("click", (event) => {
    if (event.target.tagName !== "LABEL" && event.target !== input) input.click();
  });
  dropzone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"));
  }
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) analyse(files[0]);
  });
  // A file dropped beside the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  input.addEventListener("change", () => {
    if (input.files.length) analyse(input.files[0]);
    input.value = "";
  });
  // The table's feature contract (the .json file 'run_stream.py extract' writes beside it): sent with
  // the upload, the server refuses a table computed otherwise than the model expects.
  const contractInput = $("contract-file");
  contractInput.addEventListener("change", async () => {
    const file = contractInput.files[0];
    contractInput.value = "";
    if (!file) return;
    state.contract = await file.text();
    $("contract-name").textContent = `${file.name}: checked against the model's with every upload`;
  });

  // What the model expects of the uploaded features, shown before any upload.
  async function showModelContract() {
    try {
      const response = await fetch("/api/analysis/model", { headers: { ...authHeaders } });
      if (!response.ok) return;
      const model = await response.json();
      const contract = model.contract || {};
      $("model-contract").textContent = `The model (${model.path || "bundle"}) expects features computed with ` +
        `${contract.description || "unknown definitions"}; trained on ${contract.data_kind || "unknown"} data.`;
      $("model-synthetic").hidden = !contract.synthetic;
      setFmriUnits(model.feature_contract);
    } catch (error) {
      console.warn("model information unavailable:", error.message);
    }
  }
  showModelContract();
  $("download-results").addEventListener("click", downloadResults);

  function analysisUrl(format) {
    const query = new URLSearchParams();
    if (format) query.set("format", format);
    if (state.contract) query.set("contract", state.contract);
    const text = query.toString();
    return text ? `/api/analysis?${text}` : "/api/analysis";
  }

  function setStatus(text, kind) {
    const status = $("status");
    status.textContent = text;
    status.className = `status ${kind || ""}`;
  }

  function showProblems(problems, title) {
    const box = $("problems");
    const list = $("problem-list");
    list.replaceChildren();
    for (const problem of problems) {
      const item = document.createElement("li");
      item.className = problem.severity;
      item.dataset.kind = problem.kind;
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = problem.severity;
      item.append(kind, " ", problem.message);
      list.append(item);
    }
    $("problems-title").textContent = title;
    box.hidden = problems.length === 0;
  }

  async function analyse(file) {
    state.file = file;
    state.result = null;
    $("download-results").disabled = true;
    $("results").hidden = true;
    $("summary").hidden = true;
    showProblems([], "");
    setStatus(`Analysing ${file.name} (${formatBytes(file.size)})…`, "busy");
    let response;
    try {
      response = await fetch(analysisUrl(), {
        method: "POST",
        headers: { "Content-Type": "text/csv", ...authHeaders },
        body: file,
      });
    } catch (error) {
      setStatus(`The server could not be reached (${error.message}).`, "error");
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (response.status === 413 || response.status === 422) {
      const problems = (body && body.problems) || [];
      const errors = problems.filter((p) => p.severity === "error").length;
      setStatus(`${file.name} cannot be analysed: ${errors} problem${errors === 1 ? "" : "s"} to fix.`, "error");
      showProblems(problems, response.status === 413 ? "The file is too large" : "Problems found in the file");
      return;
    }
    if (response.status === 401) {
      setStatus("This server needs a token: open the page as /analysis?token=…", "error");
      return;
    }
    if (!response.ok || !body) {
      setStatus(`The analysis failed (HTTP ${response.status}${body && body.detail ? `: ${body.detail}` : ""}).`, "error");
      return;
    }
    state.result = body;
    state.row = 0;
    setStatus(`${file.name}: ${body.rows.toLocaleString()} rows analysed.`, "ok");
    showProblems(body.warnings || [], "Warnings");
    $("download-results").disabled = false;
    $("results").hidden = false;
    render();
  }

  async function downloadResults() {
    if (!state.file) return;
    const button = $("download-results");
    button.disabled = true;
    try {
      const response = await fetch(analysisUrl("csv"), {
        method: "POST",
        headers: { "Content-Type": "text/csv", ...authHeaders },
        body: state.file,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = state.file.name.replace(/\.(csv|txt)$/i, "") + "-predictions.csv";
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      setStatus(`The results could not be downloaded (${error.message}).`, "error");
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- rendering
  function render() {
    for (const chart of state.charts) chart.destroy();
    state.charts = [];
    state.redraw = [];
    const result = state.result;
    for (const section of document.querySelectorAll("[data-viz]")) delete section.dataset.rendered;
    // A bundle that predicts stages draws them in the stage colours, as the scored stage is drawn.
    state.classColors = result.label_names.map((name, i) => STAGE_COLORS[name] || CLASS_COLORS[i % CLASS_COLORS.length]);
    renderSummary(result);
    const steps = [
      ["feature-distributions", renderFeatureDistributions],
      ["prediction-distribution", renderPredictionDistribution],
      ["probability-heatmap", renderProbabilityHeatmap],
      ["feature-importance", renderImportance],
      ["correlation", renderCorrelation],
      ["probability-distributions", renderProbabilityDistributions],
      ["entry", renderEntry],
      ["trends", renderTrends],
    ];
    for (const [name, draw] of steps) {
      draw(result);
      document.querySelector(`[data-viz="${name}"]`).dataset.rendered = "true";
    }
  }

  function renderSummary(result) {
    const summary = $("summary");
    const items = [
      ["Rows", result.rows.toLocaleString()],
      ["Runs (groups)", result.groups.names.length.toLocaleString()],
      ...result.label_names.map((name) => [`Predicted ${name}`, percent(result.prediction_counts[name] / result.rows)]),
    ];
    if (result.stages) {
      items.push(["Scored stages", result.stages.names.join(" · ")]);
    }
    if (result.scored) {
      // Measured in the bundle's classes: say so, and against what.
      const basis = `${result.scored.column} as ${result.label_names.join(" / ")}`;
      items.push([`Accuracy (${basis})`, percent(result.scored.accuracy), result.scored.against]);
      items.push([`Balanced accuracy (${basis})`, result.scored.balanced_accuracy.toFixed(3), result.scored.against]);
    }
    summary.replaceChildren(
      ...items.map(([term, value, title]) => {
        const div = document.createElement("div");
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = term;
        dd.textContent = value;
        if (title) div.title = title;
        div.append(dt, dd);
        return div;
      }),
    );
    summary.hidden = false;
    const model = result.model;
    $("model-info").textContent =
      `model ${model.path || "bundle"} · ${model.labels} (${result.label_names.join(" / ")}) · context K=${result.context.K}`;
  }

  // 1 · feature distributions: one small histogram per feature
  function renderFeatureDistributions(result) {
    const box = $("feature-histograms");
    box.replaceChildren();
    for (const name of result.feature_names) {
      const label = FEATURE_LABELS[name] || name;
      const cell = multiple(box, label);
      const plot = labelledPlot(cell, `${label} (${FEATURE_UNITS[name] || "no unit"})`, COUNT_LABEL);
      const { centers, counts } = histogram(result.features[name], binCount(result.rows));
      const color = name.startsWith("eeg_") ? EEG_COLOR : FMRI_COLOR;
      addChart(plot, {
        height: 150,
        legend: { show: false },
        cursor: { show: true, points: { show: false } },
        scales: { x: { time: false } },
        axes: [axis({ size: 30, values: compactValues }), axis({ size: 48, values: compactValues })],
        series: [{}, { label: COUNT_LABEL, fill: `${color}99`, stroke: color, width: 1, paths: bars(), points: { show: false } }],
      }, [centers, counts]);
    }
  }

  // 2 · prediction distribution: rows per predicted class
  function renderPredictionDistribution(result) {
    const items = result.label_names.map((name, i) => ({
      label: name,
      value: result.prediction_counts[name],
      color: classColor(i),
      text: `${result.prediction_counts[name].toLocaleString()} (${percent(result.prediction_counts[name] / result.rows)})`,
    }));
    const canvas = $("prediction-bars");
    canvas.style.height = `${items.length * 46 + 20}px`;
    const draw = () => drawBars(canvas, items, { min: 0 });
    draw();
    state.redraw.push(draw);
    renderConfusion(result);
  }

  // Scored stage (rows, its own classes) x predicted class (columns, the bundle's classes).
  function renderConfusion(result) {
    const box = $("confusion");
    const table = $("confusion-table");
    const stages = result.stages;
    box.hidden = !stages;
    table.replaceChildren();
    $("confusion-note").textContent = "";
    if (!stages) return;
    const head = document.createElement("tr");
    head.append(headerCell("scored ╲ predicted", "col"));
    result.label_names.forEach((name, k) => head.append(headerCell(swatch(classColor(k), name), "col")));
    head.append(headerCell("rows", "col"), headerCell("counts as", "col"));
    const thead = document.createElement("thead");
    thead.append(head);
    const tbody = document.createElement("tbody");
    stages.names.forEach((stage, i) => {
      const row = document.createElement("tr");
      row.dataset.stage = stage;
      row.append(headerCell(swatch(STAGE_COLORS[stage] || "#93a0b2", stage), "row"));
      const total = stages.counts[stage];
      stages.confusion[i].forEach((count, k) => {
        const cell = document.createElement("td");
        const share = total ? count / total : 0;
        cell.textContent = `${count.toLocaleString()} (${percent(share)})`;
        cell.dataset.count = String(count);
        cell.style.background = `rgba(108, 182, 245, ${(0.05 + 0.5 * share).toFixed(3)})`;
        // the class this stage counts as in the accuracy
        if (stages.maps_to[stage] === result.label_names[k]) cell.classList.add("agrees");
        row.append(cell);
      });
      const rows = document.createElement("td");
      rows.textContent = total.toLocaleString();
      const mapped = document.createElement("td");
      mapped.className = "maps-to";
      mapped.textContent = stages.maps_to[stage] || "not counted";
      row.append(rows, mapped);
      tbody.append(row);
    });
    table.append(thead, tbody);
    const notes = [];
    if (result.scored && result.scored.column === "stage") {
      notes.push(
        `Accuracy ${percent(result.scored.accuracy)}, balanced accuracy ${result.scored.balanced_accuracy.toFixed(3)}, ` +
          `${result.scored.against}; outlined cells agree.`,
      );
    }
    const uncounted = stages.names.filter((stage) => !stages.maps_to[stage]);
    if (uncounted.length) notes.push(`${uncounted.join(", ")}: no class of this bundle, not in the accuracy.`);
    if (stages.unscored_rows) notes.push(`${stages.unscored_rows.toLocaleString()} rows without a known stage are not in the table.`);
    $("confusion-note").textContent = notes.join(" ");
  }

  function headerCell(content, scope) {
    const cell = document.createElement("th");
    cell.scope = scope;
    cell.append(content);
    return cell;
  }

  // 3 · probability heatmap: classes (and predicted / scored rows) x rows, binned to pixels
  function renderProbabilityHeatmap(result) {
    const canvas = $("probability-heatmap");
    const draw = () => drawProbabilityHeatmap(canvas, result);
    draw();
    state.redraw.push(draw);
    canvas.onclick = (event) => {
      const layout = canvas._layout;
      if (!layout) return;
      const x = event.offsetX - layout.left;
      if (x < 0 || x > layout.width) return;
      selectRow(Math.min(result.rows - 1, Math.floor((x / layout.width) * result.rows)));
    };
    const legend = $("heatmap-legend");
    legend.replaceChildren();
    const gradient = document.createElement("span");
    gradient.className = "gradient";
    gradient.style.background = `linear-gradient(to right, ${VIRIDIS.join(", ")})`;
    legend.append(textSpan("probability 0"), gradient, textSpan("1"));
    const predicted = legendGroup("predicted");
    result.label_names.forEach((name, i) => predicted.append(swatch(classColor(i), name)));
    legend.append(predicted);
    if (result.stages) {
      const scored = legendGroup("scored stage");
      scored.id = "heatmap-legend-stages";
      result.stages.names.forEach((stage) => {
        const item = swatch(STAGE_COLORS[stage] || "#93a0b2", stage);
        item.dataset.stage = stage;
        scored.append(item);
      });
      legend.append(scored);
    }
  }

  function legendGroup(title) {
    const group = document.createElement("span");
    group.className = "legend-group";
    const heading = document.createElement("span");
    heading.className = "legend-title";
    heading.textContent = `${title}:`;
    group.append(heading);
    return group;
  }

  function drawProbabilityHeatmap(canvas, result) {
    const { ctx, width, height } = setupCanvas(canvas);
    const names = result.label_names;
    const bands = names.map((name) => ({ label: `P(${name})`, kind: "probability", name }));
    bands.push({ label: "predicted", kind: "class", values: result.predicted, colors: state.classColors });
    if (result.stages) {
      const colors = result.stages.names.map((stage) => STAGE_COLORS[stage] || "#93a0b2");
      bands.push({ label: "scored stage", kind: "class", values: result.stages.index, colors });
    } else if (result.scored) {
      bands.push({ label: `scored (${result.scored.column})`, kind: "class", values: result.scored.labels, colors: state.classColors });
    }
    const left = 130;
    const bottom = 26;
    const plotWidth = Math.max(10, width - left - 10);
    const bandHeight = (height - bottom - 6) / bands.length;
    canvas._layout = {
      left,
      width: plotWidth,
      bands: bands.map((band, b) => ({ label: band.label, top: 3 + b * bandHeight, height: bandHeight })),
    };
    const columns = Math.min(result.rows, Math.floor(plotWidth));
    const columnWidth = plotWidth / columns;
    bands.forEach((band, b) => {
      const y = 3 + b * bandHeight;
      ctx.fillStyle = THEME.text;
      ctx.font = THEME.font;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(band.label, left - 10, y + bandHeight / 2);
      for (let c = 0; c < columns; c++) {
        const start = Math.floor((c * result.rows) / columns);
        const stop = Math.max(start + 1, Math.floor(((c + 1) * result.rows) / columns));
        let color;
        if (band.kind === "probability") {
          const values = result.probabilities[band.name];
          let sum = 0;
          for (let r = start; r < stop; r++) sum += values[r];
          color = viridis(sum / (stop - start));
        } else {
          const counts = new Map();
          for (let r = start; r < stop; r++) counts.set(band.values[r], (counts.get(band.values[r]) || 0) + 1);
          const [top] = [...counts.entries()].sort((a, b2) => b2[1] - a[1])[0];
          color = top >= 0 ? band.colors[top] : "#2b3542";
        }
        ctx.fillStyle = color;
        ctx.fillRect(left + c * columnWidth, y + 1, Math.ceil(columnWidth), bandHeight - 2);
      }
    });
    drawRowAxis(ctx, left, plotWidth, height - bottom + 4, result.rows);
    // the selected row
    const x = left + ((state.row + 0.5) / result.rows) * plotWidth;
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(x, 2);
    ctx.lineTo(x, height - bottom);
    ctx.stroke();
  }

  // 4 · feature importance (permutation, computed by the server)
  function renderImportance(result) {
    const importance = result.importance;
    $("importance-caption").textContent =
      `Permutation importance, ${importance.method === "balanced_accuracy_drop" ? "label-based" : "label-free"}: ` +
      `${importance.description}, on ${importance.rows_used.toLocaleString()} rows.`;
    const items = result.feature_names
      .map((name) => ({
        label: SHORT_LABELS[name] || name,
        value: importance.mean[name],
        error: importance.sd[name],
        color: name.startsWith("eeg_") ? EEG_COLOR : FMRI_COLOR,
        text: `${importance.mean[name].toFixed(3)} ± ${importance.sd[name].toFixed(3)}`,
      }))
      .sort((a, b) => b.value - a.value);
    const canvas = $("importance-bars");
    canvas.style.height = `${items.length * 30 + 30}px`;
    const draw = () => drawBars(canvas, items, {});
    draw();
    state.redraw.push(draw);
  }

  // 5 · correlation heatmap
  function renderCorrelation(result) {
    const canvas = $("correlation-heatmap");
    const draw = () => drawCorrelation(canvas, result);
    draw();
    state.redraw.push(draw);
  }

  function drawCorrelation(canvas, result) {
    const { ctx, width, height } = setupCanvas(canvas);
    const names = result.feature_names;
    const n = names.length;
    const left = 92;
    const top = 8;
    const bottom = 80;
    const scaleSpace = 100; // the colour scale, right of the matrix
    const size = Math.max(10, Math.min(width - left - scaleSpace, height - top - bottom));
    const cell = size / n;
    canvas._layout = { left, top, cell, n };
    drawCorrelationScale(left + size + 22, top, size);
    ctx.font = THEME.font;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const value = result.correlation[i][j];
        ctx.fillStyle = value === null ? "#2b3542" : diverging(value);
        ctx.fillRect(left + j * cell + 1, top + i * cell + 1, cell - 2, cell - 2);
        if (cell >= 30) {
          ctx.fillStyle = value !== null && Math.abs(value) > 0.6 ? "#0e1217" : THEME.text;
          ctx.textAlign = "center";
          ctx.textBaseline = "middle";
          ctx.fillText(value === null ? "–" : value.toFixed(2), left + (j + 0.5) * cell, top + (i + 0.5) * cell);
        }
      }
      ctx.fillStyle = THEME.text;
      ctx.textAlign = "right";
      ctx.textBaseline = "middle";
      ctx.fillText(SHORT_LABELS[names[i]] || names[i], left - 8, top + (i + 0.5) * cell);
      ctx.save();
      ctx.translate(left + (i + 0.5) * cell, top + size + 8);
      ctx.rotate(-Math.PI / 4);
      ctx.textAlign = "right";
      ctx.fillText(SHORT_LABELS[names[i]] || names[i], 0, 0);
      ctx.restore();
    }
  }

  // The colour scale beside the matrix: a bar drawn with the matrix's own colour function, from
  // r = 1 at the top to r = −1 at the bottom, with its labels.
  function drawCorrelationScale(x, y, size) {
    const scale = $("correlation-scale");
    scale.hidden = false;
    scale.style.left = `${x}px`;
    scale.style.top = `${y}px`;
    scale.style.height = `${size}px`;
    const bar = $("correlation-scale-bar");
    bar.style.height = `${size}px`;
    const { ctx, width, height } = setupCanvas(bar);
    for (let py = 0; py < height; py++) {
      ctx.fillStyle = diverging(1 - (2 * py) / Math.max(1, height - 1));
      ctx.fillRect(0, py, width, 1);
    }
    const ticks = $("correlation-scale-ticks");
    ticks.replaceChildren();
    for (const value of [1, 0.5, 0, -0.5, -1]) {
      const tick = document.createElement("span");
      tick.className = "tick";
      tick.dataset.value = String(value);
      tick.style.top = `${((1 - value) / 2) * 100}%`;
      tick.textContent = value < 0 ? `\u2212${-value}` : String(value);
      ticks.append(tick);
    }
  }

  // 6 · probability distributions: per class, histogram of its probability split by the scored stage
  // (when the file has one) or by the predicted class
  function renderProbabilityDistributions(result) {
    const select = $("probability-split");
    $("probability-split-label").hidden = !result.stages;
    if (!result.stages) state.probabilitySplit = "predicted";
    else if (state.probabilitySplit === null) state.probabilitySplit = "stage";
    select.value = state.probabilitySplit;
    select.onchange = () => {
      state.probabilitySplit = select.value;
      drawProbabilityDistributions(result);
    };
    drawProbabilityDistributions(result);
  }

  function drawProbabilityDistributions(result) {
    const box = $("probability-histograms");
    state.charts = state.charts.filter((chart) => {
      if (chart._probabilityHistogram) chart.destroy();
      return !chart._probabilityHistogram;
    });
    box.replaceChildren();
    const byStage = state.probabilitySplit === "stage" && result.stages;
    $("probability-split-caption").textContent = byStage ? "the scored stage" : "the predicted class";
    const groups = byStage
      ? result.stages.names.map((stage, k) => ({ label: `scored ${stage}`, color: STAGE_COLORS[stage] || "#93a0b2", index: k }))
      : result.label_names.map((name, k) => ({ label: `predicted ${name}`, color: classColor(k), index: k }));
    const groupOf = byStage ? result.stages.index : result.predicted;
    const legend = $("probability-legend");
    legend.replaceChildren(
      ...groups.map((group) => {
        const item = swatch(group.color, group.label);
        item.dataset.group = group.label;
        return item;
      }),
    );
    const bins = 20;
    const edges = Array.from({ length: bins + 1 }, (_, i) => i / bins);
    result.label_names.forEach((name) => {
      const cell = multiple(box, `P(${name})`);
      const plot = labelledPlot(cell, `probability of ${name}`, COUNT_LABEL);
      const probabilities = result.probabilities[name];
      const series = [{}];
      const data = [edges];
      for (const group of groups) {
        const counts = new Array(bins + 1).fill(0);
        for (let r = 0; r < result.rows; r++) {
          if (groupOf[r] !== group.index) continue;
          counts[Math.min(bins - 1, Math.floor(probabilities[r] * bins))] += 1;
        }
        counts[bins] = counts[bins - 1];
        data.push(counts);
        series.push({
          label: group.label,
          stroke: group.color,
          fill: `${group.color}44`,
          width: 1.5,
          paths: uPlot.paths.stepped({ align: 1 }),
        });
      }
      const chart = addChart(plot, {
        height: 190,
        scales: { x: { time: false, range: [0, 1] } },
        axes: [axis({ size: 30 }), axis({ size: 48, values: compactValues })],
        series,
        legend: { show: false },
        cursor: { points: { show: false } },
      }, data);
      chart._probabilityHistogram = true;
    });
  }

  // 7 · one row: its features relative to the file, its probabilities
  function renderEntry(result) {
    const number = $("entry-row");
    const slider = $("entry-slider");
    number.max = String(result.rows);
    slider.max = String(result.rows);
    number.onchange = () => selectRow(clamp(parseInt(number.value, 10) - 1, 0, result.rows - 1));
    slider.oninput = () => selectRow(parseInt(slider.value, 10) - 1);
    $("entry-prev").onclick = () => selectRow(Math.max(0, state.row - 1));
    $("entry-next").onclick = () => selectRow(Math.min(result.rows - 1, state.row + 1));
    const draw = () => drawEntry(result);
    draw();
    state.redraw.push(draw);
  }

  function drawEntry(result) {
    const row = state.row;
    $("entry-row").value = String(row + 1);
    $("entry-slider").value = String(row + 1);
    const predicted = result.label_names[result.predicted[row]];
    const title = $("entry-title");
    const label = document.createElement("span");
    label.className = "label";
    label.style.color = classColor(result.predicted[row]);
    label.textContent = predicted;
    const parts = [`Row ${(row + 1).toLocaleString()} of ${result.rows.toLocaleString()} (file line ${result.lines[row]})`];
    if (result.groups.names.length > 1 || result.groups.names[0] !== "all rows") {
      parts.push(`run ${result.groups.names[result.groups.index[row]]}`);
    }
    if (result.stages) {
      const stage = result.stages.index[row];
      const name = stage >= 0 ? result.stages.names[stage] : null;
      const mapped = name && result.stages.maps_to[name];
      parts.push(`scored ${name || "–"}${mapped && mapped !== name ? ` (counts as ${mapped})` : ""}`);
    } else if (result.scored) {
      const scored = result.scored.labels[row];
      parts.push(`scored ${scored >= 0 ? result.label_names[scored] : "–"}`);
    }
    title.replaceChildren(`${parts.join(" · ")} · predicted `, label);
    const features = result.feature_names.map((name) => {
      const stats = result.feature_stats[name];
      const value = result.features[name][row];
      const z = stats.sd > 0 ? (value - stats.mean) / stats.sd : 0;
      return {
        label: SHORT_LABELS[name] || name,
        value: z,
        color: name.startsWith("eeg_") ? EEG_COLOR : FMRI_COLOR,
        text: `${formatNumber(value)}  (z ${z >= 0 ? "+" : ""}${z.toFixed(2)})`,
      };
    });
    const span = Math.max(3, ...features.map((f) => Math.abs(f.value)));
    drawBars($("entry-features"), features, { min: -span, max: span });
    const probabilities = result.label_names.map((name, i) => ({
      label: name,
      value: result.probabilities[name][row],
      color: classColor(i),
      text: result.probabilities[name][row].toFixed(3),
    }));
    drawBars($("entry-probabilities"), probabilities, { min: 0, max: 1 });
  }

  function selectRow(row) {
    if (!state.result || Number.isNaN(row)) return;
    state.row = clamp(row, 0, state.result.rows - 1);
    drawEntry(state.result);
    drawProbabilityHeatmap($("probability-heatmap"), state.result);
    for (const chart of state.charts) if (chart._marksRow) chart.redraw(false, false);
  }

  // 8 · trends over rows
  function renderTrends(result) {
    const rows = Array.from({ length: result.rows }, (_, i) => i + 1);
    renderHypnogram(result, rows);
    const probabilityBox = $("trend-probabilities");
    probabilityBox.replaceChildren();
    const plot = labelledPlot(probabilityBox, ROW_LABEL, "probability");
    const series = [{ label: "row" }];
    const data = [rows];
    result.label_names.forEach((name, i) => {
      series.push({ label: `P(${name})`, stroke: classColor(i), width: 1.5 });
      data.push(result.probabilities[name]);
    });
    markRow(addChart(plot, {
      width: plot.clientWidth || 1000,
      height: 220,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      axes: [axis({ size: 34 }), axis({ size: 44 })],
      series,
      hooks: rowMarkerHooks(),
    }, data));

    const picker = $("trend-picker");
    picker.querySelectorAll("label").forEach((el) => el.remove());
    if (state.trendFeatures.size === 0) {
      for (const name of ["eeg_delta_power", "eeg_alpha_power", "bold_variance"]) state.trendFeatures.add(name);
    }
    result.feature_names.forEach((name) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = name;
      box.checked = state.trendFeatures.has(name);
      box.onchange = () => {
        if (box.checked) state.trendFeatures.add(name);
        else state.trendFeatures.delete(name);
        drawFeatureTrends(result);
      };
      label.append(box, ` ${FEATURE_LABELS[name] || name}`);
      picker.append(label);
    });
    drawFeatureTrends(result);
  }

  // The scored stage as a hypnogram (W at the top, then R, N1, N2, N3), with the prediction on the
  // same stage axis when the bundle predicts stages.
  function renderHypnogram(result, rows) {
    const box = $("trend-hypnogram");
    box.replaceChildren();
    box.hidden = !result.stages;
    if (!result.stages) return;
    const names = result.stages.names;
    const predictsStages = result.label_names.every((name) => HYPNOGRAM_ORDER.includes(name));
    const shown = HYPNOGRAM_ORDER.filter(
      (stage) => names.includes(stage) || (predictsStages && result.label_names.includes(stage)),
    );
    const level = (stage) => shown.length - 1 - shown.indexOf(stage);
    const levels = shown.map((_, i) => i);
    const stageAt = (v) => shown[shown.length - 1 - v];
    const scored = result.stages.index.map((k) => (k >= 0 ? level(names[k]) : null));
    const series = [
      { label: "row" },
      { label: "scored stage", stroke: "#dde3ea", width: 2, paths: uPlot.paths.stepped({ align: 1 }), value: (u, v) => (v === null ? "–" : stageAt(v)) },
    ];
    const data = [rows, scored];
    if (predictsStages) {
      series.push({
        label: "predicted stage",
        stroke: "#f2b84b",
        width: 1.2,
        dash: [5, 4],
        paths: uPlot.paths.stepped({ align: 1 }),
        value: (u, v) => (v === null ? "–" : stageAt(v)),
      });
      data.push(result.predicted.map((k) => level(result.label_names[k])));
    }
    const plot = labelledPlot(box, ROW_LABEL, "scored stage");
    const chart = addChart(plot, {
      width: plot.clientWidth || 1000,
      height: 40 + 28 * shown.length,
      scales: { x: { time: false }, y: { range: [-0.5, shown.length - 0.5] } },
      axes: [
        axis({ size: 34 }),
        axis({ size: 44, splits: () => levels, values: (u, splits) => splits.map(stageAt) }),
      ],
      series,
      hooks: rowMarkerHooks(),
    }, data);
    markRow(chart);
  }

  function drawFeatureTrends(result) {
    const box = $("trend-features");
    state.charts = state.charts.filter((chart) => {
      if (chart._featureTrend) chart.destroy();
      return !chart._featureTrend;
    });
    box.replaceChildren();
    const rows = Array.from({ length: result.rows }, (_, i) => i + 1);
    const series = [{ label: "row" }];
    const data = [rows];
    result.feature_names.forEach((name, j) => {
      if (!state.trendFeatures.has(name)) return;
      const stats = result.feature_stats[name];
      const sd = stats.sd > 0 ? stats.sd : 1;
      data.push(result.features[name].map((v) => (v - stats.mean) / sd));
      series.push({ label: `${SHORT_LABELS[name]} (z)`, stroke: FEATURE_COLORS[j % FEATURE_COLORS.length], width: 1.2 });
    });
    const plot = labelledPlot(box, ROW_LABEL, "z-score (sd from the file's mean)");
    const chart = addChart(plot, {
      width: plot.clientWidth || 1000,
      height: 240,
      scales: { x: { time: false } },
      axes: [axis({ size: 34 }), axis({ size: 44 })],
      series,
      hooks: rowMarkerHooks(),
    }, data);
    chart._featureTrend = true;
    markRow(chart);
  }

  // ---------------------------------------------------------------- chart helpers
  function addChart(container, options, data) {
    const width = options.width || Math.max(200, container.clientWidth || 300);
    const chart = new uPlot({ ...options, width }, data, container);
    // In a labelled plot the legend goes below the x-axis title, not between the axis and its title.
    const legend = chart.root.querySelector(".u-legend");
    if (legend && container.classList.contains("plot")) container.parentElement.append(legend);
    state.charts.push(chart);
    return chart;
  }

  // Trend charts: a line at the selected row (the hook goes in the chart's options) ...
  const rowMarkerHooks = () => ({
    draw: [
      (u) => {
        const x = u.valToPos(state.row + 1, "x", true);
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "rgba(255,255,255,0.8)";
        ctx.lineWidth = 1.5 * (window.devicePixelRatio || 1);
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.restore();
      },
    ],
  });

  // ... and a click selects the row under the cursor.
  function markRow(chart) {
    chart._marksRow = true;
    chart.over.addEventListener("click", () => {
      const index = chart.cursor.idx;
      if (index !== null && index !== undefined) selectRow(index);
    });
  }

  function multiple(container, title) {
    const cell = document.createElement("div");
    cell.className = "multiple";
    const heading = document.createElement("h3");
    heading.textContent = title;
    cell.append(heading);
    container.append(cell);
    return cell;
  }

  // A plot with its axis titles as text beside it: the y title turned up the left edge, the x title
  // beneath. Returns the element the chart goes in.
  function labelledPlot(container, xLabel, yLabel) {
    const frame = document.createElement("div");
    frame.className = "plot-frame";
    const y = document.createElement("div");
    y.className = "axis-label y";
    y.textContent = yLabel;
    const plot = document.createElement("div");
    plot.className = "plot";
    const x = document.createElement("div");
    x.className = "axis-label x";
    x.textContent = xLabel;
    frame.append(y, plot, x);
    container.append(frame);
    return plot;
  }

  function axis(extra) {
    return {
      stroke: THEME.muted,
      grid: { stroke: THEME.grid, width: 1 },
      ticks: { stroke: THEME.grid, width: 1 },
      font: THEME.font,
      ...extra,
    };
  }

  function bars() {
    return uPlot.paths.bars({ size: [0.92, Infinity], gap: 1 });
  }

  // Axis labels short enough for small multiples: 2k, 1.5M, 0.25, 3.5e-4.
  function compactValues(u, splits) {
    return splits.map((v) => {
      const a = Math.abs(v);
      if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
      if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
      return formatNumber(v);
    });
  }

  function setupCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 600;
    const height = canvas.clientHeight || 260;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    return { ctx, width, height };
  }

  // Horizontal bars with labels, optional error whiskers, a zero line when values go negative.
  function drawBars(canvas, items, options) {
    const { ctx, width, height } = setupCanvas(canvas);
    const left = 110;
    const right = 150;
    const plotWidth = Math.max(10, width - left - right);
    const values = items.flatMap((item) => [item.value - (item.error || 0), item.value + (item.error || 0)]);
    const min = options.min !== undefined ? Math.min(options.min, ...values) : Math.min(0, ...values);
    let max = options.max !== undefined ? Math.max(options.max, ...values) : Math.max(0, ...values);
    if (max === min) max = min + 1;
    const x = (v) => left + ((v - min) / (max - min)) * plotWidth;
    const rowHeight = Math.min(44, (height - 10) / Math.max(1, items.length));
    ctx.font = THEME.font;
    ctx.textBaseline = "middle";
    items.forEach((item, i) => {
      const y = 5 + i * rowHeight;
      const middle = y + rowHeight / 2;
      ctx.fillStyle = THEME.text;
      ctx.textAlign = "right";
      ctx.fillText(item.label, left - 10, middle);
      const from = x(Math.max(min, Math.min(0, max)));
      const to = x(item.value);
      ctx.fillStyle = item.color;
      ctx.fillRect(Math.min(from, to), y + rowHeight * 0.18, Math.max(1.5, Math.abs(to - from)), rowHeight * 0.64);
      if (item.error) {
        ctx.strokeStyle = THEME.text;
        ctx.lineWidth = 1.3;
        ctx.beginPath();
        ctx.moveTo(x(item.value - item.error), middle);
        ctx.lineTo(x(item.value + item.error), middle);
        ctx.moveTo(x(item.value - item.error), middle - 5);
        ctx.lineTo(x(item.value - item.error), middle + 5);
        ctx.moveTo(x(item.value + item.error), middle - 5);
        ctx.lineTo(x(item.value + item.error), middle + 5);
        ctx.stroke();
      }
      ctx.fillStyle = THEME.muted;
      ctx.textAlign = "left";
      ctx.fillText(item.text || formatNumber(item.value), left + plotWidth + 10, middle);
    });
    if (min < 0 && max > 0) {
      ctx.strokeStyle = THEME.muted;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x(0), 2);
      ctx.lineTo(x(0), height - 2);
      ctx.stroke();
    }
  }

  function drawRowAxis(ctx, left, width, y, rows) {
    ctx.fillStyle = THEME.muted;
    ctx.font = THEME.font;
    ctx.textBaseline = "top";
    const step = niceStep(rows / 8);
    for (let r = 0; r <= rows; r += step) {
      const x = left + (r / rows) * width;
      ctx.textAlign = r === 0 ? "left" : "center";
      ctx.fillText(r === 0 ? "row 1" : String(r), x, y);
    }
  }

  function histogram(values, bins) {
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (!(max > min)) {
      const pad = Math.abs(min) * 0.05 || 0.5;
      min -= pad;
      max += pad;
    }
    const width = (max - min) / bins;
    const counts = new Array(bins).fill(0);
    for (const v of values) counts[Math.min(bins - 1, Math.floor((v - min) / width))] += 1;
    const centers = counts.map((_, i) => min + (i + 0.5) * width);
    return { centers, counts };
  }

  function binCount(rows) {
    return clamp(Math.round(Math.sqrt(rows)), 8, 40);
  }

  // ---------------------------------------------------------------- colours and formats
  function classColor(index) {
    return state.classColors[index % state.classColors.length];
  }

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  function mix(a, b, t) {
    const x = hexToRgb(a);
    const y = hexToRgb(b);
    return `rgb(${x.map((v, i) => Math.round(v + (y[i] - v) * t)).join(",")})`;
  }

  function viridis(p) {
    const t = clamp(p, 0, 1) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(t));
    return mix(VIRIDIS[i], VIRIDIS[i + 1], t - i);
  }

  function diverging(r) {
    const v = clamp(r, -1, 1);
    return v < 0 ? mix("#222a35", "#3d8bfd", -v) : mix("#222a35", "#f08a3c", v);
  }

  function swatch(color, text) {
    const span = document.createElement("span");
    const box = document.createElement("span");
    box.className = "swatch";
    box.style.background = color;
    span.append(box, text);
    return span;
  }

  function textSpan(text) {
    const span = document.createElement("span");
    span.textContent = text;
    return span;
  }

  function niceStep(raw) {
    const power = 10 ** Math.floor(Math.log10(Math.max(1, raw)));
    const scaled = raw / power;
    return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
  }

  function formatNumber(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return Number(v.toPrecision(4)).toLocaleString(undefined, { maximumFractionDigits: 4 });
  }

  function formatBytes(bytes) {
    return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
  }

  function percent(x) {
    return `${(100 * x).toFixed(1)} %`;
  }

  function clamp(v, lo, hi) {
    return Math.min(hi, Math.max(lo, v));
  }

  // ---------------------------------------------------------------- resize: redraw at the new width
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (state.result) render();
    }, 200);
  });
})();
