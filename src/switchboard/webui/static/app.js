// Switchboard's web UI: sign-in, the chat playground (streamed, stoppable, every sampling and
// structured-output field, retrieval over buckets, metrics, copy as code) and the dashboard.
"use strict";

const $ = id => document.getElementById(id);
// The API is where the page is, minus /ui/ (so a server under --root-path works too).
const BASE = location.pathname.replace(/\/ui\/.*$/, "");
const state = {key: sessionStorage.getItem("switchboard-key") || "", history: [],
               controller: null, lang: "curl"};

// ---- API ------------------------------------------------------------------------------------

function headers(json) {
  const h = {};
  if (state.key) h.Authorization = `Bearer ${state.key}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function api(path, options = {}) {
  const response = await fetch(BASE + path, {...options, headers: {...headers(!!options.body)}});
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message || message; } catch (e) { /* keep */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response;
}

// ---- sign-in and views ----------------------------------------------------------------------

function show(view) {
  for (const id of ["login", "playground", "dashboard"]) $(id).hidden = id !== view;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  document.querySelector("header nav").hidden = view === "login";
  $("logout").hidden = view === "login" || !state.key;
  if (view === "dashboard") loadDashboard();
}

async function start() {
  try {
    const models = await (await api("/v1/models")).json();
    fillModels(models.data);
    loadBuckets();
    show("playground");
  } catch (error) {
    if (error.status === 401) {
      $("login-error").textContent = state.key ? "That key was not accepted." : "";
      state.key = "";
      sessionStorage.removeItem("switchboard-key");
      show("login");
    } else {
      show("playground");
      addMessage("error", `Cannot reach the server: ${error.message}`);
    }
  }
}

$("login-form").addEventListener("submit", event => {
  event.preventDefault();
  state.key = $("login-key").value.trim();
  sessionStorage.setItem("switchboard-key", state.key);
  start();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("switchboard-key");
  state.key = "";
  $("login-key").value = "";
  $("login-error").textContent = "";
  show("login");
});

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => show(tab.dataset.view));
}

function fillModels(models) {
  const select = $("model");
  select.replaceChildren();
  for (const model of models) {
    if (model.id.startsWith("all-minilm")) continue;  // an embedding model cannot chat
    select.append(new Option(model.id, model.id));
  }
}

async function loadBuckets() {
  try {
    const buckets = (await (await api("/v1/buckets")).json()).data;
    if (!buckets.length) return;
    const box = $("buckets");
    box.replaceChildren();
    for (const bucket of buckets) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = bucket.name;
      input.style.width = "auto";
      label.style.display = "block";
      label.append(input, ` ${bucket.name} (${bucket.documents} documents)`);
      box.append(label);
    }
  } catch (error) { /* buckets are optional */ }
}

// ---- the request ----------------------------------------------------------------------------

function requestBody(prompt) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({role: "system", content: system});
  messages.push(...state.history, {role: "user", content: prompt});
  const body = {model: $("model").value, messages, stream: true,
                stream_options: {include_usage: true}};
  const number = id => $(id).value === "" ? null : Number($(id).value);
  for (const id of ["temperature", "top_p", "max_tokens", "seed"]) {
    if (number(id) !== null) body[id] = number(id);
  }
  const stop = $("stop").value.split(",").map(s => s.trim()).filter(Boolean);
  if (stop.length) body.stop = stop;
  const schema = $("json_schema").value.trim();
  if (schema) {
    body.response_format = {type: "json_schema",
                            json_schema: {name: "output", schema: JSON.parse(schema)}};
  }
  if ($("regex").value.trim()) body.guided_regex = $("regex").value.trim();
  const choices = $("choices").value.split(",").map(s => s.trim()).filter(Boolean);
  if (choices.length) body.guided_choice = choices;
  const buckets = [...document.querySelectorAll("#buckets input:checked")].map(i => i.value);
  if (buckets.length) {
    body.tools = [{type: "retrieval", retrieval: {bucket_ids: buckets, max_num_results: 3}}];
  }
  return body;
}

// ---- chatting -------------------------------------------------------------------------------

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  if (role === "assistant") div.innerHTML = renderMarkdown(text);
  else div.textContent = text;
  $("messages").append(div);
  div.scrollIntoView({block: "end"});
  return div;
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop-btn").hidden = !busy;
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function showMetrics(bubble, metrics, retrieval, stopped) {
  const line = document.createElement("div");
  line.className = "metrics";
  const parts = [];
  if (metrics) {
    parts.push(`TTFT ${(metrics.time_to_first_token_s * 1000).toFixed(0)} ms`,
               `${metrics.tokens_per_second.toFixed(1)} tokens/s`,
               `${metrics.input_tokens} in / ${metrics.output_tokens} out`,
               `$${metrics.cost_usd.toFixed(6)}`);
  }
  if (stopped) parts.push("stopped");
  line.textContent = parts.join(" · ");
  bubble.append(line);
  if (retrieval && retrieval.chunks.length) {
    const sources = document.createElement("div");
    sources.className = "sources";
    sources.textContent = "Sources: " + retrieval.chunks
      .map(c => `[${c.index}] ${c.bucket}/${c.filename}`).join(", ");
    bubble.append(sources);
  }
}

async function send(prompt) {
  let body;
  try {
    body = requestBody(prompt);
  } catch (error) {
    addMessage("error", `The JSON Schema is not valid JSON: ${error.message}`);
    return;
  }
  addMessage("user", prompt);
  const bubble = addMessage("assistant", "");
  const content = document.createElement("div");
  content.className = "content";
  bubble.append(content);
  let text = "", metrics = null, retrieval = null, stopped = false;
  state.controller = new AbortController();
  setBusy(true);
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", body: JSON.stringify(body), signal: state.controller.signal});
    for await (const chunk of sseEvents(response)) {
      if (chunk.error) throw new Error(chunk.error.message);
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        text += delta.content;
        content.innerHTML = renderMarkdown(text);
        bubble.scrollIntoView({block: "end"});
      }
      if (chunk.metrics) metrics = chunk.metrics;
      if (chunk.retrieval) retrieval = chunk.retrieval;
    }
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else { bubble.classList.add("error"); content.textContent = error.message; }
  } finally {
    state.controller = null;
    setBusy(false);
  }
  showMetrics(bubble, metrics, retrieval, stopped);
  state.history.push({role: "user", content: prompt}, {role: "assistant", content: text});
}

$("composer").addEventListener("submit", event => {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  if (!prompt || state.controller) return;
  $("prompt").value = "";
  send(prompt);
});
$("prompt").addEventListener("keydown", event => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop-btn").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => { state.history = []; $("messages").replaceChildren(); });

// ---- copy as code ---------------------------------------------------------------------------

function snippet(lang, body) {
  const base = `${location.origin}${BASE}/v1`;
  const payload = {...body, stream: false};
  delete payload.stream_options;
  const json = JSON.stringify(payload, null, 2);
  if (lang === "curl") {
    const auth = state.key ? ` \\\n  -H "Authorization: Bearer $SWITCHBOARD_KEY"` : "";
    return `curl ${base}/chat/completions${auth} \\\n  -H "Content-Type: application/json" ` +
           `\\\n  -d '${json.replace(/'/g, "'\\''")}'`;
  }
  const {model, messages, ...rest} = payload;
  if (lang === "responses" || lang === "anthropic") return dialectSnippet(lang, model, messages, rest);
  if (lang === "python") {
    const standard = ["temperature", "top_p", "max_tokens", "seed", "stop", "response_format",
                      "tools", "stream"];
    const args = Object.entries(rest).filter(([k]) => standard.includes(k))
      .map(([k, v]) => `    ${k}=${pyValue(v)},`);
    const extra = Object.fromEntries(Object.entries(rest).filter(([k]) => !standard.includes(k)));
    if (Object.keys(extra).length) args.push(`    extra_body=${pyValue(extra)},`);
    return `import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url="${base}", ` +
      `api_key=os.environ.get("SWITCHBOARD_KEY", "unused"))\n` +
      `reply = client.chat.completions.create(\n    model=${pyValue(model)},\n` +
      `    messages=${pyValue(messages)},\n${args.join("\n")}\n)\n` +
      `print(reply.choices[0].message.content)`;
  }
  return `import OpenAI from "openai";\n\nconst client = new OpenAI({baseURL: "${base}", ` +
    `apiKey: process.env.SWITCHBOARD_KEY ?? "unused"});\n` +
    `const reply = await client.chat.completions.create(${JSON.stringify(payload, null, 2)});\n` +
    `console.log(reply.choices[0].message.content);`;
}

