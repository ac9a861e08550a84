// IFC GlobalIds of glb nodes. ifcopenshell 0.9's glTF serializer names each element's node
// "product-<uuid>-body" (the GlobalId expanded to a UUID); with its use-element-guids setting the
// node is named by the GlobalId itself. Both map back to the 22-character IFC form here.
const CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_$";
const UUID_NAME = /^product-([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})/i;
const GLOBAL_ID = /^[0-9A-Za-z_$]{22}$/;

function base64(value, digits) {
  let out = "";
  for (let i = 0; i < digits; i++) { out = CHARS[value % 64] + out; value = Math.floor(value / 64); }
  return out;
}

/** The IFC GlobalId of a UUID given as 32 hex digits (ifcopenshell.guid.compress). */
export function compress(hex) {
  const bytes = [];
  for (let i = 0; i < 32; i += 2) bytes.push(parseInt(hex.slice(i, i + 2), 16));
  let out = base64(bytes[0], 2);
  for (let i = 1; i < 16; i += 3) out += base64((bytes[i] << 16) + (bytes[i + 1] << 8) + bytes[i + 2], 4);
  return out;
}

/** The GlobalId a glb node's name stands for, or null for nodes that are no element. */
export function globalIdOf(name) {
  if (!name) return null;
  const m = UUID_NAME.exec(name);
  if (m) return compress(m.slice(1).join(""));
  return GLOBAL_ID.test(name) ? name : null;
}
