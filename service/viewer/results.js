// A job's result on the model: clashes (fly to one), IDS failures by specification, diff colours,
// validation issues by rule.
import * as THREE from "three";

export const COLOURS = { a: "#e53935", b: "#1e88e5", fail: "#e53935", warning: "#f39c12", added: "#2e9d3a", deleted: "#d32f2f", changed: "#f39c12" };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

// ifcclash reports points in the IFC's coordinates (Z up); the glb is glTF's Y up.
const toScene = ([x, y, z]) => new THREE.Vector3(x, z, -y);

function choose(list, item) {
  for (const n of list.querySelectorAll(".chosen")) n.classList.remove("chosen");
  item.classList.add("chosen");
}

/** The clash sets' clashes; choosing one flies to it, the two elements coloured, the rest ghosted. */
function clashPanel(job, view, state) {
  const list = el("ol", { class: "results", id: "clash-list" });
  const sets = job.result?.clash_sets || [];
  sets.forEach((set, s) => {
    list.append(el("li", { class: "group" }, `${set.name} (${set.clash_count})`));
    set.clashes.forEach((clash, c) => {
      const item = el("li", { class: "pickable", "data-clash": `${s}:${c}` },
        el("span", { class: "swatch", style: `background:${COLOURS.a}` }), `${clash.a_ifc_class} ${clash.a_name ?? ""}`, el("br"),
        el("span", { class: "swatch", style: `background:${COLOURS.b}` }), `${clash.b_ifc_class} ${clash.b_name ?? ""}`,
        el("small", {}, ` ${clash.type} ${Number(clash.distance).toFixed(3)} m`));
      item.addEventListener("click", () => { choose(list, item); showClash(clash, view, state); });
      list.append(item);
    });
  });
  if (!sets.some((s) => s.clashes.length)) list.append(el("li", {}, "no clashes"));
  return list;
}

export async function showClash(clash, view, state) {
  const looks = new Map([[clash.a_global_id, COLOURS.a], [clash.b_global_id, COLOURS.b]]);
  view.highlight(looks, true);
  const box = view.boxOf([clash.a_global_id, clash.b_global_id]);
  const point = toScene(clash.p1).add(toScene(clash.p2)).multiplyScalar(0.5);
  // The reported point, when it lies on the two elements; else the middle of their overlap.
  const target = box.isEmpty() || box.clone().expandByScalar(0.5).containsPoint(point) ? point : box.getCenter(new THREE.Vector3());
  const span = box.isEmpty() ? new THREE.Box3().setFromCenterAndSize(target, new THREE.Vector3(2, 2, 2)) : box;
  view.mark(target, Math.max(span.getSize(new THREE.Vector3()).length() / 60, 0.03));
  state.focus = { kind: "clash", a: clash.a_global_id, b: clash.b_global_id, point: target.toArray() };
  await view.fit(new THREE.Box3().setFromCenterAndSize(target, span.getSize(new THREE.Vector3()).multiplyScalar(0.8)), 600);
  state.focus.arrived = true;
}

/** IDS results: specifications with their failures; choosing one colours its failing elements. */
function testerPanel(job, view, state) {
  const list = el("ol", { class: "results", id: "spec-list" });
  for (const spec of job.result?.specifications || []) {
    const failing = spec.failures.map((f) => f.global_id).filter(Boolean);
    const item = el("li", { class: `pickable ${spec.status ? "pass" : "fail"}`, "data-spec": spec.name },
      el("strong", {}, spec.name), el("small", {}, ` ${spec.passed}/${spec.applicable} pass, ${spec.failed} fail`));
    const details = el("ul", { class: "failures" });
    const reasons = new Map();
    for (const f of spec.failures) reasons.set(f.reason ?? "", [...(reasons.get(f.reason ?? "") || []), f]);
    for (const [reason, failures] of reasons) {
      details.append(el("li", { class: "reason" }, `${reason || "failed"} (${failures.length})`));
      for (const f of failures.slice(0, 50)) {
        const row = el("li", { class: "pickable element", "data-gid": f.global_id ?? "" }, `${f.ifc_class ?? ""} ${f.name ?? f.global_id ?? ""}`);
        row.addEventListener("click", (e) => { e.stopPropagation(); state.onPick?.(f.global_id); });
        details.append(row);
      }
    }
    item.append(details);
    item.addEventListener("click", () => {
      choose(list, item);
      view.highlight(new Map(failing.map((g) => [g, COLOURS.fail])), true);
      state.focus = { kind: "specification", name: spec.name, failing };
      if (failing.length) view.fit(view.boxOf(failing), 600);
    });
    list.append(item);
  }
  return list;
}

