// The 3D scene: models loaded from glb, elements by GlobalId, camera, section plane, picking, colours.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { globalIdOf } from "./guid.js";
import { COLOURED, GHOST, HIDDEN, ModelBatch, NORMAL } from "./batch.js";

// How each look is drawn (batch.js): a colour of its own, or the ghost pass.
const SELECTED = new THREE.Color(0xffc400);
const colours = new Map();
const colourOf = (hex) => { if (!colours.has(hex)) colours.set(hex, new THREE.Color(hex)); return colours.get(hex); };

function softwareRenderer() {
  const gl = document.createElement("canvas").getContext("webgl2");
  const info = gl?.getExtension("WEBGL_debug_renderer_info");
  const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
  gl?.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|software/i.test(name);
}

export class ModelView {
  constructor(canvas) {
    this.canvas = canvas;
    // Multisampling costs a software renderer (SwiftShader: headless browsers, machines without a
    // GPU) about 8x per frame on a big model; there it is left off.
    this.software = softwareRenderer();
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: !this.software, preserveDrawingBuffer: true });
    this.pixelRatio = Math.min(window.devicePixelRatio, 2);
    this.renderer.setPixelRatio(this.pixelRatio);
    this.renderer.localClippingEnabled = false;
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0xeef1f5);
    this.camera = new THREE.PerspectiveCamera(50, 1, 0.05, 10000);
    this.camera.position.set(20, 20, 20);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.screenSpacePanning = true;
    this.controls.addEventListener("change", () => this.requestRender());
    this.controls.addEventListener("start", () => this.setInteractive(true));
    this.controls.addEventListener("end", () => this.setInteractive(false));
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x667080, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.6);
    sun.position.set(0.5, 1, 0.3);
    this.scene.add(sun);
    this.elements = new Map(); // GlobalId -> { role, parts: [[ModelBatch, element index]] }
    this.models = [];
    this.section = new THREE.Plane(new THREE.Vector3(0, -1, 0), 0);
    this.bounds = new THREE.Box3();
    this.look = new Map(); // GlobalId -> "ghost" | "selected" | "#rrggbb": what highlight() set
    this.hidden = new Set(); // GlobalIds hidden by storey/class filters
    this.selected = null;
    this.marker = null;
    this._pending = false;
    this.stats = {}; // merge_ms, triangles: what loading made (the tests read them)
    this.proxyTriangles = 100_000; // beyond it, boxes while the camera moves (software renderer only)
    this.reference = false; // true: draw the glb as loaded (_loadReference), to measure against
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }

  /** While the camera moves, a software renderer draws at half resolution (its cost is mostly
   *  rasterizing) and, on a model of more than ``proxyTriangles`` triangles, each element part as
   *  its box (its cost is per triangle: 186,000 triangles took it 150-250 ms a frame, their 18,000
   *  box triangles 30-50 ms); the full picture comes back when the movement ends. */
  setInteractive(moving) {
    if (!this.software) return;
    const proxy = moving && this.stats.triangles > this.proxyTriangles;
    for (const { batch } of this.models) if (batch && batch.proxied !== proxy) batch.useProxy(proxy);
    this.renderer.setPixelRatio(moving ? this.pixelRatio / 2 : this.pixelRatio);
    this.resize();
    this.renderNow(); // resizing cleared the canvas: draw at once, not a frame later
  }

  /** Draw once on the next frame: nothing is drawn while nothing changes (an idle tab costs no CPU). */
  requestRender() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => { this._pending = false; this.renderNow(); });
  }

  renderNow() { this.renderer.render(this.scene, this.camera); }

  /** Load a glb; ``role`` "old" marks a previous version (ifcdiff), hidden but for what is shown of it.
   *  Its elements are merged into one ModelBatch (three draw calls for the whole model). */
  async load(url, headers, role = "main", onProgress = null) {
    const loader = new GLTFLoader();
    loader.setRequestHeader(headers);
    const gltf = await loader.loadAsync(url, (e) => onProgress?.(e.total ? e.loaded / e.total : 0));
    if (this.reference) return this._loadReference(gltf.scene, role);
    const t0 = performance.now();
    const nodes = [];
    const claimed = new Set();
    gltf.scene.traverse((node) => {
      const gid = globalIdOf(node.name);
      if (gid && !claimed.has(node)) { nodes.push([gid, node]); node.traverse((n) => claimed.add(n)); }
    });
    const batch = new ModelBatch(nodes);
    let count = 0;
    batch.ids.forEach((gid, e) => {
      const entry = this.elements.get(gid) || { role, parts: [] };
      if (!this.elements.has(gid)) { this.elements.set(gid, entry); count++; }
      entry.parts.push([batch, e]);
    });
    this.scene.add(batch.group);
    this.models.push({ root: batch.group, batch, role, url });
    if (role === "main") this.bounds.union(batch.geometry.boundingBox);
    for (const gid of batch.ids) this._apply(gid);
    batch.updatePasses();
    this.stats.merge_ms = (this.stats.merge_ms || 0) + (performance.now() - t0);
    this.stats.triangles = (this.stats.triangles || 0) + batch.triangles;
    this.requestRender();
    return count;
  }

  /** The glb drawn as loaded, one mesh per element part with the glb's own materials: how the viewer
   *  drew before ModelBatch, kept only to measure against (``?draw=meshes``); nothing is coloured,
   *  hidden or picked in it. */
  _loadReference(root, role) {
    let count = 0;
    root.traverse((node) => {
      const gid = globalIdOf(node.name);
      if (gid && !this.elements.has(gid)) { this.elements.set(gid, { role, parts: [] }); count++; }
    });
    this.scene.add(root);
    this.models.push({ root, batch: null, role, url: null });
    if (role === "main") this.bounds.union(new THREE.Box3().setFromObject(root));
    this.requestRender();
    return count;
  }

  /** Bounding box of some elements (all shown ones when ``gids`` is empty). */
  boxOf(gids) {
    const box = new THREE.Box3();
    for (const gid of gids) for (const [batch, e] of this.elements.get(gid)?.parts || []) box.union(batch.boxes[e]);
    return box;
  }

  /** Whether an element is drawn (not hidden by a filter, and for an old model's element, coloured). */
  isVisible(gid) {
    const entry = this.elements.get(gid);
    return !!entry && !this.hidden.has(gid) && (entry.role === "main" || this.look.has(gid));
  }

  _updated() {
    for (const { batch } of this.models) batch?.updatePasses();
    this.requestRender();
  }

  /** Draw ``gid`` as its visibility, look and selection say. */
  _apply(gid) {
    const entry = this.elements.get(gid);
    if (!entry) return;
    const look = this.selected === gid ? "selected" : this.look.get(gid) ?? null;
    const mode = !this.isVisible(gid) ? HIDDEN : look === null ? NORMAL : look === "ghost" ? GHOST : COLOURED;
    const colour = mode === COLOURED ? (look === "selected" ? SELECTED : colourOf(look)) : null;
    for (const [batch, e] of entry.parts) batch.setLook(e, mode, colour);
  }

  /** Frame a box (default: the whole model), animated over ``ms``. */
  fit(box = this.bounds, ms = 0) {
    if (box.isEmpty()) return;
    const centre = box.getCenter(new THREE.Vector3());
    const radius = Math.max(box.getSize(new THREE.Vector3()).length() / 2, 0.5);
    const distance = radius / Math.sin((this.camera.fov * Math.PI) / 360);
    const direction = this.camera.position.clone().sub(this.controls.target).normalize();
    if (direction.lengthSq() === 0) direction.set(1, 1, 1).normalize();
    const to = centre.clone().add(direction.multiplyScalar(distance));
    this.camera.near = Math.max(distance / 1000, 0.01);
    this.camera.far = distance * 100 + this.bounds.getSize(new THREE.Vector3()).length() * 4;
    this.camera.updateProjectionMatrix();
    return this._fly(to, centre, ms);
  }

  _fly(position, target, ms) {
    const fromPos = this.camera.position.clone(), fromTarget = this.controls.target.clone();
    const start = performance.now();
    return new Promise((resolve) => {
      const step = () => {
        const t = ms ? Math.min((performance.now() - start) / ms, 1) : 1;
        const k = t * t * (3 - 2 * t);
        this.camera.position.lerpVectors(fromPos, position, k);
        this.controls.target.lerpVectors(fromTarget, target, k);
        this.controls.update();
        this.renderNow();
        t < 1 ? requestAnimationFrame(step) : resolve();
      };
      step();
    });
  }

  /** A section plane cutting away what is above ``fraction`` (0..1) of the model's height; null: none. */
  setSection(fraction) {
    if (fraction === null) {
      this.renderer.clippingPlanes = [];
    } else {
      const { min, max } = this.bounds;
      this.section.constant = min.y + (max.y - min.y) * fraction;
      this.renderer.clippingPlanes = [this.section];
    }
    this.requestRender();
  }

  /** The GlobalId of the element under a pointer position (client pixels), or null. Ghosted and
   *  hidden elements are not picked, nor what the section cuts away. Element boxes first, then the
   *  triangles of those the ray enters, nearest box first. */
  pick(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const pointer = new THREE.Vector2(((clientX - rect.left) / rect.width) * 2 - 1, -((clientY - rect.top) / rect.height) * 2 + 1);
    const ray = new THREE.Raycaster();
    ray.setFromCamera(pointer, this.camera);
    const clipped = this.renderer.clippingPlanes.length > 0;
    const accept = (p) => !clipped || this.section.distanceToPoint(p) >= 0; // not cut away by the section
    const candidates = [];
    const entry = new THREE.Vector3();
    for (const { batch } of this.models) {
      if (!batch) continue;
      for (let e = 0; e < batch.ids.length; e++) {
        const mode = batch.modeOf(e);
        if (mode === HIDDEN || mode === GHOST) continue;
        if (batch.boxes[e].containsPoint(ray.ray.origin)) candidates.push([0, batch, e]);
        else if (ray.ray.intersectBox(batch.boxes[e], entry)) candidates.push([entry.distanceTo(ray.ray.origin), batch, e]);
      }
    }
    candidates.sort((p, q) => p[0] - q[0]);
    let best = Infinity, hit = null;
    const point = new THREE.Vector3();
    for (const [near, batch, e] of candidates) {
      if (near > best) break;
      const d = batch.hitElement(ray.ray, e, accept, point);
      if (d < best) { best = d; hit = batch.ids[e]; }
    }
    return hit;
  }

  /** Hide the elements of ``hidden`` (storey and class filters), show every other main element. */
  setHidden(hidden) {
    this.hidden = hidden;
    for (const gid of this.elements.keys()) this._apply(gid);
    this._updated();
  }

  /** Colour elements: ``looks`` maps GlobalId -> "#rrggbb" (or "selected"); with ``ghostOthers`` the
   *  rest fade to a glass look. Elements of an old model show only when coloured. */
  highlight(looks, ghostOthers) {
    this.look = new Map();
    for (const [gid, e] of this.elements) {
      const look = looks.get(gid) ?? (ghostOthers && e.role === "main" ? "ghost" : null);
      if (look) this.look.set(gid, look);
    }
    for (const gid of this.elements.keys()) this._apply(gid);
    this._updated();
  }

  /** Mark one element as picked (keeps other colours); null clears. */
  select(gid) {
    const prior = this.selected;
    this.selected = gid;
    if (prior) this._apply(prior);
    if (gid) this._apply(gid);
    this._updated();
  }

  /** A small sphere at a point (the clash point); null removes it. */
  mark(point, radius = 0.08) {
    if (this.marker) { this.scene.remove(this.marker); this.marker = null; }
    if (point) {
      this.marker = new THREE.Mesh(new THREE.SphereGeometry(radius, 16, 12), new THREE.MeshBasicMaterial({ color: 0xe00000, depthTest: false }));
      this.marker.renderOrder = 10;
      this.marker.position.copy(point);
      this.scene.add(this.marker);
    }
    this.requestRender();
  }

  /** Orbit ``frames`` frames, drawing each; per-frame times in ms (draw call plus GPU finish, and
   *  the interval between animation frames), the last frame's draw calls and triangles, and what
   *  loading made (``model``: merge_ms, triangles). For the performance test and the "measure" button. */
  measureOrbit(frames = 120) {
    const gl = this.renderer.getContext();
    const target = this.controls.target.clone();
    const offset = this.camera.position.clone().sub(target);
    const draw = [], interval = [];
    this.setInteractive(true);
    return new Promise((resolve) => {
      let i = 0, last = performance.now();
      const step = (now) => {
        interval.push(now - last); last = now;
        offset.applyAxisAngle(new THREE.Vector3(0, 1, 0), (2 * Math.PI) / frames);
        this.camera.position.copy(target).add(offset);
        this.camera.lookAt(target);
        const t0 = performance.now();
        this.renderNow();
        gl.finish();
        draw.push(performance.now() - t0);
        if (++i < frames) requestAnimationFrame(step);
        else {
          const { calls, triangles } = this.renderer.info.render;
          this.setInteractive(false); this.controls.update();
          resolve({ draw, interval: interval.slice(1), calls, triangles, model: { ...this.stats } });
        }
      };
      requestAnimationFrame(step);
    });
  }
}
