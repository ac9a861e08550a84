// Side panels: storey and class visibility, and the picked element's properties.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

const NO_STOREY = "(no storey)";

/** Checkboxes per storey and per class; unticking one hides its elements. */
export function filterPanel(view, state) {
  const storeyName = new Map(state.storeys.map((s) => [s.global_id, s.name || s.global_id]));
  const storeyOf = (gid) => storeyName.get(state.meta.get(gid)?.storey) ?? NO_STOREY;
  const classOf = (gid) => state.meta.get(gid)?.class ?? "(unknown class)";
  const count = (key) => {
    const counts = new Map();
    for (const [gid, e] of view.elements) if (e.role === "main") counts.set(key(gid), (counts.get(key(gid)) || 0) + 1);
    return counts;
  };
  const off = { storey: new Set(), class: new Set() };
  const apply = () => {
    const hidden = new Set();
    for (const gid of view.elements.keys()) if (off.storey.has(storeyOf(gid)) || off.class.has(classOf(gid))) hidden.add(gid);
    view.setHidden(hidden);
  };
  const group = (title, kind, counts, order) => {
    const list = el("ul", { class: "checks", id: `${kind}-filters` });
    for (const name of order.filter((n) => counts.has(n))) {
      const box = el("input", { type: "checkbox", "data-name": name });
      box.checked = true;
      box.addEventListener("change", () => { box.checked ? off[kind].delete(name) : off[kind].add(name); apply(); });
      list.append(el("li", {}, el("label", {}, box, ` ${name} `, el("small", {}, String(counts.get(name))))));
    }
    return el("details", { open: "" }, el("summary", {}, title), list);
  };
  const storeys = count(storeyOf), classes = count(classOf);
  const storeyOrder = [...state.storeys.map((s) => s.name || s.global_id), NO_STOREY];
  return el("div", {}, group("Storeys", "storey", storeys, storeyOrder), group("Classes", "class", classes, [...classes.keys()].sort()));
}

function value(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The picked element: GlobalId, class, name, storey, then each property set as a table. */
export function propertiesPanel(gid, meta, psets) {
  if (!gid) return el("p", { class: "muted" }, "Click an element to see its properties.");
  const rows = [["GlobalId", gid], ["class", meta?.class ?? ""], ["name", meta?.name ?? ""]];
  const body = el("div", { id: "picked", "data-gid": gid },
    el("table", {}, el("tbody", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))))));
  if (psets === null) body.append(el("p", { class: "muted" }, meta?.ifc ? "loading property sets..." : "no IFC known for this model: no property sets"));
  for (const [name, props] of Object.entries(psets || {})) {
    body.append(el("details", {}, el("summary", {}, name),
      el("table", {}, el("tbody", {}, ...Object.entries(props).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, value(v))))))));
  }
  return body;
}
