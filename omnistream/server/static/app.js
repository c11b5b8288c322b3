// omnistream web page: chat completions (typed text and uploads) and a realtime voice session, no build step.
// Test hooks: window.omniStats counts text deltas, audio deltas and audio samples actually played.
"use strict";

const RATE = 24000;                       // the model speaks 24 kHz PCM16; the page captures at 24 kHz too
const $ = (id) => document.getElementById(id);
const stats = (window.omniStats = {
  textDeltas: 0, audioDeltas: 0, samplesScheduled: 0, samplesPlayed: 0, responses: 0, errors: [],
  sentAudioChunks: 0, events: [],
});
const history = [];                       // the chat-completions conversation (text of past turns)
let attachments = [];                     // content parts waiting to be sent with the next message
let modelId = "omnistream";
// Optional answer-length cap from the URL (/?max_tokens=64); unset leaves the model's default.
const maxTokens = parseInt(new URLSearchParams(location.search).get("max_tokens") || "", 10) || null;

// ------------------------------------------------------------------------------------------ helpers
function apiKey() { return $("apikey").value.trim(); }
function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: "Bearer " + key } : extra;
}
function setStatus(text) { $("status").textContent = text; }
function b64ToFloat(b64) {
  const bin = atob(b64);
  const n = bin.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 32768;
  }
  return out;
}
function bytesToB64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function addMessage(role, text = "") {
  const el = document.createElement("div");
  el.className = "msg " + role;
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = text;
  const meta = document.createElement("div");
  meta.className = "meta";
  el.append(body, meta);
  $("log").append(el);
  el.scrollIntoView({ block: "end" });
  return { el, body, meta };
}
function showError(message) {
  stats.errors.push(message);
  addMessage("assistant error", message);
  setStatus("error");
}

// ------------------------------------------------------------------------------------------ playback
class Player {
  constructor() { this.ctx = null; this.next = 0; this.sources = new Set(); this.item = null; this.itemStart = 0; this.itemSamples = 0; }
  context() {
    if (!this.ctx) this.ctx = new AudioContext({ sampleRate: RATE });
    if (this.ctx.state === "suspended") this.ctx.resume();
    return this.ctx;
  }
  play(b64, item) {
    const samples = b64ToFloat(b64);
    if (!samples.length) return;
    const ctx = this.context();
    const buffer = ctx.createBuffer(1, samples.length, RATE);
    buffer.copyToChannel(samples, 0);
    const src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(ctx.destination);
    const at = Math.max(this.next, ctx.currentTime + 0.05);
    if (item !== this.item) { this.item = item; this.itemStart = at; this.itemSamples = 0; }
    src.start(at);
    this.next = at + buffer.duration;
    this.itemSamples += samples.length;
    stats.samplesScheduled += samples.length;
    this.sources.add(src);
    src.onended = () => { this.sources.delete(src); if (!src.stopped) stats.samplesPlayed += samples.length; };
  }
  // Stop at once; returns {item, ms} of the current item's audio that was actually heard.
  stop() {
    const ctx = this.ctx;
    const heard = { item: this.item, ms: 0 };
    if (ctx && this.item) {
      const ms = (ctx.currentTime - this.itemStart) * 1000;
      heard.ms = Math.max(0, Math.min(Math.floor(ms), Math.floor(this.itemSamples * 1000 / RATE)));
    }
    for (const src of this.sources) { src.stopped = true; try { src.stop(); } catch (e) { /* not started */ } }
    this.sources.clear();
    this.next = 0;
    this.item = null;
    return heard;
  }
  get playing() { return this.sources.size > 0; }
}
const player = new Player();

