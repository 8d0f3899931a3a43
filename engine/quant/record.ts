// Recording a quantization in the store — the one place it happens: the
// source model (added as imported if the store does not know its folder),
// the quantized model (derived from it), and the report, linked to the source.
import path from 'node:path';
import type { Store } from '../store/store';
import type { Model } from '../store/records';
import { readConfigJson } from '../io/checkpoint';
import { readModelFolder } from '../folder/kind';
import { QuantReport } from './report';

export interface RecordedQuantization {
  sourceModelId: number;
  outputModelId: number;
  reportId: number;
  /** The report as stored (output.modelId filled in). */
  report: QuantReport;
}

function modelAt(store: Store, dir: string): Model | undefined {
  const abs = path.resolve(dir);
  return store.models.list().find((m) => path.resolve(m.path) === abs);
}

export function recordQuantization(store: Store, report: QuantReport): RecordedQuantization {
  const src = report.source;
  const source =
    modelAt(store, src.path) ??
    store.models.add({
      name: path.basename(src.path),
      source: 'imported',
      format: src.format,
      path: src.path,
      config: readModelFolder(src.path).configJson ?? undefined, // an adapter has no config.json
      paramCount: src.params,
      bytes: report.size.sourceBytes,
    });
  // A folder quantized again keeps its row (chats may point at it); its files were replaced.
  const output =
    modelAt(store, report.output.path) ??
    store.models.add({
      name: path.basename(report.output.path),
      source: 'derived',
      format: 'safetensors',
      path: report.output.path,
      config: readConfigJson(report.output.path),
      paramCount: src.params,
      bytes: report.size.quantizedBytes,
      parentModelId: source.id,
    });
  const body = QuantReport.parse({ ...report, output: { ...report.output, modelId: output.id } });
  const stored = store.reports.add({ kind: 'quantization', modelId: source.id, body });
  return { sourceModelId: source.id, outputModelId: output.id, reportId: stored.id, report: body };
}
