// A file (or set of shards) that tensors can be read from by name, one at a
// time, so that a large checkpoint never has to be in memory twice.
import type { RawTensor } from './raw-tensor';

export interface TensorSource {
  /** For error messages: the file (or index file) the tensors come from. */
  readonly path: string;
  names(): string[];
  /** dtype and shape without reading the data. */
  info(name: string): { dtype: RawTensor['dtype']; shape: number[] };
  read(name: string): RawTensor;
  close(): void;
}