// ------------------------------------------------------------------------------------------ chat
async function loadModel() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (response.status === 401) { setStatus("this server needs an API key"); $("apikey").focus(); return; }
    const models = await response.json();
    if (models.data && models.data.length) modelId = models.data[0].id;
    $("model").textContent = modelId;
    const voices = await (await fetch("/v1/voices", { headers: headers() })).json();
    const select = $("voice");
    select.innerHTML = "";
    for (const v of voices.data || []) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = v;
      if (v === voices.default) opt.selected = true;
      select.append(opt);
    }
    const speaks = (voices.data || []).length > 0;        // thinker-only checkpoints answer in text
    $("speak").disabled = !speaks;
    $("speak").checked = speaks;
    setStatus("ready");
  } catch (e) { showError("cannot reach the server: " + e); }
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function attach(files) {
  for (const file of files) {
    const url = await readFile(file);
    const kind = file.type.split("/")[0];
    let part;
    if (kind === "image") part = { type: "image_url", image_url: { url } };
    else if (kind === "video") part = { type: "video_url", video_url: { url } };
    else {
      const ext = (file.name.split(".").pop() || "wav").toLowerCase();
      part = { type: "input_audio", input_audio: { data: url.split(",")[1], format: ext === "oga" ? "ogg" : ext } };
    }
    attachments.push({ name: file.name, part });
  }
  renderAttachments();
}
function renderAttachments() {
  const box = $("attachments");
  box.innerHTML = "";
  for (const a of attachments) {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.textContent = a.name;
    box.append(chip);
  }
}

async function sendChat() {
  const text = $("prompt").value.trim();
  if (!text && !attachments.length) return;
  const content = attachments.map((a) => a.part);
  if (text) content.push({ type: "text", text });
  const shown = addMessage("user", (attachments.length ? "attached: " + attachments.map((a) => a.name).join(", ") + "\n" : "") + text);
  shown.el.dataset.kind = "chat";
  for (const a of attachments) {                      // thumbnails of attached images
    if (a.part.type !== "image_url") continue;
    const img = document.createElement("img");
    img.src = a.part.image_url.url;
    img.className = "thumb";
    shown.el.insertBefore(img, shown.meta);
  }
  history.push({ role: "user", content });
  attachments = [];
  renderAttachments();
  $("prompt").value = "";
  $("send").disabled = true;
  try { await streamChat(); } finally { $("send").disabled = false; }
}

