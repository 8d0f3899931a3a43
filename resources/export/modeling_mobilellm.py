"""MobileLLM with block-wise layer sharing (MobileLLM-LS) for transformers.

MobileLLM Workbench writes this file beside the config.json of a layer-shared
model. The checkpoint stores each physical block once, as model.layers.{b}
(LLaMA's names); the model runs the effective layers of the schedule, effective
layer l running block schedule[l]:

    immediate   0,0,1,1,2,2   each block runs `repeats` times in a row
    repeat_all  0,1,2,0,1,2   the whole stack runs again
    reverse     0,1,2,2,1,0   passes alternate direction: up, down, up, ...

config.json keeps num_hidden_layers = the physical blocks (as MobileLLM's own
configs do); in Python the config reports the effective depth, so that every
effective layer gets its own KV-cache slot. Load with

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
"""

from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM


def sharing_schedule(num_blocks, strategy, repeats):
    """Effective layer -> physical block (engine/model/sharing.ts)."""
    blocks = list(range(num_blocks))
    if strategy == "none":
        return blocks
    if strategy == "immediate":
        return [b for b in blocks for _ in range(repeats)]
    if strategy == "repeat_all":
        return blocks * repeats
    if strategy == "reverse":
        return [b for r in range(repeats) for b in (blocks if r % 2 == 0 else blocks[::-1])]
    raise ValueError(f"layer_sharing_strategy {strategy!r} is not one of immediate, repeat_all, reverse")


class MobileLLMConfig(LlamaConfig):
    model_type = "mobilellm"

    def __init__(
        self,
        num_hidden_layers=32,
        layer_sharing=False,
        layer_sharing_strategy="immediate",
        layer_sharing_repeats=2,
        share_embedding=None,
        **kwargs,
    ):
        self.num_blocks = num_hidden_layers
        self.layer_sharing = layer_sharing
        self.layer_sharing_strategy = layer_sharing_strategy
        self.layer_sharing_repeats = layer_sharing_repeats
        self.layer_schedule = sharing_schedule(
            num_hidden_layers, layer_sharing_strategy if layer_sharing else "none", layer_sharing_repeats
        )
        if share_embedding is not None:  # MobileLLM's name for tied embeddings is the truth
            kwargs["tie_word_embeddings"] = share_embedding
        self.share_embedding = share_embedding
        super().__init__(num_hidden_layers=len(self.layer_schedule), **kwargs)

    def to_dict(self):
        out = super().to_dict()
        out["num_hidden_layers"] = out.pop("num_blocks")  # written back as the physical blocks
        out.pop("layer_schedule", None)
        return out


class _EffectiveLayer:
    """One use of a physical block: the block's weights, this layer's cache slot."""

    def __init__(self, block, layer_idx):
        self.block = block
        self.layer_idx = layer_idx

    def __call__(self, *args, **kwargs):
        self.block.self_attn.layer_idx = self.layer_idx
        return self.block(*args, **kwargs)

    def __getattr__(self, name):  # anything else the layer loop asks of a layer is the block's
        return getattr(self.block, name)


class ScheduledLayers(nn.ModuleList):
    """The physical blocks (saved once, as layers.{b}); a slice of it is the effective layers of the schedule.

    LlamaModel.forward runs `self.layers[: config.num_hidden_layers]`, which is
    the whole schedule here.
    """

    def __init__(self, blocks, schedule):
        super().__init__(blocks)
        self.schedule = schedule

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return nn.ModuleList.__getitem__(self, index)
        uses = list(enumerate(self.schedule))[index]
        return [_EffectiveLayer(nn.ModuleList.__getitem__(self, b), layer) for layer, b in uses]


class MobileLLMForCausalLM(LlamaForCausalLM):
    config_class = MobileLLMConfig

    def __init__(self, config):
        depth = config.num_hidden_layers
        config.num_hidden_layers = config.num_blocks  # build the physical blocks only
        try:
            super().__init__(config)
        finally:
            config.num_hidden_layers = depth  # caches and the layer loop see the effective depth
        self.model.layers = ScheduledLayers(list(self.model.layers), config.layer_schedule)
