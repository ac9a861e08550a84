// One loaded model drawn in three draw calls however many elements it has: every element's triangles
// merged into one geometry (world coordinates, the glb material's colour per vertex, the element's
// number per vertex), drawn by three meshes sharing it: "solid" (opaque elements and coloured ones),
// "glass" (elements whose own material is transparent) and "ghost" (ghosted elements). Which element
// each mesh draws, and in what colour, is read by the vertex shader from a small texture, one texel
// per element (RGB colour, A look), so colouring, ghosting or hiding elements rewrites a few bytes
// and no geometry. An element a mesh does not draw has its vertices moved outside the view: its
// triangles are clipped before any pixel of them is drawn.
import * as THREE from "three";

export const NORMAL = 0, COLOURED = 1, GHOST = 2, HIDDEN = 3;
const WIDTH = 1024; // texels per row of the look texture
const PASSES = { solid: 0, glass: 1, ghost: 2 };

const VERTEX_HEAD = `
attribute float element;
uniform sampler2D lookMap;
varying vec3 vLookEmissive;
`;
// After project_vertex: keep the vertex, recolour it, or move it out of the view.
const VERTEX_LOOK = `
{
  int e = int(element + 0.5);
  vec4 look = texelFetch(lookMap, ivec2(e % ${WIDTH}, e / ${WIDTH}), 0);
  int mode = int(look.a * 255.0 + 0.5);
  vLookEmissive = vec3(0.0);
#if LOOK_PASS == 0
  bool drawn = mode == ${COLOURED} || (mode == ${NORMAL} && color.a > 0.999);
  if (mode == ${COLOURED}) { vColor = vec4(look.rgb, 1.0); vLookEmissive = look.rgb * 0.25; }
#elif LOOK_PASS == 1
  bool drawn = mode == ${NORMAL} && color.a <= 0.999;
#else
  bool drawn = mode == ${GHOST};
  vColor = vec4(1.0);
#endif
  if (!drawn) gl_Position = vec4(0.0, 0.0, 2.0, 1.0); // beyond the far plane: clipped
}
`;

const PASS_OPTIONS = {
  solid: {},
  glass: { transparent: true, depthWrite: false, forceSinglePass: true },
  ghost: { color: 0x9aa4b1, transparent: true, opacity: 0.08, depthWrite: false, forceSinglePass: true },
};

/** The material of one pass of one model: Lambert (cheaper than the glb's PBR on a software renderer)
 *  with vertex colours, reading the model's look texture in its vertex shader. */
function passMaterial(pass, lookMap) {
  const material = new THREE.MeshLambertMaterial({ vertexColors: true, side: THREE.DoubleSide, ...PASS_OPTIONS[pass] });
  material.defines = { LOOK_PASS: PASSES[pass] };
  material.customProgramCacheKey = () => `ifcflow-look-${pass}`;
  material.onBeforeCompile = (shader) => {
    shader.uniforms.lookMap = { value: lookMap };
    shader.vertexShader = shader.vertexShader
      .replace("#include <common>", `#include <common>\n${VERTEX_HEAD}`)
      .replace("#include <project_vertex>", `#include <project_vertex>\n${VERTEX_LOOK}`);
    shader.fragmentShader = shader.fragmentShader
      .replace("#include <common>", "#include <common>\nvarying vec3 vLookEmissive;")
      .replace("#include <emissivemap_fragment>", "#include <emissivemap_fragment>\ntotalEmissiveRadiance += vLookEmissive;");
  };
  return material;
}

const _v = new THREE.Vector3(), _a = new THREE.Vector3(), _b = new THREE.Vector3(), _c = new THREE.Vector3();
const _normal = new THREE.Matrix3();

// The 12 triangles of a box, as corner numbers (bit 0: x, 1: y, 2: z), outward.
const BOX_FACES = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]];

