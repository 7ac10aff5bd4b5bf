// Validates Kubernetes custom resources against the published schemas of their kinds, strictly.
//
//   node tools/k8s-schemas/validate.mjs < objects.json    (a JSON array of manifests)
//
// Prints one JSON line per object ({kind, name, ok, errors}) and exits 1 if any object fails or has no
// schema here. The models come from @kubernetes-models, generated from the upstream CRDs (the Gateway
// API's for gateway.networking.k8s.io, GKE's for networking.gke.io). Two passes, because each misses
// what the other sees:
//   1. the models' JSON-schema validators: types, enums, patterns, bounds, required fields;
//   2. the models' TypeScript declarations, type-checked by tsc with each object as a literal:
//      unknown (misspelt) fields, which the JSON-schema validators let through.
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGES = {
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api/gateway.networking.k8s.io",
  "networking.gke.io": "@kubernetes-models/gke/networking.gke.io",
};

function locate(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  return PACKAGES[group] && version && /^[A-Za-z]+$/.test(kind ?? "") ? `${PACKAGES[group]}/${version}` : null;
}

async function modelFor(apiVersion, kind) {
  const base = locate(apiVersion, kind);
  if (!base) return null;
  try {
    return (await import(base))[kind] ?? null;
  } catch {
    return null;
  }
}

function typeCheck(objects) {
  // One object per line, so tsc's line numbers name the object.
  const file = join(HERE, `.objects-${process.pid}.ts`);
  const lines = objects.map(({ object }, i) =>
    `import type { I${object.kind} as T${i} } from "${locate(object.apiVersion, object.kind)}/${object.kind}";`);
  const first = lines.length;
  objects.forEach(({ object }, i) => lines.push(`export const o${i}: T${i} = ${JSON.stringify(object)};`));
  writeFileSync(file, lines.join("\n") + "\n");
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  const found = objects.map(() => []);
  try {
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext",
      "--moduleResolution", "nodenext", "--pretty", "false", file], { cwd: HERE, encoding: "utf8" });
  } catch (error) {
    for (const line of String(error.stdout).split("\n")) {
      const match = line.match(/\.ts\((\d+),\d+\): error (TS\d+: .*)$/);
      if (!match) continue;
      const index = Number(match[1]) - 1 - first;
      (found[index] ?? found[0]).push(match[2]);
    }
    if (found.every((errors) => errors.length === 0)) throw error;  // tsc failed for another reason
  } finally {
    rmSync(file, { force: true });
  }
  return found;
}

const objects = JSON.parse(readFileSync(0, "utf8")).map((object) => ({ object, errors: [] }));
for (const entry of objects) {
  const { object } = entry;
  const Model = await modelFor(object.apiVersion, object.kind);
  if (!Model) {
    entry.errors.push(`no schema for ${object.apiVersion} ${object.kind}`);
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    for (const e of error.errors ?? [error]) {
      entry.errors.push(e.instancePath !== undefined ? `${e.instancePath || "/"} ${e.message}` : String(e.message ?? e));
    }
  }
}
const typed = objects.filter((entry) => !entry.errors.some((e) => e.startsWith("no schema")));
if (typed.length) typeCheck(typed).forEach((errors, i) => typed[i].errors.push(...errors));
let failed = 0;
for (const { object, errors } of objects) {
  if (errors.length) failed += 1;
  console.log(JSON.stringify({ kind: object.kind, name: object?.metadata?.name ?? "?", ok: !errors.length, errors }));
}
process.exit(failed ? 1 : 0);