/** ifcdiff: added, changed (new model) and deleted (old model) coloured at once. */
function diffPanel(job, view, state) {
  const r = job.result || {};
  const changed = Object.keys(r.changed || {});
  const looks = new Map([
    ...(r.added || []).map((g) => [g, COLOURS.added]),
    ...changed.map((g) => [g, COLOURS.changed]),
    ...(r.deleted || []).map((g) => [g, COLOURS.deleted]),
  ]);
  const apply = () => { view.highlight(looks, true); state.focus = { kind: "diff", added: r.added || [], deleted: r.deleted || [], changed }; };
  apply();
  const row = (name, ids, colour) => {
    const item = el("li", { class: "pickable" }, el("span", { class: "swatch", style: `background:${colour}` }), `${name}: ${ids.length}`);
    item.addEventListener("click", () => { apply(); if (ids.length) view.fit(view.boxOf(ids), 600); });
    return item;
  };
  return el("ol", { class: "results", id: "diff-list" },
    row("added", r.added || [], COLOURS.added), row("changed", changed, COLOURS.changed), row("deleted", r.deleted || [], COLOURS.deleted));
}

/** ifcvalidate: the issues by group (rule, or check on a class's attribute); choosing a group colours
 *  the elements it names (for entities without a GlobalId, the elements they belong to), choosing one
 *  of them picks it. Issues that belong to no element are listed with their line only. */
function validatePanel(job, view, state) {
  const r = job.result || {};
  const counts = r.counts || {};
  const list = el("ol", { class: "results", id: "issue-list" });
  list.append(el("li", { class: `group ${r.valid ? "pass" : "fail"}` },
    el("strong", {}, r.valid ? "valid" : "not valid"), el("small", {}, ` ${counts.error ?? 0} errors, ${counts.warning ?? 0} warnings`)));
  for (const group of r.groups || []) {
    const colour = group.severity === "error" ? COLOURS.fail : COLOURS.warning;
    const ids = group.global_ids || [];
    const item = el("li", { class: `pickable ${group.severity === "error" ? "fail" : "warn"}`, "data-group": group.key },
      el("strong", { style: "overflow-wrap:anywhere" }, group.key), el("small", {}, ` ${group.count}`), el("br"),
      el("small", {}, group.message ?? ""));
    const details = el("ul", { class: "failures" });
    for (const e of group.entities || []) {
      // An entity without a GlobalId (a representation, a quantity) picks the element it belongs to.
      const gid = e.global_id ?? e.elements?.[0] ?? null;
      const label = `${e.entity} ${e.ifc_class ?? ""}${e.line ? ` line ${e.line}` : ""}`;
      const row = el("li", { class: `element${gid ? " pickable" : ""}`, "data-gid": gid ?? "" }, label);
      if (gid) row.addEventListener("click", (ev) => { ev.stopPropagation(); state.onPick?.(gid); });
      details.append(row);
    }
    if (group.count > (group.entities || []).length) details.append(el("li", { class: "reason" }, `... ${group.count} in all`));
    item.append(details);
    item.addEventListener("click", () => {
      choose(list, item);
      const shown = ids.filter((g) => view.elements.has(g));
      view.highlight(new Map(shown.map((g) => [g, colour])), true);
      state.focus = { kind: "validation", group: group.key, global_ids: shown };
      if (shown.length) view.fit(view.boxOf(shown), 600);
    });
    list.append(item);
  }
  if (r.groups_left_out) list.append(el("li", {}, `${r.groups_left_out} more groups in the report`));
  if (!(r.groups || []).length) list.append(el("li", {}, "no issues"));
  return list;
}

/** The models a result is about where api.js's modelsOf does not know the operation (null: ask it). */
export function resultModels(job) {
  return job.operation === "ifcvalidate" ? [{ ifc: job.arguments?.ifc_filename, role: "main" }] : null;
}

const PANELS = { ifcclash: clashPanel, ifctester: testerPanel, ifcdiff: diffPanel, ifcvalidate: validatePanel };

/** The panel for a job's result, or null when its operation has nothing to show on the model. */
export function resultsPanel(job, view, state) {
  const make = PANELS[job.operation];
  if (!make || job.status !== "complete") return null;
  return el("div", {}, el("h2", {}, `${job.operation} ${job.job_id.slice(0, 8)}`), make(job, view, state));
}
