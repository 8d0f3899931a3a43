// The largest architecture a config.json (or a command's flag) may describe.
// Sizes in a file are checked against these before anything is sized by them:
// a schedule of 1e9 layers or a vocabulary of 1e12 rows would otherwise be
// allocated (and crash the process) long before the weights could disagree.
//
// Each bound is far above any published LLaMA-family model (MobileLLM-1.5B:
// 54 blocks, hidden 1600, vocab 32000; Llama-3-405B: 126 layers, hidden 16384,
// intermediate 53248, vocab 128256, 128k positions), so a real config never
// meets one.
export const CONFIG_LIMITS = {
  /** num_hidden_layers: physical blocks. */
  layers: 1024,
  /** layer_sharing_repeats: times each block runs (MobileLLM-LS uses 2). */
  sharingRepeats: 16,
  /** Physical blocks × repeats: the layers a forward pass runs. */
  effectiveDepth: 4096,
  hiddenSize: 65_536,
  intermediateSize: 262_144,
  vocabSize: 1_048_576,
  /** num_attention_heads and num_key_value_heads. */
  heads: 1024,
  headDim: 1024,
  maxPositions: 1_048_576,
} as const;
