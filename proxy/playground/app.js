// vipsgate playground: the server signs the options, the page fetches and shows the result.
"use strict";

// what Chromium sends for <img>: the result matches what a page would get
const IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
const $ = (id) => document.getElementById(id);
const form = $("options");
let sequence = 0;
let objectUrl = null;
let timer = null;

function fields() {
  const typed = $("source").value.trim();
  return {
    source: typed || $("sample").value,
    encode: $("encode").value,
    resizing_type: $("resizing_type").value,
    width: $("width").value,
    height: $("height").value,
    gravity: $("gravity").value,
    dpr: $("dpr").value,
    quality: $("quality").value,
    format: $("format").value,
    enlarge: $("enlarge").checked,
  };
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setState(state) {
  document.body.dataset.state = state;  // "loading", "ready" or "error" (tests wait on it)
}

async function update() {
  const mine = ++sequence;
  setState("loading");
  try {
    const signed = await fetch("playground/sign", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(fields()),
    });
    const answer = await signed.json();
    if (mine !== sequence) return;
    if (!signed.ok) throw new Error(answer.error || `sign: HTTP ${signed.status}`);
    $("url").textContent = answer.url;
    $("url").href = answer.url;
    $("picture").textContent = answer.picture;
    $("srcset").textContent = answer.srcset;
    await show(answer.url, mine);
  } catch (err) {
    if (mine !== sequence) return;
    showError(err.message);
    setState("error");
  }
}

async function show(url, mine) {
  const response = await fetch(url, {headers: {Accept: IMAGE_ACCEPT}, cache: "no-store"});
  const blob = await response.blob();
  if (mine !== sequence) return;
  $("type").textContent = response.headers.get("Content-Type") || "–";
  $("vary").textContent = response.headers.get("Vary") || "–";
  $("bytes").textContent = `${blob.size.toLocaleString("en")} B`;
  if (!response.ok) {
    throw new Error(`HTTP ${response.status}: ${(await blob.text()).trim()}`);
  }
  const img = $("result");
  const loaded = new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error("the browser could not decode the result"));
  });
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = URL.createObjectURL(blob);
  img.src = objectUrl;
  await loaded;
  if (mine !== sequence) return;
  const dpr = parseFloat($("dpr").value) || 1;
  img.style.width = `${img.naturalWidth / dpr}px`;  // CSS pixels, as a page would lay it out
  img.dataset.url = url;
  $("size").textContent = `${img.naturalWidth} × ${img.naturalHeight} px`;
  showError("");
  setState("ready");
}

function later() {
  clearTimeout(timer);
  timer = setTimeout(update, 250);
}

async function start() {
  const response = await fetch("playground/samples");
  const {samples} = await response.json();
  for (const source of samples) {
    const option = document.createElement("option");
    option.value = source;
    option.textContent = decodeURIComponent(source.replace("local:///", ""));
    $("sample").append(option);
  }
  const photo = samples.find((source) => /\.jpe?g$/i.test(source));
  if (photo) $("sample").value = photo;  // a photo shows the most
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    update();
  });
  form.addEventListener("change", later);
  form.addEventListener("input", later);
  await update();
}

start();
