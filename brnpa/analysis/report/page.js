// The report's page: a sortable summary table, and a gallery of the evaluated test images built from
// report_assets/index.js (one entry per image) and chunk_<k>.js (maps and curves, loaded when shown).
// No library, no network: it works from file://.
"use strict";

(function () {
  const ROWS_PER_PAGE = 20;
  const THUMB = 128;
  const CURVE_COLOURS = ["#c0392b", "#2471a3", "#1e8449", "#7d3c98"];
  const state = {index: null, chunks: {}, requested: {}, order: [], rendered: 0, pending: {}};

  function element(tag, attributes, children) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([key, value]) => node.setAttribute(key, value));
    (children || []).forEach((child) => node.append(child));
    return node;
  }

  function decode(base64) {  // uint8 values -> numbers in [0, 1]
    const bytes = atob(base64);
    const values = new Array(bytes.length);
    for (let k = 0; k < bytes.length; k++) values[k] = bytes.charCodeAt(k) / 255;
    return values;
  }

  function format(value) {
    return value === null || value === undefined ? "-" : value.toFixed(4);
  }

  // ---- tables (the summary, the pairs of each score): a click on a header sorts by that column, a second
  // click reverses
  function setupTable(table) {
    table.querySelectorAll("th").forEach((header, column) => {
      header.addEventListener("click", () => {
        const ascending = header.dataset.sorted !== "ascending";
        table.querySelectorAll("th").forEach((other) => delete other.dataset.sorted);
        header.dataset.sorted = ascending ? "ascending" : "descending";
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        const key = (row) => row.cells[column].dataset.value;
        const numeric = rows.every((row) => key(row) === "" || !isNaN(parseFloat(key(row))));
        rows.sort((a, b) => {
          const first = key(a), second = key(b);
          if (first === "" || second === "") return (first === "") - (second === "");  // missing last
          const order = numeric ? parseFloat(first) - parseFloat(second) : first.localeCompare(second);
          return ascending ? order : -order;
        });
        rows.forEach((row) => body.append(row));
      });
    });
  }

  // ---- a select that shows one of several tables (the pairs of the chosen score)
  function setupChoice(select) {
    const show = () => document.querySelectorAll(`[data-choice-of="${select.id}"]`).forEach((node) => {
      node.hidden = node.dataset.choice !== select.value;
    });
    select.addEventListener("change", show);
    show();
  }

  // ---- controls
  function select(id, options, label) {
    const node = element("select", {id: id});
    options.forEach(([value, text]) => node.append(element("option", {value: value}, [text])));
    node.addEventListener("change", apply);
    return element("label", {}, [label + " ", node]);
  }

  function setupControls() {
    const index = state.index;
    const controls = document.getElementById("controls");
    const boxes = element("fieldset", {id: "sources"}, [element("legend", {}, ["shown"])]);
    index.sources.forEach((source) => {
      const box = element("input", {type: "checkbox", value: source, checked: "checked"});
      box.addEventListener("change", apply);
      boxes.append(element("label", {}, [box, " " + source]));
    });
    const sources = index.sources.map((source) => [source, source]);
    controls.append(
      boxes,
      element("div", {class: "line"}, [
        select("sort-score", [["", "test order"]].concat(index.scores.map((s) => [s.name, s.name + " " + s.arrow])),
               "sort by"),
        select("sort-first", sources, "of"),
        select("sort-second", [["", "(alone)"]].concat(sources), "minus"),
        select("sort-direction", [["ascending", "ascending"], ["descending", "descending"]], ""),
      ]),
      element("div", {class: "line"}, [
        select("filter", [["", "all images"], ["any", "misclassified by any shown source"]].concat(
          index.sources.map((source) => [source, "misclassified by " + source])), "show"),
        element("label", {}, ["jump to test image ", element("input", {id: "jump", type: "number", min: "0"})]),
        element("button", {id: "jump-button", type: "button"}, ["go"]),
        element("span", {id: "jump-message"}, []),
      ]));
    document.getElementById("jump-button").addEventListener("click", jump);
    document.getElementById("jump").addEventListener("keydown", (event) => { if (event.key === "Enter") jump(); });
    const legend = element("p", {class: "hint"}, ["Under each map, the image's curves: "]);
    index.curveTasks.forEach((task, k) => legend.append(
      element("span", {style: "color:" + CURVE_COLOURS[k % CURVE_COLOURS.length]}, ["▬ " + task.name + " "])));
    legend.append("(score of the predicted class against the share of cells perturbed). The yellow outline " +
                  "is the part mask, where the test set has one; the maps are shown at their own resolution, " +
                  "smoothed for display.");
    controls.append(legend);
    if (index.note) controls.append(element("p", {class: "hint"}, [index.note]));
  }

  function shownSources() {
    return Array.from(document.querySelectorAll("#sources input:checked")).map((box) => box.value);
  }

  function value(image, score, source) {
    const perSource = image.values[score] || {};
    return perSource[source] === undefined ? null : perSource[source];
  }

  function sortKey(image) {
    const score = document.getElementById("sort-score").value;
    const first = value(image, score, document.getElementById("sort-first").value);
    const secondSource = document.getElementById("sort-second").value;
    if (!secondSource) return first;
    const second = value(image, score, secondSource);
    return first === null || second === null ? null : first - second;
  }

  function misclassified(image, source) {
    return source in image.preds && image.preds[source] !== image.label;
  }

  function apply() {
    const index = state.index;
    const shown = shownSources();
    const filter = document.getElementById("filter").value;
    let order = index.images.filter((image) => {
      if (filter === "") return true;
      if (filter === "any") return shown.some((source) => misclassified(image, source));
      return misclassified(image, filter);
    });
    if (document.getElementById("sort-score").value) {
      const direction = document.getElementById("sort-direction").value === "ascending" ? 1 : -1;
      const keyed = order.map((image, position) => [sortKey(image), position, image]);
      keyed.sort((a, b) => {
        if (a[0] === null || b[0] === null) return (a[0] === null) - (b[0] === null) || a[1] - b[1];
        return direction * (a[0] - b[0]) || a[1] - b[1];
      });
      order = keyed.map((entry) => entry[2]);
    }
    state.order = order;
    state.rendered = 0;
    state.pending = {};
    document.getElementById("gallery").replaceChildren(header(shown));
    document.getElementById("count").textContent =
      order.length + " of " + index.images.length + " evaluated test images";
    renderMore();
    watchSentinel();
  }

  // More rows are rendered while the sentinel under the gallery is near the viewport. An observer reports only
  // changes, so after each page (and after a new filter or sort) the sentinel is observed again: the fresh
  // report says whether it is still in view, and if so the next page follows.
  let sentinelWatch = null;
  function watchSentinel() {
    if (sentinelWatch === null) return;
    const sentinel = document.getElementById("sentinel");
    sentinelWatch.unobserve(sentinel);
    sentinelWatch.observe(sentinel);
  }

  function header(shown) {
    const row = element("div", {class: "row head"}, [element("div", {class: "cell"}, ["test image"])]);
    shown.forEach((source) => row.append(element("div", {class: "cell"}, [source])));
    return row;
  }

  // ---- rows, rendered a page at a time; a row's maps and curves come with its chunk
  function renderMore(upTo) {
    const gallery = document.getElementById("gallery");
    const stop = Math.min(state.order.length, Math.max(state.rendered + ROWS_PER_PAGE, upTo || 0));
    for (; state.rendered < stop; state.rendered++) {
      const image = state.order[state.rendered];
      const row = element("div", {class: "row", "data-test-index": image.i}, []);
      gallery.append(row);
      if (image.chunk in state.chunks) fill(row, image);
      else {
        (state.pending[image.chunk] = state.pending[image.chunk] || []).push([row, image]);
        requestChunk(image.chunk);
      }
    }
  }

  function requestChunk(chunk) {
    if (state.requested[chunk]) return;
    state.requested[chunk] = true;
    document.body.append(element("script", {src: "report_assets/chunk_" + chunk + ".js"}));
  }

  window.reportChunk = function (chunk, data) {
    state.chunks[chunk] = data;
    (state.pending[chunk] || []).forEach(([row, image]) => fill(row, image));
    delete state.pending[chunk];
  };

  function className(label) {
    const names = state.index.classNames;
    return label in names ? names[label] : String(label);
  }

  function fill(row, image) {
    const details = state.chunks[image.chunk][String(image.i)];
    const picture = element("img", {src: "report_assets/img/" + image.i + ".jpg", width: THUMB, height: THUMB,
                                    alt: "test image " + image.i});
    row.append(element("div", {class: "cell"}, [
      picture, element("div", {class: "caption"}, ["#" + image.i + " · true: " + className(image.label)])]));
    shownSources().forEach((source) => row.append(sourceCell(image, details, source, picture)));
  }

  function sourceCell(image, details, source, picture) {
    const cell = element("div", {class: "cell", "data-source": source}, []);
    if (!(source in image.preds)) {
      cell.append(element("div", {class: "caption"}, ["not evaluated"]));
      return cell;
    }
    const canvas = element("canvas", {width: THUMB, height: THUMB}, []);
    cell.append(canvas);
    const map = details.maps[source];
    const draw = () => overlay(canvas, picture, map);
    if (picture.complete && picture.naturalWidth) draw(); else picture.addEventListener("load", draw);
    cell.append(curvesSvg(details, source));
    const randomised = (details.randomised || {})[source];
    if (randomised) cell.append(randomisedStrip(randomised, state.index.sanityStages[source] || []));
    const right = image.preds[source] === image.label;
    const lines = [element("div", {class: right ? "right" : "wrong"},
                           ["pred: " + className(image.preds[source]) + (right ? " ✓" : " ✗")])];
    state.index.scores.forEach((score) => {
      const number = value(image, score.name, source);
      if (number === null) return;
      lines.push(element("div", {}, [score.name + " " + score.arrow + " ",
        element("span", {class: "value", "data-score": score.name, "data-value": String(number)}, [format(number)])]));
    });
    cell.append(element("div", {class: "caption"}, lines));
    return cell;
  }

  function colour(v) {  // a blue-green-yellow-red ramp
    const channel = (centre) => Math.round(255 * Math.max(0, Math.min(1, 1.5 - Math.abs(4 * v - centre))));
    return [channel(3), channel(2), channel(1)];
  }

  function overlay(canvas, picture, map) {
    const context = canvas.getContext("2d");
    context.drawImage(picture, 0, 0, THUMB, THUMB);
    if (!map) return;
    const values = decode(map.data);
    const small = document.createElement("canvas");
    small.width = map.w;
    small.height = map.h;
    const smallContext = small.getContext("2d");
    const pixels = smallContext.createImageData(map.w, map.h);
    values.forEach((v, k) => {
      const [r, g, b] = colour(v);
      pixels.data.set([r, g, b, 255], 4 * k);
    });
    smallContext.putImageData(pixels, 0, 0);
    context.imageSmoothingEnabled = true;  // the map at its own resolution, upsampled for display only
    context.globalAlpha = 0.5;
    context.drawImage(small, 0, 0, THUMB, THUMB);
    context.globalAlpha = 1;
  }

  function randomisedStrip(randomised, stages) {  // the map after each stage of the sanity checks
    const values = decode(randomised.data);
    const size = randomised.h * randomised.w;
    const count = values.length / size;
    const side = Math.floor(THUMB / count) - 1;
    const strip = element("div", {class: "randomised", title: "the map after each stage of the sanity " +
                                  "checks' randomisation, from the top"}, []);
    for (let k = 0; k < count; k++) {
      const small = element("canvas", {width: randomised.w, height: randomised.h,
                                       title: "+" + (stages[k] || "stage " + (k + 1))}, []);
      const context = small.getContext("2d");
      const pixels = context.createImageData(randomised.w, randomised.h);
      values.slice(k * size, (k + 1) * size).forEach((v, j) => pixels.data.set([...colour(v), 255], 4 * j));
      context.putImageData(pixels, 0, 0);
      small.style.width = side + "px";
      small.style.height = side + "px";
      strip.append(small);
    }
    return strip;
  }

  function curvesSvg(details, source) {
    const svgNs = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNs, "svg");
    svg.setAttribute("viewBox", "0 0 100 50");
    svg.setAttribute("width", THUMB);
    svg.setAttribute("height", THUMB / 2);
    svg.setAttribute("class", "curves");
    const frame = document.createElementNS(svgNs, "rect");
    [["x", 0], ["y", 0], ["width", 100], ["height", 50], ["class", "frame"]]
      .forEach(([key, value]) => frame.setAttribute(key, value));
    svg.append(frame);
    state.index.curveTasks.forEach((task, k) => {
      const encoded = (details.curves[task.task] || {})[source];
      const x = task.x[source];
      if (!encoded || !x) return;
      const scores = decode(encoded);
      const line = document.createElementNS(svgNs, "polyline");
      line.setAttribute("points", scores.map((s, step) => (100 * x[step]).toFixed(1) + "," +
                                                          (50 - 50 * s).toFixed(1)).join(" "));
      line.setAttribute("stroke", CURVE_COLOURS[k % CURVE_COLOURS.length]);
      line.setAttribute("data-task", task.task);
      const title = document.createElementNS(svgNs, "title");
      title.textContent = task.name + " curve: score of the predicted class against the share of cells " +
        task.perturbed;
      line.append(title);
      svg.append(line);
    });
    return svg;
  }

  function jump() {
    const wanted = parseInt(document.getElementById("jump").value, 10);
    const message = document.getElementById("jump-message");
    const position = state.order.findIndex((image) => image.i === wanted);
    if (position < 0) {
      message.textContent = " test image " + wanted + " is not among the images shown";
      return;
    }
    message.textContent = "";
    renderMore(position + 1);
    document.querySelector('#gallery .row[data-test-index="' + wanted + '"]').scrollIntoView();
  }

  window.reportIndex = function (index) {
    state.index = index;
    sentinelWatch = new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting) && state.rendered < state.order.length) {
        renderMore();
        watchSentinel();
      }
    }, {rootMargin: "600px"});
    setupControls();
    apply();
  };

  document.querySelectorAll("table.sortable").forEach(setupTable);
  document.querySelectorAll("select.table-choice").forEach(setupChoice);
})();
