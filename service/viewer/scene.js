// The 3D scene: models loaded from glb, elements by GlobalId, camera, section plane, picking, colours.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { globalIdOf } from "./guid.js";

// Shared materials: one per look, so colouring thousands of elements creates nothing per element.
const LOOKS = {
  ghost: new THREE.MeshLambertMaterial({ color: 0x9aa4b1, transparent: true, opacity: 0.08, depthWrite: false }),
  selected: new THREE.MeshLambertMaterial({ color: 0xffc400, emissive: 0x553300 }),
};
const colourLooks = new Map();
function colourLook(hex) {
  if (!colourLooks.has(hex)) colourLooks.set(hex, new THREE.MeshLambertMaterial({ color: hex, emissive: new THREE.Color(hex).multiplyScalar(0.25) }));
  return colourLooks.get(hex);
}

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
    this.elements = new Map(); // GlobalId -> { meshes: [Mesh], role }
    this.models = [];
    this.section = new THREE.Plane(new THREE.Vector3(0, -1, 0), 0);
    this.bounds = new THREE.Box3();
    this.look = new Map(); // GlobalId -> "ghost" | "selected" | "#rrggbb": what highlight() set
    this.hidden = new Set(); // GlobalIds hidden by storey/class filters
    this.selected = null;
    this.marker = null;
    this._pending = false;
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
   *  rasterizing); the full picture comes back when the movement ends. */
  setInteractive(moving) {
    if (!this.software) return;
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

  /** Load a glb; ``role`` "old" marks a previous version (ifcdiff), hidden but for what is shown of it. */
  async load(url, headers, role = "main", onProgress = null) {
    const loader = new GLTFLoader();
    loader.setRequestHeader(headers);
    const gltf = await loader.loadAsync(url, (e) => onProgress?.(e.total ? e.loaded / e.total : 0));
    const root = gltf.scene;
    let count = 0;
    root.traverse((node) => {
      const gid = globalIdOf(node.name);
      if (!gid) return;
      const entry = this.elements.get(gid) || { meshes: [], role };
      if (!this.elements.has(gid)) { this.elements.set(gid, entry); count++; }
      node.traverse((m) => {
        if (!m.isMesh || m.userData.globalId) return;
        m.userData.globalId = gid;
        m.userData.material = m.material;
        entry.meshes.push(m);
      });
    });
    root.visible = true;
    this.scene.add(root);
    this.models.push({ root, role, url });
    if (role === "main") this.bounds.union(new THREE.Box3().setFromObject(root));
    if (role === "old") for (const e of this.elements.values()) if (e.role === "old") this._setVisible(e, false);
    this.requestRender();
    return count;
  }

  /** Bounding box of some elements (all shown ones when ``gids`` is empty). */
  boxOf(gids) {
    const box = new THREE.Box3();
    for (const gid of gids) for (const m of this.elements.get(gid)?.meshes || []) box.expandByObject(m);
    return box;
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

  /** The GlobalId of the element under a pointer position (client pixels), or null. */
  pick(clientX, clientY) {
    const rect = this.canvas.getBoundingClientRect();
    const pointer = new THREE.Vector2(((clientX - rect.left) / rect.width) * 2 - 1, -((clientY - rect.top) / rect.height) * 2 + 1);
    const ray = new THREE.Raycaster();
    ray.setFromCamera(pointer, this.camera);
    const clipped = this.renderer.clippingPlanes.length > 0;
    const candidates = [];
    for (const e of this.elements.values()) for (const m of e.meshes) if (m.visible && m.material !== LOOKS.ghost) candidates.push(m);
    for (const hit of ray.intersectObjects(candidates, false)) {
      if (clipped && this.section.distanceToPoint(hit.point) < 0) continue; // cut away by the section
      return hit.object.userData.globalId;
    }
    return null;
  }

  _setVisible(entry, visible) { for (const m of entry.meshes) m.visible = visible; }

  /** Hide the elements of ``hidden`` (storey and class filters), show every other main element. */
  setHidden(hidden) {
    this.hidden = hidden;
    for (const [gid, e] of this.elements) this._setVisible(e, !hidden.has(gid) && (e.role === "main" || this.look.has(gid)));
    this.requestRender();
  }

  /** Colour elements: ``looks`` maps GlobalId -> "#rrggbb" (or "selected"); with ``ghostOthers`` the
   *  rest fade to a glass look. Elements of an old model show only when coloured. */
  highlight(looks, ghostOthers) {
    this.look = new Map();
    for (const [gid, e] of this.elements) {
      const look = looks.get(gid) ?? (ghostOthers && e.role === "main" ? "ghost" : null);
      if (look) this.look.set(gid, look);
      const material = look === null ? null : look === "ghost" || look === "selected" ? LOOKS[look] : colourLook(look);
      for (const m of e.meshes) m.material = material ?? m.userData.material;
      this._setVisible(e, !this.hidden.has(gid) && (e.role === "main" || look !== null));
    }
    this.requestRender();
  }

  /** Mark one element as picked (keeps other colours); null clears. */
  select(gid) {
    if (this.selected && this.elements.has(this.selected)) {
      const prior = this.look.get(this.selected);
      const material = prior === undefined ? null : prior === "ghost" ? LOOKS.ghost : prior.startsWith("#") ? colourLook(prior) : LOOKS.selected;
      for (const m of this.elements.get(this.selected).meshes) m.material = material ?? m.userData.material;
    }
    this.selected = gid;
    if (gid && this.elements.has(gid)) for (const m of this.elements.get(gid).meshes) m.material = LOOKS.selected;
    this.requestRender();
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
   *  the interval between animation frames). For the performance test and the "measure" button. */
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
        else { this.setInteractive(false); this.controls.update(); resolve({ draw, interval: interval.slice(1) }); }
      };
      requestAnimationFrame(step);
    });
  }
}