/** Each part's box in its own coordinates, placed in the world: a stand-in of 12 triangles a part. */
function proxyGeometry(parts) {
  const n = parts.length * 36;
  const position = new Float32Array(n * 3), normal = new Float32Array(n * 3), colour = new Uint8Array(n * 4), element = new Float32Array(n);
  const corners = Array.from({ length: 8 }, () => new THREE.Vector3());
  const face = new THREE.Vector3(), edge = new THREE.Vector3();
  let v = 0;
  for (const [e, m, c] of parts) {
    const g = m.geometry;
    if (!g.boundingBox) g.computeBoundingBox();
    const { min, max } = g.boundingBox;
    corners.forEach((p, k) => p.set(k & 1 ? max.x : min.x, k & 2 ? max.y : min.y, k & 4 ? max.z : min.z).applyMatrix4(m.matrixWorld));
    for (const [a, b, cc, d] of BOX_FACES) {
      face.subVectors(corners[b], corners[a]).cross(edge.subVectors(corners[d], corners[a])).normalize();
      for (const k of [a, b, cc, a, cc, d]) {
        corners[k].toArray(position, v * 3);
        face.toArray(normal, v * 3);
        colour.set(c, v * 4);
        element[v++] = e;
      }
    }
  }
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.BufferAttribute(position, 3));
  geometry.setAttribute("normal", new THREE.BufferAttribute(normal, 3));
  geometry.setAttribute("color", new THREE.BufferAttribute(colour, 4, true));
  geometry.setAttribute("element", new THREE.BufferAttribute(element, 1));
  geometry.computeBoundingSphere();
  return geometry;
}

/** A glb's elements merged: ``nodes`` is [[globalId, Object3D]] (each node with its meshes below it). */
export class ModelBatch {
  constructor(nodes) {
    // Every mesh of every element, once (a node below an element node belongs to it alone).
    const parts = []; // [elementIndex, Mesh]
    this.ids = []; // element index -> GlobalId
    const indexOf = new Map();
    for (const [gid, node] of nodes) {
      if (!indexOf.has(gid)) { indexOf.set(gid, this.ids.length); this.ids.push(gid); }
      node.updateWorldMatrix(true, true);
      node.traverse((m) => { if (m.isMesh && !m.userData.merged) { m.userData.merged = true; parts.push([indexOf.get(gid), m]); } });
    }
    parts.sort((p, q) => p[0] - q[0]); // an element's triangles contiguous: one index range each
    let vertices = 0, indices = 0;
    for (const [, m] of parts) {
      vertices += m.geometry.attributes.position.count;
      indices += m.geometry.index ? m.geometry.index.count : m.geometry.attributes.position.count;
    }
    const position = new Float32Array(vertices * 3), normal = new Float32Array(vertices * 3);
    const colour = new Uint8Array(vertices * 4), element = new Float32Array(vertices), index = new Uint32Array(indices);
    const n = this.ids.length;
    this.ranges = new Uint32Array(n * 2); // element -> first index, index count
    this.boxes = Array.from({ length: n }, () => new THREE.Box3());
    this.glassy = new Uint8Array(n); // 1: the element's own material is transparent (drawn by the glass pass)
    let v = 0, i = 0;
    for (const part of parts) {
      const [e, m] = part;
      const g = m.geometry, P = g.attributes.position, N = g.attributes.normal, I = g.index;
      if (this.ranges[e * 2 + 1] === 0) this.ranges[e * 2] = i;
      const first = v, count = I ? I.count : P.count;
      for (let k = 0; k < count; k++) index[i + k] = first + (I ? I.getX(k) : k);
      i += count;
      this.ranges[e * 2 + 1] += count;
      _normal.getNormalMatrix(m.matrixWorld);
      const material = Array.isArray(m.material) ? m.material[0] : m.material;
      const rgb = material.color ?? new THREE.Color(0xcccccc), alpha = material.transparent ? material.opacity : 1;
      const c = [Math.round(rgb.r * 255), Math.round(rgb.g * 255), Math.round(rgb.b * 255), Math.round(alpha * 255)];
      if (c[3] < 255) this.glassy[e] = 1;
      part.push(c); // its colour, for its proxy box
      for (let k = 0; k < P.count; k++, v++) {
        _v.fromBufferAttribute(P, k).applyMatrix4(m.matrixWorld);
        position[v * 3] = _v.x; position[v * 3 + 1] = _v.y; position[v * 3 + 2] = _v.z;
        this.boxes[e].expandByPoint(_v);
        if (N) _v.fromBufferAttribute(N, k).applyMatrix3(_normal).normalize(); else _v.set(0, 1, 0);
        normal[v * 3] = _v.x; normal[v * 3 + 1] = _v.y; normal[v * 3 + 2] = _v.z;
        colour.set(c, v * 4);
        element[v] = e;
      }
    }
    this.geometry = new THREE.BufferGeometry();
    this.geometry.setAttribute("position", new THREE.BufferAttribute(position, 3));
    this.geometry.setAttribute("normal", new THREE.BufferAttribute(normal, 3));
    this.geometry.setAttribute("color", new THREE.BufferAttribute(colour, 4, true));
    this.geometry.setAttribute("element", new THREE.BufferAttribute(element, 1));
    this.geometry.setIndex(new THREE.BufferAttribute(index, 1));
    this.geometry.computeBoundingSphere();
    this.geometry.computeBoundingBox();
    this.triangles = indices / 3;

    this.proxy = proxyGeometry(parts);

    this.looks = new Uint8Array(WIDTH * Math.max(1, Math.ceil(n / WIDTH)) * 4);
    this.lookMap = new THREE.DataTexture(this.looks, WIDTH, this.looks.length / 4 / WIDTH, THREE.RGBAFormat, THREE.UnsignedByteType);
    this.lookMap.needsUpdate = true;
    this.group = new THREE.Group();
    this.meshes = {};
    for (const [pass, order] of [["solid", 0], ["glass", 1], ["ghost", 2]]) {
      const mesh = new THREE.Mesh(this.geometry, passMaterial(pass, this.lookMap));
      mesh.name = `ifcflow-${pass}`;
      mesh.renderOrder = order;
      mesh.matrixAutoUpdate = false;
      mesh.raycast = () => {}; // picking goes through hitElement (element boxes, then triangles)
      this.meshes[pass] = mesh;
      this.group.add(mesh);
    }
    this.proxied = false;
  }