// The same request in OpenAI's Responses API or Anthropic's Messages API (Python SDKs): system
// messages become `instructions` / `system`, max_tokens their own name, the rest `extra_body`.
function dialectSnippet(lang, model, messages, rest) {
  const system = messages.filter((m) => m.role === "system").map((m) => m.content).join("\n\n");
  const turns = messages.filter((m) => m.role !== "system");
  const {max_tokens, temperature, top_p, stop, stream, ...extra} = rest;
  const args = [`    model=${pyValue(model)},`];
  const key = `api_key=os.environ.get("SWITCHBOARD_KEY", "unused")`;
  let head, call, out;
  if (lang === "responses") {
    head = `from openai import OpenAI\n\nclient = OpenAI(base_url="${location.origin}${BASE}/v1", ${key})`;
    if (system) args.push(`    instructions=${pyValue(system)},`);
    args.push(`    input=${pyValue(turns)},`);
    if (max_tokens !== undefined) args.push(`    max_output_tokens=${pyValue(max_tokens)},`);
    if (stop !== undefined) extra.stop = stop;
    call = "response = client.responses.create(";
    out = "print(response.output_text)";
  } else {
    head = `import anthropic\n\nclient = anthropic.Anthropic(base_url="${location.origin}${BASE}", ${key})`;
    args.push(`    max_tokens=${pyValue(max_tokens ?? 1024)},`);
    if (system) args.push(`    system=${pyValue(system)},`);
    args.push(`    messages=${pyValue(turns)},`);
    if (stop !== undefined) args.push(`    stop_sequences=${pyValue([].concat(stop))},`);
    call = "message = client.messages.create(";
    out = "print(message.content[0].text)";
  }
  // the anthropic SDK's create() takes no sampling arguments (the API does): sent as extra_body
  const sampling = {temperature, top_p};
  for (const [name, value] of Object.entries(sampling)) {
    if (value === undefined) continue;
    if (lang === "anthropic") extra[name] = value;
    else args.push(`    ${name}=${pyValue(value)},`);
  }
  if (Object.keys(extra).length) args.push(`    extra_body=${pyValue(extra)},`);
  return `import os\n${head}\n${call}\n${args.join("\n")}\n)\n${out}`;
}

