// The demo page: sends the chosen image and prompt to /v1/generate and draws the answer's
// boxes and masks over the image (an SVG whose viewBox is the image's pixel grid).
"use strict";

const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4"];
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// COCO RLE (column-major counts, starting with a run of 0s) -> PNG data URL of the mask.
function maskUrl(rle, color) {
  const [h, w] = rle.size;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h);
  const rgb = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  let pos = 0;
  rle.counts.forEach((count, run) => {
    if (run % 2 === 1) {
      for (let k = pos; k < pos + count; k++) {
        const y = k % h, x = Math.floor(k / h), o = 4 * (y * w + x);
        img.data.set([...rgb, 110], o);
      }
    }
    pos += count;
  });
  ctx.putImageData(img, 0, 0);
  return canvas.toDataURL("image/png");
}

function draw(result) {
  const svg = $("overlay");
  const [h, w] = result.image_size;
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const list = $("objects");
  list.replaceChildren();
  result.objects.forEach((obj, i) => {
    const color = COLORS[i % COLORS.length];
    const [ymin, xmin, ymax, xmax] = obj.box;
    if (obj.mask) {
      const image = document.createElementNS(SVG, "image");
      image.setAttribute("class", "mask");
      image.setAttribute("href", maskUrl(obj.mask, color));
      for (const [k, v] of [["x", 0], ["y", 0], ["width", w], ["height", h]]) {
        image.setAttribute(k, v);
      }
      svg.appendChild(image);
    }
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("class", "box");
    for (const [k, v] of [["x", xmin], ["y", ymin], ["width", xmax - xmin],
                          ["height", ymax - ymin]]) {
      rect.setAttribute(k, v);
    }
    rect.setAttribute("stroke", color);
    svg.appendChild(rect);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", xmin);
    label.setAttribute("y", Math.max(ymin - 2, Math.max(h, w) / 25));
    label.setAttribute("font-size", Math.max(h, w) / 25);
    label.setAttribute("fill", color);
    label.textContent = obj.label;
    svg.appendChild(label);
    const item = document.createElement("li");
    item.textContent = `${obj.label}: [${obj.box.join(", ")}]` + (obj.mask ? " + mask" : "");
    list.appendChild(item);
  });
  svg.dataset.objects = String(result.objects.length);
}

// The server's limits: max_tokens defaults to min(32, --max_tokens).
fetch("/healthz").then((r) => r.json()).then((health) => {
  const limit = health.engine.max_tokens;
  $("max_tokens").max = limit;
  $("max_tokens").value = Math.min(32, limit);
  document.body.dataset.ready = "1";
}).catch((err) => setStatus(`Server not reachable: ${err}`, true));

$("task").addEventListener("change", () => { $("prompt").value = $("task").value; });

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  $("overlay").replaceChildren();
  $("answer").textContent = "";
  if (file) $("preview").src = URL.createObjectURL(file);
});

// Reads server-sent events from a streamed response: `data: {...}` blocks.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (block.startsWith("data: ")) onEvent(JSON.parse(block.slice(6)));
    }
  }
}

function showResult(result, streamed) {
  $("answer").textContent = result.text;
  draw(result);
  const t = result.timings;
  const how = streamed ? "streamed" : `decode ${t.decode_ms.toFixed(0)} ms in a batch of ` +
                                      `${result.batch.size}`;
  setStatus(`${result.objects.length} object(s); ${t.total_ms.toFixed(0)} ms (${how}); ` +
            `finished by ${result.finish_reason}`, false);
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new FormData();
  body.append("image", $("image").files[0]);
  for (const key of ["prompt", "sampler", "max_tokens"]) body.append(key, $(key).value);
  const streamed = $("stream").checked;
  body.append("stream", String(streamed));
  $("submit").disabled = true;
  $("overlay").replaceChildren();
  $("answer").textContent = "";
  setStatus("Running...", false);
  try {
    const response = await fetch("/v1/generate", { method: "POST", body });
    if (!response.ok) {
      const result = await response.json();
      setStatus(`Error ${response.status}: ${result.error.message}`, true);
    } else if (streamed) {
      await readEvents(response, (e) => {
        if (e.done) showResult(e, true);
        else $("answer").textContent = e.text;
      });
    } else {
      showResult(await response.json(), false);
    }
  } catch (err) {
    setStatus(`Request failed: ${err}`, true);
  } finally {
    $("submit").disabled = false;
  }
});