  /** Draw each element part as its box (12 triangles, same colours and looks) instead of its
   *  triangles, or back. For a software renderer while the camera moves: its cost is per triangle. */
  useProxy(on) {
    this.proxied = on;
    for (const mesh of Object.values(this.meshes)) mesh.geometry = on ? this.proxy : this.geometry;
  }

  /** Set element ``e``'s look: NORMAL, COLOURED (with ``colour``, a THREE.Color), GHOST or HIDDEN. */
  setLook(e, mode, colour = null) {
    const o = e * 4;
    this.looks[o + 3] = mode;
    if (colour) { this.looks[o] = Math.round(colour.r * 255); this.looks[o + 1] = Math.round(colour.g * 255); this.looks[o + 2] = Math.round(colour.b * 255); }
    this.lookMap.needsUpdate = true;
  }

  modeOf(e) { return this.looks[e * 4 + 3]; }

  /** Draw only the passes some element needs: a pass with nothing to draw would still run the vertex
   *  shader over the whole model. Call after a round of setLook. */
  updatePasses() {
    let solid = false, glass = false, ghost = false;
    for (let e = 0; e < this.ids.length; e++) {
      const mode = this.looks[e * 4 + 3];
      if (mode === COLOURED || (mode === NORMAL && !this.glassy[e])) solid = true;
      else if (mode === NORMAL) glass = true;
      else if (mode === GHOST) ghost = true;
    }
    this.meshes.solid.visible = solid;
    this.meshes.glass.visible = glass;
    this.meshes.ghost.visible = ghost;
  }

  /** The nearest hit of ``ray`` on element ``e``'s triangles accepted by ``accept(point)``: distance or Infinity. */
  hitElement(ray, e, accept, out) {
    const pos = this.geometry.attributes.position.array, idx = this.geometry.index.array;
    const start = this.ranges[e * 2], end = start + this.ranges[e * 2 + 1];
    let best = Infinity;
    for (let k = start; k < end; k += 3) {
      _a.fromArray(pos, idx[k] * 3); _b.fromArray(pos, idx[k + 1] * 3); _c.fromArray(pos, idx[k + 2] * 3);
      if (!ray.intersectTriangle(_a, _b, _c, false, _v)) continue;
      const d = _v.distanceTo(ray.origin);
      if (d < best && accept(_v)) { best = d; out.copy(_v); }
    }
    return best;
  }

  dispose() {
    this.geometry.dispose();
    this.proxy.dispose();
    this.lookMap.dispose();
    for (const mesh of Object.values(this.meshes)) mesh.material.dispose();
  }
}
