// The engine's import graph, read from the import statements of engine/**/*.ts
// (static, re-exports and dynamic import()): no module imports itself back
// through others, and the layers below do not reach the ones above them.
// Type-only imports (`import type`, `{ type X }`) are erased at compile time,
// so they take part in the layer rules but cannot close a circle.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ENGINE = path.resolve(import.meta.dirname, '../engine');

interface Edge {
  to: string;
  typeOnly: boolean;
}

function engineFiles(dir = ENGINE): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? engineFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

// `import … from '…'`, `export … from '…'`, `import '…'` and `import('…')`, capturing the clause and the path.
const IMPORT = /\b(?:import|export)\s+((?:type\s+)?[^'";]*?)\s+from\s+['"]([^'"]+)['"]|\bimport\s+['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;

/** A clause that imports only types: `type X`, `type { … }`, or `{ type A, type B }`. */
function isTypeOnly(clause: string): boolean {
  if (/^type\s/.test(clause)) return true;
  const named = clause.match(/^\{([^}]*)\}$/);
  return !!named && named[1].split(',').every((s) => s.trim() === '' || /^type\s/.test(s.trim()));
}

function resolveImport(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null; // packages and node: built-ins
  const base = path.resolve(path.dirname(from), spec);
  return [base, `${base}.ts`, path.join(base, 'index.ts')].find((f) => fs.existsSync(f) && fs.statSync(f).isFile()) ?? null;
}

function importGraph(files: string[]): Map<string, Edge[]> {
  const graph = new Map<string, Edge[]>();
  for (const file of files) {
    const src = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, ''); // comments quote imports too
    const edges: Edge[] = [];
    for (const m of src.matchAll(IMPORT)) {
      const to = resolveImport(file, m[2] ?? m[3] ?? m[4]);
      if (to) edges.push({ to, typeOnly: m[1] !== undefined && isTypeOnly(m[1].trim()) });
    }
    graph.set(file, edges);
  }
  return graph;
}

/** Every strongly connected group of more than one module (Tarjan), or a module importing itself. */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      group.push(w);
    } while (w !== v);
    if (group.length > 1 || graph.get(v)?.includes(v)) out.push(group.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

const rel = (f: string) => path.relative(ENGINE, f);
const graph = importGraph(engineFiles());

describe('the engine import graph', () => {
  it('finds the modules and their imports', () => {
    expect(graph.size).toBeGreaterThan(100);
    const folder = graph.get(path.join(ENGINE, 'folder/inference.ts'))!.map((e) => rel(e.to));
    expect(folder).toEqual(expect.arrayContaining(['runtime/select.ts', 'folder/kind.ts', 'folder/load.ts']));
    const registry = graph.get(path.join(ENGINE, 'jobs/registry.ts'))!;
    expect(registry.filter((e) => !e.typeOnly).map((e) => rel(e.to))).toContain('quant/job.ts'); // a dynamic import()
    expect(registry.find((e) => rel(e.to) === 'eval/record.ts')?.typeOnly).toBe(true);
  });

  it('finds a circle when there is one', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']],
      ['d', []],
      ['e', ['e']],
    ]);
    expect(cycles(g)).toEqual([['a', 'b', 'c'], ['e']]);
  });

  it('has no import circle', () => {
    const values = new Map([...graph].map(([f, edges]) => [f, edges.filter((e) => !e.typeOnly).map((e) => e.to)]));
    expect(cycles(values).map((c) => c.map(rel))).toEqual([]);
  });

  it.each([
    ['runtime', ['eval', 'folder', 'io']], // runtimes run a model; folders are opened above them (engine/folder)
    ['io', ['quant', 'runtime', 'train', 'chat', 'folder', 'tokenizer', 'eval', 'server', 'cli']], // file formats only
    ['folder', ['server', 'cli', 'jobs']], // below the service and the CLI
  ])('%s/ imports nothing from %j', (layer, above) => {
    const reaches = [...graph]
      .filter(([f]) => rel(f).startsWith(`${layer}/`))
      .flatMap(([f, edges]) => edges.map((e) => [rel(f), rel(e.to)]))
      .filter(([, to]) => above.includes(to.split('/')[0]));
    expect(reaches).toEqual([]);
  });
});
