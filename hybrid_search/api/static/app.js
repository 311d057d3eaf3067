// The search page: plain JavaScript over the HTTP API (POST /search, /search/image, /search/voice, GET /facets).
"use strict";

(() => {
  const PAGE_SIZE = 12;
  const MAX_RECORDING_MS = 10000;
  const $ = (id) => document.getElementById(id);
  const state = {
    text: "",
    photo: null, // File
    filters: {},
    page: 1,
    explain: false,
    last: null, // last response
  };
  let recorder = null;
  let recordTimer = null;
  let catalogueFacets = null;

  // ---- helpers --------------------------------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function money(price, currency) {
    if (price === null || price === undefined) return "";
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency: currency || "USD" }).format(price);
    } catch (_e) {
      return `${price.toFixed(2)} ${currency || ""}`.trim();
    }
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function busy(on) {
    for (const id of ["submit", "apply-filters"]) $(id).disabled = on;
    document.body.setAttribute("aria-busy", on ? "true" : "false");
  }

  async function call(url, options) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (_e) {
      throw new Error("The search service cannot be reached. Is it running?");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_e) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `The server answered ${response.status}.`;
      throw new Error(message.charAt(0).toUpperCase() + message.slice(1));
    }
    return body;
  }

  // ---- filters --------------------------------------------------------------------------------------------

  function readFilters() {
    const filters = {};
    const category = $("f-category").value;
    const colour = $("f-colour").value;
    const low = $("f-price-min").value;
    const high = $("f-price-max").value;
    if (category) filters.category = category;
    if (colour) filters.colour = colour;
    if (low !== "") filters.price_min = Number(low);
    if (high !== "") filters.price_max = Number(high);
    return filters;
  }

  function label(value) {
    return value.charAt(0).toUpperCase() + value.slice(1);
  }

  function fillSelect(select, buckets, anyLabel) {
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: anyLabel }));
    const values = new Set();
    for (const bucket of buckets || []) {
      values.add(bucket.value);
      select.append(el("option", { value: bucket.value, text: `${label(bucket.value)} (${bucket.count})` }));
    }
    if (chosen && !values.has(chosen)) select.append(el("option", { value: chosen, text: `${chosen} (0)` }));
    select.value = chosen;
  }

  function fillPriceBuckets(buckets) {
    const box = $("price-buckets");
    box.replaceChildren();
    for (const bucket of buckets || []) {
      if (!bucket.count) continue;
      const pressed =
        String(state.filters.price_min ?? "") === String(bucket.from ?? "") &&
        String(state.filters.price_max ?? "") === String(bucket.to ?? "");
      box.append(
        el("button", {
          type: "button",
          "aria-pressed": pressed ? "true" : "false",
          text: `${bucket.value} (${bucket.count})`,
          onclick: () => {
            $("f-price-min").value = bucket.from ?? "";
            $("f-price-max").value = bucket.to ?? "";
            applyFilters();
          },
        }),
      );
    }
  }

  function showFacets(facets) {
    if (!facets) return;
    fillSelect($("f-category"), facets.category, "Any category");
    fillSelect($("f-colour"), facets.colour, "Any colour");
    fillPriceBuckets(facets.price);
  }

  function applyFilters(event) {
    if (event) event.preventDefault();
    state.filters = readFilters();
    state.page = 1;
    if (state.text || state.photo) runSearch();
  }

  function clearFilters() {
    $("f-category").value = "";
    $("f-colour").value = "";
    $("f-price-min").value = "";
    $("f-price-max").value = "";
    applyFilters();
    if (!state.text && !state.photo && catalogueFacets) showFacets(catalogueFacets);
  }

  // ---- search ---------------------------------------------------------------------------------------------

  async function runSearch() {
    showError("");
    if (!state.text && !state.photo) {
      showError("Type something to search for, add a photo, or use the microphone.");
      return;
    }
    busy(true);
    $("summary").textContent = "Searching…";
    try {
      let body;
      if (state.photo) {
        const form = new FormData();
        form.append("image", state.photo);
        if (state.text) form.append("text", state.text);
        form.append("filters", JSON.stringify(state.filters));
        form.append("page", String(state.page));
        form.append("size", String(PAGE_SIZE));
        form.append("explain", String(state.explain));
        body = await call("/search/image", { method: "POST", body: form });
      } else {
        body = await call("/search", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            text: state.text,
            filters: state.filters,
            page: state.page,
            size: PAGE_SIZE,
            explain: state.explain,
          }),
        });
      }
      render(body);
    } catch (error) {
      $("summary").textContent = "";
      showError(error.message);
    } finally {
      busy(false);
    }
  }

  async function voiceSearch(blob, name) {
    showError("");
    busy(true);
    $("summary").textContent = "Listening to the recording…";
    try {
      const form = new FormData();
      form.append("audio", blob, name);
      form.append("filters", JSON.stringify(state.filters));
      form.append("size", String(PAGE_SIZE));
      form.append("explain", String(state.explain));
      const body = await call("/search/voice", { method: "POST", body: form });
      state.text = body.transcript.text;
      state.page = 1;
      clearPhoto(false);
      $("q").value = state.text;
      render(body);
      showTranscript(body.transcript);
    } catch (error) {
      $("summary").textContent = "";
      showError(error.message);
    } finally {
      busy(false);
    }
  }

  function showTranscript(transcript) {
    const box = $("transcript");
    if (!transcript) {
      box.hidden = true;
      return;
    }
    box.replaceChildren("Heard: ", el("strong", { text: `“${transcript.text}”` }));
    const others = transcript.alternatives.filter((a) => a.text !== transcript.text);
    if (others.length) {
      box.append(" — or did you mean");
      for (const alt of others) {
        box.append(
          " ",
          el("button", {
            type: "button",
            text: alt.text,
            onclick: () => {
              state.text = alt.text;
              $("q").value = alt.text;
              state.page = 1;
              box.hidden = true;
              runSearch();
            },
          }),
        );
      }
    }
    box.hidden = false;
  }

  // ---- results --------------------------------------------------------------------------------------------

  function breakdown(hit) {
    const rows = Object.entries(hit.explain || {});
    if (!rows.length) return null;
    const max = Math.max(...rows.map(([, c]) => Math.abs(c.weighted || 0)), 1e-9);
    const tbody = el("tbody");
    for (const [name, c] of rows) {
      const found = c.raw_score !== null && c.raw_score !== undefined;
      const detail = found ? `raw ${c.raw_score.toFixed(2)}${c.rank ? `, rank ${c.rank}` : ""}` : "not in its list";
      const weighted = c.weighted || 0;
      const width = Math.round((Math.abs(weighted) / max) * 100);
      tbody.append(
        el(
          "tr",
          {},
          el("th", { scope: "row" }, name.replaceAll("_", " "), el("span", { class: "detail", text: detail })),
          el(
            "td",
            { class: "share" },
            el("span", { class: "track", "aria-hidden": "true" }, el("span", { class: "bar", style: `width:${width}%` })),
            el("span", { class: "value", text: weighted.toFixed(3) }),
          ),
        ),
      );
    }
    const total = el("tr", { class: "total" }, el("th", { scope: "row", text: "score" }), el("td", { class: "share" }, el("span", { class: "value", text: hit.score.toFixed(3) })));
    const table = el(
      "table",
      {},
      el("caption", { class: "visually-hidden", text: "Score breakdown: each retriever's share of the score" }),
      tbody,
      el("tfoot", {}, total),
    );
    return el("div", { class: "breakdown" }, table);
  }

  function card(hit) {
    const f = hit.fields || {};
    const title = f.title || hit.id;
    const photo = el("div", { class: "photo" });
    if (f.image_url) {
      photo.append(el("img", { src: `/products/${encodeURIComponent(hit.id)}/image`, alt: title, loading: "lazy" }));
    } else {
      photo.append(el("span", { class: "none", text: "no photo" }));
    }
    const colours = Array.isArray(f.colour) ? f.colour.join(", ") : f.colour || "";
    const category = (f.category_path || "").split(";")[0];
    return el(
      "li",
      { class: "card" },
      photo,
      el(
        "div",
        { class: "body" },
        el("h3", { text: title }),
        el("span", { class: "price", text: money(f.price, f.currency) }),
        el("span", { class: "meta", text: [category, colours].filter(Boolean).join(" · ") }),
        el("span", { class: "rank", text: `#${hit.rank} · score ${hit.score.toFixed(3)}` }),
        state.explain ? breakdown(hit) : null,
      ),
    );
  }

  function pager(body) {
    const nav = $("pager");
    nav.replaceChildren();
    const reachable = Math.min(body.total, body.available || body.total);
    const pages = Math.max(1, Math.ceil(reachable / body.size));
    if (pages <= 1) {
      nav.hidden = true;
      return;
    }
    const go = (page) => () => {
      state.page = page;
      runSearch().then(() => $("results").focus());
    };
    nav.append(el("button", { type: "button", text: "‹ Previous", disabled: body.page <= 1, onclick: go(body.page - 1) }));
    const first = Math.max(1, Math.min(body.page - 3, pages - 6));
    for (let p = first; p <= Math.min(pages, first + 6); p += 1) {
      nav.append(
        el("button", {
          type: "button",
          text: String(p),
          "aria-label": `Page ${p}`,
          "aria-current": p === body.page ? "page" : null,
          onclick: go(p),
        }),
      );
    }
    nav.append(el("button", { type: "button", text: "Next ›", disabled: body.page >= pages, onclick: go(body.page + 1) }));
    nav.hidden = false;
  }

  function render(body) {
    state.last = body;
    $("transcript").hidden = true;
    const list = $("results");
    list.replaceChildren(...body.hits.map(card));
    const about = body.total_relation === "eq" ? "" : "at least ";
    const what = [state.photo ? "your photo" : null, state.text ? `“${state.text}”` : null].filter(Boolean).join(" + ");
    const ms = body.timings && body.timings.total_ms ? ` in ${Math.round(body.timings.total_ms)} ms` : "";
    $("summary").textContent = body.hits.length
      ? `${about}${body.total} products for ${what} — page ${body.page}${ms}`
      : `No products match ${what}${Object.keys(state.filters).length ? " with these filters" : ""}.`;
    showFacets(body.facets);
    pager(body);
  }

  // ---- photo ----------------------------------------------------------------------------------------------

  function setPhoto(file) {
    if (!file) return;
    if (!/^image\//.test(file.type || "image/")) {
      showError(`${file.name} is not a photo; use a JPEG, PNG, WebP or GIF file.`);
      return;
    }
    state.photo = file;
    state.page = 1;
    $("photo-name").textContent = file.name || "photo";
    $("photo-preview").src = URL.createObjectURL(file);
    $("photo-chip").hidden = false;
    runSearch();
  }

  function clearPhoto(search = true) {
    state.photo = null;
    $("photo-input").value = "";
    $("photo-chip").hidden = true;
    $("photo-preview").removeAttribute("src");
    if (search && state.text) {
      state.page = 1;
      runSearch();
    }
  }

  // ---- microphone -----------------------------------------------------------------------------------------

  function recordingMime() {
    for (const type of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]) {
      if (window.MediaRecorder && MediaRecorder.isTypeSupported(type)) return type;
    }
    return "";
  }

  async function toggleRecording() {
    if (recorder && recorder.state === "recording") {
      recorder.stop();
      return;
    }
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError("This browser cannot record audio here; upload a recording instead.");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (_e) {
      showError("The microphone is not available (permission denied or no device).");
      return;
    }
    const mimeType = recordingMime();
    const chunks = [];
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : undefined);
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data && event.data.size) chunks.push(event.data);
    });
    recorder.addEventListener("stop", () => {
      clearTimeout(recordTimer);
      for (const track of stream.getTracks()) track.stop();
      $("mic").setAttribute("aria-pressed", "false");
      $("recording").hidden = true;
      const type = recorder.mimeType || mimeType || "audio/webm";
      const blob = new Blob(chunks, { type });
      const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
      if (blob.size) voiceSearch(blob, `recording.${ext}`);
      else showError("Nothing was recorded; try again.");
    });
    recorder.start();
    $("mic").setAttribute("aria-pressed", "true");
    $("recording").hidden = false;
    recordTimer = setTimeout(() => recorder && recorder.state === "recording" && recorder.stop(), MAX_RECORDING_MS);
  }

  // ---- wiring ---------------------------------------------------------------------------------------------

  function init() {
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.text = $("q").value.trim();
      state.page = 1;
      state.filters = readFilters();
      runSearch();
    });
    $("filters").addEventListener("submit", applyFilters);
    $("f-category").addEventListener("change", applyFilters);
    $("f-colour").addEventListener("change", applyFilters);
    $("clear-filters").addEventListener("click", clearFilters);
    $("explain").addEventListener("change", () => {
      state.explain = $("explain").checked;
      if (state.last) runSearch();
    });
    $("photo-button").addEventListener("click", () => $("photo-input").click());
    $("photo-input").addEventListener("change", () => setPhoto($("photo-input").files[0]));
    $("photo-clear").addEventListener("click", () => {
      clearPhoto();
      $("photo-button").focus();
    });
    $("audio-button").addEventListener("click", () => $("audio-input").click());
    $("audio-input").addEventListener("change", () => {
      const file = $("audio-input").files[0];
      if (file) voiceSearch(file, file.name);
      $("audio-input").value = "";
    });
    $("mic").addEventListener("click", toggleRecording);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && recorder && recorder.state === "recording") recorder.stop();
    });

    const zone = $("dropzone");
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("over");
      });
    }
    for (const name of ["dragleave", "drop"]) {
      zone.addEventListener(name, () => zone.classList.remove("over"));
    }
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) setPhoto(file);
    });

    call("/facets")
      .then((body) => {
        catalogueFacets = body.facets;
        showFacets(body.facets);
        $("summary").textContent = `${body.total} products. Type a query, add a photo, or press the microphone.`;
      })
      .catch((error) => showError(error.message));
  }

  document.addEventListener("DOMContentLoaded", init);
})();
