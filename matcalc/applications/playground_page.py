"""The playground's one page: an editor, the program's variables to tick, and a tab per view
(MathML from the server; no external asset, script or font)."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>matcalc playground</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
  header { padding: 10px 18px; background: #1d2330; color: #fff; }
  header b { font-size: 18px; } header span { opacity: .75; margin-left: 10px; }
  main { display: grid; grid-template-columns: minmax(320px, 40%) 1fr; gap: 16px; padding: 16px; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 12px;
            min-width: 0; }
  #math { overflow-x: auto; }
  textarea { width: 100%; box-sizing: border-box; height: 300px; font: 14px/1.45 monospace;
             border: 1px solid #ccd2da; border-radius: 4px; padding: 8px; }
  #error { color: #a3161a; white-space: pre-wrap; font: 13px/1.4 monospace; margin: 8px 0 0; }
  #wrt label { margin-right: 12px; font-family: monospace; white-space: nowrap; }
  nav button { border: 1px solid #ccd2da; background: #eef1f5; padding: 5px 10px;
               border-radius: 4px; margin: 0 4px 6px 0; cursor: pointer; }
  nav button.active { background: #1d2330; color: #fff; }
  #math math { display: block; margin: 10px 0; font-size: 18px; }
  pre { white-space: pre-wrap; font: 13px/1.45 monospace; overflow-x: auto; }
  #code { background: #f3f5f8; padding: 8px; border-radius: 4px; }
  #status { color: #66707f; margin-left: 8px; }
</style>
</head>
<body>
<header><b>matcalc</b><span>matrix calculus the way people do it on paper, offline</span></header>
<main>
<section>
  <label>Example <select id="examples"><option value="">choose…</option></select></label>
  <textarea id="source" spellcheck="false" aria-label="program"></textarea>
  <pre id="error" role="alert"></pre>
  <div>Differentiate with respect to: <span id="wrt"></span></div>
</section>
<section>
  <nav id="tabs">
    <button data-view="derivative" class="active">Derivative</button>
    <button data-view="steps">Steps</button>
    <button data-view="differential">Differentials</button>
    <button data-view="hessian">Hessian</button>
    <button data-view="hvp">Hessian-vector</button>
    <button data-view="numpy">NumPy code</button>
    <button data-view="torch">torch code</button>
    <button data-view="check">Check</button>
    <button data-view="init">Init</button>
    <select id="activation" aria-label="activation">
      <option>relu</option><option>leaky_relu</option><option>tanh</option>
      <option>sigmoid</option><option>gelu</option><option>silu</option><option>selu</option>
      <option>softplus</option>
    </select>
    <span id="status"></span>
  </nav>
  <div id="math"></div>
  <pre id="text"></pre>
  <button id="copy" hidden>Copy code</button>
  <pre id="code" hidden></pre>
</section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let view = "derivative";
let timer = null;
let asked = 0;

async function api(body) {
  const response = await fetch("/api", {method: "POST", body: JSON.stringify(body),
                                       headers: {"Content-Type": "application/json"}});
  return response.json();
}

function ticked() {
  return [...document.querySelectorAll("#wrt input:checked")].map((box) => box.value);
}

function showError(message) {
  $("error").textContent = message;
}

function clearResults() {
  $("math").textContent = "";
  $("text").textContent = "";
  $("code").textContent = "";
  $("code").hidden = true;
  $("copy").hidden = true;
}

async function refreshVariables() {
  const result = await api({view: "variables", source: $("source").value});
  if (result.superseded) return;               // a newer request is on its way
  if (!result.ok) {
    showError(result.error);
    clearResults();
    $("wrt").textContent = "";                 // the last program's variables are not this one's
    return;
  }
  const before = new Set(ticked());
  const box = $("wrt");
  box.textContent = "";
  for (const name of [...result.variables, ...result.intermediates]) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.value = name;
    input.id = "wrt-" + name;
    input.checked = before.has(name);
    input.addEventListener("change", run);
    label.append(input, " " + name);
    box.append(label);
  }
  showError("");
  run();
}

async function run() {
  const body = {view, source: $("source").value, wrt: ticked(),
                activation: $("activation").value};
  if (view !== "init" && body.wrt.length === 0) {
    clearResults();
    $("text").textContent = "Tick a variable to differentiate with respect to.";
    return;
  }
  const mine = ++asked;
  $("text").textContent = "";
  $("status").textContent = "working…";
  const result = await api(body);
  if (mine !== asked || result.superseded) return;   // a newer request is on its way
  $("status").textContent = "";
  clearResults();
  if (!result.ok) {
    showError(result.error);
    return;
  }
  showError("");
  $("math").innerHTML = (result.math || []).join("");    // MathML the server made
  $("text").textContent = result.text || "";
  if (result.code) {
    $("code").textContent = result.code;
    $("code").hidden = false;
    $("copy").hidden = false;
    $("copy").dataset.code = result.code;
    $("copy").textContent = "Copy code";
  }
}

$("copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("copy").dataset.code);
    $("copy").textContent = "Copied";
  } catch (err) {
    $("copy").textContent = "Select the code below to copy it";
  }
});

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#tabs button")) {
      other.classList.toggle("active", other === button);
    }
    view = button.dataset.view;
    run();
  });
}
$("activation").addEventListener("change", () => { if (view === "init") run(); });
$("source").addEventListener("input", () => {
  clearTimeout(timer);
  timer = setTimeout(refreshVariables, 400);
});

fetch("/examples").then((r) => r.json()).then((programs) => {
  const menu = $("examples");
  for (const [name, text] of Object.entries(programs)) {
    const option = document.createElement("option");
    option.value = text;
    option.textContent = name;
    menu.append(option);
  }
  menu.addEventListener("change", () => {
    if (menu.value) {
      $("source").value = menu.value;
      refreshVariables();
    }
  });
});
</script>
</body>
</html>
"""
