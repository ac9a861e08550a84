// The gateway's API as the viewer uses it: the key (shared with the dashboard through
// sessionStorage), JSON calls, following a job live, and finding or making a model's glb.
export const session = { key: sessionStorage.getItem("ifcflow-key") || "" };

export function setKey(key) { session.key = key; sessionStorage.setItem("ifcflow-key", key); }
export const authHeaders = () => ({ "X-API-Key": session.key });

export class AuthError extends Error {}

export async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (res.status === 401 || res.status === 403) throw new AuthError("That key was refused.");
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new Error(typeof body === "object" ? JSON.stringify(body.detail ?? body) : body);
  return body;
}

// Through the viewer's own route, not /files/ (a redirect to the store on S3 would be another origin).
export const fileUrl = (path) => `/viewer-api/file?file=${encodeURIComponent(path)}`;
const TERMINAL = new Set(["complete", "failed", "aborted"]);

/** Resolve with the job's final view; ``onUpdate`` sees every change. The job's socket, else polling. */
export function followJob(jobId, onUpdate) {
  return new Promise((resolve, reject) => {
    let done = false, timer = null;
    const finish = (job) => {
      if (done) return;
      done = true; clearInterval(timer);
      job.status === "complete" ? resolve(job) : reject(new Error(`job ${job.status}: ${JSON.stringify(job.error ?? "")}`));
    };
    const seen = (job) => { onUpdate(job); if (TERMINAL.has(job.status)) finish(job); };
    const poll = () => { if (!timer && !done) timer = setInterval(() => api(`/jobs/${jobId}`).then(seen).catch(() => {}), 1000); };
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${proto}://${location.host}/jobs/${jobId}/ws`);
    socket.onopen = () => socket.send(JSON.stringify({ api_key: session.key }));
    socket.onmessage = (m) => seen(JSON.parse(m.data));
    socket.onerror = poll;
    socket.onclose = () => { if (!done) api(`/jobs/${jobId}`).then(seen).then(poll).catch(poll); };
  });
}

const glbOf = (job) => (job.result?.output_files || []).find((f) => f.toLowerCase().endsWith(".glb"));

/** A glb of the IFC file at ``ifcPath``: an earlier conversion's if its file is still there, else a
 *  new ifcconvert job's (``onProgress`` sees it run). Returns the glb's data-dir path. */
export async function glbFor(ifcPath, onProgress) {
  const page = await api("/jobs?operation=ifcconvert&status=complete&limit=200");
  for (const job of page.jobs) {
    const glb = glbOf(job);
    if (glb && job.arguments?.input_filename === ifcPath) {
      // One byte of it: the file routes answer GET only, and a range is cheap however big the file.
      const probe = await fetch(fileUrl(glb), { headers: { ...authHeaders(), Range: "bytes=0-0" } }).catch(() => null);
      if (probe?.ok) return glb;
    }
  }
  const stem = ifcPath.split("/").pop().replace(/\.ifc$/i, "");
  const submitted = await api("/ifcconvert", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ input_filename: ifcPath, output_filename: `viewer/${stem}.glb` }),
  });
  onProgress?.({ job_id: submitted.job_id, status: submitted.status, progress: null });
  const job = await followJob(submitted.job_id, (j) => onProgress?.(j));
  const glb = glbOf(job);
  if (!glb) throw new Error("the conversion wrote no .glb");
  return glb;
}

/** Upload a local .ifc file; its data-dir path. */
export async function upload(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return (await api("/upload/ifc", { method: "POST", body: form })).path;
}

/** The models a job's result is about: [{ifc, role}] where role is "main" or "old" (ifcdiff's). */
export function modelsOf(job) {
  const a = job.arguments || {};
  switch (job.operation) {
    case "ifcclash": {
      const files = new Set();
      for (const set of a.clash_sets || []) for (const f of [...(set.a || []), ...(set.b || [])]) files.add(f.file);
      return [...files].map((ifc) => ({ ifc, role: "main" }));
    }
    case "ifctester": return [{ ifc: a.ifc_filename, role: "main" }];
    case "ifcdiff": return [{ ifc: a.new_file, role: "main" }, { ifc: a.old_file, role: "old" }];
    case "ifcconvert": return [{ ifc: a.input_filename, role: "main", glb: glbOf(job) }];
    default: return a.input_filename || a.filename ? [{ ifc: a.input_filename || a.filename, role: "main" }] : [];
  }
}