function pyValue(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pyValue).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyValue(v)}`)
      .join(", ")}}`;
  }
  return JSON.stringify(value);
}

function showSnippet() {
  let body;
  try { body = requestBody($("prompt").value.trim() || "Hello!"); } catch (e) { return; }
  $("code-snippet").textContent = snippet(state.lang, body);
  for (const b of document.querySelectorAll(".code-tabs button")) {
    b.classList.toggle("active", b.dataset.lang === state.lang);
  }
}
$("copy-code").addEventListener("click", () => { showSnippet(); $("code-dialog").showModal(); });
for (const button of document.querySelectorAll(".code-tabs button")) {
  button.addEventListener("click", () => { state.lang = button.dataset.lang; showSnippet(); });
}
$("code-copy").addEventListener("click", () => {
  navigator.clipboard && navigator.clipboard.writeText($("code-snippet").textContent);
  $("code-copy").textContent = "Copied";
  setTimeout(() => { $("code-copy").textContent = "Copy"; }, 1200);
});
$("code-close").addEventListener("click", () => $("code-dialog").close());
$("chart-group").addEventListener("change", () => loadDashboard());

// ---- dashboard ------------------------------------------------------------------------------

function table(element, columns, rows) {
  element.replaceChildren();
  const head = element.insertRow();
  for (const [title] of columns) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  for (const row of rows) {
    const tr = element.insertRow();
    for (const [, value] of columns) tr.insertCell().textContent = value(row) ?? "–";
  }
}

async function loadDashboard() {
  $("dashboard-error").textContent = "";
  $("dashboard-body").hidden = false;
  try {
    const group = $("chart-group").value;  // model or key
    const [byDay, byKey, keys, recent] = await Promise.all([
      api(`/admin/usage?group_by=day,${group}`).then(r => r.json()),
      api("/admin/usage?group_by=key").then(r => r.json()),
      api("/admin/keys").then(r => r.json()),
      api("/admin/usage?limit=500").then(r => r.json()),
    ]);
    const names = Object.fromEntries(keys.data.map(k => [k.id, k.name]));
    const days = [...new Set(byDay.data.map(r => r.day))].sort();
    const groups = [...new Set(byDay.data.map(r => r[group]))];
    const label = value => group === "key" ? (names[value] || value || "(open)")
                                           : (value || "(none)");
    const series = field => groups.map(name => ({
      name: label(name),
      values: days.map(day => {
        const row = byDay.data.find(r => r.day === day && r[group] === name);
        return row ? (typeof field === "function" ? field(row) : row[field]) : null;
      }),
    }));
    lineChart($("chart-requests"), days, series("requests"));
    lineChart($("chart-tokens"), days, series(r => r.input_tokens + r.output_tokens));
    lineChart($("chart-cost"), days, series("cost_usd"));
    lineChart($("chart-latency"), days, series(r => r.mean_latency_s === null ? null
                                                    : Number(r.mean_latency_s.toFixed(3))));
    table($("by-key"), [["key", r => names[r.key] || r.key || "(open)"],
                        ["requests", r => r.requests], ["errors", r => r.errors],
                        ["tokens", r => r.input_tokens + r.output_tokens],
                        ["cost (USD)", r => r.cost_usd.toFixed(6)],
                        ["mean latency (s)", r => r.mean_latency_s?.toFixed(3)]], byKey.data);
    table($("keys"), [["name", k => k.name], ["prefix", k => k.prefix],
                      ["models", k => (k.models || ["all"]).join(", ")],
                      ["rpm", k => k.rpm], ["tpm", k => k.tpm],
                      ["parallel", k => k.max_parallel],
                      ["budget (USD)", k => k.budget_usd === null ? null
                        : `${k.budget_usd}${k.budget_period ? " / " + k.budget_period : ""}`],
                      ["expires", k => k.expires_at?.slice(0, 10)]], keys.data);
    const errors = recent.data.filter(r => r.status >= 400).slice(0, 20);
    table($("errors"), [["time", r => r.created_at.slice(0, 19).replace("T", " ")],
                        ["key", r => names[r.key_id] || r.key_id], ["model", r => r.model],
                        ["status", r => r.status], ["error", r => r.error]], errors);
  } catch (error) {
    $("dashboard-body").hidden = true;
    $("dashboard-error").textContent = error.status === 403 || error.status === 401
      ? "The dashboard needs the admin key (sign in with it)." : error.message;
  }
}

start();
