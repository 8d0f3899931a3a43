// The inverse of engine/quant/codes.ts packInt4, to check its packing: the
// engine never unpacks a whole matrix (dequantize and matvec read the nibbles
// where they use them).

/** Bytes [rows/2, cols] → codes 0…15 [rows, cols]: row 2k from the low nibble, row 2k+1 from the high nibble. */
export function unpackInt4(packed: Uint8Array, rows: number, cols: number): Uint8Array {
  if (rows % 2 !== 0) throw new Error(`int4 packing pairs input features: the input width must be even, got ${rows}`);
  if (packed.length !== (rows / 2) * cols) throw new Error(`int4 unpacking: ${packed.length} bytes for a ${rows}×${cols} matrix`);
  const codes = new Uint8Array(rows * cols);
  for (let k = 0; k < rows / 2; k++) {
    for (let j = 0; j < cols; j++) {
      const b = packed[k * cols + j];
      codes[2 * k * cols + j] = b & 15;
      codes[(2 * k + 1) * cols + j] = b >> 4;
    }
  }
  return codes;
}
