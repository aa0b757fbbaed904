// Validates ServiceMonitor and PrometheusRule manifests against the Prometheus Operator's CRD
// schemas (compiled into npm @kubernetes-models/prometheus-operator, installed by
// deploy/tools/install.sh). Input: a JSON array of manifests on stdin. Output: one line per
// problem; exit 1 if any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.HONE_TOOLS_NODE_MODULES;
if (!modules) {
  console.error("HONE_TOOLS_NODE_MODULES is not set");
  process.exit(2);
}
const v1 = await import(
  pathToFileURL(join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js")).href
);
const models = { ServiceMonitor: v1.ServiceMonitor, PrometheusRule: v1.PrometheusRule };

const manifests = JSON.parse(readFileSync(0, "utf8"));
let problems = 0;
for (const manifest of manifests) {
  const Model = models[manifest.kind];
  if (!Model) {
    console.log(`${manifest.kind} ${manifest.metadata?.name}: no schema for this kind`);
    problems++;
    continue;
  }
  try {
    new Model(manifest).validate();
  } catch (error) {
    console.log(`${manifest.kind} ${manifest.metadata?.name}: ${error.message}`);
    problems++;
  }
}
process.exit(problems ? 1 : 0);
