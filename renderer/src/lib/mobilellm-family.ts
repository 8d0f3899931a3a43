// Meta's MobileLLM checkpoints on the Hugging Face Hub, as the welcome view
// offers them: the five sizes of facebookresearch/MobileLLM (their configs are
// in ../shared/reference/mobilellm-configs) and the two layer-shared (LS)
// models the paper trained, 125M and 350M. All are gated: the Hub asks each
// user to accept the license on the model's page before it serves the files.

export interface HubModel {
  repo: string;
  /** Parameters, as the paper counts them. */
  params: number;
  /** What sets it apart. */
  note: string;
}

export const MOBILELLM_FAMILY: HubModel[] = [
  { repo: 'facebook/MobileLLM-125M', params: 124.6e6, note: '30 layers × 576, the smallest' },
  { repo: 'facebook/MobileLLM-125M-layer-share', params: 124.6e6, note: 'LS: each block run twice (60 layers of compute)' },
  { repo: 'facebook/MobileLLM-350M', params: 345.3e6, note: '32 layers × 960' },
  { repo: 'facebook/MobileLLM-350M-layer-share', params: 345.3e6, note: 'LS: each block run twice' },
  { repo: 'facebook/MobileLLM-600M', params: 603.1e6, note: '40 layers × 1152' },
  { repo: 'facebook/MobileLLM-1B', params: 1.01e9, note: '54 layers × 1280' },
  { repo: 'facebook/MobileLLM-1.5B', params: 1.51e9, note: '54 layers × 1600' },
];

/** Bytes of a checkpoint of `params` parameters in float32 (how the Hub repos store their weights, roughly). */
export const float32Bytes = (params: number): number => params * 4;
