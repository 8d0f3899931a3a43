// Recording in the store — the one place the inspector writes there: a
// conversion (the source model, added as imported if the store does not know
// its folder; the converted model, derived from it; the report, on the
// converted model) and an inspection (the report, on the inspected model).
import path from 'node:path';
import type { Store } from '../store/store';
import type { Model } from '../store/records';
import { folderBytes } from '../store/folder-digest';
import { readConfigJson } from '../io/checkpoint';
import { readModelFolder } from '../folder/kind';
import { checkModelFolder } from '../folder/load';
import { countParams } from '../model/config';
import { ConversionReport, type InspectReport } from './schema';

function modelAt(store: Store, dir: string): Model | undefined {
  const abs = path.resolve(dir);
  return store.models.list().find((m) => path.resolve(m.path) === abs);
}

/** The store's row for the model folder `dir`, added as imported when there is none. */
function knownModel(store: Store, dir: string): Model {
  const known = modelAt(store, dir);
  if (known) return known;
  const folder = readModelFolder(dir);
  return store.models.add({
    name: path.basename(path.resolve(dir)),
    source: 'imported',
    format: checkModelFolder(folder).format,
    path: path.resolve(dir),
    config: folder.configJson ?? undefined, // an adapter has no config.json
    paramCount: countParams(folder.config).total,
    bytes: folderBytes(dir),
  });
}

export interface RecordedConversion {
  reportId: number;
  /** The report as stored, with both model ids filled in. */
  report: ConversionReport;
}

export function recordConversion(store: Store, report: ConversionReport): RecordedConversion {
  const source = knownModel(store, report.source.path);
  const output =
    modelAt(store, report.output.path) ??
    store.models.add({
      name: path.basename(report.output.path),
      source: 'derived',
      format: report.output.format,
      path: report.output.path,
      config: readConfigJson(report.output.path),
      paramCount: report.output.params,
      bytes: folderBytes(report.output.path),
      parentModelId: source.id,
    });
  const body = ConversionReport.parse({
    ...report,
    source: { ...report.source, modelId: source.id },
    output: { ...report.output, modelId: output.id },
  });
  const stored = store.reports.add({ kind: 'conversion', modelId: output.id, body });
  return { reportId: stored.id, report: body };
}

/** Records the report of a model folder (presets have no row to attach it to). */
export function recordInspection(store: Store, report: InspectReport): { modelId: number; reportId: number } {
  if (report.target.kind !== 'folder' || !report.target.path) throw new Error('only the inspection of a model folder is recorded');
  const model = knownModel(store, report.target.path);
  const stored = store.reports.add({ kind: 'inspection', modelId: model.id, body: report });
  return { modelId: model.id, reportId: stored.id };
}
