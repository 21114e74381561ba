/**
 * The one script the dashboard's pages carry (inline: nothing is loaded from elsewhere). Pages
 * read fully without it; it only adds:
 * - polling: a page whose body names `data-live-src` fetches that JSON route every 2 s and writes
 *   each `data-live-field="a.b"` element's text and each `data-live-width="a.b"` element's width (%)
 *   from it, until the JSON says `"done": true`;
 * - live answers: an element with `data-live-stream` (a server-sent events route) gets the job's
 *   answer as it is written: `text` events append to `[data-testid=answer]`, `state` and `final`
 *   events set `[data-testid=state]`;
 * - actions: a `button[data-action]` POSTs its `data-body` (else `{}`) as JSON to its path (the SameSite token cookie
 *   goes with it), shows the answer in `#action-result` and reloads the page.
 */
export const CLIENT_SCRIPT = `(() => {
const get = (o, path) => path.split(".").reduce((v, k) => (v == null ? v : v[k]), o);
const src = document.body.dataset.liveSrc;
if (src) {
  const poll = async () => {
    let done = false;
    try {
      const r = await fetch(src, { headers: { accept: "application/json" } });
      if (r.ok) {
        const json = await r.json();
        for (const el of document.querySelectorAll("[data-live-field]")) {
          const v = get(json, el.dataset.liveField);
          if (v !== undefined && v !== null) el.textContent = String(v);
        }
        for (const el of document.querySelectorAll("[data-live-width]")) {
          const v = get(json, el.dataset.liveWidth);
          if (typeof v === "number") el.style.width = v + "%";
        }
        done = json.done === true;
      }
    } catch {}
    if (!done) setTimeout(poll, 2000);
  };
  setTimeout(poll, 2000);
}
const live = document.querySelector("[data-live-stream]");
if (live && window.EventSource) {
  const es = new EventSource(live.dataset.liveStream);
  const answer = () => {
    let el = document.querySelector("[data-testid=answer]");
    if (!el) {
      const h = document.createElement("h2"); h.textContent = "Answer (live)";
      el = document.createElement("pre"); el.dataset.testid = "answer";
      live.append(h, el);
    }
    return el;
  };
  const setState = (s) => { const el = document.querySelector("[data-testid=state]"); if (el && s) { el.textContent = s; el.className = "state " + s; } };
  es.addEventListener("text", (e) => { answer().textContent += JSON.parse(e.data).text ?? ""; });
  es.addEventListener("state", (e) => { const d = JSON.parse(e.data); setState(d.state); if (d.state === "active") answer().textContent = ""; });
  es.addEventListener("tool", (e) => { const d = JSON.parse(e.data); const el = document.querySelector("[data-testid=live-tool]"); if (el) el.textContent = d.tool + " " + d.status; });
  es.addEventListener("final", (e) => {
    const d = JSON.parse(e.data); setState(d.state);
    if (d.record && d.record.text != null) answer().textContent = d.record.text;
    es.close();
  });
  es.addEventListener("end", () => es.close());
}
for (const button of document.querySelectorAll("button[data-action]")) {
  button.addEventListener("click", async () => {
    const out = document.getElementById("action-result");
    button.disabled = true;
    try {
      const r = await fetch(button.dataset.action, { method: "POST", headers: { "content-type": "application/json" }, body: button.dataset.body || "{}" });
      const text = await r.text();
      if (out) out.textContent = (r.ok ? "" : r.status + ": ") + text;
      if (r.ok) setTimeout(() => location.reload(), 600);
    } catch (err) {
      if (out) out.textContent = String(err);
    } finally {
      button.disabled = false;
    }
  });
}
})();`;
