// What `mlw export` and the model page's Export take: the format and its
// options. Node-free (the protocol and the renderer import it).
import { z } from 'zod';

export const EXPORT_FORMATS = ['hf', 'gguf', 'onnx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** GGUF tensor types we write (llama.cpp's names). */
export const GGUF_TYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
export const HF_DTYPES = ['float32', 'float16'] as const;
/** transformers.js' quantized dtypes (onnx/model_quantized.onnx, onnx/model_q4.onnx). */
export const ONNX_QUANTIZED_DTYPES = ['q8', 'q4'] as const;

export const ExportOptions = z.discriminatedUnion('format', [
  z.object({
    format: z.literal('hf'),
    /** Default: the dtype the model is stored in (float32 for a quantized model, which exports dequantized). */
    dtype: z.enum(HF_DTYPES).optional(),
    /** A layer-shared model as the plain LLaMA of its effective depth (default: compact, with our modeling file). */
    unroll: z.boolean().default(false),
  }),
  z.object({ format: z.literal('gguf'), type: z.enum(GGUF_TYPES).default('f16') }),
  z.object({
    format: z.literal('onnx'),
    /** Quantized files beside model.onnx (default: both for a float model, its own for a quantized one). */
    quantized: z.array(z.enum(ONNX_QUANTIZED_DTYPES)).optional(),
  }),
]);
export type ExportOptions = z.output<typeof ExportOptions>;

/** What an export wrote. */
export const ExportOutcome = z.object({
  outDir: z.string(),
  files: z.array(z.string()),
  bytes: z.number().int().nonnegative(),
  notes: z.array(z.string()),
});
export type ExportOutcome = z.infer<typeof ExportOutcome>;
