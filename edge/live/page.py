"""The web view's one HTML page: the MJPEG stream, and the decision, top-K (with thumbnails), FPS
and latency polled from /latest.json twice a second. No external scripts or fonts."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>siamese-edge live</title>
<style>
 body { font: 15px system-ui, sans-serif; margin: 16px; background: #111; color: #eee; }
 main { display: flex; gap: 18px; flex-wrap: wrap; align-items: flex-start; }
 #stream { max-width: 100%; width: 640px; background: #000; border: 1px solid #333; }
 #decision { font-size: 30px; font-weight: 600; margin: 4px 0 2px; }
 .unknown { color: #e9a23b; } .muted { color: #999; font-size: 13px; }
 table { border-collapse: collapse; margin-top: 10px; }
 td { padding: 3px 8px 3px 0; vertical-align: middle; } td img { width: 64px; height: 64px; object-fit: cover; }
</style></head>
<body>
<h1 style="font-size:18px;margin:0 0 10px">siamese-edge: live search</h1>
<main>
 <img id="stream" src="/stream.mjpg" alt="live camera stream">
 <section>
  <div class="muted">decision</div><div id="decision">waiting for the first frame</div>
  <div class="muted" id="stats"></div>
  <table id="matches"></table>
  <p class="muted">For scripts: <a href="/latest.json" style="color:#8cf">/latest.json</a>,
   <a href="/snapshot.jpg" style="color:#8cf">/snapshot.jpg</a></p>
 </section>
</main>
<script>
function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }
async function poll() {
  try {
    const r = await (await fetch("/latest.json", {cache: "no-store"})).json();
    if (r.query !== undefined) {
      const d = document.getElementById("decision");
      d.textContent = r.label === null ? "unknown" : r.label;
      d.className = r.label === null ? "unknown" : "";
      document.getElementById("stats").textContent = `frame ${r.query} \u00b7 ${r.fps.toFixed(1)} FPS \u00b7 ` +
        `latency ${r.latency_ms.toFixed(0)} ms \u00b7 gallery ${r.gallery_items} items`;
      const table = document.getElementById("matches"); table.replaceChildren();
      for (const m of r.matches) {
        const tr = document.createElement("tr"), td = document.createElement("td");
        if (m.thumbnail) { const img = document.createElement("img"); img.src = m.thumbnail; img.alt = m.label; td.append(img); }
        tr.append(td, cell(m.label), cell(m.similarity.toFixed(3))); table.append(tr);
      }
    }
  } catch (e) { document.getElementById("stats").textContent = "no answer from the device"; }
  setTimeout(poll, 500);
}
poll();
</script>
</body></html>
"""
