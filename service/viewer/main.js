// The viewer page: what to open (?file=<glb>, ?ifc=<ifc>, ?job=<id>, or an uploaded .ifc), the side
// panels (results, storeys and classes, properties) and the debug handle the browser tests read.
import { AuthError, api, authHeaders, fileUrl, glbFor, modelsOf, session, setKey, upload } from "./api.js";
import { resultModels, resultsPanel } from "./results.js";
import { ModelView } from "./scene.js";
import { filterPanel, propertiesPanel } from "./panels.js";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const view = new ModelView($("#canvas"));
// ?draw=meshes: the glb as loaded, a mesh per element (what ModelBatch replaced), to compare frame times.
view.reference = params.get("draw") === "meshes";
const state = { meta: new Map(), storeys: [], sources: [], job: null, focus: null, loaded: false, error: null, timings: {} };

function status(text, percent = null) {
  $("#status").hidden = !text;
  $("#status-text").textContent = text;
  $("#status-bar").hidden = percent === null;
  if (percent !== null) $("#status-bar").value = percent;
}

function progressOf(label) {
  return (job) => {
    const p = job.progress?.percent ?? (job.status === "complete" ? 100 : 0);
    status(`${label}: ${job.status.replace("_", " ")}${job.progress?.phase ? ` - ${job.progress.phase}` : ""}`, p);
  };
}

/** The IFC a glb was made from, from the conversion job that wrote it (null when none is known). */
async function ifcOfGlb(glb) {
  const page = await api("/jobs?operation=ifcconvert&status=complete&limit=200");
  const job = page.jobs.find((j) => (j.result?.output_files || []).includes(glb));
  return job?.arguments?.input_filename ?? null;
}

async function loadMeta(ifc) {
  try {
    const index = await api(`/viewer-api/elements?file=${encodeURIComponent(ifc)}`);
    for (const [gid, e] of Object.entries(index.elements)) if (!state.meta.has(gid)) state.meta.set(gid, { ...e, ifc });
    for (const s of index.storeys) if (!state.storeys.some((t) => t.global_id === s.global_id)) state.storeys.push(s);
  } catch (e) {
    if (e instanceof AuthError) throw e;
    console.warn("no element index for", ifc, e); // the model still shows; picks show the GlobalId only
  }
}

/** Load each model (converting an IFC first when no glb of it exists), then the element index. */
async function open(models) {
  const t0 = performance.now();
  // The element index is read while the glbs download: on a big model both take seconds.
  const metas = Promise.all(models.filter((m) => m.ifc).map((m) => loadMeta(m.ifc)));
  for (const [i, m] of models.entries()) {
    const glb = m.glb || (await glbFor(m.ifc, progressOf(`converting ${m.ifc}`)));
    status(`loading ${glb}`, 0);
    await view.load(fileUrl(glb), authHeaders(), m.role, (f) => status(`loading ${glb}`, Math.round(f * 100)));
    state.sources.push({ ...m, glb });
    if (i === 0) state.timings.first_model_ms = performance.now() - t0;
  }
  await view.fit();
  state.timings.model_ms = performance.now() - t0; // the whole model drawn
  await metas;
  state.timings.load_ms = performance.now() - t0; // and every element's class, name and storey known
  $("#filters").replaceChildren(filterPanel(view, state));
  state.loaded = true;
  status("");
}

async function openFromParams() {
  if (params.get("job")) {
    const job = await api(`/jobs/${encodeURIComponent(params.get("job"))}`);
    state.job = job;
    const models = resultModels(job) ?? modelsOf(job);
    if (!models.length) throw new Error(`a ${job.operation} job has no model to show`);
    await open(models);
    const panel = resultsPanel(job, view, state);
    if (panel) $("#results").replaceChildren(panel);
    $("#results").hidden = !panel;
    document.title = `${job.operation} ${job.job_id.slice(0, 8)} - ifcflow viewer`;
  } else if (params.get("file")) {
    const glb = params.get("file");
    const ifc = params.get("ifc") || (await ifcOfGlb(glb));
    await open([{ glb, ifc, role: "main" }]);
  } else if (params.get("ifc")) {
    await open([{ ifc: params.get("ifc"), role: "main" }]);
  } else {
    status("Open a model: choose an .ifc file above, or follow a job's viewer link in the dashboard.");
  }
}

async function pickAt(x, y) {
  const gid = view.pick(x, y);
  showElement(gid);
}

async function showElement(gid) {
  view.select(gid);
  state.picked = gid;
  const meta = gid ? state.meta.get(gid) : null;
  $("#properties").replaceChildren(propertiesPanel(gid, meta, null));
  if (!gid || !meta?.ifc) return;
  try {
    const props = await api(`/viewer-api/properties?file=${encodeURIComponent(meta.ifc)}&global_id=${encodeURIComponent(gid)}`);
    if (state.picked === gid) $("#properties").replaceChildren(propertiesPanel(gid, meta, props.property_sets));
  } catch (e) { console.warn(e); }
}
state.onPick = showElement;

let wired = false;
function wireControls() {
  if (wired) return; // a second sign-in after a refused key
  wired = true;
  let down = null;
  $("#canvas").addEventListener("pointerdown", (e) => { down = [e.clientX, e.clientY]; });
  $("#canvas").addEventListener("pointerup", (e) => {
    if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) < 4) pickAt(e.clientX, e.clientY);
    down = null;
  });
  $("#fit").addEventListener("click", () => view.fit(undefined, 400));
  $("#section").addEventListener("change", () => view.setSection($("#section").checked ? $("#section-level").value / 100 : null));
  $("#section-level").addEventListener("input", () => { $("#section").checked = true; view.setSection($("#section-level").value / 100); });
  $("#reset").addEventListener("click", () => { view.highlight(new Map(), false); view.mark(null); state.focus = null; });
  $("#upload").addEventListener("change", async () => {
    const file = $("#upload").files[0];
    if (!file) return;
    try {
      status(`uploading ${file.name}`, 0);
      const path = await upload(file);
      history.replaceState(null, "", `/viewer?ifc=${encodeURIComponent(path)}`);
      await open([{ ifc: path, role: "main" }]);
    } catch (e) { fail(e); }
  });
}

function fail(e) {
  state.error = String(e.message ?? e);
  if (e instanceof AuthError) { sessionStorage.removeItem("ifcflow-key"); showLogin(e.message); return; }
  status(`Could not open the model: ${state.error}`);
}

function showLogin(message = "") {
  $("#login").hidden = false;
  $("#login-error").textContent = message;
}

async function start() {
  $("#login").hidden = true;
  wireControls();
  try { await openFromParams(); } catch (e) { fail(e); }
}

// The handle the browser tests (and a curious user's console) read the scene through.
window.ifcflowViewer = {
  view, state,
  summary: () => ({
    loaded: state.loaded, error: state.error, elements: view.elements.size, indexed: state.meta.size,
    looks: Object.fromEntries(view.look), focus: state.focus, selected: view.selected, timings: state.timings,
    section: view.renderer.clippingPlanes.length > 0,
    visible: [...view.elements.keys()].filter((gid) => view.isVisible(gid)).length,
  }),
  measureOrbit: (frames) => view.measureOrbit(frames),
  pickAt,
};

$("#login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setKey($("#key").value.trim());
  start();
});
if (session.key) start(); else showLogin();