async function streamChat() {
  const speak = $("speak").checked;
  const body = { model: modelId, messages: history, stream: true, stream_options: { include_usage: true } };
  if (maxTokens) body.max_tokens = maxTokens;
  if (speak) { body.modalities = ["text", "audio"]; body.audio = { voice: $("voice").value, format: "pcm16" }; }
  setStatus("thinking…");
  const answer = addMessage("assistant");
  answer.el.dataset.kind = "chat";
  const started = performance.now();
  const response = await fetch("/v1/chat/completions", {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
  });
  if (!response.ok) {
    const err = await response.json().catch(() => ({ error: { message: response.statusText } }));
    history.pop();
    answer.el.remove();
    return showError(`${response.status}: ${err.error ? err.error.message : response.statusText}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const itemId = "chat-" + started;
  let pending = "", text = "", firstAudio = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = pending.indexOf("\n\n")) >= 0) {
      const line = pending.slice(0, cut).trim();
      pending = pending.slice(cut + 2);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) { showError(chunk.error.message); continue; }
      const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
      if (delta.content) { text += delta.content; answer.body.textContent = text; stats.textDeltas++; }
      if (delta.audio && delta.audio.data) {
        if (firstAudio === null) firstAudio = performance.now() - started;
        stats.audioDeltas++;
        player.play(delta.audio.data, itemId);
      }
      if (chunk.usage) answer.meta.textContent = `${chunk.usage.completion_tokens} tokens` +
        (firstAudio !== null ? ` · first audio after ${Math.round(firstAudio)} ms` : "");
    }
  }
  history.push({ role: "assistant", content: text });
  stats.responses++;
  setStatus("ready");
}

// ------------------------------------------------------------------------------------------ realtime
class Live {
  constructor() { this.ws = null; this.stream = null; this.node = null; this.answer = null; this.item = null; }

  async start() {
    const ctx = player.context();
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const protocols = ["realtime"];
    if (apiKey()) protocols.push("openai-insecure-api-key." + apiKey());
    this.ws = new WebSocket(`${proto}://${location.host}/v1/realtime?model=${encodeURIComponent(modelId)}`, protocols);
    this.ws.onmessage = (e) => this.onEvent(JSON.parse(e.data));
    this.ws.onclose = () => this.stop();
    await new Promise((resolve, reject) => { this.ws.onopen = resolve; this.ws.onerror = reject; });
    const source = ctx.createMediaStreamSource(this.stream);
    const sink = ctx.createGain();
    sink.gain.value = 0;
    if (ctx.audioWorklet) {
      await ctx.audioWorklet.addModule("/static/pcm-worklet.js");
      this.node = new AudioWorkletNode(ctx, "pcm-capture");
      this.node.port.onmessage = (e) => this.sendAudio(new Uint8Array(e.data));
    } else {                                         // older browsers: ScriptProcessor fallback
      this.node = ctx.createScriptProcessor(2048, 1, 1);
      this.node.onaudioprocess = (e) => this.sendAudio(floatToPcm(e.inputBuffer.getChannelData(0)));
    }
    source.connect(this.node);
    this.node.connect(sink);
    sink.connect(ctx.destination);
    $("talk").classList.add("live");
    $("talk").textContent = "Stop";
    setStatus("listening…");
  }

  sendAudio(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "input_audio_buffer.append", audio: bytesToB64(bytes) }));
      stats.sentAudioChunks++;
    }
  }

  stop() {
    if (this.node) { try { this.node.disconnect(); } catch (e) { /* already */ } this.node = null; }
    if (this.stream) { this.stream.getTracks().forEach((t) => t.stop()); this.stream = null; }
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
    this.ws = null;
    $("talk").classList.remove("live");
    $("talk").textContent = "Talk";
    setStatus("ready");
  }

  send(event) { if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(event)); }

  onEvent(ev) {
    stats.events.push(ev.type);
    switch (ev.type) {
      case "session.created":
        this.send({ type: "session.update", session: {
          type: "realtime", output_modalities: $("speak").checked ? ["audio"] : ["text"],
          audio: { output: { voice: $("voice").value } }, ...(maxTokens ? { max_output_tokens: maxTokens } : {}) } });
        break;
      case "input_audio_buffer.speech_started": {      // barge-in: stop playing, keep only what was heard
        if (player.playing && this.item) {
          const heard = player.stop();
          if (heard.item === this.item) this.send({ type: "conversation.item.truncate", item_id: this.item, content_index: 0, audio_end_ms: heard.ms });
        }
        setStatus("listening…");
        break;
      }
      case "input_audio_buffer.speech_stopped": setStatus("thinking…"); break;
      case "input_audio_buffer.committed": addMessage("user", "(spoken)").el.dataset.kind = "voice"; break;
      case "response.output_item.added":
        this.item = ev.item.id;
        this.answer = addMessage("assistant");
        this.answer.el.dataset.kind = "voice";
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        if (this.answer) { this.answer.body.textContent += ev.delta; stats.textDeltas++; }
        break;
      case "response.output_audio.delta": stats.audioDeltas++; player.play(ev.delta, ev.item_id); setStatus("speaking…"); break;
      case "response.done":
        stats.responses++;
        if (this.answer) this.answer.meta.textContent = ev.response.status;
        setStatus("listening…");
        break;
      case "error": showError(ev.error.message); break;
      default: break;
    }
  }
}

function floatToPcm(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
  return new Uint8Array(out.buffer);
}

const live = new Live();

// ------------------------------------------------------------------------------------------ wiring
$("send").onclick = () => { player.context(); sendChat().catch((e) => showError(String(e))); };
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("send").click(); }
});
$("attach").onclick = () => $("file").click();
$("file").onchange = (e) => attach([...e.target.files]).catch((err) => showError(String(err)));
$("talk").onclick = () => {
  if (live.ws) live.stop();
  else live.start().catch((e) => { live.stop(); showError("microphone: " + e); });
};
$("apikey").value = localStorage.getItem("omnistream-key") || "";
$("apikey").onchange = () => { localStorage.setItem("omnistream-key", apiKey()); loadModel(); };
loadModel();
